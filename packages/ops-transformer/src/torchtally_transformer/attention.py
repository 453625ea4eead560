"""Scaled dot-product attention, whichever backend ran it, forward and backward.

Every backend computes the same thing: scores ``S = Q K^T`` (one multiply-add per query, key
and head dimension), a softmax over each row of S, and ``O = P V``. The math path decomposes
into ``bmm`` and element-wise ops that core counts; every fused kernel (CPU flash, CUDA flash,
memory-efficient, cuDNN, varlen, flex) is one op that we count here with the math path's own
formulas, so the same attention gets the same count whichever backend ran it. README.md has the
table and the reasons.

Counted per op, with ``scores = (batch x query heads) x (score entries per head)``:

- forward: ``scores * (E + Ev)``; activations ``scores + queries * Ev`` (the math path's bmm
  outputs: the score matrix and the output);
- backward: ``scores * 2 * (E + Ev)`` (dP, dV, dQ, dK: the math path's four bmm); with the
  option ``attention_recompute`` the fused kernels' recomputation of S adds ``scores * E``;
  activations 0 (gradients are not activations, core's convention);
- with ``elementwise=True`` also the math path's element-wise work (scaling, mask, softmax,
  dropout), from core's catalog.

Causal masks and sliding windows count the full ``Lq x Lk`` square by default, as fvcore,
mmengine and PyTorch's FlopCounterMode do; ``options={"causal": "half"}`` counts only the score
entries the mask keeps, which is what the fused kernels compute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from torchtally.plugin import (
    POINTWISE_FLOPS,
    REDUCTION_FLOPS,
    CountOptions,
    HandlerSet,
    OpCall,
    TensorMeta,
    no_activations,
)

ATTENTION = "scaled_dot_product_attention"
"""The by_operator key of every attention op, whichever backend ran it."""

CAUSAL_OPTION = "causal"
FULL = "full"  # count every query x key entry (the default, as the peers do)
HALF = "half"  # count only the entries a causal mask or sliding window keeps
RECOMPUTE_OPTION = "attention_recompute"

# The math path's element-wise ops, costed by core's catalog (elementwise=True only).
SOFTMAX = POINTWISE_FLOPS["aten::_safe_softmax"]  # per score
MASK_ADD = POINTWISE_FLOPS["aten::add"]  # per score, when a mask or bias is added
DROPOUT = POINTWISE_FLOPS["aten::div_"] + POINTWISE_FLOPS["aten::mul"]  # mask / (1 - p), * P
SCALE = POINTWISE_FLOPS["aten::mul"]  # q and k are each multiplied by sqrt(scale)
SOFTMAX_BACKWARD = POINTWISE_FLOPS["aten::_softmax_backward_data"]  # per score
GROUP_SUM = REDUCTION_FLOPS["aten::sum"]  # GQA: dK and dV summed over the query heads sharing them


@dataclass(frozen=True)
class Band:
    """The keys a query row sees, as offsets ``j - i`` from its diagonal (None: unbounded)."""

    lo: int | None = None
    hi: int | None = None


TOP_LEFT = "top_left"  # SDPA's is_causal: query i sees keys j <= i
BOTTOM_RIGHT = "bottom_right"  # flash-attn's: query i sees keys j <= i + Lk - Lq


def causal_band(q_len: int, kv_len: int, alignment: str) -> Band:
    return Band(hi=kv_len - q_len if alignment == BOTTOM_RIGHT else 0)


@lru_cache(maxsize=256)
def band_pairs(q_len: int, kv_len: int, lo: int | None, hi: int | None) -> int:
    """Entries (i, j) of a ``q_len x kv_len`` score matrix with ``lo <= j - i <= hi``."""
    total = 0
    for i in range(q_len):
        first = 0 if lo is None else max(0, i + lo)
        last = kv_len - 1 if hi is None else min(kv_len - 1, i + hi)
        total += max(0, last - first + 1)
    return total


@dataclass(frozen=True)
class Attention:
    """One attention call's sizes, per head: what every formula reads.

    `heads` is batch x query heads (key/value heads may be fewer: GQA and MQA cost the same per
    query head). For packed variable-length batches (``cu_seqlens``), `heads` is the query heads,
    `queries` and `keys` the total rows over all sequences, and `q_len` / `kv_len` the longest.
    """

    heads: int
    queries: int
    keys: int
    q_len: int
    kv_len: int
    qk_dim: int
    v_dim: int
    band: Band | None = None  # causal mask or sliding window
    grouped: bool = False  # fewer key/value heads than query heads (GQA, MQA)
    biased: bool = False  # an additive mask or bias (the math path adds its causal mask too)
    dropout: bool = False

    def pairs(self, options: CountOptions) -> int:
        """Score entries per head: the full rows, or with ``causal="half"`` the kept ones."""
        if causal_mode(options) == FULL or self.band is None:
            return self.queries * self.kv_len
        kept = band_pairs(self.q_len, self.kv_len, self.band.lo, self.band.hi)
        if self.queries == self.q_len:
            return kept
        # Packed sequences whose lengths the trace does not keep: as if each row were a row of
        # the longest sequence.
        return self.queries * kept // self.q_len

    def scores(self, options: CountOptions) -> int:
        return self.heads * self.pairs(options)


def causal_mode(options: CountOptions) -> str:
    mode = options.get(CAUSAL_OPTION, FULL)
    if mode not in (FULL, HALF):
        raise ValueError(
            f"option {CAUSAL_OPTION!r} must be {FULL!r} (count every query x key score, the "
            f"default) or {HALF!r} (count only those a causal mask or sliding window keeps), "
            f"got {mode!r}"
        )
    return str(mode)


def _recompute(options: CountOptions) -> bool:
    value = options.get(RECOMPUTE_OPTION, False)
    if not isinstance(value, bool):
        raise ValueError(f"option {RECOMPUTE_OPTION!r} must be True or False, got {value!r}")
    return value


# --- formulas ------------------------------------------------------------------------------


def forward_flops(att: Attention, options: CountOptions) -> int:
    scores = att.scores(options)
    flops = scores * (att.qk_dim + att.v_dim)  # Q K^T and P V
    if options.elementwise:
        flops += _forward_elementwise(att, scores)
    return flops


def _forward_elementwise(att: Attention, scores: int) -> int:
    """The math path's element-wise ops: q and k scaled, mask added, softmax, dropout."""
    scaling = SCALE * att.heads * (att.queries + att.keys) * att.qk_dim
    per_score = SOFTMAX + (MASK_ADD if att.biased else 0) + (DROPOUT if att.dropout else 0)
    return scaling + scores * per_score


