"""fvcore's ``JitModelAnalysis`` on torchtally's tracer: fvcore-style handles keyed by JIT op names.

fvcore counts the nodes of a JIT trace. A JIT trace records some ops before they decompose
(``aten::linear``, ``aten::matmul``, ``aten::einsum``, ``aten::batch_norm``, a convolution as
``aten::_convolution``, a custom autograd Function as ``prim::PythonOp.Name``), which torchtally's
dispatcher-level tracer only sees as the ops they issue. So the trace also records the calls of
those torch-level functions (`FunctionCall`), and counting follows fvcore's rules:

- a call of a function whose JIT op has a handle counts as one unit: the handle gets the call's
  arguments in the JIT schema's order, and the ops it issued count no more (``None`` ignores it);
- fvcore's default handles stand for torchtally's own handlers, which count what the call issued
  (the same numbers where fvcore is right, and more ops: plugins, attention, ...), and keep those
  ops from handles registered for ``aten::mm`` or ``aten::addmm``, as in fvcore;
- any other op goes to the handle of its own name (``aten::_convolution`` is the dispatcher's
  ``aten::convolution``), else to torchtally's handlers (a `FlopCountAnalysis`) or nowhere (a bare
  `JitModelAnalysis`, or after ``clear_op_handles()``);
- what is left unsupported is reported in fvcore's spelling: a call whose ops are all unsupported
  as its JIT op once (``aten::softmax``), not as its parts; the ops fvcore ignores are ignored.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, ClassVar, TypeVar

from torch import nn
from torch.jit._trace import TracerWarning

from torchtally.analysis import Analysis
from torchtally.api import registry_with
from torchtally.artefacts import as_program
from torchtally.compat.jit_values import (
    JIT_TO_DISPATCHER,
    UnitCall,
    call_values,
    jit_name,
    unit_call,
)
from torchtally.handlers import (
    IGNORED,
    UNHANDLED,
    CountOptions,
    HandlerRegistry,
    Lookup,
    _is_composite,
    ignoring_only,
)
from torchtally.inputs import build_inputs
from torchtally.records import OpCall, Trace
from torchtally.tracer import run_traced

T = TypeVar("T", bound="JitModelAnalysis")
Handle = Callable[[list[Any], list[Any]], Any]

# The JIT op a call of each torch-level function is recorded as.
FUNCTION_OPS: Mapping[str, str] = {
    "linear": "aten::linear",
    "matmul": "aten::matmul",
    "__matmul__": "aten::matmul",
    "__rmatmul__": "aten::matmul",
    "einsum": "aten::einsum",
    "batch_norm": "aten::batch_norm",
    "instance_norm": "aten::instance_norm",
    "layer_norm": "aten::layer_norm",
    "group_norm": "aten::group_norm",
    "adaptive_avg_pool1d": "aten::adaptive_avg_pool1d",
    "adaptive_avg_pool2d": "aten::adaptive_avg_pool2d",
    "adaptive_avg_pool3d": "aten::adaptive_avg_pool3d",
    "adaptive_max_pool1d": "aten::adaptive_max_pool1d",
    "adaptive_max_pool2d": "aten::adaptive_max_pool2d",
    "adaptive_max_pool3d": "aten::adaptive_max_pool3d",
    "max_pool1d": "aten::max_pool1d",
    "max_pool2d": "aten::max_pool2d",
    "max_pool3d": "aten::max_pool3d",
    "grid_sample": "aten::grid_sampler",
    "softmax": "aten::softmax",
    "log_softmax": "aten::log_softmax",
    "dropout": "aten::dropout",
    "scaled_dot_product_attention": "aten::scaled_dot_product_attention",
}

# The ops fvcore never reports as unsupported (shape, copy and integer ops, and a few it chose
# to ignore: relu, clamp, max, comparisons). torchtally counts them only with elementwise=True.
FVCORE_IGNORED_OPS = frozenset(
    "aten::" + name
    for name in (
        "Int",
        "ScalarImplicit",
        "__and__",
        "arange",
        "bitwise_not",
        "cat",
        "chunk",
        "clamp",
        "clamp_",
        "constant_pad_nd",
        "contiguous",
        "copy_",
        "detach",
        "dropout",
        "empty",
        "eq",
        "expand",
        "flatten",
        "floor",
        "floor_divide",
        "full",
        "full_like",
        "gather",
        "ge",
        "gt",
        "index",
        "index_put_",
        "masked_fill",
        "max",
        "narrow",
        "new_empty",
        "new_full",
        "new_zeros",
        "nonzero",
        "ones",
        "permute",
        "relu",
        "relu_",
        "remainder",
        "reshape",
        "roll",
        "select",
        "size",
        "slice",
        "split",
        "split_with_sizes",
        "squeeze",
        "stack",
        "t",
        "to",
        "transpose",
        "type_as",
        "unbind",
        "unsqueeze",
        "unsqueeze_",
        "view",
        "zeros",
        "zeros_like",
    )
)

# Default handles that stand for torchtally's own handlers: (JIT op, handle) -> metric.
_NATIVE: dict[tuple[str, int], str] = {}


def native_defaults(metric: str, handles: Mapping[str, Handle]) -> dict[str, Handle]:
    """Mark `handles` as the peers' defaults for `metric`: registered under these names they
    count with torchtally's handlers for `metric` (see the module docstring). Returns a copy."""
    for op, handle in handles.items():
        _NATIVE[(op, id(handle))] = metric
    return dict(handles)


