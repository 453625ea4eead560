"""The output-format types a plugin provides: `Reporter`, and the errors of rendering.

Finding a format by name and rendering with it live above the plugin manager, in `formats`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

REPORTERS_DISTRIBUTION = "torchtally-reporters"


@dataclass(frozen=True)
class Reporter:
    """One output format. `render` is pure: it returns text, prints nothing, changes nothing.

    `options` declares the options the format accepts, each with its default. When it is given,
    torchtally refuses any other option before `render` runs (a `TypeError` naming the valid
    ones) and passes `render` every declared option, the defaults filled in; checking the
    values stays the format's job. Without it, `render` gets the options exactly as given.

    A format that can also show a comparison of two analyses (`torchtally.diff`) gives
    `render_diff`, one that can show a sweep (one analysis per input size) `render_sweep`; each
    takes that object and options and returns text.
    """

    name: str
    render: Callable[..., str]
    description: str = ""
    options: Mapping[str, Any] | None = field(default=None, compare=False)
    render_diff: Callable[..., str] | None = field(default=None, compare=False)
    render_sweep: Callable[..., str] | None = field(default=None, compare=False)

    def bind(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The options `render` receives for the options a caller `given`."""
        if self.options is None:
            return dict(given)
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise TypeError(
                f"the {self.name!r} format got unexpected option(s) {', '.join(unknown)}; "
                f"valid options: {valid}"
            )
        return {**self.options, **given}


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
