"""Rendering an `Analysis` in an output format found by name among the installed plugins.

This is the api layer's side of output: `Analysis.render` and `Analysis.save` call `render` here
through `analysis.set_renderer`, so the result object never imports the plugin manager.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchtally import analysis as analysis_module
from torchtally import compare
from torchtally.analysis import Analysis
from torchtally.plugins import reporters
from torchtally.reporting import (
    REPORTERS_DISTRIBUTION,
    Reporter,
    ReporterError,
    UnknownFormatError,
)

# The output format a file's suffix asks for, compared without case (anything else: table).
FORMAT_BY_SUFFIX = {
    ".json": "json",
    ".md": "markdown",
    ".csv": "csv",
    ".html": "html",
    ".htm": "html",
}


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The format `save` and ``--output`` pick for `path` when none is named."""
    return FORMAT_BY_SUFFIX.get(Path(path).suffix.lower(), "table")


def find_reporter(format: str) -> tuple[Reporter, str]:
    """The installed reporter named `format` and its plugin's name, or `UnknownFormatError`."""
    available = reporters()
    if format in available:
        reporter, plugin = available[format]
        return reporter, plugin
    if not available:
        raise UnknownFormatError(
            f"no output formats are installed, so {format!r} cannot be rendered; "
            f"install them with: pip install {REPORTERS_DISTRIBUTION}"
        )
    installed = tuple(sorted(available))
    raise UnknownFormatError(
        f"unknown output format {format!r}; installed formats: {', '.join(installed)}", installed
    )


def render(analysis: Analysis, format: str = "table", **options: Any) -> str:
    """`analysis` as text in the output format named `format` (table, arch, json, ...)."""
    reporter, plugin = find_reporter(format)
    bound = reporter.bind(options)
    return _call(
        reporter.render, analysis, f"the {format!r} output format (plugin {plugin!r})", bound
    )


def comparison_formats(kind: str) -> tuple[str, ...]:
    """The installed formats that can show a `kind` (``"diff"`` or ``"sweep"``)."""
    return tuple(
        sorted(name for name, (r, _) in reporters().items() if getattr(r, f"render_{kind}"))
    )


def render_comparison(subject: Any, kind: str, format: str, **options: Any) -> str:
    """`subject`, a `Diff` or a `Sweep` (`kind` ``"diff"`` or ``"sweep"``), in `format`."""
    reporter, plugin = find_reporter(format)
    renderer = getattr(reporter, f"render_{kind}")
    if renderer is None:
        able = comparison_formats(kind)
        raise UnknownFormatError(
            f"the {format!r} format cannot show a {kind}; formats that can: {', '.join(able)}",
            able,
        )
    return _call(renderer, subject, f"the {format!r} output format (plugin {plugin!r})", options)


def _call(renderer: Callable[..., Any], subject: Any, source: str, options: Any) -> str:
    try:
        text = renderer(subject, **options)
    except (TypeError, ValueError) as error:
        # By convention a reporter's verdict on the options it was given: kept as it is, with
        # the plugin named in a note (shown in the traceback) in case it is a bug after all.
        if hasattr(error, "add_note"):  # Python 3.11+
            error.add_note(f"raised by {source}")
        raise
    except Exception as error:
        raise ReporterError(f"{source} raised {type(error).__name__}: {error}") from error
    if not isinstance(text, str):
        raise ReporterError(f"{source} returned {type(text).__name__}, expected str")
    return text


def save(
    analysis: Analysis,
    path: str | os.PathLike[str],
    format: str | None = None,
    **options: Any,
) -> Path:
    """Write `render(analysis, format, **options)` to `path`, all or nothing: the text goes to a
    temporary file beside it, renamed over `path` once complete. The format defaults from the
    suffix (``.json`` json, ``.md`` markdown, anything else table)."""
    target = Path(path)
    return write_atomic(
        target, render(analysis, format or format_for_path(target), **options) + "\n"
    )


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `path`, all or nothing: to a temporary file beside it, renamed over
    `path` once complete (a failed write leaves what was there)."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


analysis_module.set_renderer(render, save)
compare.set_comparison_renderer(render_comparison)
