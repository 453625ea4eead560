"""The ``html`` format: one self-contained page to explore an analysis in a browser.

Everything is inline (styles, scripts, the data as JSON), so the file opens from disk with no
network: the module tree as a collapsible, sortable table with a bar per count (only the rows in
view are in the page, so a 70B model's report scrolls smoothly), a treemap of where each metric
goes, the per-operator breakdown, what was not counted, and the summary. The data is the ``json``
format's document; the libraries are vendored in ``web/vendor`` (see its README).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from torchtally.plugin import Analysis
from torchtally_reporters.json_report import analysis_document
from torchtally_reporters.options import parse_options

HTML_OPTIONS: Mapping[str, Any] = {"metrics": None, "flop_unit": "mac", "title": None}
VERSION = "0.1.0"


def render_html(analysis: Analysis, **options: Any) -> str:
    """The page for `analysis`; ``title`` defaults to the model's class name."""
    title = options.pop("title", None)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a string, got {title!r}")
    opts = parse_options("html", analysis, options, HTML_OPTIONS)
    document = analysis_document(analysis, opts)
    title = title or analysis.modules[""].type_name
    return html_page("analysis", title, {"analysis": document})


def html_page(kind: str, title: str, data: Mapping[str, Any], plots: bool = False) -> str:
    """A complete page of `kind` (``analysis``, ``diff``, ``sweep``) showing `data`.

    `plots` inlines the plotting library too (only sweeps draw line plots).
    """
    payload = {"kind": kind, "title": title, **data}
    styles = [_asset("report.css")]
    scripts = [_asset("vendor/d3-hierarchy.min.js")]
    if plots:
        styles.insert(0, _asset("vendor/uPlot.min.css"))
        scripts.append(_asset("vendor/uPlot.iife.min.js"))
    scripts.append(_asset("report.js"))
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="torchtally-reporters {VERSION}">',
            f"<title>torchtally: {html.escape(title)}</title>",
            *(f"<style>\n{style}\n</style>" for style in styles),
            "</head>",
            "<body>",
            "<noscript>This report needs JavaScript to draw its tables and charts.</noscript>",
            '<script type="application/json" id="torchtally-data">',
            script_json(payload),
            "</script>",
            *(f"<script>\n{_script(script)}\n</script>" for script in scripts),
            "</body>",
            "</html>",
        ]
    )


def script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>`` or ``<!--`` in it)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _script(text: str) -> str:
    # A vendored library's text may hold "</script" inside a string; break it up.
    return text.replace("</script", "<\\/script")


def _asset(name: str) -> str:
    return resources.files("torchtally_reporters").joinpath("web", name).read_text(encoding="utf-8")
