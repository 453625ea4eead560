"""``fvcore.nn.print_model_statistics``: `flop_count_table` and `flop_count_str`."""

from __future__ import annotations

from torchtally.compat.jit_analysis import JitModelAnalysis
from torchtally.compat.printing import stats_str, stats_table


def flop_count_table(
    flops: JitModelAnalysis,
    max_depth: int = 3,
    activations: JitModelAnalysis | None = None,
    show_param_shapes: bool = True,
) -> str:
    """fvcore's table: module, ``#parameters or shape``, ``#flops`` (and ``#activations``),
    down to `max_depth` levels. `activations` must analyse the same model and inputs; both are
    counted from one run."""
    return stats_table(flops, max_depth, activations, show_param_shapes, style="pipe")


def flop_count_str(flops: JitModelAnalysis, activations: JitModelAnalysis | None = None) -> str:
    """``print(model)`` with each module's ``#params``, ``#flops`` (and ``#acts``); ``N/A`` for
    a module that was never called."""
    return stats_str(flops, activations)


__all__ = ["flop_count_str", "flop_count_table"]