def forward_activations(att: Attention, options: CountOptions) -> int:
    """The math path's bmm outputs: the score matrix and the output."""
    return att.scores(options) + att.heads * att.queries * att.v_dim


def backward_flops(att: Attention, options: CountOptions) -> int:
    scores = att.scores(options)
    # dP = dO V^T, dV = P^T dO (Ev each); dQ = dS K, dK = dS^T Q (E each)
    flops = scores * 2 * (att.qk_dim + att.v_dim)
    if _recompute(options):
        flops += scores * att.qk_dim  # fused kernels recompute S = Q K^T from the logsumexp
    if options.elementwise:
        flops += _backward_elementwise(att, scores)
    return flops


def _backward_elementwise(att: Attention, scores: int) -> int:
    """The math path's backward element-wise ops: softmax's, dropout's, the scaling's, and with
    shared key/value heads the sums of dK and dV over the query heads that share them."""
    scaling = SCALE * att.heads * (att.queries + att.keys) * att.qk_dim
    dropout = POINTWISE_FLOPS["aten::mul"] if att.dropout else 0  # dP * mask / (1 - p)
    groups = GROUP_SUM * att.heads * att.keys * (att.qk_dim + att.v_dim) if att.grouped else 0
    return scaling + groups + scores * (SOFTMAX_BACKWARD + dropout)


# --- reading each backend's call -------------------------------------------------------------


def _given(call: OpCall, name: str | None) -> bool:
    return name is not None and call.arguments.get(name) is not None


def _window(value: Any) -> int | None:
    """flash-attn's window sizes: None or negative means unbounded."""
    return None if value is None or value < 0 else int(value)


def _dropout(call: OpCall) -> bool:
    return bool(call.arguments.get("dropout_p") or 0.0)


def sdpa_call(bias: str | None = None, alignment: str = TOP_LEFT) -> Callable[[OpCall], Attention]:
    """SDPA-level ops: q (..., H, Lq, E), k (..., Hkv, Lk, E), v (..., Hkv, Lk, Ev)."""

    def read(call: OpCall) -> Attention:
        q: TensorMeta = call.arg("query")
        k: TensorMeta = call.arg("key")
        v: TensorMeta = call.arg("value")
        q_len, kv_len = q.shape[-2], k.shape[-2]
        causal = bool(call.arguments.get("is_causal"))
        band = causal_band(q_len, kv_len, alignment) if causal else None
        return Attention(
            heads=math.prod(q.shape[:-2]),
            grouped=k.shape[-3] < q.shape[-3] if q.ndim > 2 else False,
            queries=q_len,
            keys=kv_len,
            q_len=q_len,
            kv_len=kv_len,
            qk_dim=q.shape[-1],
            v_dim=v.shape[-1],
            band=band,
            biased=causal or _given(call, bias),
            dropout=_dropout(call),
        )

    return read


