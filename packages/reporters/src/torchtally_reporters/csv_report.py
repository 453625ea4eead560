"""The ``csv`` format: one row per module (or per module and operator), every count raw.

For spreadsheets and dataframes: a header row, then the modules in ``named_modules()`` order.
A module's counts include its submodules' (the model row, named ``""``, is the total), as every
other format shows them. With a backward pass each metric also gets a column per phase
(``flops_forward``, ``flops_backward``). A module whose ``__call__`` never ran has ``called``
false: its work, if any, is in its parent's counts. A model with tied weights gets a
``shared_params`` column after ``params``: a module's own parameters counted under another name,
as ``weight=transformer.wte.weight`` (``;`` between several).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from torchtally.plugin import Analysis
from torchtally_reporters.options import PARAMS, Column, Options, parse_options

CSV_OPTIONS: Mapping[str, Any] = {
    "metrics": None,
    "flop_unit": "mac",
    "split_phases": None,
    "by_operator": False,
}


def render_csv(analysis: Analysis, **options: Any) -> str:
    """Comma-separated rows: ``module,type,called,params,flops,...`` (raw integers)."""
    by_operator = options.pop("by_operator", False)
    if not isinstance(by_operator, bool):
        raise TypeError(f"by_operator must be True or False, got {by_operator!r}")
    opts = parse_options("csv", analysis, options, CSV_OPTIONS)
    columns = [c for c in opts.columns if c.metric != PARAMS]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if by_operator:
        writer.writerow(["module", "operator", *(column_name(c) for c in columns)])
        writer.writerows(_operator_rows(analysis, opts, columns))
    else:
        with_params = PARAMS in opts.metrics
        with_shared = with_params and bool(analysis.shared_params)
        params = ([PARAMS] if with_params else []) + (["shared_params"] if with_shared else [])
        writer.writerow(["module", "type", "called", *params, *(column_name(c) for c in columns)])
        writer.writerows(_module_rows(analysis, opts, columns, with_params, with_shared))
    return buffer.getvalue().removesuffix("\n")


def column_name(column: Column) -> str:
    """``flops``, or ``flops_backward`` for one phase of a split metric."""
    return column.metric if column.phase is None else f"{column.metric}_{column.phase}"


def _module_rows(
    analysis: Analysis,
    options: Options,
    columns: list[Column],
    with_params: bool,
    with_shared: bool,
) -> list[list[Any]]:
    counts = [_by_module(analysis, column, options) for column in columns]
    uncalled = analysis.uncalled_modules
    shared: dict[str, list[str]] = {}  # module -> "its parameter=where it is counted"
    for tied, counted in analysis.shared_params.items():
        owner, _, own = tied.rpartition(".")
        shared.setdefault(owner, []).append(f"{own}={counted}")
    rows = []
    for name, info in analysis.modules.items():
        row: list[Any] = [name, info.type_name, "false" if name in uncalled else "true"]
        if with_params:
            row.append(analysis.params.get(name, 0))
        if with_shared:
            row.append(";".join(shared.get(name, ())))
        row.extend(by_module.get(name, 0) for by_module in counts)
        rows.append(row)
    return rows


def _operator_rows(analysis: Analysis, options: Options, columns: list[Column]) -> list[list[Any]]:
    tables = [
        analysis.by_module_and_operator(column.metric, phase=column.phase) for column in columns
    ]
    rows = []
    for name in analysis.modules:
        operators: dict[str, None] = {}
        for table in tables:
            operators.update(dict.fromkeys(sorted(table.get(name, {}))))
        for operator in operators:
            values = [
                table.get(name, {}).get(operator, 0) * options.scale(column.metric)
                for table, column in zip(tables, columns, strict=True)
            ]
            rows.append([name, operator, *values])
    return rows


def _by_module(analysis: Analysis, column: Column, options: Options) -> dict[str, int]:
    scale = options.scale(column.metric)
    by_module = analysis.by_module(column.metric, phase=column.phase)
    return {name: count * scale for name, count in by_module.items()}
