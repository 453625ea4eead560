"""Handlers turn one recorded call into a count, per metric and per op name.

A `HandlerSet` is what core, a plugin or a user hands to torchtally: handlers keyed by metric and
op, ops to ignore, module handlers, and names for torch-level functions. Sets are layered by a
`HandlerRegistry` (core, then plugins, then the user's, then per-call ones, the last one winning).
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

Number = int | float
Count = Number | Mapping[str, Number]
"""A handler's result: a number, or named sub-counts such as ``{"conv": n}``. A handler returns
`NotImplemented` for a call it cannot count; the op is then reported as unsupported."""

OpHandler = Callable[..., Any]
"""``handler(call: OpCall) -> Count``, or ``handler(call, options: CountOptions) -> Count``."""

ModuleHandler = Callable[..., Any]
"""``handler(call: ModuleCall) -> Count`` or ``handler(call, options) -> Count``."""

F = TypeVar("F", bound=Callable[..., Any])

OperatorNames = str | Mapping[str, str]

ALL_METRICS = "*"
METRICS = ("flops", "activations", "bytes")
# Metrics the output formats show only when asked for (``metrics=``): the default table stays
# mmengine's (parameters, flops, activations).
ON_REQUEST_METRICS = frozenset({"bytes"})


@dataclass(frozen=True)
class CountOptions:
    """Settings a handler may read. `extra` carries plugin-specific ones (e.g. ``causal``)."""

    elementwise: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.extra.get(key, default)


# What a composite op decomposes into, for the error raised when someone registers the composite.
_DECOMPOSES_INTO = {
    "aten::linear": "aten::addmm, aten::mm or aten::bmm",
    "aten::matmul": "aten::mm or aten::bmm",
    "aten::einsum": "aten::bmm (and aten::mul for non-contracting equations)",
    "aten::conv1d": "aten::convolution",
    "aten::conv2d": "aten::convolution",
    "aten::conv3d": "aten::convolution",
    "aten::_convolution": "aten::convolution",
    "aten::conv_transpose1d": "aten::convolution",
    "aten::conv_transpose2d": "aten::convolution",
    "aten::conv_transpose3d": "aten::convolution",
    "aten::batch_norm": "aten::native_batch_norm (or aten::_native_batch_norm_legit*)",
    "aten::instance_norm": "aten::native_batch_norm",
    "aten::layer_norm": "aten::native_layer_norm",
    "aten::group_norm": "aten::native_group_norm",
    "aten::adaptive_avg_pool1d": "aten::_adaptive_avg_pool2d or aten::mean",
    "aten::adaptive_avg_pool2d": "aten::_adaptive_avg_pool2d or aten::mean",
    "aten::adaptive_avg_pool3d": "aten::_adaptive_avg_pool3d or aten::mean",
    "aten::grid_sampler": "aten::grid_sampler_2d or aten::grid_sampler_3d",
    "aten::dropout": "aten::native_dropout (training) or nothing (eval)",
    "aten::softmax": "aten::_softmax",
    "aten::log_softmax": "aten::_log_softmax",
    "aten::scaled_dot_product_attention": (
        "the backend op that ran, e.g. aten::_scaled_dot_product_flash_attention_for_cpu"
    ),
}


PYTHON_OP = "prim::PythonOp."  # a custom autograd Function's op name, as a JIT trace gives it


def autograd_function_op(function: type | str) -> str:
    """``prim::PythonOp.<class name>`` for an autograd Function class, or its name."""
    if isinstance(function, str):
        return function if function.startswith(PYTHON_OP) else PYTHON_OP + function
    if not (isinstance(function, type) and issubclass(function, torch.autograd.Function)):
        raise TypeError(f"expected a torch.autograd.Function subclass, got {function!r}")
    return PYTHON_OP + function.__name__


class CompositeOpError(ValueError):
    """A handler was registered for an op the dispatcher never sees."""


class UnknownOpError(ValueError):
    """A handler was registered for an op that its library, loaded, does not define."""


def check_op_name(op: str) -> None:
    """Refuse names that are not ``namespace::name``, ops that a loaded namespace does not
    define (a misspelling), and composite ops that decompose first."""
    if not isinstance(op, str) or "::" not in op or op.count("::") != 1:
        raise ValueError(
            f"expected an op name like 'aten::convolution' or 'mylib::my_op', got {op!r}"
        )
    _check_defined(op)
    if _is_composite(op):
        instead = _DECOMPOSES_INTO.get(op, "the ops it decomposes into")
        raise CompositeOpError(
            f"{op} is a composite op: it decomposes into other ops before torchtally's tracer "
            f"sees it, so a handler for it would never run. Register a handler for {instead} "
            "instead (torchtally.trace(model, inputs).ops lists the ops a model really runs)."
        )


@dataclass(frozen=True)
class _OpNames:
    ops: frozenset[str]  # namespace::name, without overloads
    namespaces: frozenset[str]
    modules: int  # len(sys.modules) when read: libraries define their ops when imported


_known: list[_OpNames] = []
_absent: dict[str, int] = {}  # namespace -> len(sys.modules) when it was found to have no ops


def _op_names(namespace: str) -> _OpNames:
    """Every op the dispatcher knows, read again once more modules are imported, or when
    `namespace` is missing (a library defining ops without an import: ``torch.library``)."""
    stale = not _known or _known[0].modules != len(sys.modules)
    if not stale and namespace not in _known[0].namespaces:
        stale = _absent.get(namespace) != len(sys.modules)
    if stale:
        names = {n.split(".", 1)[0] for n in torch._C._dispatch_get_all_op_names()}
        namespaces = frozenset(n.split("::")[0] for n in names)
        _known[:] = [_OpNames(frozenset(names), namespaces, len(sys.modules))]
        if namespace not in namespaces:
            _absent[namespace] = len(sys.modules)
    return _known[0]


def _check_defined(op: str) -> None:
    namespace, name = op.split("::")
    if op.startswith(PYTHON_OP):
        return  # a custom autograd Function, by class name (fvcore's spelling)
    try:
        getattr(getattr(torch.ops, namespace), name)
        return
    except (AttributeError, RuntimeError):
        pass
    known = _op_names(namespace)
    if op in known.ops or namespace not in known.namespaces:
        return  # a library not imported yet: its ops are checked when they run
    same = [n for n in known.ops if n.startswith(f"{namespace}::")]
    close = difflib.get_close_matches(op, same, n=3, cutoff=0.7)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UnknownOpError(
        f"{op} is not an op: the loaded namespace {namespace!r} defines none of that name{hint}. "
        "torchtally.trace(model, inputs).ops lists the ops a model really runs."
    )


def _is_composite(op: str) -> bool:
    namespace, name = op.split("::")
    try:
        packet = getattr(getattr(torch.ops, namespace), name)
    except (AttributeError, RuntimeError):
        return False  # not loaded (yet): a custom op from a library imported later
    if not isinstance(packet, torch._ops.OpOverloadPacket):
        return False  # a higher-order op (higher_order::flex_attention): the tracer sees it whole
    composite = []
    for overload_name in packet.overloads():
        overload = getattr(packet, overload_name)
        if any(a.is_out for a in overload._schema.arguments):
            continue  # out= variants may have kernels of their own; models call the functional
        try:
            composite.append(_decomposes_first(overload.name()))
        except RuntimeError:
            continue  # an overload only TorchScript knows
    return bool(composite) and all(composite)


# Keys whose kernel, when an op has one, runs below the tracer: the tracer then sees the op.
_KERNEL_KEYS = ("CPU", "CUDA", "MPS", "XPU", "Meta", "CompositeExplicitAutograd")


def _decomposes_first(overload: str) -> bool:
    """Only a CompositeImplicitAutograd kernel: the op decomposes above the dispatch mode.

    A build without CUDA has no CUDA kernels registered, so an op with a CUDA kernel and a
    decomposition elsewhere (``aten::_fused_rms_norm``) looks composite there. An op with an
    autograd formula of its own may be such an op, so without CUDA it is given the benefit of
    the doubt: a plugin that counts it on GPUs still loads on a CPU-only build.
    """
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    if not has(overload, "CompositeImplicitAutograd"):
        return False
    if any(has(overload, key) for key in _KERNEL_KEYS):
        return False
    return torch.backends.cuda.is_built() or not has(overload, "Autograd")


def with_options(handler: Callable[..., Any]) -> Callable[[Any, CountOptions], Any]:
    """Let handlers take ``(call)`` or ``(call, options)``; return the two-argument form."""
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return handler
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if len(positional) == 1 and positional[0].kind != positional[0].VAR_POSITIONAL:
        return lambda call, options: handler(call)
    return handler


def _module_key(module_type: type[nn.Module] | str) -> str:
    if isinstance(module_type, str):
        return module_type
    return f"{module_type.__module__}.{module_type.__qualname__}"


def module_type_keys(module: nn.Module) -> list[str]:
    """Keys under which a module handler may be registered for this module, most specific first."""
    return [_module_key(cls) for cls in type(module).__mro__ if issubclass(cls, nn.Module)]


class HandlerSet:
    """Handlers, ignored ops, module handlers and function names from one source.

    Build one with the methods below; read one with `handlers`, `ignored_ops`, `module_handlers`
    and `function_names`. Its tables are private, so that a set is always consistent (an ignored
    op has no handler for that metric).
    """

    def __init__(self) -> None:
        self._ops: dict[str, dict[str, OpHandler]] = {}
        self._ignored: dict[str, set[str]] = {}
        self._modules: dict[str, dict[str, ModuleHandler]] = {}
        self._operator_names: dict[str, OperatorNames] = {}
        self._defaults: dict[str, OpHandler] = {}

    # --- building ------------------------------------------------------------------------------

    def add(self, metric: str, op: str, handler: OpHandler | None) -> None:
        """Count `op` for `metric` with `handler`; None ignores the op for that metric."""
        if handler is None:
            self.ignore(op, metric=metric)
            return
        check_op_name(op)
        if not callable(handler):
            raise TypeError(f"the handler for {op} must be callable or None, got {handler!r}")
        self._ops.setdefault(metric, {})[op] = with_options(handler)
        self._ignored.get(metric, set()).discard(op)

    def add_ops(self, ops: str | Iterable[str], **by_metric: OpHandler | None) -> None:
        """One handler per metric for each op: ``add_ops(POOLS, flops=f, activations=g)``."""
        for op in [ops] if isinstance(ops, str) else ops:
            for metric, handler in by_metric.items():
                self.add(metric, op, handler)

    def remove(self, *ops: str, metric: str = "flops") -> None:
        """Forget this set's handlers for `ops` and `metric` (ignored ops stay ignored)."""
        for op in ops:
            self._ops.get(metric, {}).pop(op, None)

    def handler(self, *ops: str, metric: str = "flops") -> Callable[[F], F]:
        """Decorator: ``@handlers.handler("mylib::op", metric="flops")``."""

        def register(func: F) -> F:
            for op in ops:
                self.add(metric, op, func)
            return func

        return register

    def flops(self, *ops: str) -> Callable[[F], F]:
        return self.handler(*ops, metric="flops")

    def activations(self, *ops: str) -> Callable[[F], F]:
        return self.handler(*ops, metric="activations")

    def ignore(self, *ops: str, metric: str = ALL_METRICS) -> None:
        """Ops that do no arithmetic: never counted, never reported as unsupported.

        Ignoring an op drops this set's handler for it (for every metric with `ALL_METRICS`).
        """
        tables = self._ops.values() if metric == ALL_METRICS else [self._ops.get(metric, {})]
        for op in ops:
            check_op_name(op)
            self._ignored.setdefault(metric, set()).add(op)
            for table in tables:
                table.pop(op, None)

    def default(self, metric: str, handler: OpHandler | None) -> None:
        """Count `metric` with `handler` for every op that has no handler of its own for it.

        It also applies to ops ignored for every metric (those do no arithmetic, but may move
        data: core's ``bytes`` counts copies); an op ignored for `metric` itself stays ignored.
        None removes this set's default for `metric`.
        """
        if handler is None:
            self._defaults.pop(metric, None)
            return
        if not callable(handler):
            raise TypeError(f"the default {metric} handler must be callable, got {handler!r}")
        self._defaults[metric] = with_options(handler)

    def module(self, module_type: type[nn.Module] | str, metric: str = "flops") -> Callable[[F], F]:
        """Decorator for a module handler: counts a whole module call; its inner ops are skipped."""

        def register(func: F) -> F:
            self._modules.setdefault(metric, {})[_module_key(module_type)] = with_options(func)
            return func

        return register

    def function(self, function: type | str, metric: str = "flops") -> Callable[[F], F]:
        """Decorator for a custom ``torch.autograd.Function``'s handler (its class, or its name
        as fvcore spells it: ``"prim::PythonOp.MyFunction"``): each ``apply`` is counted as one
        unit, given as a `FunctionCall`, and the ops it runs are not counted again (a Function
        whose kernel bypasses the dispatcher, Triton or a C extension, is counted instead of 0).
        The same as ``add(metric, "prim::PythonOp.MyFunction", handler)``."""
        return self.handler(autograd_function_op(function), metric=metric)

    def name_functions(self, names: Mapping[str, OperatorNames]) -> None:
        """Report ops issued by torch-level function ``f`` under operator ``names[f]``.

        ``names[f]`` is one name for every op ``f`` issues, or a mapping from op to name for a
        function whose ops are of several kinds (``multi_head_attention_forward``).
        """
        self._operator_names.update(names)

    # --- reading -------------------------------------------------------------------------------

    def handlers(self) -> Iterator[tuple[str, str, OpHandler]]:
        """``(metric, op, handler)`` for every op handler (in the two-argument form)."""
        for metric, ops in self._ops.items():
            for op, handler in ops.items():
                yield metric, op, handler

    def op_handlers(self, metric: str = "flops") -> dict[str, OpHandler]:
        """The op handlers for `metric`, by op (a copy)."""
        return dict(self._ops.get(metric, {}))

    def metrics(self) -> tuple[str, ...]:
        """The metrics this set has op handlers for."""
        return tuple(self._ops)

    def ignored_ops(self) -> dict[str, frozenset[str]]:
        """The ignored ops per metric (`ALL_METRICS` for ops ignored for every metric)."""
        return {metric: frozenset(ops) for metric, ops in self._ignored.items()}

    def module_handlers(self) -> Iterator[tuple[str, str, ModuleHandler]]:
        """``(metric, module class key, handler)`` for every module handler."""
        for metric, modules in self._modules.items():
            for key, handler in modules.items():
                yield metric, key, handler

    def default_handlers(self) -> Iterator[tuple[str, OpHandler]]:
        """``(metric, handler)`` for every default handler (`default`)."""
        yield from self._defaults.items()

    def function_names(self) -> dict[str, OperatorNames]:
        """The operator names given to torch-level functions (`name_functions`)."""
        return dict(self._operator_names)

    def copy(self) -> HandlerSet:
        """An independent copy: changing one set never changes the other."""
        other = HandlerSet()
        other._ops = {metric: dict(ops) for metric, ops in self._ops.items()}
        other._ignored = {metric: set(ops) for metric, ops in self._ignored.items()}
        other._modules = {metric: dict(m) for metric, m in self._modules.items()}
        other._operator_names = dict(self._operator_names)
        other._defaults = dict(self._defaults)
        return other

    def claims(self) -> dict[str, list[str]]:
        """What this set registers, per kind, for listings."""
        return {
            **{f"{metric} handlers": sorted(ops) for metric, ops in self._ops.items()},
            **{f"{metric} module handlers": sorted(m) for metric, m in self._modules.items()},
            **{f"ignored ({metric})": sorted(ops) for metric, ops in self._ignored.items()},
            **{f"{metric} default handler": ["every other op"] for metric in self._defaults},
        }

    @classmethod
    def from_mapping(
        cls, handlers: Mapping[str, OpHandler | None], metric: str = "flops"
    ) -> HandlerSet:
        """Handlers for `metric`; an op mapped to None is ignored for every metric."""
        result = cls()
        for op, handler in handlers.items():
            if handler is None:
                result.ignore(op)
            else:
                result.add(metric, op, handler)
        return result


