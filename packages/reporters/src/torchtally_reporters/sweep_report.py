"""Sweeps (one analysis per input size, `torchtally.Sweep`) in the table, markdown, csv, json and
html formats: one row per point, every metric's total, and how many times the first point's it
is."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

import tabulate

from torchtally.plugin import ON_REQUEST_METRICS, Sweep, format_count
from torchtally_reporters.options import FLOP_UNITS, FLOPS_PER_MAC, UNITS, _choice

SWEEP_TABLE_OPTIONS: Mapping[str, Any] = {"metrics": None, "units": "human", "flop_unit": "mac"}


def sweep_options(
    sweep: Sweep, given: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(
            f"a sweep got unexpected option(s) {', '.join(unknown)}; valid options: "
            f"{', '.join(sorted(defaults)) or 'none'}"
        )
    values = {**defaults, **given}
    metrics = values.get("metrics")
    names = (
        tuple(m for m in sweep.metrics if m not in ON_REQUEST_METRICS)  # bytes on request
        if metrics is None
        else ((metrics,) if isinstance(metrics, str) else tuple(metrics))
    )
    unknown = [name for name in names if name not in sweep.metrics]
    if unknown:
        raise ValueError(
            f"metrics {', '.join(map(repr, unknown))} not available; the sweep has "
            f"{', '.join(sweep.metrics)}"
        )
    values["metrics"] = names
    values["units"] = _choice("units", values.get("units", "human"), UNITS)
    values["flop_unit"] = _choice("flop_unit", values.get("flop_unit", "mac"), FLOP_UNITS)
    return values


def _totals(sweep: Sweep, metric: str, options: Mapping[str, Any]) -> list[int]:
    scale = FLOPS_PER_MAC[options["flop_unit"]] if metric == "flops" else 1
    return [value * scale for value in sweep.totals(metric)]


def _rows(sweep: Sweep, options: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = [" ".join(sweep.parameters)] if len(sweep.parameters) == 1 else ["point"]
    columns = []
    for metric in options["metrics"]:
        headers += [f"#{metric}", "x first"]
        columns.append(_totals(sweep, metric, options))
    rows = []
    for i, label in enumerate(sweep.labels()):
        row = [label]
        for totals in columns:
            value = totals[i]
            row.append(format_count(value) if options["units"] == "human" else str(value))
            row.append(f"{value / totals[0]:.2f}" if totals[0] else "")
        rows.append(row)
    return headers, rows


def render_sweep_table(sweep: Sweep, **options: Any) -> str:
    opts = sweep_options(sweep, options, SWEEP_TABLE_OPTIONS)
    headers, rows = _rows(sweep, opts)
    text: str = tabulate.tabulate(
        rows,
        headers=headers,
        tablefmt="pretty",
        colalign=("left", *("right" for _ in headers[1:])),
        disable_numparse=True,
    )
    return (
        f"{sweep.analyses[0].modules[''].type_name}, varying {', '.join(sweep.parameters)}\n{text}"
    )


def render_sweep_markdown(sweep: Sweep, **options: Any) -> str:
    opts = sweep_options(sweep, options, SWEEP_TABLE_OPTIONS)
    headers, rows = _rows(sweep, opts)
    text: str = tabulate.tabulate(
        rows,
        headers=headers,
        tablefmt="pipe",
        colalign=("left", *("right" for _ in headers[1:])),
        disable_numparse=True,
    )
    return text


def render_sweep_csv(sweep: Sweep, **options: Any) -> str:
    opts = sweep_options(sweep, options, {"metrics": None, "flop_unit": "mac"})
    opts["units"] = "raw"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*sweep.parameters, *opts["metrics"]])
    columns = [_totals(sweep, metric, opts) for metric in opts["metrics"]]
    for i, point in enumerate(sweep.points):
        values = ["x".join(map(str, v)) if isinstance(v, (list, tuple)) else v for v in point]
        writer.writerow([*values, *(totals[i] for totals in columns)])
    return buffer.getvalue().removesuffix("\n")


def render_sweep_json(sweep: Sweep, **options: Any) -> str:
    sweep_options(sweep, options, {})
    return json.dumps(sweep.to_dict(), indent=2)


def render_sweep_html(sweep: Sweep, **options: Any) -> str:
    from torchtally_reporters.html_report import html_page

    title = options.pop("title", None)
    sweep_options(sweep, options, {})
    model = sweep.analyses[0].modules[""].type_name
    title = title or f"{model}: {', '.join(sweep.parameters)} sweep"
    return html_page("sweep", title, {"sweep": sweep.to_dict()}, plots=True)
