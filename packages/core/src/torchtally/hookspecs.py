"""The hooks a torchtally plugin can implement.

A plugin is a module (or object) registered under the entry-point group ``torchtally``; it marks
its implementations with `hookimpl`. This module imports nothing of torchtally's at run time, so
built-in plugins and the plugin manager both import it without importing each other. Core's own
handlers are a plugin like any other. Specs only ever grow by new arguments: an implementation may
accept fewer arguments than its spec.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from torchtally.devices import Hardware
    from torchtally.handlers import HandlerSet
    from torchtally.reporting import Reporter

PROJECT = "torchtally"  # the marker's project name, the entry-point group and the hook prefix

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin's hook implementations: ``@hookimpl def torchtally_handlers(): ...``."""


@hookspec
def torchtally_handlers() -> HandlerSet | None:
    """Op handlers, ignored ops, function names and module handlers this plugin provides.

    :return: a `torchtally.HandlerSet`. Op handlers are keyed by metric (``"flops"``,
        ``"activations"`` or any new metric name) and by op schema name (``"aten::mm"``,
        ``"torchvision::roi_align"``). Module handlers count a whole module call whose work the
        dispatcher cannot see; the ops inside such a call are then not counted again.
        When two plugins claim the same metric and op, torchtally warns and names both.
    """


@hookspec
def torchtally_reporters() -> Iterable[Reporter] | None:
    """Output formats this plugin provides.

    :return: `torchtally.Reporter` objects. Each has a unique ``name`` (the ``--format`` value) and
        a pure ``render(analysis, options) -> str`` function: it returns text, prints nothing and
        changes nothing.
    """


@hookspec
def torchtally_sources() -> Iterable[Any] | None:
    """Model sources this plugin provides: what the ``torchtally MODEL`` argument can name.

    :return: `torchtally_cli.sources.ModelSource` objects (the command line's package). Each
        claims ``PREFIX:NAME`` (its ``prefix``) or any text its ``matches`` accepts (a config
        file's suffix, say), and its ``load(request)`` builds the model with random weights,
        downloading nothing. The built-in sources (``torchvision:``, ``timm:``,
        ``transformers:``, ``module:factory``) are a plugin like any other; for one prefix the
        first plugin that claims it wins, and the others are named in a warning.
    """


@hookspec
def torchtally_hardware() -> Iterable[Hardware] | None:
    """Devices this plugin provides for the roofline (``analysis.roofline("NAME")``).

    :return: `torchtally.Hardware` objects, each with a unique ``name``: peak FLOP/s per dtype
        (vendors' dense figures, 2 FLOP per multiply-add), memory bandwidth and size, and the
        source of every figure. Core's table comes first; a plugin's device of a name already
        taken is not used, and a warning names both.
    """
