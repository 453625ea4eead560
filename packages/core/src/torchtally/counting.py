"""Turn a `Trace` into counts: module x operator x metric, plus unsupported ops.

Attribution follows fvcore. In ``"owner"`` mode an op belongs to the innermost module running it and
to that module's parents by name; in ``"caller"`` mode it belongs to every module whose ``__call__``
was running. Either way an op counts once per module, so a shared module is never counted twice.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torchtally.handlers import (
    CountOptions,
    HandlerRegistry,
    OperatorNames,
    module_type_keys,
)
from torchtally.records import OpCall, Trace

ANCESTOR_MODES = ("owner", "caller")


class HandlerWarning(UserWarning):
    """A handler raised or returned something that is not a count."""


class HandlerError(RuntimeError):
    """Raised instead of `HandlerWarning` when counting is strict."""


@dataclass(frozen=True)
class HandlerFailure:
    metric: str
    op: str
    source: str
    error: str

    def __str__(self) -> str:
        return f"the {self.metric} handler for {self.op} from plugin {self.source!r} {self.error}"


Table = dict[str, Counter[str]]  # module -> operator -> count


@dataclass
class Counts:
    """Mutable accumulator, per phase then per metric; `Analysis` freezes it."""

    counts: dict[str, dict[str, Table]]
    unsupported: dict[str, dict[str, Table]]
    failures: list[HandlerFailure]

    def tables(self, phase: str, metric: str, modules: Iterable[str]) -> tuple[Table, Table]:
        """The count and unsupported tables of one phase and metric, made on first use."""
        counts = self.counts.setdefault(phase, {})
        if metric not in counts:
            counts[metric] = {name: Counter() for name in modules}
            self.unsupported.setdefault(phase, {})[metric] = {name: Counter() for name in modules}
        return counts[metric], self.unsupported[phase][metric]


def operator_name(call: OpCall, names: Mapping[str, OperatorNames]) -> str:
    """The by_operator key: fvcore's name for the issuing function, else the op's schema name."""
    named = names.get(call.function) if call.function is not None else None
    if isinstance(named, str):
        return named
    if named is not None and call.op in named:
        return named[call.op]
    return call.op.removeprefix("aten::")


def check_ancestor_mode(mode: str) -> str:
    if mode not in ANCESTOR_MODES:
        raise ValueError(f"ancestor_mode must be 'owner' or 'caller', got {mode!r}")
    return mode


class _Attribution:
    """Which modules an op or module call counts towards, cached per scope."""

    def __init__(self, mode: str) -> None:
        self.mode = check_ancestor_mode(mode)
        self._cache: dict[tuple[str, ...], tuple[str, ...]] = {}

    def __call__(self, scope: tuple[str, ...]) -> tuple[str, ...]:
        owners = self._cache.get(scope)
        if owners is None:
            if self.mode == "caller":
                owners = tuple(dict.fromkeys(("", *scope)))
            else:
                owners = module_ancestors(scope[-1] if scope else "")
            self._cache[scope] = owners
        return owners


def module_ancestors(name: str) -> tuple[str, ...]:
    """A module's name and every parent's name by prefix, root ("") first."""
    if not name:
        return ("",)
    parts = name.split(".")
    return ("", *(".".join(parts[: i + 1]) for i in range(len(parts))))


def count_trace(
    trace: Trace,
    registry: HandlerRegistry,
    options: CountOptions,
    metrics: Iterable[str],
    ancestor_mode: str = "owner",
    strict: bool = False,
) -> Counts:
    """Count every op of `trace` per phase, metric, module and operator."""
    metrics = list(metrics)
    attribute = _Attribution(ancestor_mode)
    result = Counts(counts={}, unsupported={}, failures=[])
    handled = _module_handled(trace, registry, metrics)
    for metric in metrics:
        result.tables("forward", metric, trace.modules)
        covered = handled.get(metric, {})
        for call in trace.ops:
            if covered and call.phase == "forward" and any(n in covered for n in call.scope):
                continue  # a module handler counts this module's forward
            counts, unsupported = result.tables(call.phase, metric, trace.modules)
            owners = attribute(call.scope)
            found = registry.lookup(metric, call.op)
            if found.ignored:
                continue
            value: dict[str, Any] | None = None
            if found.handler is not None:
                value = _run(
                    found.handler, call, options, metric, call.op, found.source, result, strict
                )
                if value is not None:
                    name = operator_name(call, registry.operator_names)
                    value = _nonzero(value, name)
            if value is None:
                _add(unsupported, owners, {call.op: 1})
                continue
            _add(counts, owners, value)
        counts, unsupported = result.tables("forward", metric, trace.modules)
        for module_call in trace.module_calls:
            entry = covered.get(module_call.name)
            if entry is None or any(n in covered for n in module_call.scope[:-1]):
                continue  # not handled, or inside another handled module
            handler, source = entry
            label = type(module_call.module).__name__
            value = _run(handler, module_call, options, metric, label, source, result, strict)
            if value is None:
                _add(unsupported, attribute(module_call.scope), {label: 1})
                continue
            _add(counts, attribute(module_call.scope), _nonzero(value, label))
    return result


def _add(table: Table, owners: tuple[str, ...], value: Mapping[str, Any]) -> None:
    for owner in owners:
        ops = table.get(owner)
        if ops is None:
            ops = table[owner] = Counter()
        for name, count in value.items():
            ops[name] += count


def _nonzero(value: Any, name: str) -> dict[str, Any]:
    """Named counts without zeros: an op that costs nothing adds no operator key (as in fvcore)."""
    named = value.items() if isinstance(value, Mapping) else [(name, value)]
    return {key: count for key, count in named if count}


def _module_handled(
    trace: Trace, registry: HandlerRegistry, metrics: list[str]
) -> dict[str, dict[str, Any]]:
    """Per metric, the modules whose calls a module handler counts (their ops are skipped)."""
    if not registry.has_module_handlers():
        return {}
    handled: dict[str, dict[str, Any]] = {}
    for module_call in trace.module_calls:
        keys = module_type_keys(module_call.module)
        for metric in metrics:
            entry = registry.module_handler(metric, keys)
            if entry is not None:
                handled.setdefault(metric, {})[module_call.name] = entry
    return handled


def _run(
    handler: Any,
    call: Any,
    options: CountOptions,
    metric: str,
    label: str,
    source: str,
    result: Counts,
    strict: bool,
) -> Any:
    """Call a handler; a count it cannot give (error, bad value) leaves the op unsupported."""
    try:
        value = handler(call, options)
    except Exception as error:
        return _fail(
            result, metric, label, source, f"raised {type(error).__name__}: {error}", strict, error
        )
    if value is NotImplemented:
        return None
    problem = _invalid(value)
    if problem:
        return _fail(result, metric, label, source, problem, strict, None)
    if isinstance(value, Mapping):
        return {name: _plain(v) for name, v in value.items()}
    return _plain(value)


def _plain(value: numbers.Real) -> int | float:
    """A Python number from any real one (numpy's, from fvcore-style handlers)."""
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _invalid(value: Any) -> str | None:
    values = value.values() if isinstance(value, Mapping) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):  # numpy scalars are Real
            return f"returned {v!r}, expected a number or a mapping of names to numbers"
        if isinstance(v, float) and not math.isfinite(v):
            return f"returned {v!r}, expected a finite number"
        if v < 0:
            return f"returned {v!r}, expected a count that is not negative"
    return None


def _fail(
    result: Counts,
    metric: str,
    label: str,
    source: str,
    problem: str,
    strict: bool,
    cause: Exception | None,
) -> None:
    failure = HandlerFailure(metric, label, source, problem)
    if strict:
        raise HandlerError(str(failure)) from cause
    if failure not in result.failures:
        result.failures.append(failure)
        warnings.warn(
            f"{failure}; {label} is reported as unsupported", HandlerWarning, stacklevel=4
        )
    return None


def uncalled_modules(trace: Trace, ancestor_mode: str) -> frozenset[str]:
    """Modules never called (fvcore: in owner mode a called module's parents count as seen)."""
    seen = set(trace.called_modules)
    if ancestor_mode == "owner":
        for name in trace.called_modules:
            seen.update(module_ancestors(name))
    return frozenset(name for name in trace.modules if name not in seen)
