"""fvcore- and mmengine-style code run through the one-line import switch gives what the peers
give: the same numbers, and the same text byte for byte.

`research_code` is written once against a peer's namespace, as a research repository writes it
(custom handles built on the ``jit_handles`` helpers, a `JitModelAnalysis` subclass, the tables
and the module tree), then run with ``fvcore.nn`` and with ``torchtally.compat.fvcore``.
"""

from __future__ import annotations

import importlib
import math
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from .models import ResearchNet, SmallCNN

fvcore_nn = pytest.importorskip("fvcore.nn")
mmengine_analysis = pytest.importorskip("mmengine.analysis")

FVCORE_MODULES = ("jit_handles", "jit_analysis", "flop_count", "activation_count")


def library(root: str) -> SimpleNamespace:
    """``import <root> as nn`` and its submodules: the only line that changes."""
    modules = {name: importlib.import_module(f"{root}.{name}") for name in FVCORE_MODULES}
    return SimpleNamespace(nn=importlib.import_module(root), **modules)


FVCORE = "fvcore.nn"
OURS = "torchtally.compat.fvcore"


def research_code(lib: SimpleNamespace, model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """What a research repository does with fvcore: handles for the ops it cares about, a
    statistic of its own, and the printouts."""
    jh = lib.jit_handles

    def gelu_flops(inputs: list[Any], outputs: list[Any]) -> int:
        return 8 * math.prod(jh.get_shape(outputs[0]))

    def attention_flops(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
        q, k, v = (jh.get_shape(value) for value in inputs[:3])
        scores = math.prod(q) * k[-2]
        return Counter({"attention": scores + math.prod(q[:-1]) * k[-2] * v[-1]})

    def conv_with_bias(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
        x_shape, w_shape, out = (jh.get_shape(v) for v in (inputs[0], inputs[1], outputs[0]))
        count = jh.conv_flop_count(x_shape, w_shape, out, transposed=inputs[6].toIValue())
        if jh.get_shape(inputs[2]) is not None:
            count += math.prod(out)
        return Counter({"conv": count})

    def scaled(inputs: list[Any], outputs: list[Any]) -> int:
        return math.prod(jh.get_shape(inputs[0]))

    def einsum_as_bmm(inputs: list[Any], outputs: list[Any]) -> int:
        # fvcore's own einsum handle rounds: numpy prints its flop count to 4 digits
        assert inputs[0].toIValue() == "bhqd,bhkd->bhqk"
        first, second = (jh.get_shape(v) for v in inputs[1].node().inputs())
        return math.prod(first) * second[-2]

    handles = {
        **lib.flop_count._DEFAULT_SUPPORTED_OPS,
        "aten::gelu": gelu_flops,
        "aten::scaled_dot_product_attention": attention_flops,
        "aten::_convolution": conv_with_bias,
        "aten::upsample_bicubic2d": jh.elementwise_flop_counter(0, 4),
        "aten::softmax": jh.elementwise_flop_counter(1, 0),
        "prim::PythonOp.ScaleGrad": scaled,
        "aten::einsum": einsum_as_bmm,
    }
    flops = lib.nn.FlopCountAnalysis(model, x).set_op_handle(**handles)
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)

    class OutputElements(lib.jit_analysis.JitModelAnalysis):  # type: ignore[misc,name-defined]
        """A statistic of one's own: output elements of the layers that store them."""

        def __init__(self, model: nn.Module, inputs: Any) -> None:
            super().__init__(model, inputs)
            counter = jh.generic_activation_jit
            self.set_op_handle(
                "aten::_convolution",
                counter("conv"),
                "aten::linear",
                counter(),
                "aten::scaled_dot_product_attention",
                counter("attention"),
                "aten::upsample_bicubic2d",
                counter(),
            )

    acts = OutputElements(model, x).unsupported_ops_warnings(False)
    acts.uncalled_modules_warnings(False)
    results = {
        "total": flops.total(),
        "by_operator": flops.by_operator(),
        "by_module": flops.by_module(),
        "by_module_and_operator": flops.by_module_and_operator(),
        "attention": flops.by_operator("attention"),
        "uncalled": flops.uncalled_modules(),
        "acts": acts.by_module_and_operator(),
        "acts_unsupported": acts.unsupported_ops(),
    }
    results["table"] = lib.nn.flop_count_table(flops, max_depth=2, activations=acts)
    results["deep_table"] = lib.nn.flop_count_table(
        flops, max_depth=5, activations=acts, show_param_shapes=False
    )
    results["str"] = lib.nn.flop_count_str(flops, activations=acts)
    results["parameters"] = lib.nn.parameter_count_table(model, max_depth=2)
    return results


@pytest.mark.slow
def test_research_code_gives_fvcores_results(peer_layout: None) -> None:
    torch.manual_seed(0)
    model, x = ResearchNet().eval(), torch.randn(2, 3, 16, 16)
    theirs = research_code(library(FVCORE), model, x)
    ours = research_code(library(OURS), model, x)
    for key, value in theirs.items():
        assert ours[key] == value, key


MMENGINE = "mmengine.analysis"
OURS_MMENGINE = "torchtally.compat.mmengine"
MMENGINE_MODULES = ("jit_handles", "print_helper", "complexity_analysis")


def mm_library(root: str) -> SimpleNamespace:
    modules = {name: importlib.import_module(f"{root}.{name}") for name in MMENGINE_MODULES}
    return SimpleNamespace(analysis=importlib.import_module(root), **modules)


def mmengine_code(lib: SimpleNamespace, model: nn.Module) -> dict[str, Any]:
    """What an OpenMMLab project does: ``get_model_complexity_info`` and the printers, with a
    handle for an op mmengine does not count."""
    info = lib.analysis.get_model_complexity_info(model, input_shape=(3, 32, 32))
    inputs = (torch.randn(1, 3, 32, 32),)
    handles = dict(lib.complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS)
    handles["aten::gelu"] = lib.jit_handles.elementwise_flop_counter(0, 8)
    flops = lib.analysis.FlopAnalyzer(model, inputs).set_op_handle(**handles)
    acts = lib.analysis.ActivationAnalyzer(model, inputs).ancestor_mode("caller")
    flops.ancestor_mode("caller")
    printer = lib.print_helper
    return {
        **info,
        "gelu": flops.by_operator()["gelu"],
        "by_module": flops.by_module(),
        "table": printer.complexity_stats_table(flops, max_depth=1, activations=acts),
        "table_no_shapes": printer.complexity_stats_table(flops, show_param_shapes=False),
        "str": printer.complexity_stats_str(flops, activations=acts),
        "parameters": lib.analysis.parameter_count_table(model, max_depth=2),
    }


@pytest.mark.slow
def test_mmengine_code_gives_mmengines_results(peer_layout: None) -> None:
    torch.manual_seed(0)
    model = SmallCNN().eval()
    theirs = mmengine_code(mm_library(MMENGINE), model)
    ours = mmengine_code(mm_library(OURS_MMENGINE), model)
    for key, value in theirs.items():
        assert ours[key] == value, key
    assert theirs["out_table"].startswith("\n+---")
    assert theirs["parameters"].startswith("      parameter count of SmallCNN      \n+---")


def printouts(lib: SimpleNamespace, model: nn.Module, x: torch.Tensor) -> tuple[Any, ...]:
    flops = lib.nn.FlopCountAnalysis(model, x).unsupported_ops_warnings(False)
    acts = lib.nn.ActivationCountAnalysis(model, x).unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    return (
        flops.total(),
        acts.total(),
        lib.nn.flop_count_table(flops, max_depth=2, activations=acts),
        lib.nn.flop_count_str(flops, activations=acts),
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "regnet_y_400mf"])
def test_torchvision_models_print_as_fvcore_prints_them(peer_layout: None, name: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model, x = getattr(torchvision.models, name)().eval(), torch.randn(1, 3, 224, 224)
    assert printouts(library(OURS), model, x) == printouts(library(FVCORE), model, x)


@pytest.mark.slow
def test_a_module_without_ops_is_called_here(peer_layout: None) -> None:
    # EfficientNet's StochasticDepth is the identity in eval: no op, so no JIT node, so fvcore
    # calls it uncalled (N/A); its __call__ ran, and here it is not. Nothing else differs.
    torchvision = pytest.importorskip("torchvision")
    model, x = torchvision.models.efficientnet_b0().eval(), torch.randn(1, 3, 224, 224)
    ours = printouts(library(OURS), model, x)
    theirs = printouts(library(FVCORE), model, x)
    assert ours[:3] == theirs[:3]
    changed = [
        (a, b) for a, b in zip(ours[3].splitlines(), theirs[3].splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 9  # the blocks with a residual connection call it
    for line, theirs_line in changed:
        assert line.strip() == "(stochastic_depth): StochasticDepth()"
        assert theirs_line.strip() == line.strip()[:-1] + "#params: 0, #flops: N/A, #acts: N/A)"


@pytest.mark.slow
def test_mmengine_complexity_info_on_a_resnet(peer_layout: None) -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18().eval()
    ours = importlib.import_module(OURS_MMENGINE).get_model_complexity_info(model, (3, 96, 96))
    theirs = mmengine_analysis.get_model_complexity_info(model, (3, 96, 96))
    assert ours == theirs
