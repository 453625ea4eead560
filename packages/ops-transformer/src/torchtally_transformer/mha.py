"""PyTorch's fused multi-head attention and encoder layer (the "fast path").

``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` call these single ops in eval mode
under ``no_grad`` when nothing overrides torch functions. torchtally's tracer is such an override,
so the modules take their slow path under it (F.linear, SDPA: counted op by op); these ops are
reached by code that calls them directly. Each is counted as the slow path would count the same
work, reported under the same names: ``linear`` (projections, feed-forward), the attention's name,
``layer_norm``.
"""

from __future__ import annotations

from collections.abc import Mapping

from torchtally.plugin import (
    POINTWISE_FLOPS,
    REDUCTION_FLOPS,
    CountOptions,
    HandlerSet,
    OpCall,
    TensorMeta,
)
from torchtally_transformer.attention import (
    ATTENTION,
    Attention,
    forward_activations,
    forward_flops,
)

LAYER_NORM = 5  # core's (fvcore's) layer norm with affine: 5 per element
RESIDUAL_ADD = POINTWISE_FLOPS["aten::add"]


def _rows(x: TensorMeta) -> int:
    """Tokens of a (batch, length, embed) input."""
    return x.numel // x.shape[-1]


def _attention(query: TensorMeta, key: TensorMeta, heads: int, masked: bool) -> Attention:
    """Self- or cross-attention of (B, L, E) inputs split into `heads` heads of E / heads."""
    embed = query.shape[-1]
    head_dim = embed // heads
    q_len, kv_len = query.shape[-2], key.shape[-2]
    return Attention(
        heads=_rows(query) // q_len * heads,
        queries=q_len,
        keys=kv_len,
        q_len=q_len,
        kv_len=kv_len,
        qk_dim=head_dim,
        v_dim=head_dim,
        biased=masked,
    )


def _mha(call: OpCall) -> tuple[Attention, int, int]:
    """The attention, the projections' multiply-adds and their output elements."""
    q: TensorMeta = call.arg("query")
    k: TensorMeta = call.arg("key")
    embed = int(call.arg("embed_dim"))
    att = _attention(q, k, int(call.arg("num_head")), call.arguments.get("mask") is not None)
    # q from the query, k and v from the key/value input, out from the attention's output
    projected = 2 * _rows(q) * embed + 2 * _rows(k) * embed
    return att, projected * embed, projected


def mha_flops(call: OpCall, options: CountOptions) -> Mapping[str, int]:
    att, linear, _ = _mha(call)
    attention = forward_flops(att, options)
    if options.elementwise and call.arguments.get("need_weights"):
        attention += REDUCTION_FLOPS["aten::mean"] * att.scores(options)  # averaged over heads
    return {"linear": linear, ATTENTION: attention}


def mha_activations(call: OpCall, options: CountOptions) -> Mapping[str, int]:
    att, _, outputs = _mha(call)
    return {"linear": outputs, ATTENTION: forward_activations(att, options)}


def _encoder(call: OpCall) -> tuple[Attention, int, int, int]:
    """The attention, the tokens, the embedding size and the feed-forward size."""
    src: TensorMeta = call.arg("src")
    ffn: TensorMeta = call.arg("ffn_weight_1")  # (F, E)
    att = _attention(src, src, int(call.arg("num_heads")), call.arguments.get("mask") is not None)
    return att, _rows(src), src.shape[-1], ffn.shape[0]


def encoder_layer_flops(call: OpCall, options: CountOptions) -> Mapping[str, int]:
    att, tokens, embed, ffn = _encoder(call)
    counts = {
        "linear": tokens * (4 * embed * embed + 2 * embed * ffn),  # qkv, out, two feed-forward
        ATTENTION: forward_flops(att, options),
        "layer_norm": 2 * LAYER_NORM * tokens * embed,
    }
    if options.elementwise:
        activation = "aten::gelu" if call.arg("use_gelu") else "aten::relu"
        counts[activation.removeprefix("aten::")] = POINTWISE_FLOPS[activation] * tokens * ffn
        counts["add"] = 2 * RESIDUAL_ADD * tokens * embed  # two residual connections
    return counts


def encoder_layer_activations(call: OpCall, options: CountOptions) -> Mapping[str, int]:
    att, tokens, embed, ffn = _encoder(call)
    return {
        "linear": tokens * (3 * embed + embed + ffn + embed),
        ATTENTION: forward_activations(att, options),
    }


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(
        ("aten::_native_multi_head_attention", "aten::_triton_multi_head_attention"),
        flops=mha_flops,
        activations=mha_activations,
    )
    handlers.add_ops(
        "aten::_transformer_encoder_layer_fwd",
        flops=encoder_layer_flops,
        activations=encoder_layer_activations,
    )
