"""Turn a `Trace` into counts: module x operator x metric, plus unsupported ops.

Attribution follows fvcore. In ``"owner"`` mode an op belongs to the innermost module running it and
to that module's parents by name; in ``"caller"`` mode it belongs to every module whose ``__call__``
was running. Either way an op counts once per module, so a shared module is never counted twice.
"""

from __future__ import annotations

import difflib
import functools
import math
import numbers
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torchtally.handlers import (
    PYTHON_OP,
    CountOptions,
    HandlerRegistry,
    HandlerSet,
    Lookup,
    OperatorNames,
    module_type_keys,
)
from torchtally.records import FunctionCall, OpCall, Trace

ANCESTOR_MODES = ("owner", "caller")


class HandlerWarning(UserWarning):
    """A handler raised or returned something that is not a count."""


class UnusedHandlerWarning(UserWarning):
    """A handler the user registered never ran: no op of its name ran in the analysed model."""


def warn_unused_handlers(handlers: HandlerSet, trace: Trace, similar_only: bool = False) -> None:
    """One warning per op that `handlers` has a handler for and that never ran, naming the ops
    of similar names that did (a misspelling, or a name the dispatcher never sees, such as the
    JIT's ``aten::_convolution``). With `similar_only`, only ops with such a match are named:
    handlers registered for every analysis are for some models only."""
    ran = {call.op for call in trace.ops} | {call.name for call in trace.functions}
    unused = sorted({op for _, op, _ in handlers.handlers()} - ran)
    for op in unused:
        close = difflib.get_close_matches(op, sorted(ran), n=3, cutoff=0.7)
        if similar_only and not close:
            continue
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        if op.startswith(PYTHON_OP):  # autograd Functions are recorded for such handlers only
            hint += (
                "; a custom autograd Function's calls are recorded when analyze() has its handler"
            )
        warnings.warn(
            f"the handler registered for {op} never ran: no {op} op ran in this model{hint} "
            "(torchtally.trace(model, inputs).ops lists the ops it runs)",
            UnusedHandlerWarning,
            stacklevel=3,
        )


class HandlerError(RuntimeError):
    """Raised instead of `HandlerWarning` when counting is strict."""


@dataclass(frozen=True)
class HandlerFailure:
    """A handler that gave no count: for which metric and op (or module class), whose it is,
    what went wrong, and the exception it raised (None when it returned a bad value)."""

    metric: str
    op: str
    source: str
    error: str
    cause: BaseException | None = field(default=None, compare=False, repr=False)

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


@functools.lru_cache(maxsize=65536)
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
    runner = _HandlerRunner(options, strict, result)
    handled = _module_handled(trace, registry, metrics)
    for metric in metrics:
        result.tables("forward", metric, trace.modules)
    # An op's counts of every metric go under one operator name: the one its flop handler gives
    # (``nms`` for ``torchvision::nms``), so flops are counted first and name the others.
    names: dict[int, str] = {} if "flops" in metrics else _flop_names(trace, registry, options)
    for metric in sorted(metrics, key=lambda m: m != "flops"):
        covered = handled.get(metric, {})
        functions = _function_handled(trace, registry, metric, covered)
        for index, call in enumerate(trace.ops):
            if covered and call.phase == "forward" and any(n in covered for n in call.scope):
                continue  # a module handler counts this module's forward
            if functions and call.phase == "forward" and any(i in functions for i in call.calls):
                continue  # an autograd Function's handler counts its forward
            # the phase's tables exist even when all its ops are ignored (F.fold's gradient)
            counts, unsupported = result.tables(call.phase, metric, trace.modules)
            found = registry.lookup(metric, call.op)
            if found.ignored:
                continue
            owners = attribute(call.scope)
            value = None
            if found.handler is not None:
                value = runner.run(found.handler, call, metric, call.op, found.source)
            if value is None:
                _add(unsupported, owners, {call.op: 1})
                continue
            if isinstance(value, Mapping):
                if metric == "flops" and len(value) == 1:
                    names[index] = next(iter(value))
            elif value:
                name = names.get(index) or operator_name(call, registry.operator_names)
                value = {name: value}
            if value:  # a count of 0 adds no operator key (as in fvcore)
                _add(counts, owners, _nonzero(value, ""))
        counts, unsupported = result.tables("forward", metric, trace.modules)
        for module_call in trace.module_calls:
            entry = covered.get(module_call.name)
            if entry is None or any(n in covered for n in module_call.scope[:-1]):
                continue  # not handled, or inside another handled module
            handler, source = entry
            label = type(module_call.module).__name__
            owners = attribute(module_call.scope)
            value = runner.run(handler, module_call, metric, label, source)
            if value is None:
                _add(unsupported, owners, {label: 1})
            else:
                _add(counts, owners, _nonzero(value, label))
        for function_call, found in functions.values():
            owners = attribute(function_call.scope)
            assert found.handler is not None
            value = runner.run(
                found.handler, function_call, metric, function_call.name, found.source
            )
            if value is None:
                _add(unsupported, owners, {function_call.name: 1})
            else:
                _add(counts, owners, _nonzero(value, function_call.name.removeprefix(PYTHON_OP)))
    return result


