"""Mixture-of-experts models on fake and meta tensors in every dtype: PyTorch's meta kernel for
``_grouped_mm`` takes bfloat16 only, so a float32 Qwen-MoE failed in fake and meta mode (and
auto mode ran it for real). torchtally's fake kernel for it gives every mode the same count, the
routed experts' analytic one, forward and backward."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import torchtally
from torchtally.fake import FAKE_KERNELS

transformers = pytest.importorskip("transformers")

T = 12  # tokens
IDS = {"input_ids": torch.randint(0, 100, (1, T), generator=torch.Generator().manual_seed(0))}
d, mi, layers, experts, top_k = 64, 32, 2, 8, 2
SMALL = {
    "hidden_size": d,
    "intermediate_size": 128,
    "moe_intermediate_size": mi,
    "num_hidden_layers": layers,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 100,
    "num_experts": experts,
    "num_experts_per_tok": top_k,
}
# every token runs top_k experts: gate and up (d -> 2 mi), down (mi -> d)
ROUTED = layers * T * top_k * 3 * d * mi


def qwen3_moe() -> nn.Module:
    config = transformers.Qwen3MoeConfig(**SMALL, head_dim=16, mlp_only_layers=[])
    return transformers.Qwen3MoeForCausalLM(config)


def qwen2_moe() -> nn.Module:
    config = transformers.Qwen2MoeConfig(**SMALL, shared_expert_intermediate_size=64)
    return transformers.Qwen2MoeForCausalLM(config)


def analyse(model: nn.Module, mode: str, **kwargs: Any) -> torchtally.Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchtally.analyze(model, IDS, mode=mode, warn_unsupported=False, **kwargs)


@pytest.mark.parametrize("build", [qwen3_moe, qwen2_moe], ids=["qwen3-moe", "qwen2-moe"])
def test_float32_moe_counts_the_routed_experts_in_every_mode(
    build: Callable[[], nn.Module],
) -> None:
    torch.manual_seed(0)
    model = build().eval()
    assert model.config._experts_implementation == "grouped_mm"
    counts = {}
    for mode in ("real", "fake", "auto"):
        analysis = analyse(model, mode, backward=True)
        assert analysis.mode == ("real" if mode == "real" else "fake")
        counts[mode] = analysis
    with torch.device("meta"):
        counts["meta"] = analyse(build(), "auto", backward=True)
    assert counts["meta"].mode == "meta"
    for analysis in counts.values():
        assert analysis.by_operator(phase="forward")["_grouped_mm"] == ROUTED
        # the experts' inputs and weights both need gradients: twice the forward
        assert analysis.by_operator(phase="backward")["_grouped_mm"] == 2 * ROUTED
    totals = {m: (a.total(phase="forward"), a.total(phase="backward")) for m, a in counts.items()}
    assert len(set(totals.values())) == 1, totals


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float16])
@pytest.mark.parametrize(
    ("a", "b", "offs", "shape"),
    [
        ((24, 64), (8, 64, 48), 8, (24, 48)),  # tokens grouped by expert (the MoE forward)
        ((64, 24), (24, 48), 8, (8, 64, 48)),  # the contraction grouped (a weight gradient)
        ((8, 24, 64), (64, 48), 8, (24, 48)),
        ((8, 24, 64), (8, 64, 48), None, (8, 24, 48)),
    ],
)
def test_the_fake_kernel_gives_the_meta_kernels_shapes_in_every_dtype(
    dtype: torch.dtype,
    a: tuple[int, ...],
    b: tuple[int, ...],
    offs: int | None,
    shape: tuple[int, ...],
) -> None:
    kernel = FAKE_KERNELS[torch.ops.aten._grouped_mm.default]
    mode = torch._subclasses.fake_tensor.FakeTensorMode()
    with mode:
        x, y = torch.empty(a, dtype=dtype), torch.empty(b, dtype=dtype)
        groups = torch.empty(offs, dtype=torch.int32) if offs else None
        out = kernel(mode, x, y, groups)
        assert (tuple(out.shape), out.dtype) == (shape, dtype)
        if dtype == torch.bfloat16:  # PyTorch's own meta kernel agrees where it runs
            assert tuple(torch._grouped_mm(x, y, groups).shape) == shape


@pytest.mark.slow
def test_a_qwen3_moe_30b_a3b_shape_counts_on_the_meta_device_in_seconds() -> None:
    """Qwen3-30B-A3B's shape (48 layers, 128 experts of width 768, 8 per token, hidden 2048):
    30.5 billion parameters, 2,048 tokens. The routed experts count exactly the analytic
    active-expert figure: 48 layers x 2,048 tokens x 8 experts x 3 x 2,048 x 768."""
    config = transformers.Qwen3MoeConfig(
        hidden_size=2048,
        intermediate_size=6144,
        moe_intermediate_size=768,
        num_hidden_layers=48,
        num_attention_heads=32,
        num_key_value_heads=4,
        head_dim=128,
        vocab_size=151936,
        num_experts=128,
        num_experts_per_tok=8,
        mlp_only_layers=[],
    )
    with torch.device("meta"):
        model = transformers.Qwen3MoeForCausalLM(config)
    tokens = 2048
    start = time.perf_counter()
    analysis = torchtally.analyze(
        model, {"input_ids": torch.zeros(1, tokens, dtype=torch.long)}, warn_unsupported=False
    )
    seconds = time.perf_counter() - start
    assert analysis.mode == "meta"
    assert analysis.by_operator()["_grouped_mm"] == 48 * tokens * 8 * 3 * 2048 * 768
    assert analysis.params[""] == 30_532_122_624
    assert seconds < 60  # about 6 s on the 2-core test machine
