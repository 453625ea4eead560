"""Run a model once and record every op the dispatcher saw, with the module scope it ran in.

Two modes work together: a `TorchDispatchMode` records each ATen or custom op that really ran
(after composite ops decomposed), and a `TorchFunctionMode` remembers the outermost torch-level
function that issued it (``linear``, ``conv2d``), which names operators the way fvcore does.
Global module hooks keep the stack of modules whose ``__call__`` is running. In fake and meta
mode the recorder runs each op through `torchtally.fake.FakeOutputs`.
"""

from __future__ import annotations

import gc
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from functools import partial
from itertools import count
from typing import Any, NamedTuple

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily
from torch.autograd.function import BackwardCFunction, Function
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from torchtally.fake import (
    NEEDS_REAL_DATA,
    FailedCall,
    FakeOutputs,
    FakeUnsupportedError,
    fake_model,
    rejected_inputs,
)
from torchtally.inputs import has_forward
from torchtally.memory import StorageTracker
from torchtally.params import parameter_shapes
from torchtally.process import (
    ModeStacks,
    Session,
    deferred_signals,
    preserved_process,
    suspended_global_hooks,
)
from torchtally.records import (
    FunctionCall,
    ModuleCall,
    ModuleInfo,
    OpCall,
    Trace,
    iter_tensors,
    record_value,
    tensor_meta,
)
from torchtally.state import preserve_model_state, stand_ins

_get_sequence_nr = torch._C._autograd._get_sequence_nr
# Batch norm kernels that update running_mean and running_var in training without declaring it.
_UNDECLARED_STATS_WRITERS = frozenset(
    {"aten::native_batch_norm", "aten::cudnn_batch_norm", "aten::miopen_batch_norm"}
)
# Ops that may reallocate their first argument's storage: the guard moves a tensor over the
# model's storage onto a copy first. set_ rebinds without writing (the guard binds back).
_RESIZERS = frozenset({"aten::resize_", "aten::resize_as_", "aten::_resize_output_"})
_REBINDERS = frozenset({"aten::set_"})
_DisableTorchFunction = torch._C.DisableTorchFunction


class TraceError(RuntimeError):
    """The model raised while torchtally was running it; the original error is chained."""

    def __init__(
        self, message: str, failed_op: str | None = None, failed_call: FailedCall | None = None
    ) -> None:
        super().__init__(message)
        self.failed_op = failed_op
        self.failed_call = failed_call  # the op's arguments, when it raised on fake tensors


class ModuleTree:
    """The model's modules under canonical names (a shared module keeps its first name, as in
    fvcore), read once before a run, so that what the run adds or removes does not count."""

    def __init__(self, model: nn.Module) -> None:
        self.canonical: dict[int, str] = {}  # id(module) -> canonical name
        self.aliases: dict[str, list[str]] = {}
        self.modules: dict[str, nn.Module] = {}
        for name, module in model.named_modules(remove_duplicate=False):
            first = self.canonical.setdefault(id(module), name)
            if first == name:
                self.modules[name] = module
                self.aliases[name] = []
            else:
                self.aliases[first].append(name)
        self.children = {
            name: tuple(  # every attribute, as print(model) shows them, shared ones too
                (attr, self.canonical[id(child)])
                for attr, child in module._modules.items()
                if child is not None
            )
            for name, module in self.modules.items()
        }

    def infos(self) -> dict[str, ModuleInfo]:
        """One `ModuleInfo` per canonical name, with each module's type and ``extra_repr`` as
        they are now (after a run, a lazy module's are those of what it became)."""
        return {
            name: ModuleInfo(
                name=name,
                type_name=_type_name(module),
                extra_repr=read_extra_repr(module),
                children=self.children[name],
                aliases=tuple(self.aliases[name]),
                has_forward=has_forward(module),
            )
            for name, module in self.modules.items()
        }


def _type_name(module: nn.Module) -> str:
    """The module's class name; a TorchScript module's is the class it was compiled from."""
    if isinstance(module, torch.jit.ScriptModule):
        return str(getattr(module, "original_name", type(module).__name__))
    return type(module).__name__


