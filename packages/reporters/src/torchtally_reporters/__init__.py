"""torchtally's output formats: ``table``, ``arch``, ``json``, ``markdown``, ``parameters``,
``operators``, ``csv`` and ``html``.

Installed, this package registers them through the ``torchtally`` entry point group, so that
``analysis.render("table")`` and the other formats work. Every renderer is pure: it takes an
`Analysis` and options and returns text.
"""

from __future__ import annotations

import torchtally
from torchtally import Reporter
from torchtally_reporters.arch import render_arch
from torchtally_reporters.csv_report import render_csv
from torchtally_reporters.html_report import render_html
from torchtally_reporters.json_report import load_schema, render_json
from torchtally_reporters.markdown import render_markdown
from torchtally_reporters.operators import render_operators
from torchtally_reporters.parameters import render_parameters
from torchtally_reporters.table import render_table

__version__ = "0.1.0"

REPORTERS: tuple[Reporter, ...] = (
    Reporter("table", render_table, "mmengine's complexity table: module, parameters, counts"),
    Reporter("arch", render_arch, "the module tree as print(model) shows it, with counts"),
    Reporter("json", render_json, "every number of the analysis, as JSON (see load_schema())"),
    Reporter("markdown", render_markdown, "totals and the complexity table as a Markdown table"),
    Reporter("parameters", render_parameters, "fvcore's parameter_count_table"),
    Reporter("operators", render_operators, "counts per operator, largest first, with shares"),
    Reporter("csv", render_csv, "one row per module (or module and operator), raw counts"),
    Reporter("html", render_html, "one self-contained page: module tree, treemap, operators"),
)


@torchtally.hookimpl
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
    "render_table",
    "torchtally_reporters",
]
