"""The plugin manager: core's handlers plus every entry point of the group ``torchtally``.

Plugins load lazily, once, on first use (importing torchtally loads none). A plugin that fails to
import, or whose hook raises or returns the wrong thing, is reported by name, distribution and
version, and the others keep working; ``handler_registry(strict=True)`` raises `PluginError`
instead, for these and for two plugins claiming one op. Setting
``TORCHTALLY_DISABLE_PLUGIN_AUTOLOAD=1`` loads core only; plugins can still be registered by hand
with `get_plugin_manager().register(...)`.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from typing import Any

import importlib_metadata
import pluggy

from torchtally import hookspecs
from torchtally.devices import Hardware, builtin_hardware
from torchtally.handlers import HandlerRegistry, HandlerSet
from torchtally.hookspecs import PROJECT
from torchtally.process import ProcessState
from torchtally.reporting import Reporter
from torchtally.version import __version__

GROUP = PROJECT
CORE = "torchtally.core"
DISABLE_AUTOLOAD_ENV = "TORCHTALLY_DISABLE_PLUGIN_AUTOLOAD"


class PluginWarning(UserWarning):
    """A plugin failed to load, or two plugins claim the same op."""


class PluginError(RuntimeError):
    """Raised instead of `PluginWarning` when plugins are checked strictly."""


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that failed to load or to give what a hook asks, with the exception it raised
    (None when it returned the wrong thing); strict checks chain it to their `PluginError`."""

    name: str
    distribution: str
    version: str
    error: str
    cause: BaseException | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return (
            f"failed to load torchtally plugin {self.name!r} "
            f"(distribution {self.distribution} {self.version}): {self.error}"
        )


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin and what it registered."""

    name: str
    distribution: str | None
    version: str | None
    registers: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _RegistryCache:
    """The handler registry built for one set of registered plugins, and its conflicts."""

    plugins: tuple[str, ...]
    registry: HandlerRegistry
    conflicts: tuple[str, ...]


_manager: pluggy.PluginManager | None = None
_failures: list[PluginFailure] = []
_dists: dict[str, tuple[str, str]] = {}
_registry: _RegistryCache | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created and loaded on first call."""
    global _manager
    if _manager is None:
        manager = pluggy.PluginManager(GROUP)
        manager.add_hookspecs(hookspecs)
        from torchtally import ops

        manager.register(ops, name=CORE)
        if not os.environ.get(DISABLE_AUTOLOAD_ENV):
            _load_entry_points(manager)
        _manager = manager
    return _manager


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    entry_points = sorted(importlib_metadata.entry_points(group=GROUP), key=lambda ep: ep.name)
    for entry_point in entry_points:
        dist = entry_point.dist
        dist_name = dist.metadata["Name"] if dist is not None else "unknown"
        version = dist.version if dist is not None else "unknown"
        if manager.get_plugin(entry_point.name) is not None:
            continue
        try:
            with isolated() as output:
                plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
        except (Exception, SystemExit) as error:
            problem = (
                _problem(error, output.getvalue())
                if isinstance(error, SystemExit)
                else f"{type(error).__name__}: {error}"
            )
            failure = PluginFailure(entry_point.name, dist_name, version, problem, error)
            _failures.append(failure)
            warnings.warn(str(failure), PluginWarning, stacklevel=3)
            continue
        _dists[entry_point.name] = (dist_name, version)


@contextmanager
def isolated() -> Iterator[io.StringIO]:
    """Plugin code runs here apart from the user's process: with no command-line arguments (a
    plugin that parses ``sys.argv`` at import sees none), its output captured (passed on if it
    loads, quoted in the failure if it does not), and torch's switches, modes, global hooks and
    the torch, Python and NumPy generators put back after (a plugin drawing random numbers at
    import does not change the user's)."""
    state = ProcessState()
    argv, sys.argv = sys.argv, sys.argv[:1]
    output = io.StringIO()
    failed = True
    try:
        with redirect_stdout(output), redirect_stderr(output):
            yield output
        failed = False
    finally:
        sys.argv = argv
        state.restore()
        if not failed and output.getvalue():
            sys.stderr.write(output.getvalue())


