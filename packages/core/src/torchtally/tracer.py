"""Run a model once and record every op the dispatcher saw, with the module scope it ran in.

Two modes work together: a `TorchDispatchMode` records each ATen or custom op that really ran
(after composite ops decomposed), and a `TorchFunctionMode` remembers the outermost torch-level
function that issued it (``linear``, ``conv2d``), which names operators the way fvcore does.
Global module hooks keep the stack of modules whose ``__call__`` is running.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from torchtally.records import ModuleCall, ModuleInfo, OpCall, Trace, record_value
from torchtally.state import preserve_model_state

_NO_FORWARD = (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)


class TraceError(RuntimeError):
    """The model raised while torchtally was running it; the original error is chained."""


def module_tree(model: nn.Module) -> tuple[dict[int, str], dict[str, ModuleInfo]]:
    """Canonical names for every module (a shared module keeps its first name, fvcore-style).

    Returns the map from ``id(module)`` to canonical name, and one `ModuleInfo` per canonical name.
    """
    canonical: dict[int, str] = {}
    aliases: dict[str, list[str]] = {}
    modules: dict[str, nn.Module] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        first = canonical.setdefault(id(module), name)
        if first == name:
            modules[name] = module
            aliases[name] = []
        else:
            aliases[first].append(name)
    infos = {}
    for name, module in modules.items():
        children = tuple(  # every attribute, as print(model) shows them, shared ones too
            (attr, canonical[id(child)])
            for attr, child in module._modules.items()
            if child is not None
        )
        infos[name] = ModuleInfo(
            name=name,
            type_name=type(module).__name__,
            extra_repr=module.extra_repr(),
            children=children,
            aliases=tuple(aliases[name]),
            has_forward=_has_forward(module),
        )
    return canonical, infos


def _has_forward(module: nn.Module) -> bool:
    forward = type(module).forward
    return forward is not nn.Module.forward and not isinstance(module, _NO_FORWARD)


class _Schema:
    """Per-op facts cached once: names, argument names and defaults."""

    __slots__ = ("defaults", "names", "op", "overload")

    def __init__(self, func: torch._ops.OpOverload) -> None:
        schema = func._schema
        self.op = schema.name
        self.overload = func._overloadname
        self.names = [a.name for a in schema.arguments]
        self.defaults = [
            a.default_value if a.has_default_value() else None for a in schema.arguments
        ]

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        bound = {}
        for i, name in enumerate(self.names):
            value = args[i] if i < len(args) else kwargs.get(name, self.defaults[i])
            bound[name] = record_value(value)
        return bound


class _FunctionScope(TorchFunctionMode):
    """Remembers the outermost torch-level function running (nested ones are not seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        outer, self.current = self.current, getattr(func, "__name__", None)
        try:
            return func(*args, **(kwargs or {}))
        finally:
            self.current = outer


class _OpRecorder(TorchDispatchMode):
    """Records one `OpCall` per op, and saves a parameter before an op first writes to it."""

    def __init__(self, scope: _ModuleScope, functions: _FunctionScope, guard: Any) -> None:
        super().__init__()
        self.scope = scope
        self.functions = functions
        self.guard = guard
        self.ops: list[OpCall] = []
        self.failed_op: str | None = None
        self._schemas: dict[Any, _Schema] = {}
        self._writes: dict[Any, list[int]] = {}

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        schema = self._schemas.get(func)
        if schema is None:
            schema = self._schemas[func] = _Schema(func)
            self._writes[func] = [
                i
                for i, a in enumerate(func._schema.arguments)
                if a.alias_info is not None and a.alias_info.is_write
            ]
        for i in self._writes[func]:
            if i < len(args):
                self.guard.before_write(args[i])
        try:
            out = func(*args, **kwargs)
        except Exception:
            if self.failed_op is None:
                self.failed_op = f"{schema.op}.{schema.overload}"
            raise
        self.ops.append(
            OpCall(
                op=schema.op,
                overload=schema.overload,
                arguments=schema.bind(args, kwargs),
                outputs=record_value(out if isinstance(out, tuple) else (out,)),
                function=self.functions.current,
                scope=tuple(self.scope.stack),
            )
        )
        return out


class _ModuleScope:
    """Tracks which of the model's modules are inside ``__call__``, through global hooks."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names
        self.stack: list[str] = []
        self.called: set[str] = set()
        self.calls: list[ModuleCall] = []
        self.failed_scope: tuple[str, ...] | None = None
        self._pending: list[tuple[str, Any]] = []

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        name = self.names.get(id(module))
        if name is not None:
            self.stack.append(name)
            self.called.add(name)
            self._pending.append((name, record_value(args)))

    def post_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        name = self.names.get(id(module))
        if name is None or not self.stack:
            return
        if sys.exc_info()[1] is not None and self.failed_scope is None:
            self.failed_scope = tuple(self.stack)
        self.stack.pop()
        _, inputs = self._pending.pop()
        self.calls.append(
            ModuleCall(
                name=name,
                module=module,
                inputs=inputs,
                outputs=record_value(output),
                scope=(*tuple(self.stack), name),
            )
        )

    @contextmanager
    def installed(self) -> Iterator[None]:
        pre = nn.modules.module.register_module_forward_pre_hook(self.pre_hook)
        post = nn.modules.module.register_module_forward_hook(self.post_hook, always_call=True)
        try:
            yield
        finally:
            pre.remove()
            post.remove()


def run_traced(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    grad: bool = False,
) -> Trace:
    """Call ``model(*args, **kwargs)`` once under the tracer and return what it recorded.

    The model is left exactly as it was, also when the forward raises (see `preserve_model_state`).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"expected a torch.nn.Module to analyse, got {type(model).__name__}; "
            "wrap a plain function in an nn.Module whose forward calls it"
        )
    names, infos = module_tree(model)
    scope = _ModuleScope(names)
    functions = _FunctionScope()
    with ExitStack() as stack:
        guard = stack.enter_context(preserve_model_state(model))
        recorder = _OpRecorder(scope, functions, guard)
        stack.enter_context(torch.set_grad_enabled(grad))
        stack.enter_context(scope.installed())
        stack.enter_context(recorder)
        stack.enter_context(functions)
        try:
            model(*args, **kwargs)
        except Exception as error:
            raise TraceError(_failure_message(error, scope, recorder, infos)) from error
    return Trace(
        ops=tuple(recorder.ops),
        module_calls=tuple(scope.calls),
        modules=infos,
        called_modules=frozenset(scope.called),
        input_shapes=record_value((args, dict(kwargs))),
    )


def _failure_message(
    error: Exception, scope: _ModuleScope, recorder: _OpRecorder, infos: dict[str, ModuleInfo]
) -> str:
    where = scope.failed_scope or tuple(scope.stack)
    inner = where[-1] if where else ""
    module = f"module {inner or '<root>'!r} ({infos[inner].type_name})" if inner in infos else ""
    op = f"op {recorder.failed_op}" if recorder.failed_op else ""
    place = " at ".join(part for part in (module, op) if part) or "the model's forward"
    return (
        f"the model raised {type(error).__name__} in {place}: {error}\n"
        "Check that the inputs have the shapes and dtypes this model expects."
    )
