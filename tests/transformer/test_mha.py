"""PyTorch's fused multi-head attention and encoder layer against the slow path of the same module.

The modules take their fast path only where nothing overrides torch functions, and torchtally's
tracer does, so here the fused ops are called directly with a module's own weights and compared
with the module analysed as it runs under the tracer (F.linear, SDPA, layer norm, ...).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import torchtally

ATTENTION = "scaled_dot_product_attention"
B, L, D, HEADS, FFN = 2, 10, 32, 4, 64


def analyse(model: nn.Module, *inputs: Any, **kwargs: Any) -> torchtally.Analysis:
    return torchtally.analyze(model, inputs, warn_unsupported=False, **kwargs)


class FastMHA(nn.Module):
    """Calls the fused op with an nn.MultiheadAttention's weights, as its fast path does."""

    def __init__(self, mha: nn.MultiheadAttention, need_weights: bool) -> None:
        super().__init__()
        self.mha = mha
        self.need_weights = need_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mha
        out, _ = torch._native_multi_head_attention(
            x, x, x, m.embed_dim, m.num_heads, m.in_proj_weight, m.in_proj_bias,
            m.out_proj.weight, m.out_proj.bias, None, self.need_weights, True,
        )  # fmt: skip
        return out


@pytest.fixture(scope="module")
def mha() -> nn.MultiheadAttention:
    torch.manual_seed(0)
    return nn.MultiheadAttention(D, HEADS, batch_first=True).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(B, L, D, generator=torch.Generator().manual_seed(1))


def test_fused_multi_head_attention_by_hand(mha: nn.MultiheadAttention, x: torch.Tensor) -> None:
    fast = analyse(FastMHA(mha, need_weights=False), x)
    assert {c.op for c in fast.trace.ops} >= {"aten::_native_multi_head_attention"}
    tokens = B * L
    assert fast.by_operator() == {
        # q, k, v and out projections: 4 x 20 tokens x 32 x 32
        "linear": 4 * tokens * D * D,
        # 2*4 heads x 10 x 10 scores x (8 + 8)
        ATTENTION: B * HEADS * L * L * (8 + 8),
    }
    # projections' outputs 20 x (96 + 32); scores 2*4*10*10 and output 2*4*10*8
    assert fast.by_operator("activations") == {
        "linear": tokens * (3 * D + D),
        ATTENTION: B * HEADS * L * L + B * HEADS * L * 8,
    }


@pytest.mark.parametrize("need_weights", [False, True])
def test_fused_multi_head_attention_counts_what_the_slow_path_runs(
    mha: nn.MultiheadAttention, x: torch.Tensor, need_weights: bool
) -> None:
    fast = analyse(FastMHA(mha, need_weights), x)
    slow = analyse(mha, x, x, x, kwargs={"need_weights": need_weights})
    assert "aten::_native_multi_head_attention" not in {c.op for c in slow.trace.ops}
    assert fast.total() == slow.total()
    assert fast.total("activations") == slow.total("activations")
    if not need_weights:  # with weights, the slow path's attention is fvcore's "bmm"
        assert fast.by_operator() == slow.by_operator()


def test_fused_multi_head_attention_elementwise_parts(
    mha: nn.MultiheadAttention, x: torch.Tensor
) -> None:
    fast = analyse(FastMHA(mha, need_weights=False), x, elementwise=True)
    slow = analyse(mha, x, x, x, kwargs={"need_weights": False}, elementwise=True)
    assert fast.unsupported_ops() == slow.unsupported_ops() == {}
    # The slow path adds the in-projection's bias as a separate op (F.linear on a 3-d input
    # that is not contiguous): 20 tokens x 96 adds that the linear convention leaves out.
    assert slow.by_operator()["add"] == B * L * 3 * D
    assert fast.total() == slow.total() - B * L * 3 * D


def test_averaged_attention_weights_add_one_flop_per_score(
    mha: nn.MultiheadAttention, x: torch.Tensor
) -> None:
    without = analyse(FastMHA(mha, need_weights=False), x, elementwise=True)
    with_weights = analyse(FastMHA(mha, need_weights=True), x, elementwise=True)
    assert with_weights.total() - without.total() == B * HEADS * L * L  # the mean over heads


class FastEncoderLayer(nn.Module):
    """Calls the fused encoder layer op with an nn.TransformerEncoderLayer's weights."""

    def __init__(self, layer: nn.TransformerEncoderLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.layer
        a = m.self_attn
        return torch._transformer_encoder_layer_fwd(
            x, a.embed_dim, a.num_heads, a.in_proj_weight, a.in_proj_bias,
            a.out_proj.weight, a.out_proj.bias, m.activation_relu_or_gelu == 2, m.norm_first,
            m.norm1.eps, m.norm1.weight, m.norm1.bias, m.norm2.weight, m.norm2.bias,
            m.linear1.weight, m.linear1.bias, m.linear2.weight, m.linear2.bias, None, None,
        )  # fmt: skip


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_fused_encoder_layer_counts_what_the_slow_path_runs(
    x: torch.Tensor, activation: str, norm_first: bool
) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        D, HEADS, FFN, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    fast = analyse(FastEncoderLayer(layer), x)
    slow = analyse(layer, x)
    assert "aten::_transformer_encoder_layer_fwd" in {c.op for c in fast.trace.ops}
    tokens = B * L
    expected = {
        # in-projection 96, out-projection 32, feed-forward 32 -> 64 -> 32
        "linear": tokens * (D * 3 * D + D * D + D * FFN + FFN * D),
        ATTENTION: B * HEADS * L * L * (8 + 8),
        "layer_norm": 2 * 5 * tokens * D,  # two affine layer norms, 5 per element
    }
    assert fast.by_operator() == slow.by_operator() == expected
    assert fast.by_operator("activations") == slow.by_operator("activations")
    fast_all, slow_all = fast.recount(elementwise=True), slow.recount(elementwise=True)
    assert fast_all.unsupported_ops() == slow_all.unsupported_ops() == {}
    # again, the in-projection's separate bias add is the only difference
    assert fast_all.total() == slow_all.total() - tokens * 3 * D
