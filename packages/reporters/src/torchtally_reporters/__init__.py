"""torchtally's output formats: ``table``, ``arch``, ``json``, ``markdown``, ``parameters``,
``summary``, ``operators``, ``csv`` and ``html``.

Installed, this package registers them through the ``torchtally`` entry point group, so that
``analysis.render("table")`` and the other formats work. Every renderer is pure: it takes an
`Analysis` and options and returns text. Each declares its options, which torchtally checks.
"""

from __future__ import annotations

from torchtally.plugin import Reporter, hookimpl
from torchtally_reporters.arch import ARCH_OPTIONS, render_arch
from torchtally_reporters.csv_report import CSV_OPTIONS, render_csv
from torchtally_reporters.diff_report import (
    render_diff_csv,
    render_diff_html,
    render_diff_json,
    render_diff_markdown,
    render_diff_table,
)
from torchtally_reporters.html_report import HTML_OPTIONS, render_html
from torchtally_reporters.json_report import JSON_OPTIONS, load_schema, render_json
from torchtally_reporters.markdown import MARKDOWN_OPTIONS, render_markdown
from torchtally_reporters.operators import OPERATORS_OPTIONS, render_operators
from torchtally_reporters.parameters import PARAMETERS_OPTIONS, render_parameters
from torchtally_reporters.summary import SUMMARY_OPTIONS, render_summary
from torchtally_reporters.sweep_report import (
    render_sweep_csv,
    render_sweep_html,
    render_sweep_json,
    render_sweep_markdown,
    render_sweep_table,
)
from torchtally_reporters.table import TABLE_OPTIONS, render_table

__version__ = "0.1.0"

REPORTERS: tuple[Reporter, ...] = (
    Reporter(
        "table",
        render_table,
        "mmengine's complexity table: module, parameters, counts",
        TABLE_OPTIONS,
        render_diff=render_diff_table,
        render_sweep=render_sweep_table,
    ),
    Reporter(
        "arch", render_arch, "the module tree as print(model) shows it, with counts", ARCH_OPTIONS
    ),
    Reporter(
        "json",
        render_json,
        "every number of the analysis, as JSON (see load_schema())",
        JSON_OPTIONS,
        render_diff=render_diff_json,
        render_sweep=render_sweep_json,
    ),
    Reporter(
        "markdown",
        render_markdown,
        "totals and the complexity table as a Markdown table",
        MARKDOWN_OPTIONS,
        render_diff=render_diff_markdown,
        render_sweep=render_sweep_markdown,
    ),
    Reporter("parameters", render_parameters, "fvcore's parameter_count_table", PARAMETERS_OPTIONS),
    Reporter(
        "summary",
        render_summary,
        "mmpretrain's get_flops block: input shape, flops, parameters, activations",
        SUMMARY_OPTIONS,
    ),
    Reporter(
        "operators",
        render_operators,
        "counts per operator, largest first, with shares",
        OPERATORS_OPTIONS,
    ),
    Reporter(
        "csv",
        render_csv,
        "one row per module (or module and operator), raw counts",
        CSV_OPTIONS,
        render_diff=render_diff_csv,
        render_sweep=render_sweep_csv,
    ),
    Reporter(
        "html",
        render_html,
        "one self-contained page: module tree, treemap, operators",
        HTML_OPTIONS,
        render_diff=render_diff_html,
        render_sweep=render_sweep_html,
    ),
)


@hookimpl
def torchtally_reporters() -> tuple[Reporter, ...]:
    """The formats of this package (the ``torchtally`` plugin hook)."""
    return REPORTERS


__all__ = [
    "REPORTERS",
    "load_schema",
    "render_arch",
    "render_csv",
    "render_html",
    "render_json",
    "render_markdown",
    "render_operators",
    "render_parameters",
    "render_summary",
    "render_table",
    "torchtally_reporters",
]