def triton_call(call: OpCall) -> Attention:
    """``_triton_scaled_dot_attention(q, k, v)``: SDPA's shapes under other names."""
    q: TensorMeta = call.arg("q")
    k: TensorMeta = call.arg("k")
    v: TensorMeta = call.arg("v")
    return Attention(
        heads=math.prod(q.shape[:-2]),
        queries=q.shape[-2],
        keys=k.shape[-2],
        q_len=q.shape[-2],
        kv_len=k.shape[-2],
        qk_dim=q.shape[-1],
        v_dim=v.shape[-1],
        dropout=_dropout(call),
    )


BandRule = Callable[[OpCall, int, int], Band | None]


def kernel_call(
    band_rule: BandRule,
    cum_seq_q: str,
    max_q: str,
    max_k: str,
    biases: tuple[str, ...] = (),
    heads_first: bool = False,
) -> Callable[[OpCall], Attention]:
    """Kernel-level ops: q (B, Lq, H, E), or (B, H, Lq, E) with `heads_first` (cuDNN).

    Packed sequences (``cum_seq_q`` given) are (T, H, E); the memory-efficient kernel keeps a
    batch dimension of 1 for them: (1, T, H, E). With a paged KV cache (``block_table``), k
    holds pages and `max_k` is the keys' length.
    """

    def read(call: OpCall) -> Attention:
        q: TensorMeta = call.arg("query")
        k: TensorMeta = call.arg("key")
        v: TensorMeta = call.arg("value")
        if _given(call, cum_seq_q):
            heads, kv_heads = q.shape[-2], k.shape[-2]
            queries, keys = q.shape[-3], k.shape[-3]
            q_len = call.arguments.get(max_q) or queries
            kv_len = call.arguments.get(max_k) or keys
        else:
            if heads_first:
                heads, kv_heads = q.shape[0] * q.shape[1], k.shape[0] * k.shape[1]
                queries, keys = q.shape[2], k.shape[2]
            else:
                heads, kv_heads = q.shape[0] * q.shape[2], k.shape[0] * k.shape[2]
                queries, keys = q.shape[1], k.shape[1]
            if _given(call, "block_table"):
                keys = call.arg(max_k)
            q_len, kv_len = queries, keys
        band = band_rule(call, q_len, kv_len)
        return Attention(
            heads=heads,
            grouped=kv_heads < heads,
            queries=queries,
            keys=keys,
            q_len=q_len,
            kv_len=kv_len,
            qk_dim=q.shape[-1],
            v_dim=v.shape[-1],
            band=band,
            biased=band is not None or any(_given(call, b) for b in biases),
            dropout=_dropout(call),
        )

    return read


def flash_band(call: OpCall, q_len: int, kv_len: int) -> Band | None:
    """flash-attn: a causal mask and windows are aligned to the bottom right corner.

    Query i sees keys ``i + Lk - Lq - left <= j <= i + Lk - Lq + right``; causal sets right = 0.
    """
    left = _window(call.arguments.get("window_size_left"))
    right = _window(call.arguments.get("window_size_right"))
    window = call.arguments.get("window_size")  # torch_attn::_varlen_attn: [left, right]
    if window is not None:
        left, right = _window(window[0]), _window(window[1])
    if call.arguments.get("is_causal"):
        right = 0
    if left is None and right is None:
        return None
    offset = kv_len - q_len
    return Band(
        lo=None if left is None else offset - left,
        hi=None if right is None else offset + right,
    )


# _efficient_attention_forward's custom_mask_type
NO_CUSTOM_MASK, CAUSAL_FROM_TOP_LEFT, CAUSAL_FROM_BOTTOM_RIGHT = 0, 1, 2


def efficient_band(call: OpCall, q_len: int, kv_len: int) -> Band | None:
    """The memory-efficient kernel: custom_mask_type 1 (top left) or 2 (bottom right).

    A positive ``window_size`` (local attention, xformers' convention) lets each query see the
    `window_size` keys that end at its diagonal.
    """
    mask_type = call.arguments.get("custom_mask_type") or NO_CUSTOM_MASK
    if mask_type == NO_CUSTOM_MASK:
        return None
    if mask_type not in (CAUSAL_FROM_TOP_LEFT, CAUSAL_FROM_BOTTOM_RIGHT):
        raise ValueError(f"unknown custom_mask_type {mask_type!r}: expected 0, 1 or 2")
    offset = kv_len - q_len if mask_type == CAUSAL_FROM_BOTTOM_RIGHT else 0
    window = call.arguments.get("window_size")
    return Band(lo=offset - window + 1 if window and window > 0 else None, hi=offset)