def _problem(error: BaseException, output: str) -> str:
    """What a plugin did wrong, in one line: its exception, or its exit and last words."""
    if isinstance(error, SystemExit):
        said = [line for line in output.splitlines() if line.strip()]
        last = f": {said[-1].strip()}" if said else ""
        return f"it called sys.exit({error.code!r}){last}"
    return f"raised {type(error).__name__}: {error}"


def plugin_failures() -> list[PluginFailure]:
    """Plugins whose entry point failed to load, with the error."""
    get_plugin_manager()
    return list(_failures)


def handler_registry(strict: bool = False) -> HandlerRegistry:
    """Handlers of core and every loaded plugin, core first, then plugins in name order.

    Rebuilt whenever the set of registered plugins changes (e.g. one registered by hand). With
    `strict`, a plugin that failed to load or to give its handlers, and two plugins claiming
    one op, raise `PluginError` instead of the warnings issued when the registry is built.
    """
    global _registry
    manager = get_plugin_manager()
    key = tuple(sorted(name for name, _ in manager.list_name_plugin()))
    if _registry is None or _registry.plugins != key:
        layers = []
        for name, handler_set in _collect(manager, "torchtally_handlers"):
            if not isinstance(handler_set, HandlerSet):
                _report(
                    _failure(
                        name,
                        f"torchtally_handlers() returned {type(handler_set).__name__}, expected "
                        "a torchtally.HandlerSet; its handlers are not used",
                    )
                )
                continue
            layers.append((name, handler_set))
        layers.sort(key=lambda layer: (layer[0] != CORE, layer[0]))
        registry = HandlerRegistry(layers)
        conflicts = tuple(
            f"plugins {' and '.join(c.sources)} both handle {c.op} ({c.metric}); "
            f"using {c.sources[-1]}'s"
            for c in registry.conflicts(first_party=[CORE])
        )
        for conflict in conflicts:
            warnings.warn(conflict, PluginWarning, stacklevel=2)
        _registry = _RegistryCache(key, registry, conflicts)
    if strict:
        problems = [str(failure) for failure in _failures] + list(_registry.conflicts)
        if problems:
            cause = next((f.cause for f in _failures if f.cause is not None), None)
            raise PluginError(
                "torchtally plugins are broken (strict mode):\n  " + "\n  ".join(problems)
            ) from cause
    return _registry.registry


def _failure(name: str, error: str, cause: BaseException | None = None) -> PluginFailure:
    dist, version = _dists.get(name, ("unknown", "unknown"))
    if name == CORE:
        dist, version = "torchtally-core", __version__
    return PluginFailure(name, dist, version, error, cause)


def _report(failure: PluginFailure) -> None:
    """Warn about a plugin failure once per process (until `reset_plugins`)."""
    if failure in _failures:
        return
    _failures.append(failure)
    warnings.warn(str(failure), PluginWarning, stacklevel=3)


def _collect(manager: pluggy.PluginManager, hook_name: str) -> list[tuple[str, Any]]:
    """Call one hook on each plugin separately, so each result stays tied to its plugin.

    A plugin whose hook raises is reported (`PluginWarning`) and skipped.
    """
    results = []
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        try:
            with isolated() as output:
                result = impl.function()
        except (Exception, SystemExit) as error:
            problem = f"{hook_name}() {_problem(error, output.getvalue())}"
            _report(_failure(impl.plugin_name, problem, error))
            continue
        if result is not None:
            results.append((impl.plugin_name, result))
    return results


def register_plugin(plugin: Any, name: str, distribution: str) -> None:
    """Register `plugin` by hand under `name`, listed as part of the installed `distribution`
    (a package's own plugin that is not an entry point: the command line's built-in sources)."""
    manager = get_plugin_manager()
    if manager.get_plugin(name) is None:
        manager.register(plugin, name=name)
        try:
            _dists[name] = (distribution, importlib_metadata.version(distribution))
        except importlib_metadata.PackageNotFoundError:
            _dists[name] = (distribution, "unknown")


def hook_results(hook_name: str) -> list[tuple[str, Any]]:
    """What each plugin's `hook_name` hook returned, as ``(plugin name, result)`` pairs, for hooks
    whose results are checked outside this module (``torchtally_sources``). A hook that raises is
    reported and skipped."""
    return _collect(get_plugin_manager(), hook_name)


