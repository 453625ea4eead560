"""Columns beyond the counts and the estimated time, for the ``table`` and ``markdown`` formats:
measured time and achieved FLOP/s (an analysis made with ``measure=True``), each count's share of
the model's (``percent=True``), each module's input and output shapes (``shapes=True``), and the
`top` K modules instead of the tree (``top_by``: a metric, ``time`` or ``measured``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torchtally.plugin import Analysis, TensorMeta, format_count
from torchtally_reporters.options import PARAMS, Options
from torchtally_reporters.timing import TIME, format_seconds

EXTRA_OPTIONS: Mapping[str, Any] = {
    "measured": None,
    "percent": False,
    "shapes": False,
    "top": None,
    "top_by": None,
}
MEASURED = "measured"
ACHIEVED = "achieved"
INPUTS = "inputs"
OUTPUTS = "outputs"


@dataclass(frozen=True)
class Extras:
    """The extra columns (key, heading) and their text per module; the top modules to list
    instead of the tree; lines for the totals; the seconds behind the measured column (a
    module that takes time keeps its row)."""

    columns: tuple[tuple[str, str], ...] = ()
    cells: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    top: tuple[str, ...] | None = None
    summary: tuple[str, ...] = ()
    times: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def split_extras(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`options` without the extra ones, and the extra ones."""
    rest = {k: v for k, v in options.items() if k not in EXTRA_OPTIONS}
    extra = {k: v for k, v in options.items() if k in EXTRA_OPTIONS}
    return rest, extra


def shapes_text(value: Any) -> str:
    """Recorded tensors as ``[1, 64, 56, 56]``, several joined by commas, keys for dicts."""
    if isinstance(value, TensorMeta):
        return str(list(value.shape))
    if isinstance(value, Mapping):
        parts = [f"{k}: {shapes_text(v)}" for k, v in value.items() if shapes_text(v)]
        return ", ".join(parts)
    if isinstance(value, (list, tuple)):
        return ", ".join(text for text in (shapes_text(v) for v in value) if text)
    return ""


def build_extras(
    analysis: Analysis, given: Mapping[str, Any], options: Options, roofline: Any = None
) -> Extras:
    """Check the extra options and compute their columns (`roofline`: the ``hardware``
    option's estimate, which ``top_by="time"`` ranks by)."""
    values = {**EXTRA_OPTIONS, **given}
    columns: list[tuple[str, str]] = []
    cells: dict[str, dict[str, str]] = {name: {} for name in analysis.modules}
    summary: list[str] = []
    ranked: dict[str, dict[str, float]] = {}
    if roofline is not None:
        ranked[TIME] = roofline.by_module()
    measured = values["measured"]
    if measured is None:
        measured = analysis.trace.measurement is not None
    if not isinstance(measured, bool):
        raise TypeError(f"measured must be True, False or None, got {measured!r}")
    if measured:
        timed = analysis.measured()  # raises, saying how, for an analysis that was not timed
        columns += [(MEASURED, f"measured ({timed.device})"), (ACHIEVED, "achieved FLOP/s")]
        seconds = timed.by_module()
        ranked[MEASURED] = seconds
        for module in cells:
            spent = seconds.get(module, 0.0)
            cells[module][MEASURED] = format_seconds(spent, options.units) if spent else ""
            achieved = timed.achieved_flops(module)
            text = format_count(achieved) if options.units == "human" else str(round(achieved))
            cells[module][ACHIEVED] = text if spent else ""
        summary.append(
            f"measured on {timed.device}: forward pass {format_seconds(timed.forward_seconds)}, "
            f"its ops alone {format_seconds(timed.ops_total())}, "
            f"{format_count(timed.achieved_flops())} FLOP/s (2 per multiply-add)"
        )
    if _flag("percent", values["percent"]):
        for column in options.columns:
            if column.phase is not None:
                continue
            key = f"%{column.metric}"
            columns.append((key, key))
            by_module = (
                dict(analysis.params)
                if column.metric == PARAMS
                else analysis.by_module(column.metric)
            )
            total = by_module.get("", 0)
            for module in cells:
                share = by_module.get(module, 0)
                cells[module][key] = f"{100 * share / total:.1f}%" if total else ""
    if _flag("shapes", values["shapes"]):
        columns += [(INPUTS, "input shapes"), (OUTPUTS, "output shapes")]
        seen: set[str] = set()
        for call in analysis.trace.module_calls:  # each module's first call
            if call.name in cells and call.name not in seen:
                seen.add(call.name)
                cells[call.name][INPUTS] = shapes_text(call.inputs)
                cells[call.name][OUTPUTS] = shapes_text(call.outputs)
    top = _top(analysis, values["top"], values["top_by"], ranked, options)
    times = {key: seconds for key, seconds in ranked.items() if key == MEASURED}
    return Extras(tuple(columns), cells, top, tuple(summary), times)


def _flag(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{option} must be True or False, got {value!r}")
    return value


def _top(
    analysis: Analysis,
    count: Any,
    top_by: Any,
    ranked: Mapping[str, Mapping[str, float]],
    options: Options,
) -> tuple[str, ...] | None:
    if count is None:
        if top_by is not None:
            raise ValueError("top_by ranks the top modules: give top=K with it")
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"top must be a positive number of modules, got {count!r}")
    choices = [*ranked, *options.metrics]
    if top_by is None:  # the estimated or measured time, else the first count
        top_by = next(iter(ranked), None) or next(
            (m for m in options.metrics if m != PARAMS), PARAMS
        )
    if top_by not in choices:
        raise ValueError(
            f"top_by must be one of {', '.join(map(repr, choices))} (what the table shows), "
            f"got {top_by!r}"
        )
    if top_by in ranked:
        values = dict(ranked[top_by])
    elif top_by == PARAMS:
        values = {k: float(v) for k, v in analysis.params.items()}
    else:
        values = {k: float(v) for k, v in analysis.by_module(top_by).items()}
    return top_modules(analysis, values, count, options.max_depth)


def top_modules(
    analysis: Analysis, values: Mapping[str, float], count: int, max_depth: int | None
) -> tuple[str, ...]:
    """The `count` modules with the largest `values`: leaf modules, or modules `max_depth`
    levels down (and leaves above that), never the model itself."""
    names = [name for name in analysis.modules if name]
    parents = {name.rpartition(".")[0] for name in names}
    depth = {name: name.count(".") + 1 for name in names}
    if max_depth is None:
        candidates = [name for name in names if name not in parents]
    else:
        candidates = [
            name
            for name in names
            if depth[name] == max_depth or (depth[name] < max_depth and name not in parents)
        ]
    candidates.sort(key=lambda name: -values.get(name, 0.0))
    return tuple(candidates[:count])
