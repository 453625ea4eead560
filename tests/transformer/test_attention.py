"""Attention on the CPU: the CPU flash kernel and the math path, against counts worked out by hand.

Notation in the comments: B batch, H query heads, Lq / Lk query / key length, E / Ev the query-key
/ value head size. One multiply-add is one flop: Q K^T is B*H*Lq*Lk*E, P V is B*H*Lq*Lk*Ev.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import torchtally

from .helpers import T, count_calls, recorded

ATTENTION = "scaled_dot_product_attention"
CPU_FLASH = "aten::_scaled_dot_product_flash_attention_for_cpu"
aten = torch.ops.aten


@contextmanager
def backend(name: str) -> Iterator[None]:
    """Run SDPA on one backend: "math", "flash" (the CPU flash kernel) or "default"."""
    if name == "default":
        yield
        return
    chosen = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION}[name]
    with warnings.catch_warnings(), sdpa_kernel(chosen):
        warnings.simplefilter("ignore")  # SDPA warns about each backend it rules out
        yield


def ops_run(analysis: torchtally.Analysis) -> set[str]:
    return {call.op for call in analysis.trace.ops}


def qkv(b: int, h: int, lq: int, lk: int, e: int, hkv: int | None = None, ev: int | None = None):
    g = torch.Generator().manual_seed(0)
    hkv = hkv or h
    return (
        torch.randn(b, h, lq, e, generator=g),
        torch.randn(b, hkv, lk, e, generator=g),
        torch.randn(b, hkv, lk, ev or e, generator=g),
    )


def test_cpu_flash_counts_both_matmuls(tally: Any) -> None:
    q, k, v = qkv(2, 4, 8, 6, 16)
    analysis = tally(F.scaled_dot_product_attention, q, k, v)
    assert CPU_FLASH in ops_run(analysis)
    # Q K^T: 2*4*8*6*16 = 6144; P V: 2*4*8*6*16 = 6144
    assert analysis.by_operator() == {ATTENTION: 6144 + 6144}
    # the score matrix 2*4*8*6 = 384 and the output 2*4*8*16 = 1024
    assert analysis.by_operator("activations") == {ATTENTION: 384 + 1024}
    assert analysis.unsupported_ops() == {}


def test_grouped_query_attention_costs_the_same_per_query_head(tally: Any) -> None:
    q, k, v = qkv(2, 8, 8, 8, 16, hkv=2)  # 8 query heads share 2 key/value heads
    analysis = tally(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), q, k, v
    )
    assert CPU_FLASH in ops_run(analysis)
    # 2*8*8*8*16 = 16384 for each matmul, whatever the number of key/value heads
    assert analysis.total() == 2 * 16384


def test_multi_query_attention(tally: Any) -> None:
    q, k, v = qkv(1, 4, 5, 7, 8, hkv=1)
    analysis = tally(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), q, k, v
    )
    assert analysis.total() == 2 * (1 * 4 * 5 * 7 * 8)  # 2 * 1120


def test_the_math_path_is_named_like_the_kernels(tally: Any) -> None:
    q, k, v = qkv(2, 4, 8, 6, 16, ev=12)  # E != Ev: the CPU flash kernel cannot run it
    analysis = tally(F.scaled_dot_product_attention, q, k, v, elementwise=True)
    assert CPU_FLASH not in ops_run(analysis) and "aten::bmm" in ops_run(analysis)
    # bmm 2*4*8*6*16 + bmm 2*4*8*6*12, q and k scaled by sqrt(scale): 2*4*8*16 + 2*4*6*16,
    # _safe_softmax at 10 per score: 10 * 2*4*8*6
    expected = 6144 + 4608 + (1024 + 768) + 10 * 384
    assert analysis.by_operator() == {ATTENTION: expected}


# --- the same attention on every backend the CPU has --------------------------------------------


class SelfAttention(nn.Module):
    """Projections around one SDPA call, with its options."""

    def __init__(self, dim: int = 32, heads: int = 4, kv_heads: int = 4, **sdpa: Any) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * kv_heads * self.head_dim)
        self.out = nn.Linear(dim, dim)
        self.sdpa = sdpa

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, length, dim = x.shape
        q = self.q(x).view(b, length, self.heads, -1).transpose(1, 2)
        k, v = self.kv(x).view(b, length, 2, self.kv_heads, -1).permute(2, 0, 3, 1, 4)
        gqa = self.kv_heads != self.heads
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa, **self.sdpa)
        return self.out(o.transpose(1, 2).reshape(b, length, dim))


class Block(nn.Module):
    def __init__(self, **attention: Any) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(32)
        self.attn = SelfAttention(**attention)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.attn(self.norm(x), mask)


SETUPS = {
    "plain": ({}, None),
    "gqa": ({"kv_heads": 2}, None),
    "mqa": ({"kv_heads": 1}, None),
    "causal": ({"is_causal": True}, None),
    "float mask": ({}, torch.randn(10, 10)),
    "bool mask": ({}, torch.rand(2, 1, 10, 10) > 0.3),
    "gqa, causal": ({"kv_heads": 2, "is_causal": True}, None),
}


def analyse_block(setup: str, backend_name: str, **kwargs: Any) -> torchtally.Analysis:
    attention, mask = SETUPS[setup]
    torch.manual_seed(0)
    model = Block(**attention).eval()
    inputs = (torch.randn(2, 10, 32),) if mask is None else (torch.randn(2, 10, 32), mask)
    with backend(backend_name):
        return torchtally.analyze(model, inputs, warn_unsupported=False, **kwargs)


@pytest.mark.parametrize("setup", list(SETUPS))
def test_every_cpu_backend_gives_the_same_counts(setup: str) -> None:
    runs = {name: analyse_block(setup, name) for name in ("math", "flash", "default")}
    assert "aten::bmm" in ops_run(runs["math"]) and CPU_FLASH not in ops_run(runs["math"])
    assert CPU_FLASH in ops_run(runs["flash"]) and "aten::bmm" not in ops_run(runs["flash"])
    with_elementwise = {name: analysis.recount(elementwise=True) for name, analysis in runs.items()}
    for counted in (runs, with_elementwise):
        for metric in ("flops", "activations"):
            first, *others = [a.by_module_and_operator(metric) for a in counted.values()]
            assert all(other == first for other in others), (setup, metric)
    # Off, the math path's scaling and softmax are element-wise ops left unsupported (as core
    # leaves every element-wise op); on, every backend counts them and misses nothing.
    assert runs["flash"].unsupported_ops() == {"aten::add": 1}  # the block's residual
    assert set(runs["math"].unsupported_ops()) >= {"aten::mul", "aten::_safe_softmax"}
    assert all(a.unsupported_ops() == {} for a in with_elementwise.values())


@pytest.mark.parametrize("setup", ["plain", "gqa", "causal"])
def test_attention_is_counted_under_the_module_that_ran_it(setup: str) -> None:
    analysis = analyse_block(setup, "default")
    # B=2, H=4, L=10, E=Ev=8: 2 * (2*4*10*10*8)
    attention = 2 * (2 * 4 * 10 * 10 * 8)
    by_module = analysis.by_module_and_operator()
    assert by_module["attn"][ATTENTION] == attention
    assert ATTENTION not in by_module["attn.q"] and ATTENTION not in by_module["norm"]
    assert by_module[""][ATTENTION] == attention


def test_block_total_by_hand() -> None:
    analysis = analyse_block("gqa", "default")
    tokens = 2 * 10
    # q: 32 -> 32, kv: 32 -> 2 * 2 heads * 8, out: 32 -> 32; layer norm 5 per element
    linear = tokens * 32 * 32 + tokens * 32 * 32 + tokens * 32 * 32
    attention = 2 * (2 * 4 * 10 * 10 * 8)
    assert analysis.by_operator() == {
        "layer_norm": 5 * tokens * 32,
        "linear": linear,
        ATTENTION: attention,
    }


# --- causal masks ----------------------------------------------------------------------------


def test_causal_counts_the_full_square_by_default(tally: Any) -> None:
    q, k, v = qkv(2, 4, 8, 8, 16)
    causal = tally(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), q, k, v)
    assert CPU_FLASH in ops_run(causal)
    assert causal.total() == 2 * (2 * 4 * 8 * 8 * 16)


def test_causal_half_counts_the_kept_triangle(tally: Any) -> None:
    q, k, v = qkv(2, 4, 8, 8, 16)
    half = tally(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        q,
        k,
        v,
        options={"causal": "half"},
    )
    # 8 * 9 / 2 = 36 of the 64 scores per head
    assert half.total() == 2 * (2 * 4 * 36 * 16)
    assert half.total("activations") == 2 * 4 * 36 + 2 * 4 * 8 * 16


def test_causal_half_is_aligned_top_left_when_lengths_differ(tally: Any) -> None:
    q, k, v = qkv(1, 2, 8, 6, 16)
    half = tally(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        q,
        k,
        v,
        options={"causal": "half"},
    )
    assert CPU_FLASH in ops_run(half)
    # SDPA's is_causal: query i sees keys 0..i: 1 + 2 + 3 + 4 + 5 + 6 + 6 + 6 = 33 scores
    assert half.total() == 2 * (1 * 2 * 33 * 16)


def test_causal_half_leaves_non_causal_attention_alone(tally: Any) -> None:
    q, k, v = qkv(2, 4, 8, 8, 16)
    half = tally(F.scaled_dot_product_attention, q, k, v, options={"causal": "half"})
    assert half.total() == 2 * (2 * 4 * 8 * 8 * 16)


def test_the_math_path_computes_the_full_square_even_with_causal_half(tally: Any) -> None:
    # The math path multiplies every query by every key and masks afterwards: its bmm calls
    # are core's, which know nothing of the mask.
    q, k, v = qkv(2, 4, 8, 8, 16)
    with backend("math"):
        half = tally(
            lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
            q,
            k,
            v,
            options={"causal": "half"},
        )
    assert CPU_FLASH not in ops_run(half)
    assert half.total() == 2 * (2 * 4 * 8 * 8 * 16)


def test_an_unknown_causal_option_says_what_is_expected(tally: Any) -> None:
    q, k, v = qkv(1, 1, 4, 4, 8)
    with pytest.raises(torchtally.HandlerError, match=r"'causal' must be 'full'.*or 'half'"):
        tally(F.scaled_dot_product_attention, q, k, v, options={"causal": "quarter"}, strict=True)


# --- element-wise parts ----------------------------------------------------------------------


def test_elementwise_parts_of_the_cpu_flash_kernel(tally: Any) -> None:
    q, k, v = qkv(2, 4, 8, 6, 16)
    mask = torch.zeros(8, 6)
    analysis = tally(
        lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
        q,
        k,
        v,
        mask,
        elementwise=True,
    )
    assert CPU_FLASH in ops_run(analysis)
    scores = 2 * 4 * 8 * 6
    # matmuls; q and k scaled (2*4*8*16 + 2*4*6*16); mask added (1) and _safe_softmax (10) per score
    assert analysis.total() == 2 * scores * 16 + (1024 + 768) + scores * (1 + 10)
    assert analysis.unsupported_ops() == {}


def test_dropout_costs_what_the_math_path_spends(tally: Any) -> None:
    # The CPU flash kernel does not take dropout, so SDPA runs the math path with it; a fused
    # kernel with the same dropout must give the math path's count.
    q, k, v = qkv(2, 4, 8, 6, 16)
    torch.manual_seed(0)
    math_path = tally(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.5),
        q,
        k,
        v,
        elementwise=True,
    )
    assert "aten::bmm" in ops_run(math_path)
    scores = 2 * 4 * 8 * 6
    # + dropout: mask / (1 - p) and P * mask, 2 per score
    assert math_path.total() == 2 * scores * 16 + (1024 + 768) + scores * (10 + 2)
    fused = recorded(
        aten._scaled_dot_product_efficient_attention.default,
        T(2, 4, 8, 16),
        T(2, 4, 6, 16),
        T(2, 4, 6, 16),
        None,
        True,
        dropout_p=0.5,
    )
    counted = count_calls(fused, elementwise=True)
    assert counted.by_operator() == math_path.by_operator()
    assert counted.by_operator("activations") == math_path.by_operator("activations")


# --- nn.MultiheadAttention's slow path ---------------------------------------------------------


def test_multihead_attention_without_weights_runs_the_cpu_flash_kernel() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x = torch.randn(2, 10, 32)
    analysis = torchtally.analyze(mha, (x, x, x), kwargs={"need_weights": False})
    assert CPU_FLASH in ops_run(analysis)
    tokens = 2 * 10
    assert analysis.by_operator() == {
        "linear": tokens * 32 * 96 + tokens * 32 * 32,  # packed in-projection, out-projection
        ATTENTION: 2 * (2 * 4 * 10 * 10 * 8),
    }
    assert analysis.unsupported_ops() == {"aten::add": 1}  # the in-projection's bias, see README


# --- flex attention ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["real", "fake"])
def test_flex_attention_counts_like_sdpa(tally: Any, mode: str) -> None:
    from torch.nn.attention.flex_attention import flex_attention

    q, k, v = qkv(2, 4, 128, 128, 16, hkv=2)

    def alibi_like(score: torch.Tensor, b: Any, h: Any, q_idx: Any, kv_idx: Any) -> torch.Tensor:
        return score + (q_idx - kv_idx)

    flex = tally(
        lambda q, k, v: flex_attention(q, k, v, score_mod=alibi_like, enable_gqa=True),
        q,
        k,
        v,
        mode=mode,
    )
    assert "higher_order::flex_attention" in ops_run(flex)
    # 2*4*128*128*16 for each matmul; score_mod's own arithmetic is not counted
    assert flex.by_operator() == {ATTENTION: 2 * (2 * 4 * 128 * 128 * 16)}
    sdpa = tally(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), q, k, v)
    assert flex.by_operator() == sdpa.by_operator()
    assert flex.by_operator("activations") == sdpa.by_operator("activations")


def test_flex_attention_counts_every_block_of_a_block_mask(tally: Any) -> None:
    # The block mask's sparsity is data (how many key blocks each query block visits), which the
    # trace does not keep: every score is counted, with or without causal="half".
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q, k, v = qkv(1, 2, 256, 256, 16)
    causal = create_block_mask(
        lambda b, h, q_idx, kv_idx: q_idx >= kv_idx, None, None, 256, 256, device="cpu"
    )
    flex = tally(
        lambda q, k, v: flex_attention(q, k, v, block_mask=causal),
        q,
        k,
        v,
        options={"causal": "half"},
    )
    assert flex.by_operator() == {ATTENTION: 2 * (1 * 2 * 256 * 256 * 16)}


def test_flex_attention_backward_by_hand() -> None:
    from torch._higher_order_ops.flex_attention import flex_attention_backward

    from .helpers import recorded_higher_order

    # PyTorch runs flex attention's backward on GPUs only: the call as the tracer records it
    call = recorded_higher_order(
        flex_attention_backward,
        T(2, 4, 128, 16),  # query
        T(2, 2, 128, 16),  # key
        T(2, 2, 128, 16),  # value
        T(2, 4, 128, 16),  # out
        T(2, 4, 128),  # logsumexp
        T(2, 4, 128, 16),  # grad_out
        None,  # grad_logsumexp
        None,  # fw_graph
        None,  # joint_graph
        (),  # block_mask
        0.25,  # scale
        {},  # kernel_options
        phase="backward",
    )
    # dV, dP, dQ, dK: 4 * 2*4*128*128*16
    assert count_calls(call).by_operator() == {ATTENTION: 4 * (2 * 4 * 128 * 128 * 16)}
    assert count_calls(call).total("activations") == 0
