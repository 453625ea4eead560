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
    """No installed reporter has the requested name."""


def render(analysis: Analysis, format: str, **options: Any) -> str:
    from torchtally.plugins import reporters

    available = reporters()
    if format not in available:
        if not available:
            raise UnknownFormatError(
                f"no output formats are installed, so {format!r} cannot be rendered; "
                f"install them with: pip install {REPORTERS_DISTRIBUTION}"
            )
        raise UnknownFormatError(
            f"unknown output format {format!r}; installed formats: {', '.join(sorted(available))}"
        )
    reporter, _plugin = available[format]
    text = reporter.render(analysis, **options)
    if not isinstance(text, str):
        raise TypeError(f"the {format!r} reporter returned {type(text).__name__}, expected str")
    return text
