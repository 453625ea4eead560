"""Attention's backward pass: the CPU flash kernel's backward op against the math path's autograd
ops (analysed with ``backward=True``), and against counts worked out by hand.

The math path's backward runs four bmm (dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q), the
softmax's backward, the scaling's multiplies and, with shared key/value heads, the sums of dK and
dV over the query heads that share them. The fused kernel does the same work in one op.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchtally

from .test_attention import CPU_FLASH, backend, ops_run

ATTENTION = "scaled_dot_product_attention"
CPU_FLASH_BACKWARD = "aten::_scaled_dot_product_flash_attention_for_cpu_backward"


class Projected(nn.Module):
    """q, k and v through one shared weight, so that the attention's gradients are needed."""

    def __init__(self, kv_heads: int, **sdpa: Any) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(16, 16, generator=torch.Generator().manual_seed(0)))
        self.kv_heads = kv_heads
        self.sdpa = sdpa

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        w = self.weight
        gqa = k.shape[1] != q.shape[1]
        return F.scaled_dot_product_attention(q @ w, k @ w, v @ w, enable_gqa=gqa, **self.sdpa)


def inputs(heads: int = 4, kv_heads: int = 4, lq: int = 8, lk: int = 6) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(2, heads, lq, 16, generator=g),
        torch.randn(2, kv_heads, lk, 16, generator=g),
        torch.randn(2, kv_heads, lk, 16, generator=g),
    )


def analyse(backend_name: str, kv_heads: int = 4, lq: int = 8, **sdpa: Any) -> torchtally.Analysis:
    model = Projected(kv_heads, **sdpa)
    with backend(backend_name):
        return torchtally.analyze(
            model, inputs(4, kv_heads, lq), backward=True, elementwise=True, warn_unsupported=False
        )


CASES = {
    "plain": {},
    "gqa": {"kv_heads": 2},
    "mqa": {"kv_heads": 1},
    "causal": {"is_causal": True},
    "square causal gqa": {"kv_heads": 2, "lq": 6, "is_causal": True},
}


@pytest.mark.parametrize("case", list(CASES))
def test_cpu_flash_backward_counts_what_the_math_path_runs(case: str) -> None:
    math_path, flash = analyse("math", **CASES[case]), analyse("flash", **CASES[case])
    assert CPU_FLASH_BACKWARD in ops_run(flash) and CPU_FLASH not in ops_run(math_path)
    assert {"aten::bmm", "aten::_softmax_backward_data"} <= {
        call.op for call in math_path.trace.ops if call.phase == "backward"
    }
    for counted in (math_path, flash):
        assert counted.unsupported_ops() == {}
    # Backward ops take the forward op's function: the math path's autograd ops are named
    # scaled_dot_product_attention too, so the tables match name by name.
    for elementwise in (True, False):
        ours = [a.recount(elementwise=elementwise) for a in (math_path, flash)]
        for phase in ("forward", "backward"):
            assert ours[0].by_module_and_operator(phase=phase) == ours[1].by_module_and_operator(
                phase=phase
            )


def test_cpu_flash_backward_by_hand() -> None:
    flash = analyse("flash", kv_heads=2).recount(elementwise=False)
    # B=2, H=4, Lq=8, Lk=6, E=Ev=16. dV, dP, dQ, dK: 4 * 2*4*8*6*16 = 24576
    assert flash.by_operator(phase="backward")[ATTENTION] == 4 * 6144
    # the weight's gradient from each of q @ w, k @ w, v @ w (the inputs need none):
    # (2*4*8 + 2*2*6 + 2*2*6) rows x 16 x 16
    assert flash.by_operator(phase="backward")["matmul"] == (64 + 24 + 24) * 16 * 16


def test_cpu_flash_backward_elementwise_parts_by_hand() -> None:
    flash = analyse("flash", kv_heads=2)
    scores = 2 * 4 * 8 * 6
    # 4 bmm-equivalents; q and k scaled (2*4*8*16 + 2*4*6*16); softmax backward 3 per score;
    # dK and dV summed over the 2 query heads of each key/value head: 2*4*6*(16 + 16)
    expected = 4 * scores * 16 + (1024 + 768) + 3 * scores + 2 * 4 * 6 * 32
    assert flash.by_operator(phase="backward")[ATTENTION] == expected


def test_recompute_option_adds_the_recomputed_scores() -> None:
    flash = analyse("flash").recount(elementwise=False)
    recomputed = flash.recount(elementwise=False, options={"attention_recompute": True})
    # the kernels recompute S = Q K^T from the logsumexp: 2*4*8*6*16 more
    added = recomputed.total(phase="backward") - flash.total(phase="backward")
    assert added == 2 * 4 * 8 * 6 * 16
    assert recomputed.total(phase="forward") == flash.total(phase="forward")


def test_causal_half_applies_to_the_backward_kernel() -> None:
    flash = analyse("flash", lq=6, is_causal=True).recount(elementwise=False)
    half = flash.recount(elementwise=False, options={"causal": "half"})
    # 6 * 7 / 2 = 21 of 36 scores per head; 4 matmul-equivalents of E = 16 each
    assert half.by_operator(phase="backward")[ATTENTION] == 4 * (2 * 4 * 21 * 16)


def test_gradients_are_not_activations() -> None:
    flash = analyse("flash")
    assert flash.by_operator("activations", phase="backward").get(ATTENTION, 0) == 0


def test_dropout_backward_costs_what_the_math_path_spends() -> None:
    # The CPU flash kernel has no dropout; compare the math path with the memory-efficient
    # kernel's backward op recorded from its schema.
    from .helpers import T, count_calls, recorded

    torch.manual_seed(0)
    math_path = analyse("math", dropout_p=0.3)
    efficient = recorded(
        torch.ops.aten._scaled_dot_product_efficient_attention_backward.default,
        T(2, 4, 8, 16),  # grad_out_
        T(2, 4, 8, 16),  # query
        T(2, 4, 6, 16),  # key
        T(2, 4, 6, 16),  # value
        None,  # attn_bias
        T(2, 4, 8, 16),  # out
        T(2, 4, 32),  # logsumexp
        T(),  # philox_seed
        T(),  # philox_offset
        0.3,  # dropout_p
        [True, True, True, False],  # grad_input_mask
        phase="backward",
    )
    attention_backward = math_path.by_operator(phase="backward")[ATTENTION]
    assert count_calls(efficient, elementwise=True).total() == attention_backward
