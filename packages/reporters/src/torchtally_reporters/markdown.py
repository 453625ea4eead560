"""The ``markdown`` format: the totals, then the table's rows as a GitHub-flavoured pipe table."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import tabulate

from torchtally.plugin import Analysis
from torchtally_reporters.options import Options
from torchtally_reporters.stats import format_number, model_total, phases_text, plain_name
from torchtally_reporters.table import (
    TABLE_OPTIONS,
    Row,
    summary_lines,
    table_columns,
    table_options,
    table_rows,
)

MARKDOWN_OPTIONS: Mapping[str, Any] = {k: v for k, v in TABLE_OPTIONS.items() if k != "style"}


def render_markdown(analysis: Analysis, **options: Any) -> str:
    """A totals line, a blank line, and a pipe table with the ``table`` format's rows."""
    opts, roofline, extras = table_options("markdown", analysis, options, MARKDOWN_OPTIONS)
    keys, headers = table_columns(opts, roofline, extras)
    totals = "\n\n".join(
        [totals_line(analysis, opts), *summary_lines(roofline, extras, opts.units)]
    )
    body = [_cells(row, keys) for row in table_rows(analysis, opts, roofline, extras)]
    table = tabulate.tabulate(
        body,
        headers=[escape_cell(header) for header in headers],
        tablefmt="pipe",
        colalign=("left", *("right" for _ in keys)),
        disable_numparse=True,
    )
    return f"{totals}\n\n{table}"


def totals_line(analysis: Analysis, options: Options) -> str:
    """``**Totals:** 0.44K parameters, 0.4K flops, 40 activations``; with phases split,
    ``1.1K flops (forward 400, backward 700)``."""
    parts = (_total_part(analysis, metric, options) for metric in options.metrics)
    return f"**Totals:** {', '.join(parts)}"


def _total_part(analysis: Analysis, metric: str, options: Options) -> str:
    total = format_number(model_total(analysis, metric, options), options)
    split = phases_text(analysis, metric, options)
    return " ".join(part for part in (total, plain_name(metric), split) if part)


def _cells(row: Row, keys: tuple[str, ...]) -> list[str]:
    return [code_span(row.name), *(escape_cell(row.cells.get(k, "")) for k in keys)]


def code_span(text: str) -> str:
    """`text` as an inline code span that survives inside a table cell."""
    longest_run = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest_run + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return escape_cell(f"{fence}{pad}{text}{pad}{fence}")


def escape_cell(text: str) -> str:
    """Escape the pipe, which would end the cell even inside a code span."""
    return text.replace("|", "\\|")
