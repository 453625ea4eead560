"""Property tests for the transformer plugin's formulas (torchtally_transformer): attention in
the backends a CPU can run (math, CPU flash, and the CUDA ops' meta kernels), its backward,
fused multi-head attention, RMSNorm and grouped matmuls. On random small calls the handler's
count equals a brute-force count: naive loops, checked against torch's results where it runs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from reliability.brute import tensor, zeros
from reliability.helpers import deterministic
from torch.nn.attention import SDPBackend, sdpa_kernel
from torchtally_testing import Fn

import torchtally
import torchtally_transformer

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
_hypothesis = pytest.importorskip("hypothesis")
given = _hypothesis.given
settings = _hypothesis.settings
st = pytest.importorskip("hypothesis.strategies")


@pytest.fixture(autouse=True, scope="module")
def transformer_plugin() -> None:
    manager = torchtally.get_plugin_manager()
    if manager.get_plugin("transformer") is None:
        manager.register(torchtally_transformer, name="transformer")


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def tally(fn: Callable[..., Any], *inputs: Any, **kwargs: Any) -> torchtally.Analysis:
    kwargs.setdefault("warn_unsupported", False)
    return torchtally.analyze(Fn(fn), inputs, strict=True, **kwargs)


def ran(analysis: torchtally.Analysis) -> set[str]:
    return {call.op for call in analysis.trace.ops}


# --- a naive attention, with its multiply-adds counted ---------------------------------------


def attention(
    q: list[Any], k: list[Any], v: list[Any], causal: bool, kept_only: bool
) -> tuple[list[Any], int, int]:
    """softmax(Q K^T / sqrt(E)) V with a top-left causal mask; returns the output, the forward's
    multiply-adds (Q K^T: E per score, P V: Ev per score) and the backward's (dP, dV: Ev per
    score; dQ, dK: E per score). `kept_only` counts only the scores the mask keeps; otherwise
    every score, as the math path computes the full square before masking."""
    batch, heads, q_len, e = len(q), len(q[0]), len(q[0][0]), len(q[0][0][0])
    kv_heads, kv_len, ev = len(k[0]), len(k[0][0]), len(v[0][0][0])
    share = heads // kv_heads
    out = zeros((batch, heads, q_len, ev))
    forward = backward = 0
    for b, h, i in itertools.product(range(batch), range(heads), range(q_len)):
        kh = h // share
        scores = []
        for j in range(kv_len):
            kept = not causal or j <= i
            if kept or not kept_only:
                dot = 0.0
                for d in range(e):
                    dot += q[b][h][i][d] * k[b][kh][j][d]
                    forward += 1
                backward += 2 * e  # dQ += dS K, dK += dS^T Q
                backward += 2 * ev  # dP = dO V^T, dV += P^T dO
                forward += ev  # the P V product
            if kept:
                scores.append((j, dot / math.sqrt(e)))
        top = max(s for _, s in scores)
        weights = [(j, math.exp(s - top)) for j, s in scores]
        total = sum(w for _, w in weights)
        for d in range(ev):
            out[b][h][i][d] = sum(w / total * v[b][kh][j][d] for j, w in weights)
    return out, forward, backward


@st.composite
def attention_shapes(draw: st.DrawFn) -> dict[str, int]:
    kv_heads = draw(st.integers(1, 2))
    return {
        "batch": draw(st.integers(1, 2)),
        "heads": kv_heads * draw(st.integers(1, 2)),
        "kv_heads": kv_heads,
        "q_len": draw(st.integers(1, 4)),
        "kv_len": draw(st.integers(1, 4)),
        "e": draw(st.sampled_from([2, 4])),
    }


def qkv(s: dict[str, int], ev: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    q = randn(s["batch"], s["heads"], s["q_len"], s["e"])
    k = randn(s["batch"], s["kv_heads"], s["kv_len"], s["e"], seed=1)
    v = randn(s["batch"], s["kv_heads"], s["kv_len"], ev, seed=2)
    return q, k, v


def sdpa(backend: SDPBackend, causal: bool, gqa: bool) -> Callable[..., torch.Tensor]:
    def call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)

    return call


@settings(deterministic, max_examples=12)
@given(s=attention_shapes(), causal=st.booleans(), data=st.data())
def test_attention_forward_in_every_cpu_backend(
    s: dict[str, int], causal: bool, data: st.DataObject
) -> None:
    if causal and s["q_len"] > s["kv_len"]:
        s = {**s, "q_len": s["kv_len"]}  # keep every query row with at least one key
    gqa = s["heads"] != s["kv_heads"]
    ev = s["e"] if not gqa else data.draw(st.sampled_from([s["e"], 2 * s["e"]]))
    q, k, v = qkv(s, ev)
    reference, full, _ = attention(q.tolist(), k.tolist(), v.tolist(), causal, kept_only=False)
    _, kept, _ = attention(q.tolist(), k.tolist(), v.tolist(), causal, kept_only=True)
    for backend in (SDPBackend.MATH, SDPBackend.FLASH_ATTENTION):
        if backend == SDPBackend.FLASH_ATTENTION and ev != s["e"]:
            continue  # the CPU flash kernel needs equal head dims
        call = sdpa(backend, causal, gqa)
        torch.testing.assert_close(call(q, k, v), tensor(reference))
        analysis = tally(call, q, k, v)
        assert analysis.total() == full, backend
        if backend == SDPBackend.FLASH_ATTENTION:
            assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ran(analysis)
            half = tally(call, q, k, v, options={"causal": "half"})
            assert half.total() == kept
            on_meta = [t.to("meta") for t in (q, k, v)]
            assert tally(call, *on_meta, mode="meta").total() == full


@deterministic
@given(s=attention_shapes(), causal=st.booleans())
def test_attention_backward_on_the_cpu_flash_kernel(s: dict[str, int], causal: bool) -> None:
    if causal and s["q_len"] > s["kv_len"]:
        s = {**s, "q_len": s["kv_len"]}
    gqa = s["heads"] != s["kv_heads"]
    q, k, v = (t.requires_grad_() for t in qkv(s, s["e"]))
    _, _, full = attention(q.tolist(), k.tolist(), v.tolist(), causal, kept_only=False)
    _, _, kept = attention(q.tolist(), k.tolist(), v.tolist(), causal, kept_only=True)
    call = sdpa(SDPBackend.FLASH_ATTENTION, causal, gqa)
    analysis = tally(call, q, k, v, backward=True)
    assert "aten::_scaled_dot_product_flash_attention_for_cpu_backward" in ran(analysis)
    assert analysis.total(phase="backward") == full
    half = tally(call, q, k, v, backward=True, options={"causal": "half"})
    assert half.total(phase="backward") == kept
    assert q.grad is None  # analysed with autograd.grad: nothing accumulated


CUDA_SDPA = {  # op -> how to call it with (q, k, v, causal)
    "aten::_scaled_dot_product_efficient_attention": lambda q, k, v, c: (
        torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, False, is_causal=c)
    ),
    "aten::_scaled_dot_product_flash_attention": lambda q, k, v, c: (
        torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, is_causal=c)
    ),
    "aten::_scaled_dot_product_cudnn_attention": lambda q, k, v, c: (
        torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, False, is_causal=c)
    ),
}


@deterministic
@given(op=st.sampled_from(sorted(CUDA_SDPA)), s=attention_shapes(), causal=st.booleans())
def test_cuda_attention_ops_through_their_meta_kernels(
    op: str, s: dict[str, int], causal: bool
) -> None:
    """The CUDA kernels' SDPA-level ops and their backward ops, run on meta tensors (shapes
    only): the math path's counts. With a causal mask and equal lengths every alignment keeps
    the same scores, so ``causal="half"`` is checked there."""
    s = {**s, "kv_heads": s["heads"]}
    if causal:
        s = {**s, "kv_len": s["q_len"]}
    q, k, v = qkv(s, s["e"])
    _, full, full_back = attention(q.tolist(), k.tolist(), v.tolist(), causal, kept_only=False)
    _, kept, _ = attention(q.tolist(), k.tolist(), v.tolist(), causal, kept_only=True)
    call = lambda q, k, v: CUDA_SDPA[op](q, k, v, causal)[0]  # noqa: E731
    on_meta = [t.to("meta").requires_grad_() for t in (q, k, v)]
    analysis = tally(call, *on_meta, mode="meta", backward=True)
    assert {op, f"{op}_backward"} <= ran(analysis)
    assert analysis.total(phase="forward") == full
    assert analysis.total(phase="backward") == full_back
    half = tally(call, *on_meta, mode="meta", options={"causal": "half"})
    assert half.total() == (kept if causal else full)


KERNELS = {  # kernel-level ops: q (B, Lq, H, E), k and v (B, Lk, H, E)
    "aten::_flash_attention_forward": lambda q, k, v, c: torch.ops.aten._flash_attention_forward(
        q, k, v, None, None, q.shape[1], k.shape[1], 0.0, c, False
    ),
    "aten::_efficient_attention_forward": lambda q, k, v, c: (
        torch.ops.aten._efficient_attention_forward(
            q, k, v, None, None, None, q.shape[1], k.shape[1], 0.0, int(c), False
        )
    ),
}


@deterministic
@given(op=st.sampled_from(sorted(KERNELS)), s=attention_shapes(), causal=st.booleans())
def test_cuda_attention_kernels_through_their_meta_kernels(
    op: str, s: dict[str, int], causal: bool
) -> None:
    s = {**s, "kv_heads": s["heads"]}
    if causal:
        s = {**s, "kv_len": s["q_len"]}
    q, k, v = qkv(s, s["e"])
    _, full, _ = attention(q.tolist(), k.tolist(), v.tolist(), causal, kept_only=False)
    _, kept, _ = attention(q.tolist(), k.tolist(), v.tolist(), causal, kept_only=True)
    call = lambda q, k, v: KERNELS[op](q, k, v, causal)[0]  # noqa: E731
    on_meta = [t.to("meta").transpose(1, 2) for t in (q, k, v)]  # (B, L, H, E)
    analysis = tally(call, *on_meta, mode="meta")
    assert op in ran(analysis)
    assert analysis.total() == full
    half = tally(call, *on_meta, mode="meta", options={"causal": "half"})
    assert half.total() == (kept if causal else full)


@settings(deterministic, max_examples=8)
@given(
    heads=st.integers(1, 2),
    q_len=st.sampled_from([16, 32]),
    kv_len=st.sampled_from([16, 32]),
    e=st.sampled_from([4, 8]),
)
def test_flex_attention_counts_every_score(heads: int, q_len: int, kv_len: int, e: int) -> None:
    """Eager flex attention without a block mask: every score, as the math path."""
    from torch.nn.attention.flex_attention import flex_attention

    s = {"batch": 1, "heads": heads, "kv_heads": heads, "q_len": q_len, "kv_len": kv_len, "e": e}
    q, k, v = (t.float() for t in qkv(s, e))
    _, full, _ = attention(q.tolist(), k.tolist(), v.tolist(), False, kept_only=False)
    analysis = tally(flex_attention, q, k, v)
    assert "higher_order::flex_attention" in ran(analysis)
    assert analysis.total() == full


# --- fused multi-head attention --------------------------------------------------------------


@deterministic
@given(
    batch=st.integers(1, 2),
    length=st.integers(1, 4),
    heads=st.integers(1, 2),
    head_dim=st.sampled_from([2, 4]),
)
def test_fused_multi_head_attention(batch: int, length: int, heads: int, head_dim: int) -> None:
    """The fused op nn.MultiheadAttention's fast path runs (called directly: under torchtally's
    function mode the fast path is never taken): the in-projection (3 D x D per token),
    attention (L x L x 2 x head_dim per head) and the out-projection (D x D per token), as the
    decomposed path counts them."""
    dim = heads * head_dim
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True).double().eval()
    x = randn(batch, length, dim)

    def fused(x: torch.Tensor) -> torch.Tensor:
        return torch._native_multi_head_attention(
            x, x, x, dim, heads, mha.in_proj_weight, mha.in_proj_bias,
            mha.out_proj.weight, mha.out_proj.bias, need_weights=False,
        )[0]  # fmt: skip

    def decomposed(x: torch.Tensor) -> torch.Tensor:
        return mha(x, x, x, need_weights=False)[0]

    with torch.no_grad():
        torch.testing.assert_close(fused(x), decomposed(x))
    tokens = batch * length
    projections = tokens * 3 * dim * dim + tokens * dim * dim
    scores = batch * heads * length * length
    expected = projections + scores * 2 * head_dim
    analysis = tally(fused, x)
    assert "aten::_native_multi_head_attention" in ran(analysis)
    assert analysis.total() == expected
    assert tally(decomposed, x).total() == expected


# --- RMSNorm, grouped matmuls ----------------------------------------------------------------


@deterministic
@given(
    batch=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    normalized=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    weighted=st.booleans(),
)
def test_fused_rms_norm_costs_its_decomposition(
    batch: list[int], normalized: list[int], weighted: bool
) -> None:
    """The fused kernel counts what its decomposition (x * x, mean, + eps, rsqrt, * rstd,
    * weight) counts in core's catalog, element by element and row by row."""
    x = randn(*batch, *normalized)
    weight = randn(*normalized, seed=1) if weighted else None
    elements, rows = x.numel(), math.prod(batch)
    per_element = 1 + 1 + 1 + (1 if weighted else 0)  # square, mean's add, * rstd, * weight
    per_row = 1 + 1  # + eps, rsqrt
    expected = elements * per_element + rows * per_row

    def decomposed(x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, normalized, weight, 1e-6)

    assert tally(decomposed, x, elementwise=True).total() == expected
    # On the CPU the fused op decomposes before the dispatcher; its handler, on a call of it:
    from torchtally.records import OpCall, TensorMeta

    meta = TensorMeta(tuple(x.shape), x.dtype)
    arguments = {
        "input": meta,
        "normalized_shape": normalized,
        "weight": TensorMeta(tuple(normalized), x.dtype) if weighted else None,
        "eps": 1e-6,
    }
    call = OpCall("aten::_fused_rms_norm", "default", arguments, (meta,), "rms_norm", ("",))
    handler = torchtally_transformer.handlers.op_handlers("flops")["aten::_fused_rms_norm"]
    assert handler(call, torchtally.CountOptions(elementwise=True)) == {"rms_norm": expected}
    assert handler(call, torchtally.CountOptions()) is NotImplemented  # element-wise work