def report_plugin_problem(plugin: str, problem: str) -> None:
    """Warn (`PluginWarning`, once) that `plugin` gave something unusable, naming its
    distribution; `plugin_failures` lists it and strict checks raise for it."""
    _report(_failure(plugin, problem))


def reporters() -> dict[str, Any]:
    """Every registered output format, by name: ``{name: (reporter, plugin name)}``."""
    found: dict[str, Any] = {}
    for plugin, provided in _collect(get_plugin_manager(), "torchtally_reporters"):
        try:
            items = list(provided)
        except TypeError:
            items = [provided]
        for reporter in items:
            if not isinstance(reporter, Reporter):
                _report(
                    _failure(
                        plugin,
                        f"torchtally_reporters() gave {type(reporter).__name__}, expected "
                        "torchtally.Reporter objects; it is not used",
                    )
                )
                continue
            if reporter.name in found:
                warnings.warn(
                    f"plugins {found[reporter.name][1]!r} and {plugin!r} both provide the "
                    f"output format {reporter.name!r}; using {found[reporter.name][1]!r}'s",
                    PluginWarning,
                    stacklevel=2,
                )
                continue
            found[reporter.name] = (reporter, plugin)
    return found


def hardware_devices() -> dict[str, tuple[Hardware, str]]:
    """Every known device by name: core's table first (``data/hardware.json``), then what each
    plugin's ``torchtally_hardware`` hook gives, ``{name: (hardware, plugin name)}``. A second
    device of one name is not used (a warning names both)."""
    found: dict[str, tuple[Hardware, str]] = {d.name: (d, CORE) for d in builtin_hardware()}
    for plugin, provided in _collect(get_plugin_manager(), "torchtally_hardware"):
        items = [provided] if isinstance(provided, Hardware) else provided
        try:
            items = list(items)
        except TypeError:
            items = [provided]
        for device in items:
            if not isinstance(device, Hardware):
                _report(
                    _failure(
                        plugin,
                        f"torchtally_hardware() gave {type(device).__name__}, expected "
                        "torchtally.Hardware objects; it is not used",
                    )
                )
                continue
            if device.name in found:
                warnings.warn(
                    f"plugins {found[device.name][1]!r} and {plugin!r} both provide the device "
                    f"{device.name!r}; using {found[device.name][1]!r}'s",
                    PluginWarning,
                    stacklevel=2,
                )
                continue
            found[device.name] = (device, plugin)
    return found


def list_plugins() -> list[PluginInfo]:
    """Loaded plugins, each with what it registered (handlers, ignored ops, formats, model
    sources)."""
    manager = get_plugin_manager()
    handler_sets = dict(_collect(manager, "torchtally_handlers"))
    formats: dict[str, list[str]] = {}
    for name, (_, plugin) in reporters().items():
        formats.setdefault(plugin, []).append(name)
    sources: dict[str, list[str]] = {}
    for plugin, provided in _collect(manager, "torchtally_sources"):
        items = provided if isinstance(provided, (list, tuple)) else [provided]
        sources[plugin] = [str(getattr(item, "usage", item)) for item in items]
    devices: dict[str, list[str]] = {}
    for device_name, (_, plugin) in hardware_devices().items():
        if plugin != CORE:
            devices.setdefault(plugin, []).append(device_name)
    infos = []
    for name, _plugin in sorted(manager.list_name_plugin(), key=lambda item: item[0] != CORE):
        registers: dict[str, list[str]] = {}
        handler_set = handler_sets.get(name)
        if isinstance(handler_set, HandlerSet):
            registers.update(handler_set.claims())
        if name in formats:
            registers["formats"] = sorted(formats[name])
        if sources.get(name):
            registers["sources"] = sources[name]
        if devices.get(name):
            registers["hardware"] = devices[name]
        dist, version = _dists.get(name, ("torchtally-core", __version__))
        infos.append(PluginInfo(name, dist, version, registers))
    return infos


def reset_plugins() -> None:
    """Forget loaded plugins; the next use loads them again (for tests and notebooks)."""
    global _manager, _registry
    _manager = None
    _registry = None
    _failures.clear()
    _dists.clear()
