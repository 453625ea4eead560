"""The ``operators`` format: where the counts go per operator (fvcore's names: conv, linear, ...).

One row per operator, largest first (by the first metric shown), each metric with its share of
the total; then the ops no handler counted, with how often they ran. ``module`` breaks down one
module instead of the whole model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tabulate

from torchtally.plugin import Analysis
from torchtally_reporters.options import PARAMS, Column, Options, parse_options
from torchtally_reporters.stats import column_header, format_number

OPERATORS_OPTIONS: Mapping[str, Any] = {
    "metrics": None,
    "units": "human",
    "flop_unit": "mac",
    "split_phases": None,
    "module": "",
}


def render_operators(analysis: Analysis, **options: Any) -> str:
    """A grid table: operator, then per metric its count and share of the module's total."""
    module = options.pop("module", "")
    if not isinstance(module, str):
        raise TypeError(f"module must be a module name such as 'layer1', got {module!r}")
    try:
        module = analysis.canonical_module_name(module)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    opts = parse_options("operators", analysis, options, OPERATORS_OPTIONS)
    columns = [column for column in opts.columns if column.metric != PARAMS]
    if not columns:
        raise ValueError(
            "the 'operators' format shows counted metrics; parameters have no operator"
        )
    counts = {c.key: analysis.by_operator(c.metric, module, c.phase) for c in columns}
    operators = sorted(
        {op for by_op in counts.values() for op in by_op},
        key=lambda op: (*(-counts[c.key].get(op, 0) for c in columns), op),
    )
    headers = ["operator"]
    for column in columns:
        headers += [column_header(column, opts), "%"]
    rows = [_row(op, counts, columns, opts) for op in operators]
    totals = {key: {"total": sum(by_op.values())} for key, by_op in counts.items()}
    rows.append(_row("total", totals, columns, opts))
    text: str = tabulate.tabulate(
        rows,
        headers=headers,
        tablefmt="pretty",
        colalign=("left", *("right" for _ in headers[1:])),
        disable_numparse=True,
    )
    title = f"module: {module}\n" if module else ""
    return title + text + unsupported_text(analysis, module, columns)


def _row(
    operator: str, counts: Mapping[str, Mapping[str, int]], columns: list[Column], options: Options
) -> list[str]:
    cells = [operator]
    for column in columns:
        by_op = counts[column.key]
        value = by_op.get(operator, 0)
        total = sum(by_op.values()) if operator != "total" else value
        cells.append(format_number(value * options.scale(column.metric), options))
        cells.append(f"{100 * value / total:.1f}" if total else "")
    return cells


def unsupported_text(analysis: Analysis, module: str, columns: list[Column]) -> str:
    """Lines naming the ops each metric left uncounted, or ``""`` if there are none."""
    lines = []
    for metric in dict.fromkeys(column.metric for column in columns):
        missed = analysis.unsupported_ops(metric, module)
        if missed:
            ops = ", ".join(f"{op} ({times}x)" for op, times in sorted(missed.items()))
            lines.append(f"not counted in {metric} (no handler): {ops}")
    return "".join(f"\n{line}" for line in lines)
