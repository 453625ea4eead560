"""The ``table`` format: mmengine's complexity table, one row per module and parameter.

The rows follow mmengine's rules. Parameter rows sit under their module, modules come in the order
their parameters are first seen and parameter-less modules after them; a module whose counts are
all zero is dropped unless a descendant is kept; a parent whose only remaining child has matching
counts is merged into it (``neck.gap`` instead of ``neck`` then ``gap``); the columns of a module
that was never called are left empty; ``max_depth`` counts printed levels below the model row.

``style="box"`` (the default) draws mmengine's ``+---+`` grid; ``style="pipe"`` gives fvcore's
``flop_count_table``, a pipe table whose all-numeric columns tabulate aligns as numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tabulate

from torchtally.plugin import Analysis
from torchtally_reporters.extras import EXTRA_OPTIONS, Extras, build_extras, split_extras
from torchtally_reporters.options import PARAMS, Options, check_choice, parse_options
from torchtally_reporters.stats import column_header, format_number, metric_by_module
from torchtally_reporters.timing import (
    BOUND,
    TIME,
    roofline_of,
    summary_line,
    time_cells,
    time_headers,
)

TABLE_OPTIONS: Mapping[str, Any] = {
    "max_depth": 3,
    "metrics": None,
    "units": "human",
    "flop_unit": "mac",
    "show_param_shapes": True,
    "split_phases": None,
    "style": "box",
    "hardware": None,
    **EXTRA_OPTIONS,
}
TABLE_STYLES = ("box", "pipe")
ROOT_LABEL = "model"

Stats = dict[str, dict[str, int]]
Cells = dict[str, dict[str, str]]


@dataclass(frozen=True)
class Row:
    """One table row: its level below the model row, the name shown, text per metric."""

    depth: int
    name: str
    cells: Mapping[str, str]


def render_table(analysis: Analysis, **options: Any) -> str:
    """mmengine's complexity table (``+---+`` grid, rows indented by level), or fvcore's pipe
    table with ``style="pipe"``."""
    style = check_choice("style", options.pop("style", "box"), TABLE_STYLES)
    opts, roofline, extras = table_options("table", analysis, options, TABLE_OPTIONS)
    keys, headers = table_columns(opts, roofline, extras)
    body = [_indented(row, keys) for row in table_rows(analysis, opts, roofline, extras)]
    lines = [grid(body, headers, style), *summary_lines(roofline, extras, opts.units)]
    return "\n".join(lines)


def table_options(
    format_name: str, analysis: Analysis, given: Mapping[str, Any], defaults: Mapping[str, Any]
) -> tuple[Options, Any, Extras]:
    """A table's count options, its roofline (the ``hardware`` option) and its extra columns."""
    counted, extra = split_extras(given)
    opts = parse_options(format_name, analysis, counted, defaults)
    roofline = roofline_of(analysis, opts.hardware)
    return opts, roofline, build_extras(analysis, extra, opts, roofline)


def table_columns(
    options: Options, roofline: Any, extras: Extras
) -> tuple[tuple[str, ...], list[str]]:
    """The cells' keys and the headings, in order: counts, estimated time, the extras."""
    keys = tuple(column.key for column in options.columns)
    headers = column_headers(options)
    if roofline is not None:
        keys, headers = (*keys, TIME, BOUND), [*headers, *time_headers(roofline)]
    keys = (*keys, *(key for key, _ in extras.columns))
    return keys, [*headers, *(heading for _, heading in extras.columns)]


def summary_lines(roofline: Any, extras: Extras, units: str) -> list[str]:
    """The lines under a table: the estimated time, the measured one."""
    lines = [] if roofline is None else [summary_line(roofline, units)]
    return [*lines, *extras.summary]


def grid(rows: list[list[str]], headers: list[str], style: str) -> str:
    """Rows under headers, in mmengine's box or fvcore's pipe layout (whitespace kept)."""
    if style == "pipe":  # as fvcore calls tabulate: numeric-looking columns align as numbers
        pipe: str = tabulate.tabulate(
            rows, headers=headers, tablefmt="pipe", preserve_whitespace=True
        )
        return pipe
    box: str = tabulate.tabulate(
        rows,
        headers=headers,
        tablefmt="pretty",
        stralign="left",
        disable_numparse=True,
        preserve_whitespace=True,
    )
    return box


def column_headers(options: Options) -> list[str]:
    return ["module", *(column_header(column, options) for column in options.columns)]


def _indented(row: Row, keys: tuple[str, ...]) -> list[str]:
    indent = " " * row.depth
    return [indent + row.name, *(indent + row.cells[k] if k in row.cells else "" for k in keys)]