class CompatWarning(UserWarning):
    """Something fvcore or mmengine does that cannot apply under torchtally's tracer."""


# JIT graph nodes that never reach a dispatcher-level tracer, and what to do instead.
_JIT_ONLY = {
    "prim::CallFunction": (
        "a scripted function runs its ops through the dispatcher, where torchtally counts them: "
        "register handles for those ops (aten::mm, aten::mul, ...)"
    ),
    "prim::CallMethod": (
        "a scripted method runs its ops through the dispatcher, where torchtally counts them: "
        "register handles for those ops"
    ),
}
_SHAPE_ARITHMETIC = frozenset(
    {"aten::size", "aten::Int", "aten::ScalarImplicit", "aten::numel", "aten::dim", "aten::len"}
)


def check_jit_only(name: str) -> None:
    """Warn (`CompatWarning`) about a handle for a JIT node torchtally's tracer never sees."""
    if name in _JIT_ONLY:
        advice = _JIT_ONLY[name]
    elif name in _SHAPE_ARITHMETIC:
        advice = "shapes are Python ints under torchtally's tracer, so no op computes them"
    elif name.startswith("prim::") and not name.startswith("prim::PythonOp."):
        advice = "prim:: nodes are JIT graph plumbing (lists, constants, attributes)"
    else:
        return
    warnings.warn(
        f"a handle for {name} never runs: {name} is a node of JIT graphs, and torchtally traces "
        f"at the dispatcher, not with torch.jit.trace; {advice}",
        CompatWarning,
        stacklevel=3,
    )


def unit_op(function: str) -> str:
    """The JIT op a call of torch-level `function` is recorded as (``grid_sample`` ->
    ``aten::grid_sampler``); a custom autograd Function's name is already one."""
    if function.startswith("prim::"):
        return function
    return FUNCTION_OPS.get(function, f"aten::{function}")


@cache
def _decomposes(op: str) -> bool:
    return op.startswith("aten::") and op not in JIT_TO_DISPATCHER and _is_composite(op)


def fvcore_spelling(op: str) -> str:
    """The name fvcore reports an op under (``aten::convolution`` -> ``aten::_convolution``)."""
    return jit_name(op)


def _short(op: str) -> str:
    """fvcore's operator key for a handle's plain number: the op name without its namespace."""
    return op.partition("::")[2] or op


# --- counting -------------------------------------------------------------------------------

COMPAT = "torchtally.compat"  # the source handler failures are reported under