def grouped_matmul(a: list[Any], b: list[Any], offs: list[int]) -> tuple[list[Any], int]:
    """2d x 3d grouped matmul: rows offs[g-1]:offs[g] of a times b[g]; a multiply-add each."""
    n = len(b[0][0])
    out = zeros((len(a), n))
    macs = 0
    start = 0
    for g, stop in enumerate(offs):
        for i, j in itertools.product(range(start, stop), range(n)):
            for r in range(len(a[0])):
                out[i][j] += a[i][r] * b[g][r][j]
                macs += 1
        start = stop
    return out, macs


@deterministic
@given(
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    k=st.sampled_from([4, 8]),
    n=st.sampled_from([4, 8]),
)
def test_grouped_mm(sizes: list[int], k: int, n: int) -> None:
    """Every row belongs to a group here (offs[-1] is the row count): the count is exact."""
    offs = list(itertools.accumulate(sizes))
    a = randn(offs[-1], k).float()
    b = randn(len(sizes), k, n, seed=1).float()
    offsets = torch.tensor(offs, dtype=torch.int32)
    reference, macs = grouped_matmul(a.tolist(), b.tolist(), offs)
    torch.testing.assert_close(torch._grouped_mm(a, b, offsets), tensor(reference).float())
    analysis = tally(torch._grouped_mm, a, b, offsets)
    assert "aten::_grouped_mm" in ran(analysis)
    assert analysis.total() == macs
    assert analysis.total("activations") == offs[-1] * n