@dataclass(frozen=True)
class Lookup:
    """What a registry has for one metric and op: a handler and the source that registered it,
    or nothing (`UNHANDLED`: the op is reported as unsupported), or `IGNORED`."""

    handler: OpHandler | None = None
    source: str = ""
    ignored: bool = False


UNHANDLED = Lookup()
IGNORED = Lookup(ignored=True)


@dataclass(frozen=True)
class Conflict:
    metric: str
    op: str
    sources: tuple[str, ...]


class HandlerRegistry:
    """Sets layered in order; a later set overrides an earlier one for the same metric and op."""

    # Whether counting gives each custom autograd Function call with a handler to it as one unit
    # (a registry that resolves those calls itself, as fvcore's drop-in does, turns this off).
    counts_function_units: ClassVar[bool] = True

    def __init__(self, layers: Iterable[tuple[str, HandlerSet]]) -> None:
        self.layers = list(layers)
        self._ops: dict[str, dict[str, Lookup]] = {}
        self._ignored: dict[str, set[str]] = {}
        self._modules: dict[str, dict[str, tuple[ModuleHandler, str]]] = {}
        self.operator_names: dict[str, OperatorNames] = {}
        self._defaults: dict[str, Lookup] = {}
        for source, handler_set in self.layers:
            for metric, op, handler in handler_set.handlers():
                self._ops.setdefault(metric, {})[op] = Lookup(handler, source)
                self._ignored.get(metric, set()).discard(op)
            for metric, ignored in handler_set.ignored_ops().items():
                self._ignored.setdefault(metric, set()).update(ignored)
                tables = (
                    self._ops.values() if metric == ALL_METRICS else [self._ops.get(metric, {})]
                )
                for table in tables:
                    for op in ignored:
                        table.pop(op, None)
            for metric, key, module_handler in handler_set.module_handlers():
                self._modules.setdefault(metric, {})[key] = (module_handler, source)
            self.operator_names.update(handler_set.function_names())
            for metric, default in handler_set.default_handlers():
                self._defaults[metric] = Lookup(default, source)

    def with_layer(self, source: str, handler_set: HandlerSet) -> HandlerRegistry:
        return HandlerRegistry([*self.layers, (source, handler_set)])

    def lookup(self, metric: str, op: str) -> Lookup:
        """The handler for `op` and `metric` with its source, `IGNORED` or `UNHANDLED`.

        In order: the op's own handler for `metric`; ignored for `metric`; the metric's default
        handler; ignored for every metric; nothing."""
        found = self._ops.get(metric, {}).get(op)
        if found is not None:
            return found
        if op in self._ignored.get(metric, ()):
            return IGNORED
        default = self._defaults.get(metric)
        if default is not None:
            return default
        if op in self._ignored.get(ALL_METRICS, ()):
            return IGNORED
        return UNHANDLED

    def own_handler(self, metric: str, op: str) -> Lookup | None:
        """The handler registered for `op` itself (not a metric's default), if any."""
        return self._ops.get(metric, {}).get(op)

    def module_handler(self, metric: str, keys: Iterable[str]) -> tuple[ModuleHandler, str] | None:
        table = self._modules.get(metric, {})
        for key in keys:
            if key in table:
                return table[key]
        return None

    def has_module_handlers(self) -> bool:
        return any(self._modules.values())

    def has_function_handlers(self) -> bool:
        """Whether a custom autograd Function has a handler (its calls must then be recorded)."""
        return any(op.startswith(PYTHON_OP) for ops in self._ops.values() for op in ops)

    def conflicts(self, first_party: Iterable[str] = ()) -> list[Conflict]:
        """Ops that two plugins (not counting core or the user) both claim for one metric."""
        skip = set(first_party)
        claims: dict[tuple[str, str], list[str]] = {}
        for source, handler_set in self.layers:
            if source in skip:
                continue
            for metric, op, _ in handler_set.handlers():
                claims.setdefault((metric, op), []).append(source)
        return [
            Conflict(metric, op, tuple(sources))
            for (metric, op), sources in sorted(claims.items())
            if len(sources) > 1
        ]


def ignoring_only(registry: HandlerRegistry) -> HandlerRegistry:
    """The ignored ops of `registry` with none of its handlers (fvcore's ``clear_op_handles``)."""
    ignored = HandlerSet()
    for _, handler_set in registry.layers:
        for metric, ops in handler_set.ignored_ops().items():
            ignored.ignore(*ops, metric=metric)
    return HandlerRegistry([("ignored", ignored)])