def table_rows(
    analysis: Analysis, options: Options, roofline: Any = None, extras: Extras | None = None
) -> list[Row]:
    """The rows of the table, in order, for the ``table`` and ``markdown`` formats; with a
    roofline, each module's estimated time and bound too; with `extras`, their columns, and
    the model and the top modules instead of the tree when they ask for it."""
    stats = collect_stats(analysis, options)
    spent = [roofline.by_module()] if roofline is not None else []
    spent += list(extras.times.values()) if extras is not None else []
    for by_module in spent:  # a module that only takes time (a GELU's bytes) keeps its row
        for name, seconds in by_module.items():
            if seconds:
                stats.setdefault(name, {})[TIME] = 1
    stats = drop_trivial(stats)
    cells = format_cells(stats, analysis, options)
    if roofline is not None:
        for name, timed in time_cells(roofline, cells, options.units).items():
            cells[name].update(timed)
    if PARAMS in options.metrics:
        mark_shared(cells, analysis, options.show_param_shapes)
    if not options.show_param_shapes:
        cells = {name: row for name, row in cells.items() if name not in analysis.param_shapes}
    if extras is not None:
        for name, extra in extras.cells.items():
            if name in cells:
                cells[name].update(extra)
        if extras.top is not None:
            rows = [Row(0, ROOT_LABEL, cells.get("", {}))]
            rows += [Row(1, name, cells.get(name, dict(extras.cells[name]))) for name in extras.top]
            return rows
    return tree_rows(cells, options.max_depth)


def mark_shared(cells: Cells, analysis: Analysis, show_params: bool) -> None:
    """Tied weights: a module whose parameter is another module's shows ``0 (shared)``, and,
    with parameter rows, the parameter names the one it is counted under."""
    for alias, counted in analysis.shared_params.items():
        module = parent(alias)
        if module not in cells:
            continue
        row = cells[module]
        if not row.get(PARAMS) or row[PARAMS] == "0":
            row[PARAMS] = "0 (shared)"
        if show_params:
            cells[alias] = {PARAMS: f"shared: {counted}"}


def collect_stats(analysis: Analysis, options: Options) -> Stats:
    """Counts per row name and column key: parameter-tree entries first (in their order), then
    other modules."""
    stats: Stats = {}
    if PARAMS in options.metrics:
        for name, count in analysis.params.items():
            stats[name] = {PARAMS: count}
    for column in options.columns:
        if column.metric != PARAMS:
            by_module = metric_by_module(analysis, column.metric, options, column.phase)
            for name, count in by_module.items():
                stats.setdefault(name, {})[column.key] = count
    return stats


def parent(name: str) -> str:
    """The enclosing module's name (``""`` for the model)."""
    return name.rpartition(".")[0]


def drop_trivial(stats: Stats) -> Stats:
    """Keep the model, rows with a non-zero count, and rows with a kept descendant."""
    kept: set[str] = set()
    for name in sorted(stats, key=lambda n: n.count(".") if n else -1, reverse=True):
        if not name or name in kept or any(stats[name].values()):
            kept.add(name)
            if name:
                kept.add(parent(name))
    return {name: counts for name, counts in stats.items() if name in kept}


def format_cells(stats: Stats, analysis: Analysis, options: Options) -> Cells:
    """Counts as text; parameters show their shape; metrics of uncalled modules are left empty."""
    uncalled = analysis.uncalled_modules
    shapes = analysis.param_shapes
    cells: Cells = {}
    for name, counts in stats.items():
        row = {key: format_number(count, options) for key, count in counts.items()}
        if name in uncalled:
            row.update({key: "" for key in row if key != PARAMS})
        if name in shapes:
            row[PARAMS] = str(shapes[name])
        cells[name] = row
    return cells


def tree_rows(cells: Cells, max_depth: int | None) -> list[Row]:
    """Walk the name tree from the model down to `max_depth` levels, fast-forwarding chains."""
    children = _children(cells)
    root, root_cells = fast_forward("", cells, children)
    prefix = f"{root}." if root else ""
    rows = [Row(0, root or ROOT_LABEL, root_cells)]

    def visit(name: str, depth: int) -> None:
        if max_depth is not None and depth > max_depth:
            return
        for child in children.get(name, ()):
            shown, shown_cells = fast_forward(child, cells, children)
            rows.append(Row(depth, shown.removeprefix(prefix), shown_cells))
            visit(shown, depth + 1)

    visit(root, 1)
    return rows


def _children(cells: Cells) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for name in cells:
        if name and parent(name) in cells:
            children.setdefault(parent(name), []).append(name)
    return children


def fast_forward(
    name: str, cells: Cells, children: Mapping[str, list[str]]
) -> tuple[str, dict[str, str]]:
    """Merge `name` into its only child while their cells agree; the last name and merged cells."""
    current = cells[name]
    while len(children.get(name, ())) == 1:
        child = children[name][0]
        merged = combine(current, cells[child])
        if merged is None:
            break
        name, current = child, merged
    return name, current


def combine(first: Mapping[str, str], second: Mapping[str, str]) -> dict[str, str] | None:
    """One row for both, or None if they have different columns or differing non-empty cells."""
    if first.keys() != second.keys():
        return None
    if any(first[k] and second[k] and first[k] != second[k] for k in first):
        return None
    return {k: first[k] or second[k] for k in first}