@deterministic
@given(
    batch=st.integers(1, 2),
    length=st.integers(1, 3),
    heads=st.integers(1, 2),
    head_dim=st.sampled_from([2, 4]),
    hidden=st.integers(1, 6),
    norm_first=st.booleans(),
    gelu=st.booleans(),
)
def test_fused_encoder_layer_counts_like_its_decomposition(
    batch: int, length: int, heads: int, head_dim: int, hidden: int, norm_first: bool, gelu: bool
) -> None:
    """nn.TransformerEncoderLayer's fused op (its fast path, called directly) against the same
    layer run op by op, whose ops core and this plugin count (each property-tested above)."""
    dim = heads * head_dim
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(
        dim, heads, hidden, dropout=0.0, activation="gelu" if gelu else "relu",
        batch_first=True, norm_first=norm_first,
    ).double().eval()  # fmt: skip
    attn = layer.self_attn
    x = randn(batch, length, dim)

    def fused(x: torch.Tensor) -> torch.Tensor:
        return torch._transformer_encoder_layer_fwd(
            x, dim, heads, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj.weight,
            attn.out_proj.bias, gelu, norm_first, layer.norm1.eps, layer.norm1.weight,
            layer.norm1.bias, layer.norm2.weight, layer.norm2.bias, layer.linear1.weight,
            layer.linear1.bias, layer.linear2.weight, layer.linear2.bias,
        )  # fmt: skip

    with torch.no_grad():
        torch.testing.assert_close(fused(x), layer(x))
    tokens = batch * length
    expected = (
        tokens * 4 * dim * dim  # q, k, v and out projections
        + batch * heads * length * length * 2 * head_dim  # scores and P V
        + tokens * 2 * dim * hidden  # the feed-forward's two linears
        + 2 * 5 * tokens * dim  # two affine layer norms: 5 per element
    )
    analysis = tally(fused, x)
    assert "aten::_transformer_encoder_layer_fwd" in ran(analysis)
    assert analysis.total() == expected
    assert tally(layer, x).total() == expected