@dataclass(frozen=True)
class CompatTable:
    """How one metric counts: fvcore-style `handles` (JIT op -> handle, None ignores) over a
    `base` registry (torchtally's handlers, or only its ignored ops); `native` is the full
    registry that the peers' default handles stand for."""

    metric: str
    handles: Mapping[str, Handle | None]
    base: HandlerRegistry
    native: HandlerRegistry

    def native_metric(self, op: str) -> str | None:
        """The metric of torchtally's handlers that the handle registered for `op` stands for,
        or None when it is a handle of its own."""
        handle = self.handles.get(op)
        return None if handle is None else _NATIVE.get((op, id(handle)))


_HANDLED, _UNIT_IGNORED, _UNIT_UNSUPPORTED, _NATIVE_UNIT, _INNER = range(5)


class _Resolver:
    """Decides, call by call, what counts one metric's ops on one trace (module docstring).

    Whether a function call without a handle is reported as its JIT op depends on what its ops
    give (an element-wise handler counts only with ``elementwise=True``), so the calls are
    decided on the first count, with the options counting uses."""

    def __init__(self, table: CompatTable, trace: Trace) -> None:
        self.table = table
        self.trace = trace
        self.wrappers: dict[str, Callable[..., Any]] = {}
        self.states: dict[int, int] | None = None
        self.unit_ops: dict[int, str] = {}

    def _decide(self, options: CountOptions) -> dict[int, int]:
        units = [call for call in self.trace.ops if isinstance(call, UnitCall)]
        self.unit_ops = {unit.unit: unit.op for unit in units}
        inner: dict[int, list[OpCall]] = {}
        for call in self.trace.ops:
            if not isinstance(call, UnitCall):
                for unit_id in call.calls:
                    inner.setdefault(unit_id, []).append(call)
        states: dict[int, int] = {}
        for unit in units:  # in call order: an enclosing call is decided first
            if any(states.get(u, _INNER) != _INNER for u in unit.calls):
                states[unit.unit] = _INNER
                continue
            state = self._unit_state(unit, inner.get(unit.unit, []), options)
            if state is not None:
                states[unit.unit] = state
        return states

    def _unit_state(self, unit: UnitCall, ops: list[OpCall], options: CountOptions) -> int | None:
        table = self.table
        if unit.op in table.handles:
            if table.handles[unit.op] is None:
                return _UNIT_IGNORED
            return _NATIVE_UNIT if table.native_metric(unit.op) else _HANDLED
        # No handle: fvcore would report the call itself as unsupported, once. Do so when
        # nothing it issued counts, and something it issued would be reported.
        results = [self._result(self.op_level(call, True), call, options) for call in ops]
        if not any(r is NotImplemented for r in results) or any(map(_counts, results)):
            return None
        return _UNIT_IGNORED if unit.op in FVCORE_IGNORED_OPS else _UNIT_UNSUPPORTED

    @staticmethod
    def _result(found: Lookup, call: OpCall, options: CountOptions) -> Any:
        """What counting `call` with `found` gives: a count, 0 (ignored) or NotImplemented."""
        if found.ignored:
            return 0
        if found.handler is None:
            return NotImplemented
        try:
            return found.handler(call, options)
        except Exception:
            return NotImplemented  # reported when counting runs it

    def count(self, call: OpCall, options: CountOptions) -> Any:
        """The count of `call`: a number or mapping, 0 when ignored, NotImplemented when no
        handle or handler counts it (an op fvcore ignores is then ignored)."""
        if self.states is None:
            self.states = self._decide(options)
        found = self.resolve(call)
        if found.ignored:
            return 0
        if found.handler is None:
            return 0 if self._ignorable(call) else NotImplemented
        result = found.handler(call, options)
        return 0 if result is NotImplemented and self._ignorable(call) else result

    @staticmethod
    def _ignorable(call: OpCall) -> bool:
        return not isinstance(call, UnitCall) and jit_name(call.op) in FVCORE_IGNORED_OPS

    def resolve(self, call: OpCall) -> Lookup:
        states = self.states or {}
        if isinstance(call, UnitCall):
            state = states.get(call.unit)
            if state == _HANDLED:
                return Lookup(self._wrapper(call.op), COMPAT)
            return UNHANDLED if state == _UNIT_UNSUPPORTED else IGNORED
        for unit in call.calls:  # outermost first
            state = states.get(unit, _INNER)
            if state == _NATIVE_UNIT:
                return self._native(self.unit_ops[unit], call.op)
            if state != _INNER:
                return IGNORED  # counted (or ignored, or reported) as the unit
        inside = any(not self.unit_ops[unit].startswith("prim::") for unit in call.calls)
        return self.op_level(call, inside)

    def op_level(self, call: OpCall, inside_composite: bool = False) -> Lookup:
        """What counts `call` by its own name: its handle, else the base registry. Inside a
        composite op's call handles do not apply: a JIT trace shows only the composite op there
        (a handle for ``aten::mm`` does not see the one ``matmul`` runs)."""
        table = self.table
        name = jit_name(call.op)
        if name not in table.handles or inside_composite:
            return table.base.lookup(table.metric, call.op)
        if table.handles[name] is None:
            return IGNORED
        if table.native_metric(name) is not None:
            return self._native(name, call.op)
        return Lookup(self._wrapper(name), COMPAT)

    def _native(self, jit_op: str, op: str) -> Lookup:
        metric = self.table.native_metric(jit_op) or self.table.metric
        return self.table.native.lookup(metric, op)

    def _wrapper(self, name: str) -> Callable[..., Any]:
        wrapper = self.wrappers.get(name)
        if wrapper is None:
            wrapper = self.wrappers[name] = _jit_handler(name, self.table.handles[name])
        return wrapper


