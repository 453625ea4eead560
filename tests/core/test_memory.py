"""`Analysis.memory()`: parameters, buffers and inputs by dtype, and the activation peak from the
trace's storage lifetimes, hand-computed and against PyTorch's CPU allocator."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

import torchtally

F32 = 4
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(100, 200), nn.ReLU(), nn.Linear(200, 10))


@pytest.mark.parametrize("mode", ["real", "fake"])
def test_forward_peak_is_hand_computed(mode: str) -> None:
    memory = torchtally.analyze(mlp(), torch.randn(8, 100), mode=mode).memory()
    # the first linear's output (8 x 200) is still alive while ReLU writes its own
    assert memory["peak_activation_bytes"] == 2 * 8 * 200 * F32
    assert memory["peak_activation_bytes_by_phase"] == {"forward": 2 * 8 * 200 * F32}
    assert memory["peak_activation_bytes_by_module"] == {
        "0": 8 * 200 * F32,
        "1": 2 * 8 * 200 * F32,
        "2": (8 * 200 + 8 * 10) * F32,  # ReLU's output and the logits
    }
    params = (100 * 200 + 200 + 200 * 10 + 10) * F32
    assert memory["params_bytes"] == {"float32": params}
    assert memory["buffers_bytes"] == {}
    assert memory["input_bytes"] == 8 * 100 * F32
    assert memory["trainable_params"] == 22210 and memory["frozen_params"] == 0
    assert memory["peak_bytes"] == params + 8 * 100 * F32 + 2 * 8 * 200 * F32


def test_backward_peak_holds_the_output_its_seed_and_the_weight_gradient() -> None:
    model = nn.Linear(100, 200, bias=False)
    memory = torchtally.analyze(model, torch.randn(8, 100), backward=True).memory()
    output = 8 * 200 * F32
    # the output, the gradient of ones it is differentiated with, the weight's gradient
    assert memory["peak_activation_bytes"] == 2 * output + 200 * 100 * F32
    assert memory["peak_activation_bytes_by_phase"] == {
        "forward": output,
        "backward": 2 * output + 200 * 100 * F32,
    }


def test_saved_tensors_raise_the_training_peak() -> None:
    model = nn.Sequential(*(nn.Sequential(nn.Linear(64, 64), nn.Tanh()) for _ in range(4)))
    x = torch.randn(32, 64)
    forward = torchtally.analyze(model, x, warn_unsupported=False).memory()
    training = torchtally.analyze(model, x, backward=True, warn_unsupported=False).memory()
    step = 32 * 64 * F32
    # at the last tanh: the outer Sequential's current input, the inner one's, tanh's output
    assert forward["peak_activation_bytes"] == 3 * step
    # with autograd every tanh saves its output (the next linear's saved input): at the last
    # tanh, four of them and the last linear's output
    assert training["peak_activation_bytes_by_phase"]["forward"] == 5 * step


def test_dtypes_buffers_and_frozen_parameters() -> None:
    model = nn.Sequential(nn.Linear(10, 20), nn.BatchNorm1d(20), nn.Linear(20, 5))
    model[0].requires_grad_(False)
    model[2].to(torch.bfloat16)
    model.eval()
    model[2].register_forward_pre_hook(lambda m, args: (args[0].to(torch.bfloat16),))
    memory = torchtally.analyze(model, torch.randn(4, 10)).memory()
    assert memory["params_bytes"] == {"float32": (10 * 20 + 20 + 2 * 20) * F32, "bfloat16": 105 * 2}
    assert memory["buffers_bytes"] == {"float32": 2 * 20 * F32, "int64": 8}
    assert memory["frozen_params"] == 220
    assert memory["trainable_params"] == 40 + 105


def test_meta_model_memory() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(1000, 1000), nn.GELU())
    memory = torchtally.analyze(model, torch.randn(16, 1000)).memory()
    assert memory["params_bytes"] == {"float32": 1001000 * F32}
    assert memory["peak_activation_bytes"] == 2 * 16 * 1000 * F32


def test_memory_is_in_json() -> None:
    analysis = torchtally.analyze(mlp(), torch.randn(8, 100))
    document = json.loads(analysis.render("json"))
    assert document["memory"] == analysis.memory()
    assert analysis.to_dict()["memory"]["peak_activation_bytes"] == 2 * 8 * 200 * F32


def _memory_benchmark() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(
        "memory_vs_measured", BENCHMARKS / "memory_vs_measured.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("step", ["forward", "training"])
@pytest.mark.parametrize("case", ["resnet50", "vit_b_16", "bert_base", "llama"])
def test_peak_is_within_ten_percent_of_the_cpu_allocator(case: str, step: str) -> None:
    if case != "resnet50" and case != "vit_b_16":
        pytest.importorskip("transformers")
    pytest.importorskip("torchvision")
    # measured: tensors that outlive the op that made them (a kernel's scratch memory, allocated
    # and freed inside one op, depends on the CPU and is out of any tracer's sight)
    estimated, tensors, measured = _memory_benchmark().compare(case, step)
    assert abs(estimated - tensors) <= 0.1 * tensors, (estimated, tensors, measured)
    assert tensors <= measured