def _function_handled(
    trace: Trace, registry: HandlerRegistry, metric: str, covered: Mapping[str, Any]
) -> dict[int, tuple[FunctionCall, Lookup]]:
    """The custom autograd Function calls a handler counts as units, by call id: the outermost
    ones, outside modules that module handlers count."""
    handled: dict[int, tuple[FunctionCall, Lookup]] = {}
    if not registry.counts_function_units:
        return handled
    for call in trace.functions:  # in the order they started: outer calls first
        if not call.name.startswith(PYTHON_OP) or any(i in handled for i in call.calls):
            continue
        if any(n in covered for n in call.scope):
            continue
        found = registry.own_handler(metric, call.name)
        if found is not None and found.handler is not None:
            handled[call.id] = (call, found)
    return handled


def per_op(
    trace: Trace,
    registry: HandlerRegistry,
    options: CountOptions,
    metric: str,
    strict: bool = False,
) -> list[dict[str, Any] | None]:
    """Each op's count of `metric` by operator name, in trace order: ``{}`` for an ignored op or
    a count of 0, None for an op no handler counted. Module handlers are not applied: this is
    per op (the roofline's view)."""
    runner = _HandlerRunner(options, strict, Counts(counts={}, unsupported={}, failures=[]))
    names = registry.operator_names
    values: list[dict[str, Any] | None] = []
    for call in trace.ops:
        found = registry.lookup(metric, call.op)
        if found.ignored:
            values.append({})
            continue
        value = None
        if found.handler is not None:
            value = runner.run(found.handler, call, metric, call.op, found.source)
        values.append(None if value is None else _nonzero(value, operator_name(call, names)))
    return values


def _flop_names(trace: Trace, registry: HandlerRegistry, options: CountOptions) -> dict[int, str]:
    """The operator names flop handlers give, by op index, when flops are not being counted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HandlerWarning)
        flops = per_op(trace, registry, options, "flops")
    return {i: next(iter(v)) for i, v in enumerate(flops) if v is not None and len(v) == 1}


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


@dataclass
class _HandlerRunner:
    """Calls handlers; a count a handler cannot give (it raised, or returned something that is
    not a count) leaves the op unsupported and is kept as a `HandlerFailure`, or raised as a
    `HandlerError` chained to the cause when counting is strict."""

    options: CountOptions
    strict: bool
    result: Counts

    def run(self, handler: Any, call: Any, metric: str, label: str, source: str) -> Any:
        """The handler's count for `call` (plain numbers), or None when it gave none."""
        try:
            value = handler(call, self.options)
        except Exception as error:
            problem = f"raised {type(error).__name__}: {error}"
            return self._fail(HandlerFailure(metric, label, source, problem, error))
        if type(value) is int and value >= 0:
            return value  # the common case, checked first
        if value is NotImplemented:
            return None
        invalid = _invalid(value)
        if invalid:
            return self._fail(HandlerFailure(metric, label, source, invalid))
        if isinstance(value, Mapping):
            return {name: _plain(v) for name, v in value.items()}
        return _plain(value)

    def _fail(self, failure: HandlerFailure) -> None:
        if self.strict:
            raise HandlerError(str(failure)) from failure.cause
        if failure not in self.result.failures:
            self.result.failures.append(failure)
            warnings.warn(
                f"{failure}; {failure.op} is reported as unsupported", HandlerWarning, stacklevel=4
            )


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


def uncalled_modules(trace: Trace, ancestor_mode: str) -> frozenset[str]:
    """Modules never called (fvcore: in owner mode a called module's parents count as seen)."""
    seen = set(trace.called_modules)
    if ancestor_mode == "owner":
        for name in trace.called_modules:
            seen.update(module_ancestors(name))
    return frozenset(name for name in trace.modules if name not in seen)