def _counts(result: Any) -> bool:
    """Whether a handler's result counts something (not 0, not NotImplemented)."""
    if result is NotImplemented:
        return False
    values = result.values() if isinstance(result, Mapping) else [result]
    return any(values)


def _jit_handler(name: str, handle: Any) -> Callable[[OpCall, CountOptions], Any]:
    """A torchtally handler running fvcore-style `handle` on JIT-like values of the call."""

    def run(call: OpCall, options: CountOptions) -> Any:
        inputs, outputs = call_values(call)
        value = handle(inputs, outputs)
        return dict(value) if isinstance(value, Mapping) else {_short(name): value}

    return run


class CompatRegistry(HandlerRegistry):
    """A registry resolving each call of `trace` by its metric's `CompatTable`."""

    counts_function_units = False  # the unit calls in the trace stand for autograd Functions

    def __init__(self, tables: Mapping[str, CompatTable], trace: Trace) -> None:
        first = next(iter(tables.values()))
        super().__init__(first.base.layers)
        self.operator_names = dict(first.native.operator_names)
        self.tables = dict(tables)
        self.trace = trace
        self._resolvers: dict[str, _Resolver] = {}
        self._dispatchers: dict[str, Lookup] = {}

    def resolver(self, metric: str) -> _Resolver:
        resolver = self._resolvers.get(metric)
        if resolver is None:
            resolver = self._resolvers[metric] = _Resolver(self.tables[metric], self.trace)
        return resolver

    def lookup(self, metric: str, op: str) -> Lookup:
        if metric not in self.tables:
            return super().lookup(metric, op)
        found = self._dispatchers.get(metric)
        if found is None:
            found = self._dispatchers[metric] = Lookup(self.resolver(metric).count, COMPAT)
        return found

    def module_handler(self, metric: str, keys: Iterable[str]) -> Any:
        table = self.tables.get(metric)
        if table is None:
            return super().module_handler(metric, keys)
        return table.base.module_handler(metric, keys)

    def has_module_handlers(self) -> bool:
        return any(t.base.has_module_handlers() for t in self.tables.values())

    def with_layer(self, source: str, handler_set: Any) -> HandlerRegistry:
        tables = {
            key: replace(table, base=table.base.with_layer(source, handler_set))
            for key, table in self.tables.items()
        }
        return CompatRegistry(tables, self.trace)


