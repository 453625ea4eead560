"""``mmengine.analysis.complexity_analysis``: `FlopAnalyzer`, `ActivationAnalyzer`, counts and
mmengine's boxed parameter table."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from torch import nn

from torchtally.compat.fvcore.activation_count import (
    _DEFAULT_SUPPORTED_OPS as _FVCORE_ACT_OPS,
)
from torchtally.compat.fvcore.activation_count import ActivationCountAnalysis
from torchtally.compat.fvcore.flop_count import _DEFAULT_SUPPORTED_OPS as _FVCORE_FLOP_OPS
from torchtally.compat.fvcore.flop_count import FlopCountAnalysis
from torchtally.compat.jit_analysis import Handle
from torchtally.compat.mmengine.jit_analysis import MMEngineLogging
from torchtally.compat.printing import parameter_table, scaled_by_operator
from torchtally.params import parameter_count

# mmengine's default handles: fvcore's (the same handle objects, in maps of their own).
_DEFAULT_SUPPORTED_FLOP_OPS: dict[str, Handle] = dict(_FVCORE_FLOP_OPS)
_DEFAULT_SUPPORTED_ACT_OPS: dict[str, Handle] = dict(_FVCORE_ACT_OPS)


class FlopAnalyzer(MMEngineLogging, FlopCountAnalysis):
    """mmengine's ``FlopAnalyzer``: fvcore's `FlopCountAnalysis`, starting with
    `_DEFAULT_SUPPORTED_FLOP_OPS` and logging through mmengine."""

    @staticmethod
    def _defaults() -> dict[str, Handle]:
        return _DEFAULT_SUPPORTED_FLOP_OPS


class ActivationAnalyzer(MMEngineLogging, ActivationCountAnalysis):
    """mmengine's ``ActivationAnalyzer``: fvcore's `ActivationCountAnalysis`, starting with
    `_DEFAULT_SUPPORTED_ACT_OPS` and logging through mmengine."""

    @staticmethod
    def _defaults() -> dict[str, Handle]:
        return _DEFAULT_SUPPORTED_ACT_OPS


def flop_count(
    model: nn.Module, inputs: Any, supported_ops: dict[str, Handle | None] | None = None
) -> tuple[defaultdict[str, float], Counter[str]]:
    """GFLOPs per operator, and how often each unsupported op ran."""
    return scaled_by_operator(FlopAnalyzer(model, inputs), supported_ops, 1e9)


def activation_count(
    model: nn.Module, inputs: Any, supported_ops: dict[str, Handle | None] | None = None
) -> tuple[defaultdict[str, float], Counter[str]]:
    """Mega-activations per operator, and how often each unsupported op ran."""
    return scaled_by_operator(ActivationAnalyzer(model, inputs), supported_ops, 1e6)


def parameter_count_table(model: nn.Module, max_depth: int = 3) -> str:
    """mmengine's parameter table: fvcore's rows in a ``+---+`` grid, under the title
    ``parameter count of <class>``, ending with a newline as mmengine's does."""
    return parameter_table(model, max_depth, style="box") + "\n"


__all__ = [
    "ActivationAnalyzer",
    "FlopAnalyzer",
    "activation_count",
    "flop_count",
    "parameter_count",
    "parameter_count_table",
]
