"""Comparisons of two analyses (`torchtally.diff`) in the table, markdown, csv, json and html
formats: per module and per operator, each metric on both sides and the change.

A module that exists on one side only is shown with a dash on the other side and ``only in A``
(or ``B``) as its change. Changes are ``b - a`` with the percentage of ``a``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

import tabulate

from torchtally.plugin import ON_REQUEST_METRICS, Diff, format_count
from torchtally_reporters.options import (
    FLOP_UNITS,
    FLOPS_PER_MAC,
    PARAMS,
    UNITS,
    _choice,
    _max_depth,
)

DIFF_TABLE_OPTIONS: Mapping[str, Any] = {
    "max_depth": 3,
    "metrics": None,
    "units": "human",
    "flop_unit": "mac",
    "changed_only": False,
}
MISSING = "\u2014"  # an em dash: nothing on that side


def diff_options(
    diff: Diff, given: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """`given` checked against `defaults` (the options a format takes for a diff), filled in."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(
            f"a diff got unexpected option(s) {', '.join(unknown)}; valid options: "
            f"{', '.join(sorted(defaults))}"
        )
    values = {**defaults, **given}
    metrics = values.get("metrics")
    if metrics is None:  # those shown on request (bytes) only when asked for, as in a table
        values["metrics"] = tuple(m for m in diff.metrics if m not in ON_REQUEST_METRICS)
    else:
        names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
        unknown = [name for name in names if name not in diff.metrics]
        if unknown:
            raise ValueError(
                f"metrics {', '.join(map(repr, unknown))} not available; the compared analyses "
                f"have {', '.join(diff.metrics)}"
            )
        values["metrics"] = names
    values["units"] = _choice("units", values.get("units", "human"), UNITS)
    values["flop_unit"] = _choice("flop_unit", values.get("flop_unit", "mac"), FLOP_UNITS)
    values["max_depth"] = _max_depth(values.get("max_depth"))
    return values


def _scale(metric: str, options: Mapping[str, Any]) -> int:
    return FLOPS_PER_MAC[options.get("flop_unit", "mac")] if metric == "flops" else 1


def _scaled(pair: tuple[int | None, int | None], factor: int) -> tuple[int | None, int | None]:
    return (
        None if pair[0] is None else pair[0] * factor,
        None if pair[1] is None else pair[1] * factor,
    )


def number_text(value: int | None, units: str) -> str:
    if value is None:
        return MISSING
    return format_count(value) if units == "human" else str(value)


def change_text(pair: tuple[int | None, int | None], units: str) -> str:
    """``+0.25G (+12.5%)``, ``0``, ``only in A``."""
    a, b = pair
    if a is None and b is None:
        return ""
    if a is None:
        return "only in B"
    if b is None:
        return "only in A"
    delta = b - a
    if delta == 0:
        return "0"
    sign = "+" if delta > 0 else "-"
    size = format_count(abs(delta)) if units == "human" else str(abs(delta))
    share = f" ({sign}{100 * abs(delta) / a:.1f}%)" if a else ""
    return f"{sign}{size}{share}"


def headers(diff: Diff, metrics: tuple[str, ...]) -> list[str]:
    cells = ["module"]
    for metric in metrics:
        cells += [f"#{metric} A", f"#{metric} B", "change"]
    return cells


def module_rows(diff: Diff, options: Mapping[str, Any], indent: bool = True) -> list[list[str]]:
    metrics = list(options["metrics"])
    tables = {m: diff.by_module(m) for m in metrics}
    rows = []
    for name in diff.modules:
        depth = name.count(".") + 1 if name else 0
        if options["max_depth"] is not None and depth > options["max_depth"]:
            continue
        pairs = [_scaled(tables[m][name], _scale(m, options)) for m in metrics]
        if options["changed_only"] and name and all(p[0] == p[1] for p in pairs):
            continue
        label = name or "model"
        cells = [(" " * depth if indent else "") + label]
        for pair in pairs:
            cells += [
                number_text(pair[0], options["units"]),
                number_text(pair[1], options["units"]),
            ]
            cells.append(change_text(pair, options["units"]))
        rows.append(cells)
    return rows