def with_units(trace: Trace) -> Trace:
    """`trace` with a `UnitCall` before the ops of each watched function call."""
    units: dict[int, list[UnitCall]] = {}
    for call in trace.functions:
        kind = unit_op(call.name)
        units.setdefault(call.position, []).append(unit_call(call, kind))
    if not units:
        return trace
    ops: list[OpCall] = []
    for position in range(len(trace.ops) + 1):
        ops.extend(units.get(position, ()))
        if position < len(trace.ops):
            ops.append(trace.ops[position])
    return replace(trace, ops=tuple(ops))


# --- the analysis -----------------------------------------------------------------------------

_UNCALLED_WARNING = (
    "The following submodules of the model were never called during the trace of the graph. "
    "They may be unused, or they were accessed by direct calls to .forward() or via other "
    "python methods. In the latter case they will have zeros for statistics, though their "
    "statistics will still contribute to their parent calling module.\n"
)
_TRACER_WARNING_MODES = ("all", "no_tracer_warning", "none")


@dataclass
class _Traced:
    """A run of the model and what it was watched for."""

    trace: Trace
    watch: frozenset[str]
    units: Trace = field(repr=False)


class JitModelAnalysis:
    """fvcore's ``JitModelAnalysis``: a statistic per module and operator, computed by handles.

    ``handle(inputs, outputs)`` gets JIT-like values (see `torchtally.compat.jit_values`) and
    returns a number (reported under the op's name without ``aten::``) or a Counter of numbers
    by name. Handles are keyed by JIT op names: ``aten::linear``, ``aten::_convolution``,
    ``prim::PythonOp.MyFunction``, ``aten::mm``... A bare `JitModelAnalysis` counts only what
    its handles count; subclass it (or `FlopCountAnalysis`) and call `set_op_handle` for a
    statistic of your own. The model runs once, when a result is first asked for; changing
    handles recounts without running it again.

    Extra keyword arguments (torchtally's): `elementwise` counts element-wise ops with
    torchtally's handlers (in a `FlopCountAnalysis`); `mode` runs the model ``"real"`` (as fvcore
    does, the default), or on ``"fake"`` tensors, or ``"meta"`` for a model on the meta device.
    """

    _metric: ClassVar[str] = "statistic"
    _native_counting: ClassVar[bool] = False  # torchtally's handlers under the handles
    _logger_name: ClassVar[str] = "torchtally.compat.fvcore"

    def __init__(
        self,
        model: nn.Module,
        inputs: Any,
        *,
        elementwise: bool = False,
        mode: str = "real",
    ) -> None:
        if mode not in ("real", "fake", "meta"):
            raise ValueError(f"mode must be 'real', 'fake' or 'meta', got {mode!r}")
        self._model = model
        self._inputs = inputs
        self._elementwise = elementwise
        self._mode = mode
        self._handles: dict[str, Handle | None] = {}
        self._cleared = not self._native_counting
        self._traced: _Traced | None = None
        self._analysis: Analysis | None = None
        self.unsupported_ops_warnings(True)
        self.uncalled_modules_warnings(True)
        self.tracer_warnings("no_tracer_warning")
        self.ancestor_mode("owner")

    # --- results --------------------------------------------------------------------------

    def total(self, module_name: str = "") -> int:
        """The statistic of a module (the whole model by default), over every operator."""
        return self._analyze().total(self._metric, module_name)

    def by_operator(self, module_name: str = "") -> Counter[str]:
        """The statistic of a module per operator name (``conv``, ``linear``, ...)."""
        return Counter(self._analyze().by_operator(self._metric, module_name))

    def by_module(self) -> Counter[str]:
        """The statistic of every module, zeros included."""
        return Counter(self._analyze().by_module(self._metric))

    def by_module_and_operator(self) -> dict[str, Counter[str]]:
        """The statistic of every module per operator."""
        table = self._analyze().by_module_and_operator(self._metric)
        return {name: Counter(ops) for name, ops in table.items()}

    def unsupported_ops(self, module_name: str = "") -> Counter[str]:
        """How often each op without a handle ran in a module (ignored ops are not listed).
        Unlike fvcore, this runs the analysis if it has not run yet."""
        ops = self._analyze().unsupported_ops(self._metric, module_name)
        return Counter({fvcore_spelling(op): n for op, n in ops.items()})

    def uncalled_modules(self) -> set[str]:
        """Modules whose ``__call__`` never ran: unused, or run through ``.forward()``."""
        return set(self._analyze().uncalled_modules)

    def canonical_module_name(self, name: str) -> str:
        """The name results use for module `name` (a shared module's first name)."""
        if not isinstance(name, str):
            raise TypeError(f"module names are strings such as 'layer1.0', got {name!r}")
        return self._analyze().canonical_module_name(name)

    @property
    def analysis(self) -> Analysis:
        """The underlying torchtally `Analysis` (``.render("table")``, ``.to_dict()``...)."""
        return self._analyze()

    # --- settings (each returns self) -----------------------------------------------------

    def set_op_handle(self: T, *args: Any, **kwargs: Handle | None) -> T:
        """Add or replace handles: ``set_op_handle("aten::linear", h, "aten::bmm", None)`` or
        ``set_op_handle(**{"aten::linear": h})``. None ignores the op (unlike fvcore, also one
        that has a handle, such as ``aten::batch_norm``)."""
        if len(args) % 2:
            raise TypeError("set_op_handle should be called with pairs of names and handles!")
        pairs = {**dict(zip(args[::2], args[1::2], strict=True)), **kwargs}
        for name, handle in pairs.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"op names are strings such as 'aten::linear', got {name!r}")
            if handle is not None and not callable(handle):
                raise TypeError(
                    f"the handle for {name} must be a function handle(inputs, outputs) or None, "
                    f"got {handle!r}"
                )
            if handle is not None:
                check_jit_only(name)
            self._handles[name] = handle
        self._analysis = None
        return self

    def clear_op_handles(self: T) -> T:
        """Drop every handle, the default ones and torchtally's own handlers too: only the ops
        fvcore and torchtally ignore stay ignored."""
        self._handles = {}
        self._cleared = True
        self._analysis = None
        return self

    def ancestor_mode(self: T, mode: str) -> T:
        """``"owner"``: an op counts in the innermost module running it and that module's
        parents by name; ``"caller"``: in every module whose ``__call__`` was running."""
        if mode not in ("owner", "caller"):
            raise ValueError(f"Unrecognized ancestor mode: {mode}")
        self._ancestor_mode = mode
        self._analysis = None
        return self

    def unsupported_ops_warnings(self: T, enabled: bool) -> T:
        """Whether unsupported ops are logged (`unsupported_ops` lists them regardless)."""
        self._enable_warn_unsupported_ops = enabled
        return self

    def uncalled_modules_warnings(self: T, enabled: bool) -> T:
        """Whether uncalled modules are logged (`uncalled_modules` lists them regardless)."""
        self._enable_warn_uncalled_mods = enabled
        return self

    def tracer_warnings(self: T, mode: str) -> T:
        """Which warnings the model's run may raise: ``"all"``, ``"no_tracer_warning"`` (all
        but ``torch.jit.TracerWarning``, the default) or ``"none"``. torchtally's tracer raises
        no TracerWarning of its own: it does not use ``torch.jit.trace``."""
        if mode not in _TRACER_WARNING_MODES:
            raise ValueError(f"Unrecognized tracer warning mode {mode}.")
        self._warn_trace = mode
        return self

    def copy(self: T, new_model: nn.Module | None = None, new_inputs: Any = None) -> T:
        """The same handles and settings, on another model or other inputs (same class)."""
        other: T = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._model = self._model if new_model is None else new_model
        other._inputs = self._inputs if new_inputs is None else new_inputs
        other._handles = dict(self._handles)
        other._traced = None
        other._analysis = None
        return other

    # --- fvcore's attribute names ---------------------------------------------------------

    @property
    def _op_handles(self) -> dict[str, Handle]:
        return {name: h for name, h in self._handles.items() if h is not None}

    @property
    def _ignored_ops(self) -> set[str]:
        return set(FVCORE_IGNORED_OPS) | {n for n, h in self._handles.items() if h is None}

    @property
    def _stats(self) -> Analysis | None:
        return self._analysis

    @_stats.setter
    def _stats(self, value: None) -> None:
        """``analyzer._stats = None`` makes the next result run the model again, as in fvcore."""
        if value is not None:
            raise ValueError("only None can be assigned to _stats (it forgets the results)")
        self._analysis = None
        self._traced = None

    # --- internals ------------------------------------------------------------------------

    def _table(self) -> CompatTable:
        native = registry_with(None)
        base = ignoring_only(native) if self._cleared else native
        return CompatTable(self._metric, dict(self._handles), base, native)

    def _watch(self) -> frozenset[str]:
        """The torch-level functions to record: those of fvcore's composite ops, and any
        composite op a handle is registered for (``aten::X`` is function ``X``)."""
        extra = {name.partition("::")[2] for name in self._handles if _decomposes(name)}
        return frozenset(FUNCTION_OPS) | extra

    def _ensure_traced(self, watch: frozenset[str] = frozenset()) -> _Traced:
        watch = watch | self._watch()
        if self._traced is None or not watch <= self._traced.watch:
            module, runner, *_ = as_program(self._model)  # artefacts, torch.compile's wrapper
            args, kwargs = build_inputs(module, self._inputs)
            with warnings.catch_warnings():
                if self._warn_trace == "none":
                    warnings.simplefilter("ignore")
                elif self._warn_trace == "no_tracer_warning":
                    warnings.filterwarnings("ignore", category=TracerWarning)
                trace = run_traced(
                    module,
                    args,
                    kwargs,
                    mode=self._mode,
                    watch=watch,
                    autograd_functions=True,
                    runner=runner,
                )
            self._traced = _Traced(trace, watch, with_units(trace))
            self._analysis = None
        return self._traced

    def _analyze(self) -> Analysis:
        if self._analysis is not None:
            return self._analysis
        traced = self._ensure_traced()
        self._analysis = analysis = compat_analysis(
            traced.units, {self._metric: self._table()}, self._elementwise, self._ancestor_mode
        )
        if self._enable_warn_unsupported_ops:
            for op, times in self.unsupported_ops().items():
                self._log_warning(f"Unsupported operator {op} encountered {times} time(s)")
        if self._enable_warn_uncalled_mods:
            uncalled = sorted(
                name
                for name in analysis.uncalled_modules
                if analysis.modules[name].has_forward and name
            )
            if uncalled:
                self._log_warning(_UNCALLED_WARNING + ", ".join(uncalled))
        return analysis

    def _log_warning(self, message: str) -> None:
        logging.getLogger(self._logger_name).warning(message)


class DefaultHandlesAnalysis(JitModelAnalysis):
    """A `JitModelAnalysis` over torchtally's handlers that starts with a peer's default handles
    (`_defaults`): fvcore's `FlopCountAnalysis` and `ActivationCountAnalysis`, mmengine's
    analyzers."""

    _native_counting = True

    def __init__(self, model: nn.Module, inputs: Any, **options: Any) -> None:
        super().__init__(model, inputs, **options)
        self.set_op_handle(**self._defaults())

    @staticmethod
    def _defaults() -> dict[str, Handle]:
        """The default handles, read when an analyzer is made (changes to the map apply)."""
        return {}


def compat_analysis(
    trace: Trace,
    tables: Mapping[str, CompatTable],
    elementwise: bool,
    ancestor_mode: str,
) -> Analysis:
    """An `Analysis` of `trace` (with its `UnitCall`s) counting each metric by its table."""
    return Analysis(
        trace=trace,
        registry=CompatRegistry(tables, trace),
        options=CountOptions(elementwise=elementwise),
        ancestor_mode=ancestor_mode,
        metrics=tuple(tables),
    )