TRANSFORMER_FORMULAS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    *CUDA_SDPA,
    *(f"{op}_backward" for op in CUDA_SDPA),
    *KERNELS,
    "higher_order::flex_attention",
    "aten::_native_multi_head_attention",
    "aten::_transformer_encoder_layer_fwd",
    "aten::_fused_rms_norm",
    "aten::_grouped_mm",
}
# Ops no CPU or meta run reaches here; the plugin's own tests check them against the math path.
NOT_REACHABLE_ON_CPU = {
    "aten::_flash_attention_backward",  # kernel-level backward: autograd calls the SDPA-level op
    "aten::_efficient_attention_backward",
    "aten::_cudnn_attention_forward",
    "aten::_cudnn_attention_backward",
    "aten::_flash_attention_forward_no_dropout_inplace",
    "aten::_scaled_dot_product_fused_attention_overrideable",  # out-of-tree backends
    "aten::_scaled_dot_product_fused_attention_overrideable_backward",
    "aten::_scaled_dot_product_attention_math_for_mps",
    "aten::_fused_rms_norm_backward",  # CPU RMSNorm decomposes: its backward never runs
    "aten::_scaled_grouped_mm",  # FP8, CUDA only
    "aten::_scaled_grouped_mm_v2",
    "aten::_triton_multi_head_attention",  # CUDA (Triton) kernels of the fused MHA and SDPA
    "aten::_triton_scaled_dot_attention",
    "higher_order::flex_attention_backward",
    "torch_attn::_varlen_attn",
    "torch_attn::_varlen_attn_backward",
    "torch_attn::_varlen_attn_out",
}


def test_every_formula_of_the_plugin_has_a_property_test_or_a_reason() -> None:
    registered = set(torchtally_transformer.handlers.op_handlers("flops"))
    assert registered - TRANSFORMER_FORMULAS - NOT_REACHABLE_ON_CPU == set()
