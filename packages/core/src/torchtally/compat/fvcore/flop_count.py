"""``fvcore.nn.flop_count``: `FlopCountAnalysis`, `flop_count` and the default flop handles."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from torch import nn

from torchtally.compat.jit_analysis import DefaultHandlesAnalysis, Handle, native_defaults
from torchtally.compat.jit_handles import (
    addmm_flop_jit,
    batchnorm_flop_jit,
    bmm_flop_jit,
    conv_flop_jit,
    einsum_flop_jit,
    elementwise_flop_counter,
    linear_flop_jit,
    matmul_flop_jit,
    norm_flop_counter,
)
from torchtally.compat.printing import scaled_by_operator

# fvcore's default flop handles, by JIT op name. Registered under these names they count with
# torchtally's handlers (same numbers where fvcore is right); called directly, or registered
# under another name, they compute the formula their docstring gives.
_DEFAULT_SUPPORTED_OPS: dict[str, Handle] = native_defaults(
    "flops",
    {
        "aten::addmm": addmm_flop_jit,
        "aten::bmm": bmm_flop_jit,
        "aten::_convolution": conv_flop_jit,
        "aten::einsum": einsum_flop_jit,
        "aten::matmul": matmul_flop_jit,
        "aten::mm": matmul_flop_jit,
        "aten::linear": linear_flop_jit,
        "aten::batch_norm": batchnorm_flop_jit,
        "aten::group_norm": norm_flop_counter(2),
        "aten::layer_norm": norm_flop_counter(2),
        "aten::instance_norm": norm_flop_counter(1),
        "aten::upsample_nearest2d": elementwise_flop_counter(0, 1),
        "aten::upsample_bilinear2d": elementwise_flop_counter(0, 4),
        "aten::adaptive_avg_pool2d": elementwise_flop_counter(1, 0),
        "aten::grid_sampler": elementwise_flop_counter(0, 4),
    },
)


class FlopCountAnalysis(DefaultHandlesAnalysis):
    """Flops per module and operator; one fused multiply-add is one flop.

    Starts with `_DEFAULT_SUPPORTED_OPS`, over torchtally's handlers for every other op
    (plugins included); ``set_op_handle`` adds or replaces handles, ``clear_op_handles`` drops
    them all. See `JitModelAnalysis` for the queries and settings.
    """

    _metric = "flops"

    @staticmethod
    def _defaults() -> dict[str, Handle]:
        return _DEFAULT_SUPPORTED_OPS


def flop_count(
    model: nn.Module, inputs: Any, supported_ops: dict[str, Handle | None] | None = None
) -> tuple[defaultdict[str, float], Counter[str]]:
    """GFLOPs per operator, and how often each unsupported op ran. `supported_ops` adds or
    replaces handles."""
    return scaled_by_operator(FlopCountAnalysis(model, inputs), supported_ops, 1e9)


__all__ = ["FlopCountAnalysis", "Handle", "flop_count"]
