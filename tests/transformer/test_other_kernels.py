"""Kernels of other hardware the inventory added to the plugin, from recorded calls: Triton's
fused attention and multi-head attention, and the second FP8 grouped matmul."""

from __future__ import annotations

import torch

from .helpers import T, count_calls, recorded

ops = torch.ops.aten


def test_triton_attention_counts_as_sdpa() -> None:
    """Q K^T and P V: 2 x heads x Lq x Lk x head dim."""
    q = T(2, 4, 16, 8)
    call = recorded(ops._triton_scaled_dot_attention.default, q, q, q, outputs=(q,))
    assert count_calls(call).by_operator() == {"scaled_dot_product_attention": 2 * 8 * 16 * 16 * 8}


def test_triton_multi_head_attention_counts_as_the_fused_one() -> None:
    """The q, k, v and out projections (4 x tokens x E x E) and the attention."""
    x = T(2, 16, 32)
    call = recorded(
        ops._triton_multi_head_attention.default,
        x, x, x, 32, 4, T(96, 32), T(96), T(32, 32), T(32),
        outputs=(x,),
    )  # fmt: skip
    assert count_calls(call).by_operator() == {
        "linear": 4 * 32 * 32 * 32,
        "scaled_dot_product_attention": 2 * (2 * 4) * 16 * 16 * 8,
    }


def test_the_second_fp8_grouped_mm_counts_as_the_first() -> None:
    a, b = T(24, 64, dtype=torch.float8_e4m3fn), T(8, 64, 48, dtype=torch.float8_e4m3fn)
    out = T(24, 48, dtype=torch.bfloat16)
    call = recorded(
        ops._scaled_grouped_mm_v2.default, a, b, [T(24)], [0], [0], [T(8, 48)], [0], [0],
        outputs=(out,),
    )  # fmt: skip
    assert count_calls(call).total() == 24 * 64 * 48
