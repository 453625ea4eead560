"""``fvcore.nn.activation_count``: `ActivationCountAnalysis`, `activation_count`, the defaults."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from torch import nn

from torchtally.compat.jit_analysis import DefaultHandlesAnalysis, Handle, native_defaults
from torchtally.compat.jit_handles import generic_activation_jit
from torchtally.compat.printing import scaled_by_operator

# fvcore's default activation handles: the output elements of convolutions and matmuls.
_DEFAULT_SUPPORTED_OPS: dict[str, Handle] = native_defaults(
    "activations",
    {
        "aten::_convolution": generic_activation_jit("conv"),
        "aten::addmm": generic_activation_jit(),
        "aten::bmm": generic_activation_jit(),
        "aten::einsum": generic_activation_jit(),
        "aten::matmul": generic_activation_jit(),
        "aten::linear": generic_activation_jit(),
    },
)


class ActivationCountAnalysis(DefaultHandlesAnalysis):
    """Activations (output elements of convolutions and matmuls) per module and operator.

    Starts with `_DEFAULT_SUPPORTED_OPS` over torchtally's handlers; see `JitModelAnalysis`.
    """

    _metric = "activations"

    @staticmethod
    def _defaults() -> dict[str, Handle]:
        return _DEFAULT_SUPPORTED_OPS


def activation_count(
    model: nn.Module, inputs: Any, supported_ops: dict[str, Handle | None] | None = None
) -> tuple[defaultdict[str, float], Counter[str]]:
    """Mega-activations per operator, and how often each unsupported op ran."""
    return scaled_by_operator(ActivationCountAnalysis(model, inputs), supported_ops, 1e6)


__all__ = ["ActivationCountAnalysis", "activation_count"]