def operator_rows(diff: Diff, metric: str, options: Mapping[str, Any]) -> list[list[str]]:
    factor = _scale(metric, options)
    rows = []
    for op, pair in diff.by_operator(metric).items():
        pair = _scaled(pair, factor)
        if options["changed_only"] and pair[0] == pair[1]:
            continue
        units = options["units"]
        rows.append(
            [op, number_text(pair[0], units), number_text(pair[1], units), change_text(pair, units)]
        )
    return rows


def title_lines(diff: Diff) -> list[str]:
    a, b = diff.labels
    lines = [f"A: {a}", f"B: {b}"]
    for side, names in (("A", diff.only_in(0)), ("B", diff.only_in(1))):
        if names:
            shown = ", ".join(names[:8]) + (
                f", ... ({len(names)} in all)" if len(names) > 8 else ""
            )
            lines.append(f"only in {side}: {shown}")
    return lines


def _tables(diff: Diff, options: Mapping[str, Any], tablefmt: str, code: bool) -> list[str]:
    metrics = tuple(options["metrics"])
    align = ("left", *("right" for _ in range(3 * len(metrics))))
    rows = module_rows(diff, options, indent=not code)
    if code:
        rows = [[f"`{row[0]}`", *row[1:]] for row in rows]
    parts = [
        tabulate.tabulate(
            rows,
            headers=headers(diff, metrics),
            tablefmt=tablefmt,
            colalign=align,
            disable_numparse=True,
            preserve_whitespace=True,
        )
    ]
    for metric in metrics:
        if metric == PARAMS:
            continue
        rows = operator_rows(diff, metric, options)
        if rows:
            parts.append(
                tabulate.tabulate(
                    rows,
                    headers=["operator", f"#{metric} A", f"#{metric} B", "change"],
                    tablefmt=tablefmt,
                    colalign=("left", "right", "right", "right"),
                    disable_numparse=True,
                )
            )
    return parts


def render_diff_table(diff: Diff, **options: Any) -> str:
    """Which side is which, then a grid table per module and one per operator and metric."""
    opts = diff_options(diff, options, DIFF_TABLE_OPTIONS)
    return "\n".join(title_lines(diff)) + "\n" + "\n".join(_tables(diff, opts, "pretty", False))


def render_diff_markdown(diff: Diff, **options: Any) -> str:
    """The same as pipe tables, module names as code."""
    opts = diff_options(diff, options, DIFF_TABLE_OPTIONS)
    intro = "  \n".join(
        f"**{line.split(':', 1)[0]}:**{line.split(':', 1)[1]}" for line in title_lines(diff)
    )
    return intro + "\n\n" + "\n\n".join(_tables(diff, opts, "pipe", True))


def render_diff_csv(diff: Diff, **options: Any) -> str:
    """One row per module: ``module,type_a,type_b,params_a,params_b,params_change,...``; a
    missing side is an empty cell."""
    opts = diff_options(diff, options, {"metrics": None, "flop_unit": "mac"})
    metrics = tuple(opts["metrics"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["module", "type_a", "type_b"]
    for metric in metrics:
        header += [f"{metric}_a", f"{metric}_b", f"{metric}_change"]
    writer.writerow(header)
    tables = {m: diff.by_module(m) for m in metrics}
    for name in diff.modules:
        row: list[Any] = [name, *("" if t is None else t for t in diff.module_types(name))]
        for metric in metrics:
            a, b = _scaled(tables[metric][name], _scale(metric, opts))
            row += ["" if a is None else a, "" if b is None else b]
            row.append("" if a is None or b is None else b - a)
        writer.writerow(row)
    return buffer.getvalue().removesuffix("\n")


def render_diff_json(diff: Diff, **options: Any) -> str:
    """`Diff.to_dict()` as indented JSON."""
    diff_options(diff, options, {})
    return json.dumps(diff.to_dict(), indent=2)


def render_diff_html(diff: Diff, **options: Any) -> str:
    """The comparison as a page: the module tree with both sides and the change per metric."""
    from torchtally_reporters.html_report import html_page

    title = options.pop("title", None)
    diff_options(diff, options, {})
    return html_page(
        "diff", title or f"{diff.labels[0]} vs {diff.labels[1]}", {"diff": diff.to_dict()}
    )
