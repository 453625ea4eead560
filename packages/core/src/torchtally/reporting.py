"""Output formats: `Reporter` objects provided by plugins, looked up by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torchtally.analysis import Analysis

REPORTERS_DISTRIBUTION = "torchtally-reporters"


@dataclass(frozen=True)
class Reporter:
    """One output format. `render` is pure: it returns text, prints nothing, changes nothing."""

    name: str
    render: Callable[..., str]
    description: str = ""


class UnknownFormatError(ValueError):
    """No installed reporter has the requested name; `installed` lists the names there are."""

    def __init__(self, message: str, installed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.installed = installed


class ReporterError(RuntimeError):
    """A reporter failed (raised, or returned something other than text); names its plugin.

    TypeError and ValueError pass through unchanged: reporters raise them for options they do
    not accept, which is the caller's mistake, not the plugin's.
    """


def find_reporter(format: str) -> tuple[Reporter, str]:
    """The installed reporter named `format` and its plugin's name, or `UnknownFormatError`."""
    from torchtally.plugins import reporters

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


def render(analysis: Analysis, format: str, **options: Any) -> str:
    reporter, plugin = find_reporter(format)
    source = f"the {format!r} output format (plugin {plugin!r})"
    try:
        text = reporter.render(analysis, **options)
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
