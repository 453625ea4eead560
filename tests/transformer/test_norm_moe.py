"""RMSNorm, embeddings and MoE grouped matmuls against counts worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import torchtally

from .helpers import T, count_calls, recorded

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
transformers = pytest.importorskip("transformers")
_transformers_models_llama_modeling_llama = pytest.importorskip(
    "transformers.models.llama.modeling_llama"
)
LlamaRMSNorm = _transformers_models_llama_modeling_llama.LlamaRMSNorm

aten = torch.ops.aten


def analyse(model: nn.Module, *inputs: Any, **kwargs: Any) -> torchtally.Analysis:
    return torchtally.analyze(model, inputs, warn_unsupported=False, **kwargs)


# --- RMSNorm ---------------------------------------------------------------------------------

X = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
# 160 elements in 10 rows of 16: x*x, the mean's sum, x * rstd, * weight (4 per element);
# + eps and rsqrt per row (2 per row)
RMS_NORM = 160 * 4 + 10 * 2


def test_rms_norm_is_elementwise_arithmetic() -> None:
    off = analyse(nn.RMSNorm(16), X)
    assert off.total() == 0
    assert set(off.unsupported_ops()) == {
        "aten::pow",
        "aten::mean",
        "aten::add_",
        "aten::rsqrt",
        "aten::mul",
    }
    on = off.recount(elementwise=True)
    assert on.by_operator() == {"rms_norm": RMS_NORM}
    assert on.unsupported_ops() == {}
    assert on.total("activations") == 0


def test_rms_norm_without_weight() -> None:
    on = analyse(nn.RMSNorm(16, elementwise_affine=False), X, elementwise=True)
    assert on.by_operator() == {"rms_norm": 160 * 3 + 10 * 2}


@pytest.mark.parametrize("weighted", [True, False])
def test_the_fused_kernel_costs_what_its_decomposition_does(weighted: bool) -> None:
    # aten::_fused_rms_norm runs on CUDA only (the CPU decomposes F.rms_norm)
    fused = recorded(
        aten._fused_rms_norm.default, T(2, 5, 16), [16], T(16) if weighted else None, 1e-6
    )
    assert count_calls(fused).total() == 0
    assert count_calls(fused).unsupported_ops() == {"aten::_fused_rms_norm": 1}
    decomposed = analyse(nn.RMSNorm(16, elementwise_affine=weighted), X, elementwise=True)
    assert count_calls(fused, elementwise=True).by_operator() == decomposed.by_operator()


def test_hugging_face_rms_norm_runs_the_same_arithmetic() -> None:
    hf = analyse(LlamaRMSNorm(16), X, elementwise=True)
    assert hf.total() == RMS_NORM
    assert hf.unsupported_ops() == {}


def test_the_fused_backward_kernel_by_hand() -> None:
    call = recorded(
        aten._fused_rms_norm_backward.default,
        T(2, 5, 16),  # grad_out
        T(2, 5, 16),  # input
        [16],
        T(2, 5, 1),  # rstd
        T(16),  # weight
        [True, True],
        phase="backward",
    )
    # grad_input: weight * g, the row's sum of h * x, 2 FMAs (4); grad_weight: 2
    assert count_calls(call, elementwise=True).by_operator() == {"rms_norm": 160 * (4 + 2)}
    only_input = recorded(
        aten._fused_rms_norm_backward.default,
        T(2, 5, 16), T(2, 5, 16), [16], T(2, 5, 1), None, [True, False], phase="backward",
    )  # fmt: skip
    assert count_calls(only_input, elementwise=True).total() == 160 * 3
    assert count_calls(call).total() == 0


# --- embeddings ------------------------------------------------------------------------------


def test_embeddings_are_lookups() -> None:
    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    analysis = analyse(nn.Embedding(100, 16), ids, elementwise=True)
    assert analysis.total() == 0
    assert analysis.total("activations") == 0
    assert analysis.unsupported_ops() == {}
    assert analysis.params[""] == 100 * 16


# --- grouped matmuls -------------------------------------------------------------------------

OFFS = torch.tensor([6, 12, 18, 24], dtype=torch.int32)  # 4 groups


@pytest.mark.parametrize(
    ("shapes", "offs", "expected"),
    [
        # 24 routed rows of 32 through one of 4 experts (4, 32, 64): 24 * 32 * 64
        (((24, 32), (4, 32, 64)), OFFS, 24 * 32 * 64),
        # 4 groups of (24, 32) times columns of (32, 256) split 4 ways: 24 * 32 * 256
        (
            ((4, 24, 32), (32, 256)),
            torch.tensor([64, 128, 192, 256], dtype=torch.int32),
            24 * 32 * 256,
        ),
        # the contraction split 4 ways (weight gradients): (24, 32) @ (32, 64) once in all
        (((24, 32), (32, 64)), torch.tensor([8, 16, 24, 32], dtype=torch.int32), 24 * 32 * 64),
        # batched: 4 x (24, 32) @ (32, 64)
        (((4, 24, 32), (4, 32, 64)), None, 4 * 24 * 32 * 64),
    ],
)
def test_grouped_mm_forms(shapes: Any, offs: torch.Tensor | None, expected: int) -> None:
    a, b = (torch.randn(s) for s in shapes)
    analysis = torchtally.analyze(_GroupedMM(offs), (a, b), mode="real", warn_unsupported=False)
    assert analysis.by_operator() == {"_grouped_mm": expected}
    out = torch._grouped_mm(a, b, offs)
    assert analysis.total("activations") == out.numel()


class _GroupedMM(nn.Module):
    def __init__(self, offs: torch.Tensor | None) -> None:
        super().__init__()
        self.offs = offs

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch._grouped_mm(a, b, self.offs)


def mixtral_moe(implementation: str) -> nn.Module:
    config = transformers.MixtralConfig(
        hidden_size=32,
        intermediate_size=64,
        num_local_experts=4,
        num_experts_per_tok=2,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    config._experts_implementation = implementation
    torch.manual_seed(0)
    return transformers.models.mixtral.modeling_mixtral.MixtralSparseMoeBlock(config).eval()


@pytest.mark.parametrize("implementation", ["grouped_mm", "batched_mm", "eager"])
def test_mixtral_experts_cost_the_same_however_they_run(implementation: str) -> None:
    hidden = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(0))
    analysis = torchtally.analyze(
        mixtral_moe(implementation), (hidden,), mode="real", warn_unsupported=False
    )
    tokens, routed = 2 * 6, 2 * 6 * 2  # each token goes to 2 of the 4 experts
    # router 32 -> 4 for every token; each routed token: gate and up 32 -> 2 x 64, down 64 -> 32
    expected = tokens * 32 * 4 + routed * (32 * 128 + 64 * 32)
    assert analysis.total() == expected
    if implementation == "grouped_mm":
        assert analysis.by_operator() == {
            "linear": tokens * 32 * 4,
            "_grouped_mm": routed * (32 * 128 + 64 * 32),
        }


def test_grouped_mm_backward_by_hand() -> None:
    hidden = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(0))
    analysis = torchtally.analyze(
        mixtral_moe("grouped_mm").train(), (hidden,), mode="real", backward=True,
        warn_unsupported=False,
    )  # fmt: skip
    routed = 2 * 6 * 2
    gate_up, down = routed * 32 * 128, routed * 64 * 32
    assert analysis.by_operator(phase="forward")["_grouped_mm"] == gate_up + down
    # Both weights' gradients (2d x 2d grouped matmuls, the contraction over the routed tokens
    # split by expert), and the input gradient of the down projection only: the gate/up
    # projection's input is gathered from the model's input, which needs no gradient.
    assert analysis.by_operator(phase="backward")["_grouped_mm"] == gate_up + down + down
    # gradients are not activations
    assert analysis.by_operator("activations", phase="backward").get("_grouped_mm", 0) == 0