def top_left_band(call: OpCall, q_len: int, kv_len: int) -> Band | None:
    """SDPA's is_causal, which the cuDNN kernels keep: query i sees keys j <= i."""
    return causal_band(q_len, kv_len, TOP_LEFT) if call.arguments.get("is_causal") else None


# Flex attention: q (B, H, Lq, E). Its block mask's sparsity is data the trace does not keep, so
# every score is counted; score_mod's own arithmetic is not.
flex_call = sdpa_call()


# op -> how to read it. Forward ops first, then their backward ops (same readers).
FORWARD_OPS: dict[str, Callable[[OpCall], Attention]] = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": sdpa_call("attn_mask"),
    "aten::_scaled_dot_product_flash_attention": sdpa_call(alignment=BOTTOM_RIGHT),
    "aten::_scaled_dot_product_efficient_attention": sdpa_call("attn_bias"),
    "aten::_scaled_dot_product_cudnn_attention": sdpa_call("attn_bias"),
    "aten::_scaled_dot_product_fused_attention_overrideable": sdpa_call("attn_bias"),
    "aten::_scaled_dot_product_attention_math_for_mps": sdpa_call("attn_mask"),
    "aten::_flash_attention_forward": kernel_call(
        flash_band, "cum_seq_q", "max_q", "max_k", ("alibi_slopes",)
    ),
    "aten::_flash_attention_forward_no_dropout_inplace": kernel_call(
        flash_band, "cum_seq_q", "max_q", "max_k", ("alibi_slopes",)
    ),
    "aten::_efficient_attention_forward": kernel_call(
        efficient_band, "cu_seqlens_q", "max_seqlen_q", "max_seqlen_k", ("bias",)
    ),
    "aten::_cudnn_attention_forward": kernel_call(
        top_left_band, "cum_seq_q", "max_q", "max_k", ("attn_bias",), heads_first=True
    ),
    "torch_attn::_varlen_attn": kernel_call(flash_band, "cu_seq_q", "max_q", "max_k"),
    "torch_attn::_varlen_attn_out": kernel_call(flash_band, "cu_seq_q", "max_q", "max_k"),
    # flex attention runs as a higher-order op, which the tracer records with these names
    "higher_order::flex_attention": flex_call,
}

BACKWARD_OPS: dict[str, Callable[[OpCall], Attention]] = {
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward": sdpa_call("attn_mask"),
    "aten::_scaled_dot_product_flash_attention_backward": sdpa_call(alignment=BOTTOM_RIGHT),
    "aten::_scaled_dot_product_efficient_attention_backward": sdpa_call("attn_bias"),
    "aten::_scaled_dot_product_cudnn_attention_backward": sdpa_call("attn_bias"),
    "aten::_scaled_dot_product_fused_attention_overrideable_backward": sdpa_call("attn_bias"),
    "aten::_flash_attention_backward": kernel_call(flash_band, "cum_seq_q", "max_q", "max_k"),
    "aten::_efficient_attention_backward": kernel_call(
        efficient_band, "cu_seqlens_q", "max_seqlen_q", "max_seqlen_k", ("bias",)
    ),
    "aten::_cudnn_attention_backward": kernel_call(
        top_left_band, "cum_seq_q", "max_q", "max_k", ("attn_bias",), heads_first=True
    ),
    "torch_attn::_varlen_attn_backward": kernel_call(flash_band, "cu_seq_q", "max_q", "max_k"),
    "higher_order::flex_attention_backward": flex_call,
}


Formula = Callable[[Attention, CountOptions], int]


def counter(read: Callable[[OpCall], Attention], formula: Formula) -> Callable[..., Any]:
    """A handler: read the call, apply the formula, report it under `ATTENTION`."""

    def count(call: OpCall, options: CountOptions) -> Mapping[str, int]:
        return {ATTENTION: formula(read(call), options)}

    return count


def register(handlers: HandlerSet) -> None:
    for op, read in FORWARD_OPS.items():
        handlers.add_ops(
            op,
            flops=counter(read, forward_flops),
            activations=counter(read, forward_activations),
        )
    for op, read in BACKWARD_OPS.items():
        handlers.add_ops(op, flops=counter(read, backward_flops), activations=no_activations)
    handlers.add_ops(  # its q, k, v under other names
        "aten::_triton_scaled_dot_attention",
        flops=counter(triton_call, forward_flops),
        activations=counter(triton_call, forward_activations),
    )
    # The math path: the bmm and element-wise ops F.scaled_dot_product_attention decomposes into
    # are core's; they are reported under the same name as the fused kernels.
    handlers.name_functions({"scaled_dot_product_attention": ATTENTION})
