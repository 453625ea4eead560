"""The numbers every format shows: counts per module, the parameter tree, headings, number text."""

from __future__ import annotations

from collections.abc import Mapping

from torchtally.plugin import Analysis, format_count
from torchtally_reporters.options import PARAMS, Column, Options

_TABLE_HEADERS = {"flops": "#flops", "activations": "#activations"}
_ARCH_LABELS = {PARAMS: "#params", "flops": "#flops", "activations": "#acts"}
_NAMES = {PARAMS: "parameters"}


def table_header(metric: str, show_param_shapes: bool) -> str:
    """The column heading mmengine's table gives `metric` (``#parameters or shape``, ``#flops``)."""
    if metric == PARAMS:
        return "#parameters or shape" if show_param_shapes else "#parameters"
    return _TABLE_HEADERS.get(metric, f"#{metric}")


def column_header(column: Column, options: Options) -> str:
    """`table_header`, with the phase when phases are split: ``#flops (backward)``, ``#flops
    (total)``."""
    header = table_header(column.metric, options.show_param_shapes)
    if not options.is_split(column.metric):
        return header
    return f"{header} ({column.phase or 'total'})"


def arch_label(metric: str) -> str:
    """The label of `metric` in the module tree (``#params``, ``#flops``, ``#acts``)."""
    return _ARCH_LABELS.get(metric, f"#{metric}")


def plain_name(metric: str) -> str:
    """`metric` in a sentence: ``parameters``, ``flops``, ``activations``."""
    return _NAMES.get(metric, metric)


def format_number(value: float, options: Options, digits: int = 3) -> str:
    """`value` as the ``units`` option asks: ``0.44K`` (human) or ``440`` (raw)."""
    return format_count(value, digits) if options.units == "human" else str(value)


def metric_by_module(
    analysis: Analysis, metric: str, options: Options, phase: str | None = None
) -> dict[str, int]:
    """Every module's count of `metric` (not parameters) in `phase` (None: all phases), in the
    flop unit asked for."""
    scale = options.scale(metric)
    return {name: count * scale for name, count in analysis.by_module(metric, phase=phase).items()}


def model_total(analysis: Analysis, metric: str, options: Options, phase: str | None = None) -> int:
    """The whole model's count of `metric`, parameters included, in the flop unit asked for."""
    if metric == PARAMS:
        return analysis.params.get("", 0)
    return analysis.total(metric, phase=phase) * options.scale(metric)


def phases_text(analysis: Analysis, metric: str, options: Options, digits: int = 3) -> str:
    """Each phase's total of `metric` when phases are split, ``(forward 400, backward 700)``;
    otherwise (and for parameters) ``""``."""
    if not options.is_split(metric):
        return ""
    return by_phase_text(
        {phase: model_total(analysis, metric, options, phase) for phase in options.phases},
        options,
        digits,
    )


def by_phase_text(values: Mapping[str, int], options: Options, digits: int = 3) -> str:
    """``{"forward": 400, "backward": 700}`` -> ``(forward 400, backward 0.7K)``."""
    parts = (f"{phase} {format_number(value, options, digits)}" for phase, value in values.items())
    return f"({', '.join(parts)})"
