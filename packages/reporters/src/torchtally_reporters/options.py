"""Render options shared by the formats, checked once, with errors that name the valid values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torchtally.plugin import ON_REQUEST_METRICS, Analysis
from torchtally_reporters.timing import check_hardware

PARAMS = "params"
UNITS = ("human", "raw")
FLOP_UNITS = ("mac", "flop")
# How many flops one fused multiply-add is worth in each flop unit.
FLOPS_PER_MAC = {"mac": 1, "flop": 2}


@dataclass(frozen=True)
class Column:
    """One column of counts: a metric in one phase, or (`phase` None) summed over the phases."""

    metric: str
    phase: str | None = None

    @property
    def key(self) -> str:
        """The column's name in a row's cells: ``flops``, ``flops:backward``."""
        return self.metric if self.phase is None else f"{self.metric}:{self.phase}"


@dataclass(frozen=True)
class Options:
    """Every option a format may read; a format only accepts the ones it declares."""

    max_depth: int | None = 3
    metrics: tuple[str, ...] = ()
    units: str = "human"
    flop_unit: str = "mac"
    show_param_shapes: bool = True
    # The phases shown in columns of their own before the total of each metric in `split`.
    phases: tuple[str, ...] = ()
    split: frozenset[str] = frozenset()
    # A device name or Hardware: the roofline's estimated time per module (table, markdown, json)
    hardware: Any = None

    def scale(self, metric: str) -> int:
        """The factor a raw count of `metric` is multiplied by before it is shown."""
        return FLOPS_PER_MAC[self.flop_unit] if metric == "flops" else 1

    def is_split(self, metric: str) -> bool:
        """Whether `metric` is shown per phase before its total."""
        return metric in self.split

    @property
    def columns(self) -> tuple[Column, ...]:
        """The count columns: per metric, one per phase (when split) then the total."""
        columns: list[Column] = []
        for metric in self.metrics:
            if self.is_split(metric):
                columns.extend(Column(metric, phase) for phase in self.phases)
            columns.append(Column(metric))
        return tuple(columns)


def available_metrics(analysis: Analysis) -> tuple[str, ...]:
    """What the ``metrics`` option can name: parameters, then every metric the analysis counted."""
    return (PARAMS, *analysis.metrics)


def default_metrics(analysis: Analysis) -> tuple[str, ...]:
    """What a format shows without ``metrics``: the available ones but those shown on request
    (``bytes``), so the default table stays mmengine's."""
    return tuple(m for m in available_metrics(analysis) if m not in ON_REQUEST_METRICS)


def parse_options(
    format_name: str, analysis: Analysis, given: Mapping[str, Any], defaults: Mapping[str, Any]
) -> Options:
    """Check `given` against the options `format_name` accepts (`defaults`) and fill in the rest.

    Unknown options raise TypeError naming the valid ones; bad values raise ValueError.
    """
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(
            f"the {format_name!r} format got unexpected option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(sorted(defaults))}"
        )
    values = {**defaults, **given}
    metrics = _metrics(values.get("metrics"), analysis)
    phases, split = _split(values.get("split_phases"), analysis, metrics)
    return Options(
        max_depth=_max_depth(values.get("max_depth", Options.max_depth)),
        metrics=metrics,
        units=_choice("units", values.get("units", Options.units), UNITS),
        flop_unit=_choice("flop_unit", values.get("flop_unit", Options.flop_unit), FLOP_UNITS),
        show_param_shapes=_flag("show_param_shapes", values.get("show_param_shapes", True)),
        phases=phases,
        split=split,
        hardware=check_hardware(values.get("hardware")),
    )


def _split(
    value: Any, analysis: Analysis, metrics: tuple[str, ...]
) -> tuple[tuple[str, ...], frozenset[str]]:
    """The phases, and the metrics to show per phase: by default those with a count after the
    forward pass (flops, not activations, which only the forward pass has); True: every metric;
    False: none."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"split_phases must be True, False or None, got {value!r}")
    phases = tuple(analysis.phases)
    if value and len(phases) < 2:
        raise ValueError(
            "split_phases=True needs an analysis with a backward pass (analyze(..., "
            "backward=True)); this one ran only the forward pass"
        )
    if len(phases) < 2 or value is False:
        return (), frozenset()
    counted = [m for m in metrics if m != PARAMS]
    if value is None:
        later = phases[1:]
        counted = [m for m in counted if any(analysis.total(m, phase=p) for p in later)]
    return phases, frozenset(counted)


def _max_depth(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"max_depth must be a non-negative int or None, got {value!r}")
    return value


def _metrics(value: Any, analysis: Analysis) -> tuple[str, ...]:
    available = available_metrics(analysis)
    if value is None:
        return default_metrics(analysis)
    names = (value,) if isinstance(value, str) else _tuple_of_str("metrics", value)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(
            f"metrics {', '.join(map(repr, unknown))} not available; "
            f"this analysis has {', '.join(available)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"metrics must not repeat a name, got {names!r}")
    return names


def _tuple_of_str(option: str, value: Any) -> tuple[str, ...]:
    names = tuple(value) if isinstance(value, Iterable) else None
    if names is None or not all(isinstance(name, str) for name in names):
        raise TypeError(f"{option} must be a sequence of names, got {value!r}")
    return names


def check_choice(option: str, value: Any, choices: tuple[str, ...]) -> str:
    """`value` if it is one of `choices`, else ValueError naming them."""
    return _choice(option, value, choices)


def _choice(option: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return str(value)


def _flag(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{option} must be True or False, got {value!r}")
    return value