def read_extra_repr(module: nn.Module) -> str:
    """The module's description; read outside the run, and "" when reading it raises."""
    # TorchScript keeps no repr of its own: its extra_repr is "original_name=Conv2d"
    if isinstance(module, torch.jit.ScriptModule):
        return ""
    try:
        with torch.no_grad():
            return str(module.extra_repr())
    except Exception:  # a description that cannot be read is no reason to fail the analysis
        return ""


def module_tree(model: nn.Module) -> tuple[dict[int, str], dict[str, ModuleInfo]]:
    """The map from ``id(module)`` to canonical name, and one `ModuleInfo` per canonical name."""
    tree = ModuleTree(model)
    return tree.canonical, tree.infos()


class _Schema:
    """Per-op facts cached once: names, argument names and defaults."""

    __slots__ = ("defaults", "fresh", "names", "op", "overload", "resizes", "stats", "writes")

    def __init__(self, func: Any) -> None:
        self.stats: tuple[int, ...] = ()
        self.resizes = False
        self.fresh = True  # may return new storage (not only views and written arguments)
        if isinstance(func, torch._ops.HigherOrderOperator):
            self._init_higher_order(func)
            return
        schema = func._schema
        self.op = schema.name
        self.overload = func._overloadname
        self.names = [a.name for a in schema.arguments]
        self.defaults = [
            a.default_value if a.has_default_value() else None for a in schema.arguments
        ]
        self.writes = [
            i
            for i, a in enumerate(schema.arguments)
            if a.alias_info is not None and a.alias_info.is_write
        ]
        self.resizes = self.op in _RESIZERS
        if self.op in _REBINDERS:
            self.writes = []
        if self.op in _UNDECLARED_STATS_WRITERS:
            self.stats = tuple(map(self.names.index, ("training", "running_mean", "running_var")))
        self.fresh = any(r.alias_info is None for r in schema.returns)

    def written(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[Any]:
        """The arguments this call writes: those its schema declares, and batch norm's running
        statistics in training, which its schema does not."""
        written = [self._value(i, args, kwargs) for i in self.writes]
        if self.stats and self._value(self.stats[0], args, kwargs):
            written += [self._value(i, args, kwargs) for i in self.stats[1:]]
        return written

    def _value(self, i: int, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        return args[i] if i < len(args) else kwargs.get(self.names[i], self.defaults[i])

    def _init_higher_order(self, func: torch._ops.HigherOrderOperator) -> None:
        """A higher-order op (flex attention) has no schema: ``__call__`` names its arguments."""
        self.op = f"higher_order::{func.name()}"
        self.overload = "default"
        parameters = list(inspect.signature(type(func).__call__).parameters.values())[1:]
        parameters = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
        self.names = [p.name for p in parameters]
        self.defaults = [None if p.default is p.empty else p.default for p in parameters]
        self.writes = []

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        bound = {name: record_value(value) for name, value in zip(self.names, args, strict=False)}
        for i in range(len(bound), len(self.names)):  # keyword arguments, then defaults
            name = self.names[i]
            bound[name] = record_value(kwargs.get(name, self.defaults[i]))
        return bound


class _FunctionScope(TorchFunctionMode):
    """Remembers the outermost torch-level function running (nested ones are not seen), and
    records a `FunctionCall` for each call of a function named in `watch` (and of custom
    autograd Functions, see `_watching_autograd_functions`)."""

    def __init__(self, watch: frozenset[str] = frozenset(), modules: _ModuleScope | None = None):
        super().__init__()
        self.current: str | None = None
        self.pinned: str | None = None  # set by a graph runner: the function its node came from
        self.watch = watch
        self.modules = modules
        self.calls: tuple[int, ...] = ()  # the watched calls running, outermost first
        self.recorded: list[FunctionCall] = []
        self.ops: list[OpCall] = []  # the recorder's, for positions
        self._ids = count()
        self._signatures: dict[Any, inspect.Signature | None] = {}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        name = getattr(func, "__name__", None)
        if isinstance(func, torch._ops.OpOverload):  # torch.ops.aten.linear.default: "linear"
            outer, self.current = self.current, self.pinned or func.overloadpacket.__name__
        else:
            outer, self.current = self.current, self.pinned or name
        try:
            if name in self.watch:
                return self.watched(str(name), func, args, kwargs or {}, self._signature(func))
            return func(*args, **(kwargs or {}))
        finally:
            self.current = outer

    def watched(
        self,
        name: str,
        run: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        signature: inspect.Signature | None = None,
    ) -> Any:
        """Run ``run(*args, **kwargs)`` as the watched call `name`, and record it (its arguments
        by parameter name when it has a `signature`)."""
        call_id, position, outer = next(self._ids), len(self.ops), self.calls
        with _DisableTorchFunction():  # our own .shape reads: not the model's functions
            given, named = record_value(_bound(signature, args, kwargs))
        self.calls = (*outer, call_id)
        try:
            out = run(*args, **kwargs)
        finally:
            self.calls = outer
        with _DisableTorchFunction():
            outputs = record_value(out if isinstance(out, tuple) else (out,))
        scope = self.modules.stack if self.modules is not None else ()
        self.recorded.append(
            FunctionCall(call_id, name, given, named, outputs, scope, position, outer)
        )
        return out

    def _signature(self, func: Any) -> inspect.Signature | None:
        """A Python function's signature (None for a builtin), cached."""
        if func not in self._signatures:
            try:
                self._signatures[func] = inspect.signature(func)
            except (TypeError, ValueError):
                self._signatures[func] = None
        return self._signatures[func]


def _bound(
    signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)``, with every argument moved to kwargs by name when there is a
    signature to bind them to (defaults filled in)."""
    if signature is None:
        return args, dict(kwargs)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return args, dict(kwargs)
    bound.apply_defaults()
    return (), dict(bound.arguments)


@contextmanager
def _watching_autograd_functions(functions: _FunctionScope) -> Iterator[None]:
    """Record each ``MyFunction.apply(...)`` as a call named ``prim::PythonOp.MyFunction`` (the
    name a JIT trace gives it). ``apply`` reaches no torch-function mode, so it is wrapped for the
    duration of the run."""
    original = Function.__dict__["apply"]

    def apply(cls: type[Function], *args: Any, **kwargs: Any) -> Any:
        name = f"prim::PythonOp.{cls.__name__}"
        return functions.watched(name, original.__get__(None, cls), args, kwargs)

    Function.apply = classmethod(apply)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Function.apply = original  # type: ignore[method-assign]


RunOp = Callable[[Any, tuple[Any, ...], Mapping[str, Any]], Any]  # runs one op: func, args, kwargs


def _call_op(func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    return func(*args, **kwargs)


class _OpRecorder(TorchDispatchMode):
    """Records one `OpCall` per op, and saves a parameter before an op first writes to it.

    In the backward pass no module is running; an op takes the module scope and function of the
    forward op that made the autograd node it runs for. Nodes are told apart by sequence number:
    a node takes the next number before its op reaches the dispatcher, so the first op that sees
    number n + 1 made node n.
    """

    supports_higher_order_operators = True  # flex attention reaches the tracer as one op

    def __init__(
        self,
        scope: _ModuleScope,
        functions: _FunctionScope,
        guard: Any,
        track_nodes: bool,
        run_op: RunOp = _call_op,
    ) -> None:
        super().__init__()
        self.scope = scope
        self.functions = functions
        self.guard = guard
        self.ops: list[OpCall] = []
        self.failed: tuple[str, BaseException] | None = None  # the last op that raised, and how
        self.failed_call: FailedCall | None = None
        self.recording = True
        self.keep = True  # False while a setup runs: its ops run as usual but are not kept
        self.phase = "forward"
        self.track_nodes = track_nodes
        self.run_op = run_op
        self.node_origins: dict[int, tuple[tuple[str, ...], str | None]] = {}
        self._schemas: dict[Any, _Schema] = {}
        self.storages: StorageTracker | None = None  # set by run_traced

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if not self.recording:
            return func(*args, **kwargs)
        if func.namespace == "prim":  # prim::device: a metadata query
            return self.run_op(func, args, kwargs)
        schema = self._schemas.get(func)
        if schema is None:
            schema = self._schemas[func] = _Schema(func)
        if schema.writes or schema.stats:
            if schema.resizes:
                self.guard.before_resize(args[0])
            for value in schema.written(args, kwargs):
                self.guard.before_write(value)
        try:
            out = self.run_op(func, args, kwargs)
        except Exception as error:
            self.failed = (f"{schema.op}.{schema.overload}", error)
            if self.run_op is not _call_op:  # on fake tensors: keep what it was given
                self.failed_call = FailedCall.of(func, args, kwargs)
            raise
        if not self.keep:
            return out
        if schema.fresh and self.storages is not None:
            self.storages.track(out)
        needs_grad = None
        if self.phase == "forward":
            scope = self.scope.stack
            function = self.functions.current
            if self.track_nodes:
                self.node_origins.setdefault(_get_sequence_nr() - 1, (scope, function))
        else:
            node = torch._C._current_autograd_node()
            origin = None
            if node is not None:
                origin = self.node_origins.get(node._sequence_nr())
                needs_grad = tuple(edge[0] is not None for edge in node.next_functions)
            scope, function = origin or ((), None)
            if self.scope.stack:  # a module's forward running again (checkpoint recomputation)
                scope = self.scope.stack
            if isinstance(node, BackwardCFunction):
                function = None  # a hand-written backward: its ops are its own, not the forward's
        self.ops.append(
            OpCall(
                op=schema.op,
                overload=schema.overload,
                arguments=schema.bind(args, kwargs),
                outputs=record_value(out if isinstance(out, tuple) else (out,)),
                function=function,
                scope=scope,
                phase=self.phase,
                needs_input_grad=needs_grad,
                calls=self.functions.calls if self.phase == "forward" else (),
            )
        )
        return out

    def failed_op(self, error: BaseException) -> str | None:
        """The op whose exception `error` is (or chains to): None when the model's own code
        raised, or when it caught an op's error and raised another."""
        if self.failed is None:
            return None
        op, raised = self.failed
        seen: BaseException | None = error
        for _ in range(16):  # a short walk down __cause__ / __context__
            if seen is None:
                return None
            if seen is raised:
                return op
            seen = seen.__cause__ or seen.__context__
        return None

    @contextmanager
    def unkept(self) -> Iterator[None]:
        """Ops run here as in the recorded run (fake outputs reused, writes guarded), unkept."""
        self.keep = False
        try:
            yield
        finally:
            self.keep = True

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Ops run here (torchtally's own) are not recorded."""
        self.recording = False
        try:
            yield
        finally:
            self.recording = True


class _ModuleScope:
    """Tracks which of the model's modules are inside ``__call__``, through global hooks."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names
        self.stack: tuple[str, ...] = ()  # replaced, never mutated: ops share it
        self.called: set[str] = set()
        self.calls: list[ModuleCall] = []
        self.failed_scope: tuple[str, ...] | None = None
        self._pending: list[tuple[str, Any]] = []

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        name = self.names.get(id(module))
        if name is not None:
            self.stack = (*self.stack, name)
            self.called.add(name)
            with _DisableTorchFunction():  # our own .shape reads: not the model's functions
                inputs = record_value(args)
            self._pending.append((name, inputs))

    def post_hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        name = self.names.get(id(module))
        if name is None or not self.stack:
            return
        if sys.exc_info()[1] is not None and self.failed_scope is None:
            self.failed_scope = self.stack
        scope, self.stack = self.stack, self.stack[:-1]
        _, inputs = self._pending.pop()
        with _DisableTorchFunction():
            outputs = record_value(output)
        self.calls.append(
            ModuleCall(name=name, module=module, inputs=inputs, outputs=outputs, scope=scope)
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


LossFn = Callable[[Any], torch.Tensor]


class RunContext(NamedTuple):
    """What a `Runner` may set while the model runs: the module scope, the function scope, and
    the recorder (whose ``ops`` grow as ops run)."""

    scope: _ModuleScope
    functions: _FunctionScope
    recorder: _OpRecorder


class Runner:
    """How `run_traced` names a model's modules, calls it, and completes what it recorded.

    This one is for an eager model: its modules are its ``named_modules()``, module hooks give the
    scope, and the model is called. `torchtally.artefacts` has runners for exported programs, FX
    graphs and TorchScript, whose modules and scopes come from the artefact's metadata.
    """

    def tree(self, model: nn.Module) -> ModuleTree:
        return ModuleTree(model)

    def run(
        self,
        model: nn.Module,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        context: RunContext,
    ) -> Any:
        return model(*args, **kwargs)

    def finish(self, trace: Trace) -> Trace:
        return trace


Setup = Callable[
    [nn.Module, tuple[Any, ...], dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]
]
"""``setup(model, args, kwargs) -> (args, kwargs)``: runs before the recorded call, unrecorded, in
the same mode (on the fake model and fake inputs in fake and meta mode), under ``no_grad``; what
it returns is what the model is called with. Generation fills a KV cache with it."""


def run_traced(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    mode: str = "real",
    backward: bool = False,
    loss_fn: LossFn | None = None,
    setup: Setup | None = None,
    watch: frozenset[str] = frozenset(),
    autograd_functions: bool = False,
    runner: Runner | None = None,
) -> Trace:
    """Call ``model(*args, **kwargs)`` once under the tracer and return what it recorded.

    `mode` ``"real"`` runs the model as given; ``"fake"`` and ``"meta"`` run it on fake tensors
    (see `torchtally.fake`). With `backward`, the gradients of the parameters (and of inputs that
    require grad) are computed too, from ``loss_fn(outputs)`` or from every floating-point output.
    The model, what it holds, the inputs and the process are left exactly as they were, also when
    the forward raises or is interrupted (see `torchtally.state` and `torchtally.process`); lazy
    modules stay lazy, and the trace keeps the parameter shapes they materialised.
    `setup` (see `Setup`) prepares the call first, unrecorded.
    The calls of torch-level functions named in `watch`, and with `autograd_functions` those of
    custom ``torch.autograd.Function``s, are recorded as `FunctionCall`s (``trace.functions``).
    `runner` calls a model that is not eager code (see `Runner`).
    """
    runner = runner or Runner()
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"expected a torch.nn.Module to analyse, got {type(model).__name__}; "
            "wrap a plain function in an nn.Module whose forward calls it"
        )
    if mode not in ("real", "fake", "meta"):
        raise ValueError(f"run_traced runs mode 'real', 'fake' or 'meta', got {mode!r}")
    input_shapes = record_value((args, dict(kwargs)))
    tree = runner.tree(model)
    lazy = [name for name, m in tree.modules.items() if _is_lazy_module(m)]
    param_names = [name for name, _ in model.named_parameters()]
    shared_params = shared_parameters(model)
    buffer_names = {name for name, _ in model.named_buffers()}
    scope = _ModuleScope(tree.canonical)
    functions = _FunctionScope(watch, scope)
    failure: Exception | None = None  # what the setup or the forward raised
    backward_failure: Exception | None = None  # what the backward pass raised (its own message)
    read: dict[str, Any] = {}

    def read_model() -> None:
        """After the run, outside its modes, before the model is restored: lazy modules are
        materialised now; parameters the forward registered (and the guard removes) are not
        the model's."""
        shapes = parameter_shapes(model)
        param_shapes = {name: shapes[name] for name in param_names if name in shapes}
        params = dict(model.named_parameters())
        read["param_shapes"] = param_shapes
        read["param_dtypes"] = {name: params[name].dtype for name in param_shapes}
        read["frozen"] = frozenset(n for n in param_shapes if not params[n].requires_grad)
        read["buffers"] = {
            name: tensor_meta(b)
            for name, b in model.named_buffers()
            if name in buffer_names and not is_lazy(b)
        }
        if lazy:  # reported as what they became
            after = tree.infos()
            read["lazy_infos"] = {name: after[name] for name in lazy if name in after}
        if recorder.storages is not None:
            read["storages"] = recorder.storages.close()

    with ExitStack() as stack:
        session = stack.enter_context(Session(model))
        signals = stack.enter_context(deferred_signals())
        stack.enter_context(preserved_process())
        stack.enter_context(torch.inference_mode(False))  # inference mode hides ops and writes
        if mode != "real":  # a real run keeps collecting: cycles may hold real activations
            stack.enter_context(gc_paused())
        guard = stack.enter_context(
            preserve_model_state(model, (args, dict(kwargs)), process=False)
        )
        guard.suspend_backward_hooks()
        stack.enter_context(suspended_global_hooks())
        infos = tree.infos()  # the model's description: read outside the run (restored after)
        fake_mode: FakeTensorMode | None = None
        fake_module = None
        run_op: RunOp = _call_op
        if mode != "real":
            try:
                fake_mode, args, kwargs, fake_module = stack.enter_context(
                    fake_model(model, args, dict(kwargs))
                )
            except FakeUnsupportedError as error:
                raise TraceError(str(error)) from error
            run_op = FakeOutputs(fake_mode)
        else:
            args, kwargs = stand_ins(model, args, dict(kwargs))
        recorder = _OpRecorder(scope, functions, guard, track_nodes=backward, run_op=run_op)
        functions.ops = recorder.ops
        existing = list(iter_tensors((args, kwargs)))  # parameters are never an op's result
        recorder.storages = StorageTracker(recorder.ops, existing)
        stack.callback(read_model)
        _prepare_lazy_modules(model, recorder, fake_module)  # outside the fake mode
        stack.enter_context(_eager_flex_attention())
        ours = [m for m in (fake_mode, recorder, functions) if m is not None]
        stack.enter_context(entered_modes(ours))
        session.modes = (recorder, functions)
        stack.callback(signals.start)  # the first step on the way out: hold signals from here
        try:
            if setup is not None:
                with recorder.unkept(), torch.no_grad():
                    args, kwargs = setup(model, args, dict(kwargs))
            with ExitStack() as run:
                run.enter_context(scope.installed())
                run.enter_context(torch.set_grad_enabled(backward))
                if autograd_functions:
                    run.enter_context(_watching_autograd_functions(functions))
                context = RunContext(scope, functions, recorder)
                outputs = runner.run(model, args, kwargs, context)
                if backward:
                    try:
                        torch.set_anomaly_enabled(False)  # the forward may have turned it on
                        _run_backward(model, outputs, (args, kwargs), loss_fn, recorder)
                    except Exception as error:
                        backward_failure = error
                del outputs
        except Exception as error:
            failure = error
    infos.update(read.get("lazy_infos", {}))
    if backward_failure is not None:
        raise backward_failure
    if failure is not None:
        message = _failure_message(failure, scope, recorder, infos, mode)
        raise _trace_error(message, recorder, failure) from failure
    trace = Trace(
        ops=tuple(recorder.ops),
        module_calls=tuple(scope.calls),
        modules=infos,
        called_modules=frozenset(scope.called),
        input_shapes=input_shapes,
        mode=mode,
        param_shapes=read["param_shapes"],
        shared_params=shared_params,
        functions=tuple(sorted(functions.recorded, key=lambda call: call.id)),
        param_dtypes=read["param_dtypes"],
        frozen_params=read["frozen"],
        buffers=read["buffers"],
        storages=read["storages"],
    )
    return runner.finish(trace)


def _is_lazy_module(module: nn.Module) -> bool:
    return isinstance(module, LazyModuleMixin) and module.has_uninitialized_params()


@contextmanager
def entered_modes(modes: list[Any]) -> Iterator[None]:
    """Enter `modes` in order; on exit leave each by identity. When the model left a mode of its
    own on top of ours (or popped one), the stacks are put back exactly as they were before."""
    before = ModeStacks()
    entered: list[Any] = []
    try:
        for mode in modes:
            mode.__enter__()
            entered.append(mode)
        yield
    finally:
        clean = True
        for mode in reversed(entered):
            if clean and _on_top(mode):
                mode.__exit__(None, None, None)
            else:
                clean = False
        if not clean or not before.same():
            before.restore()


def _on_top(mode: Any) -> bool:
    if isinstance(mode, FakeTensorMode):
        return torch._C._get_dispatch_mode(mode._mode_key) is mode
    if isinstance(mode, TorchFunctionMode):
        depth = torch._C._len_torch_function_stack()
        return depth > 0 and torch._C._get_function_stack_at(depth - 1) is mode
    depth = torch._C._len_torch_dispatch_stack()
    return depth > 0 and torch._C._get_dispatch_stack_at(depth - 1) is mode


def shared_parameters(model: nn.Module) -> dict[str, str]:
    """Every second name of a parameter (a tied weight) -> the first, under which it is counted.
    Names that only repeat because a whole module is shared are left out: the module is."""
    first: dict[int, str] = {}
    shared: dict[str, str] = {}
    for module_name, module in model.named_modules():  # each module once, under its first name
        for attr, param in module.named_parameters(recurse=False, remove_duplicate=False):
            name = f"{module_name}.{attr}" if module_name else attr
            if id(param) in first:
                shared[name] = first[id(param)]
            else:
                first[id(param)] = name
    return shared


def _prepare_lazy_modules(
    model: nn.Module, recorder: _OpRecorder, fake_module: Callable[[nn.Module], None] | None
) -> None:
    """A lazy module (``nn.LazyLinear``) materialises its tensors in a forward pre-hook on its
    first call. Its lazy tensors are swapped for stand-ins, so the user's stay lazy (the guard puts
    them back, with the hook and class), and the hook runs unrecorded (its ops initialise weights).

    In fake mode (`fake_module` given) the stand-ins are on the meta device and the hook runs
    outside the fake mode, which refuses lazy buffers: nothing real is allocated. `fake_module`
    then fakes what it materialised (on the inputs' device, as for a meta model).
    """
    device = torch.device("meta") if fake_module else None
    stand_ins: dict[int, Any] = {}  # one per lazy tensor: shared ones stay shared
    for module in model.modules():
        if not (isinstance(module, LazyModuleMixin) and module.has_uninitialized_params()):
            continue
        for slots in (module._parameters, module._buffers):
            for name, tensor in slots.items():
                if tensor is not None and is_lazy(tensor):
                    if id(tensor) not in stand_ins:
                        stand_ins[id(tensor)] = _stand_in(tensor, device)
                    slots[name] = stand_ins[id(tensor)]
        hooks = module._forward_pre_hooks
        key = module._initialize_hook.id
        hooks[key] = partial(_initialise, hooks[key], recorder, fake_module)


def _stand_in(tensor: Any, device: torch.device | None) -> Any:
    """A new uninitialized parameter or buffer like `tensor` (on `device` when given)."""
    return type(tensor)(tensor.requires_grad, device or tensor.device, tensor.dtype)


def _initialise(
    infer: Callable[..., None],
    recorder: _OpRecorder,
    fake_module: Callable[[nn.Module], None] | None,
    module: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    with recorder.paused(), unset_fake_temporarily():
        infer(module, args, kwargs)
        if fake_module is not None:
            fake_module(module)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: a fake run and counting make many small objects
    (records, fakes, counters), and collections that walk them cost a tenth of a fake run.
    Refcounting still frees what is dropped; only reference cycles wait for the next collection."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def _eager_flex_attention() -> Iterator[None]:
    """Eager flex attention compiles itself, which a dispatch mode prevents; this makes it call
    its higher-order op directly, which the tracer records as ``higher_order::flex_attention``."""
    module = sys.modules.get("torch.nn.attention.flex_attention")
    flag = "_FLEX_ATTENTION_DISABLE_COMPILE_DEBUG"
    if module is None or not hasattr(module, flag):
        yield
        return
    saved = getattr(module, flag)
    setattr(module, flag, True)
    try:
        yield
    finally:
        setattr(module, flag, saved)


def _run_backward(
    model: nn.Module,
    outputs: Any,
    inputs: Any,
    loss_fn: LossFn | None,
    recorder: _OpRecorder,
) -> None:
    """The backward pass of `outputs` (or of ``loss_fn(outputs)``), recorded as phase backward."""
    if loss_fn is not None:
        roots = [loss_fn(outputs)]
    else:
        roots = [t for t in iter_tensors(outputs) if _differentiable(t)]
    roots = [t for t in roots if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    leaves: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
    leaves += [t for t in iter_tensors(inputs) if t.requires_grad]
    if not roots or not leaves:
        raise ValueError(
            "backward=True found nothing to differentiate: the model has no parameter that "
            "requires grad, or its outputs do not depend on one; unfreeze parameters, pass "
            "inputs with requires_grad=True, or give loss_fn= returning a tensor with a grad_fn"
        )
    with recorder.paused():
        seeds = [torch.ones_like(t) for t in roots]
    if recorder.storages is not None:
        recorder.storages.track(seeds)
    recorder.phase = "backward"
    # autograd.backward, not autograd.grad, which reentrant checkpointing refuses; the leaves'
    # .grad is set aside and put back, so nothing the user holds changes.
    saved = [(leaf, leaf.grad) for leaf in leaves]
    try:
        for leaf in leaves:
            leaf.grad = None
        torch.autograd.backward(roots, seeds)
    except Exception as error:
        failed = recorder.failed_op(error)
        op = f" at op {failed}" if failed else ""
        raise TraceError(
            f"the backward pass raised {type(error).__name__}{op}: {error}", failed
        ) from error
    finally:
        with recorder.paused():
            for leaf, grad in saved:
                leaf.grad = grad


def _differentiable(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.requires_grad


def _trace_error(message: str, recorder: _OpRecorder, error: BaseException) -> TraceError:
    failed = recorder.failed_op(error)
    return TraceError(message, failed, recorder.failed_call if failed else None)


def _failure_message(
    error: Exception,
    scope: _ModuleScope,
    recorder: _OpRecorder,
    infos: dict[str, ModuleInfo],
    mode: str = "real",
) -> str:
    where = scope.failed_scope or scope.stack
    inner = where[-1] if where else ""
    module = f"module {inner or '<root>'!r} ({infos[inner].type_name})" if inner in infos else ""
    failed = recorder.failed_op(error)
    op = f"op {failed}" if failed else ""
    place = " at ".join(part for part in (module, op) if part) or "the model's forward"
    if isinstance(error, NEEDS_REAL_DATA):
        advice = (
            f"What {failed or 'this op'} computes depends on the data, which fake tensors do not "
            "have: use mode='real' (or 'auto', which falls back to it)."
        )
    elif rejected_inputs(error):
        instead = (
            "a model on the meta device cannot run for real: build it with weights and use "
            "mode='real', or give the op a fake kernel (torch.library.register_fake)"
            if mode == "meta"
            else "use mode='real', or 'auto', which tries the real kernel and falls back to a "
            "real run"
        )
        advice = (
            "Check that the inputs have the shapes and dtypes this model expects. If they do, "
            f"the fake kernel of {failed or 'this op'} rejects what its real kernel accepts (a "
            f"gap in PyTorch's fake and meta kernels): {instead}."
        )
    else:
        advice = "Check that the inputs have the shapes and dtypes this model expects."
    return f"the model raised {type(error).__name__} in {place}: {error}\n{advice}"
