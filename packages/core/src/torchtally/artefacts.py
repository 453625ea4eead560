"""Models as they are deployed: exported programs, FX graph modules and TorchScript modules.

Each runs under the tracer like an eager model, with its module tree and the module of every op
recovered from the artefact's own metadata, so that counts, names and tables are the eager
model's:

- An FX graph (an `ExportedProgram`'s, a `GraphModule`'s) runs as code generated from a copy of
  the graph in which every node first sets the module scope its ``nn_module_stack`` names and the
  torch-level function its ``torch_fn`` names (``linear``, ``adaptive_avg_pool2d``), which is what
  module hooks and the function mode give for eager code. The graph module itself is not changed.
- A TorchScript module calls its submodules in C++, where no module hook fires. It runs under
  PyTorch's profiler, which records the module hierarchy of every op TorchScript runs
  (``with_modules``); each recorded op leaves a mark there, and after the run every op gets the
  modules and the function its mark was found in.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import threading
import unittest.mock
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import fx, nn
from torch._C._profiler import ProfilerConfig, RecordScope, _RecordFunctionFast
from torch.autograd import profiler as autograd_profiler
from torch.export import ExportedProgram
from torch.jit._fuser import optimized_execution
from torch.profiler import ProfilerActivity, kineto_available, profile
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from torchtally.inputs import check_model, has_forward
from torchtally.records import ModuleInfo, Trace
from torchtally.tracer import ModuleTree, RunContext, Runner, read_extra_repr

# The submodule `ExportedProgram.module()` adds to check its inputs: not one of the model's.
_GUARDS = "_guards_fn"
_RUNS_CODE = ("call_function", "call_method", "call_module")


class Program(NamedTuple):
    """What the tracer runs for a model: the module holding its state (what the state guard and
    fake mode see), the runner, the example inputs an exported program keeps, and the check of
    inputs against what it was exported for."""

    module: nn.Module
    runner: Runner
    example_inputs: tuple[tuple[Any, ...], dict[str, Any]] | None = None
    check_inputs: Callable[[tuple[Any, ...], Mapping[str, Any]], None] | None = None


def as_program(model: Any) -> Program:
    """What runs for `model`: an eager module as it is (a `torch.compile` wrapper's module); an
    exported program, FX graph module or TorchScript module with the runner that recovers its
    modules. Raises `TypeError` for anything else."""
    compiled = sys.modules.get("torch._dynamo.eval_frame")  # loaded once torch.compile ran
    if compiled is not None and isinstance(model, compiled.OptimizedModule):
        model = model._orig_mod  # torch.compile's wrapper: the module it compiles, run eagerly
    if isinstance(model, ExportedProgram):
        module = model.module()
        _tie_parameters(module)
        order = [entry.fqn for entry in model.module_call_graph]
        example = model.example_inputs
        inputs = (tuple(example[0]), dict(example[1])) if example is not None else None
        check = partial(_check_exported_inputs, model)
        return Program(module, GraphRunner(module, order), inputs, check)
    if isinstance(model, fx.GraphModule):
        return Program(model, GraphRunner(model))
    if isinstance(model, torch.jit.ScriptModule):
        if torch._C._autograd._profiler_enabled():
            raise RuntimeError(_PROFILER_BUSY)
        return Program(model, ScriptRunner())
    check_model(model)  # raises, saying what to pass instead
    return Program(model, Runner())


def _tie_parameters(module: nn.Module) -> None:
    """A loaded program gives tied weights one parameter per name over one storage: make them
    one parameter again, so that it counts once, as in the model (the module is our own)."""
    kept: dict[tuple[Any, ...], nn.Parameter] = {}
    for name, param in list(module.named_parameters(remove_duplicate=False)):
        key = (
            param.untyped_storage()._cdata,
            param.storage_offset(),
            tuple(param.shape),
            param.stride(),
            param.dtype,
        )
        first = kept.setdefault(key, param)
        if first is not param:
            owner, _, attribute = name.rpartition(".")
            module.get_submodule(owner)._parameters[attribute] = first


def _check_exported_inputs(
    program: ExportedProgram, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> None:
    """Refuse inputs an exported program cannot run (other structure, sizes outside its dynamic
    shapes' ranges), saying what it was exported for, before any run."""
    try:
        from torch.export._unlift import _check_inputs_match

        flat = _check_inputs_match(args, dict(kwargs), program.call_spec.in_spec)
        program._check_input_constraints(flat)
    except (ImportError, AttributeError):  # pragma: no cover - another torch: the graph checks
        return
    except Exception as error:
        example = program.example_inputs
        exported = f" (exported for inputs {_shapes(example)})" if example is not None else ""
        raise ValueError(
            f"the inputs do not fit this exported program{exported}: {error}"
        ) from None


def _shapes(value: Any) -> str:
    """``(2, 3, 64, 64)`` for each tensor in `value`, comma-separated."""
    found = [tuple(t.shape) for t in pytree.tree_leaves(value) if isinstance(t, torch.Tensor)]
    return ", ".join(map(str, found)) or "no tensors"


# --- .pt2 files without their weights ----------------------------------------------------------

_LOADING = threading.Lock()


# How a saved file calls an op: ``torch.ops.NS.name`` in an exported program's graph (JSON),
# ``ops.NS.name(...)`` in TorchScript's code (where ``torchvision.ops.boxes`` is a module path).
_OP_CALLS = (
    re.compile(rb"\btorch\.ops\.([A-Za-z_]\w*)\."),
    re.compile(rb"(?<![\w.])ops\.([A-Za-z_]\w*)\."),
)
_CODE_SUFFIXES = (".json", ".py")
_LARGEST_CODE = 64 << 20  # bytes; weights are larger, code and graphs are not read past this


def import_op_libraries(path: str | os.PathLike[str]) -> list[str]:
    """Import the installed packages whose custom ops a saved ``.pt2`` or TorchScript file calls
    (``torchvision::nms``, ``torchvision::roi_align``): loading the file needs them registered,
    and nothing else imports them in a process that only loads the file. Returns the names
    imported. A namespace no installed package is named after (``aten``, a private library) is
    left alone: loading then fails with PyTorch's message."""
    namespaces: set[str] = set()
    try:
        with zipfile.ZipFile(path) as archive:
            for entry in archive.infolist():
                if entry.filename.endswith(_CODE_SUFFIXES) and entry.file_size <= _LARGEST_CODE:
                    text = archive.read(entry)
                    for pattern in _OP_CALLS:
                        namespaces.update(n.decode() for n in pattern.findall(text))
    except (OSError, zipfile.BadZipFile):
        return []  # not an archive: loading it says what is wrong
    imported = []
    for namespace in sorted(namespaces):
        if namespace in sys.modules or importlib.util.find_spec(namespace) is None:
            continue
        try:
            importlib.import_module(namespace)
        except Exception as error:  # a broken package: loading then says what is missing
            warnings.warn(
                f"importing {namespace}, whose ops {os.fspath(path)} calls, failed: "
                f"{type(error).__name__}: {error}",
                stacklevel=2,
            )
            continue
        imported.append(namespace)
    return imported


def load_exported(path: str | os.PathLike[str], *, weights: bool = False) -> ExportedProgram:
    """The exported program saved in a ``.pt2`` file (``torch.export.save``), the packages
    registering the custom ops it calls imported first (`import_op_libraries`).

    Without `weights` (the default) its parameters, buffers and constants are made on the meta
    device from the sizes the file records, without reading them: a program of any size loads
    in the memory its graph takes, and analyses in meta mode. With `weights` this is
    ``torch.export.load``.
    """
    import_op_libraries(path)
    if weights:
        return torch.export.load(path)
    try:
        from torch._export.serde.serialize import deserialize_scalar_type, deserialize_size
        from torch.export.pt2_archive import _package
    except ImportError:  # pragma: no cover - another torch: the loader moved
        warnings.warn(
            "this torch has no .pt2 loader torchtally knows; loading the weights too",
            stacklevel=2,
        )
        return torch.export.load(path)

    def meta_file_map(reader: Any, config: Any, base_dir: str) -> dict[str, torch.Tensor]:
        """torch's `_build_file_map` with meta tensors: each stored tensor's size, not its data."""
        made: dict[str, torch.Tensor] = {}
        for payload in config.config.values():
            if payload.use_pickle or payload.path_name in made:
                continue
            meta = payload.tensor_meta
            dtype = deserialize_scalar_type(meta.dtype)
            nbytes = reader.archive_file.get_record_size(os.path.join(base_dir, payload.path_name))
            size = (nbytes // dtype.itemsize,) if nbytes else deserialize_size(meta.sizes)
            tensor = torch.empty(size, dtype=dtype, device="meta")
            made[payload.path_name] = tensor.requires_grad_(meta.requires_grad)
        return made

    with _LOADING, unittest.mock.patch.object(_package, "_build_file_map", meta_file_map):
        return torch.export.load(path)


# --- FX graphs ---------------------------------------------------------------------------------


def _node_modules(node: fx.Node) -> list[tuple[str, str]]:
    """``(path, type name)`` of the modules a node ran in, outermost first, root excluded."""
    stack = node.meta.get("nn_module_stack") or {}
    found: list[tuple[str, str]] = []
    for path, kind in stack.values():
        if path and (not found or found[-1][0] != path):
            name = kind.__name__ if isinstance(kind, type) else str(kind).rsplit(".", 1)[-1]
            found.append((path, name))
    return found


def _node_function(node: fx.Node) -> str | None:
    """The torch-level function a node came from (export keeps it through decompositions), else
    the op a node calls; None for a Python callable, which the function mode names itself."""
    torch_fn = node.meta.get("torch_fn")
    if torch_fn:
        return str(torch_fn[1]).rsplit(".", 1)[-1]
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return str(target.overloadpacket.__name__)
    if isinstance(target, torch._ops.OpOverloadPacket):
        return str(target.__name__)
    return None


class GraphTree(ModuleTree):
    """An FX graph's modules: the names ``nn_module_stack`` gives its nodes (with the types the
    model had), the graph module's own submodules, and `order`, the original model's module names
    in its order (an exported program's module call graph)."""

    def __init__(self, graph_module: fx.GraphModule, order: Sequence[str] = ()) -> None:
        real = {  # not export's input check, nor the graphs of higher-order ops (autocast
            # regions), whose ops run in the op's modules
            name: module
            for name, module in graph_module.named_modules()
            if not name
            or not (
                name.split(".")[0] == _GUARDS
                or any(isinstance(m, fx.GraphModule) for m in _path(graph_module, name))
            )
        }
        self.types: dict[str, str] = {}
        names: dict[str, None] = dict.fromkeys(["", *order])
        for node in graph_module.graph.nodes:
            for path, type_name in _node_modules(node):
                self.types.setdefault(path, type_name)
                names.setdefault(path)
        names.update(dict.fromkeys(real))
        for name in list(names):  # every parent of a name is a module too
            parts = name.split(".")
            for depth in range(1, len(parts)):
                names.setdefault(".".join(parts[:depth]))
        self.modules = {name: real[name] for name in names if name in real}
        self.canonical = {id(module): name for name, module in self.modules.items() if name}
        self.aliases = {name: [] for name in names}
        children: dict[str, list[tuple[str, str]]] = {name: [] for name in names}
        for name in names:
            if name:
                parent, _, attribute = name.rpartition(".")
                children[parent].append((attribute, name))
        self.children = {name: tuple(kids) for name, kids in children.items()}
        self.root_type = _root_type(graph_module)

    def infos(self) -> dict[str, ModuleInfo]:
        return {name: self._info(name) for name in self.children}

    def _info(self, name: str) -> ModuleInfo:
        """What the metadata says, else what the graph module holds: a real submodule (an FX
        graph's leaf module) or a container `GraphModule` made to hold the parameters."""
        module = self.modules.get(name)
        real = module if module is not None and type(module) is not nn.Module else None
        if name == "":
            type_name = self.root_type
        else:
            type_name = self.types.get(name) or (type(real).__name__ if real else "Module")
        return ModuleInfo(
            name=name,
            type_name=type_name,
            extra_repr=read_extra_repr(real) if real is not None and name else "",
            children=self.children[name],
            has_forward=has_forward(real) if real is not None else name in self.types or not name,
        )


class GraphRunner(Runner):
    """Runs an FX graph module node by node in the modules its metadata names (see the module
    docstring). The code runs with the graph module as ``self``, so it reads the parameters the
    state guard and fake mode see."""

    def __init__(self, graph_module: fx.GraphModule, order: Sequence[str] = ()) -> None:
        self.graph_module = graph_module
        self.module_tree = GraphTree(graph_module, order)
        self.scopes: list[tuple[str, ...]] = []
        self.functions: list[str | None] = []
        self.called: set[str] = {""}
        self.context: RunContext | None = None
        self.forward = self._compile()

    def tree(self, model: nn.Module) -> ModuleTree:
        return self.module_tree

    def _compile(self) -> Callable[..., Any]:
        """The graph module's forward, from a copy of its graph that calls `_enter` before each
        node that runs code."""
        source = self.graph_module.graph
        graph = fx.Graph(tracer_cls=source._tracer_cls)
        graph._codegen = source._codegen
        copies: dict[fx.Node, fx.Node] = {}
        for node in source.nodes:
            if node.op in _RUNS_CODE:
                scope = ("", *(path for path, _ in _node_modules(node)))
                self.called.update(scope)
                graph.call_function(self._enter, (len(self.scopes),))
                self.scopes.append(scope)
                self.functions.append(_node_function(node))
            copies[node] = graph.node_copy(node, copies.__getitem__)
        code = graph.python_code(root_module="self")
        namespace = dict(code.globals)
        where = f"<torchtally: {self.module_tree.root_type} graph>"
        exec(compile(code.src, where, "exec"), namespace)
        forward: Callable[..., Any] = namespace["forward"]
        return forward

    def _enter(self, index: int) -> None:
        context = self.context
        if context is not None:
            context.scope.stack = self.scopes[index]
            context.functions.pinned = self.functions[index]

    def run(
        self,
        model: nn.Module,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        context: RunContext,
    ) -> Any:
        saved = context.scope.stack
        self.context = context
        try:
            return self.forward(model, *args, **kwargs)
        except BaseException:
            if context.scope.failed_scope is None:  # for the error message: where it failed
                context.scope.failed_scope = context.scope.stack
            raise
        finally:
            self.context = None
            context.scope.stack = saved
            context.functions.pinned = None

    def finish(self, trace: Trace) -> Trace:
        called = trace.called_modules | (self.called & set(trace.modules))
        return replace(trace, called_modules=frozenset(called))


def _path(root: nn.Module, name: str) -> Iterator[nn.Module]:
    """The modules from `root`'s child to the submodule `name`."""
    module = root
    for part in name.split("."):
        module = module.get_submodule(part)
        yield module


def _root_type(graph_module: fx.GraphModule) -> str:
    """The model's class: export names it in ``nn_module_stack``; FX's symbolic trace names the
    graph module's class after it."""
    for node in graph_module.graph.nodes:
        for path, kind in (node.meta.get("nn_module_stack") or {}).values():
            if path == "":
                return kind.__name__ if isinstance(kind, type) else str(kind).rsplit(".", 1)[-1]
    return type(graph_module).__name__


# --- TorchScript -------------------------------------------------------------------------------

_PROFILER_BUSY = (
    "a TorchScript module is analysed under PyTorch's profiler, which finds the modules its ops "
    "run in, and a profiler session is running: analyse the module outside it (one profiler "
    "runs at a time)"
)
_MARK = "torchtally#"  # a profiler mark: "torchtally#17" is the 18th recorded op
_TOKEN = "\x00torchtally-op"  # scope of op n until the profile is read: (_TOKEN, "n")
# "TOP(ResNet)::forward.", "layer1(Sequential)::forward.", "::batch_norm." (a free function)
_FRAME = re.compile(r"([^.():]*)(?:\(([^()]*)\))?::([^.]*)\.")
# What PyTorch's profiler (Kineto) prints to stderr when it starts and stops.
_KINETO_LINE = re.compile(rb"^[A-Z]+:\d{4}-\d\d-\d\d [^\n]*\.cpp:\d+\][^\n]*\n?", re.MULTILINE)


class ScriptRunner(Runner):
    """Runs a TorchScript module under the profiler; each op gets the modules it ran in from its
    mark (see the module docstring)."""

    def __init__(self) -> None:
        self.found: Found = {}

    def run(
        self,
        model: nn.Module,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        context: RunContext,
    ) -> Any:
        self.found = {}
        if torch._C._autograd._profiler_enabled():
            raise RuntimeError(_PROFILER_BUSY)
        if not kineto_available():  # pragma: no cover - a build of torch without Kineto
            warnings.warn(
                "this build of torch has no profiler to find the modules TorchScript runs: ops "
                "are counted under the root module, and those named after the torch function "
                "that issued them (adaptive average pooling's mean) are not recognised",
                stacklevel=2,
            )
            return model(*args, **kwargs)
        modules = _ScriptModules(model)
        with tempfile.TemporaryDirectory(prefix="torchtally-") as folder:
            path = os.path.join(folder, "trace.json")
            # unoptimised: the graph as saved (optimisation passes fuse and decompose ops, and
            # drop the module of what they make: GPT-2's addmm becomes an mm of no module)
            with _profiled(path), _Marks(context), optimized_execution(False):
                outputs = model(*args, **kwargs)
            self.found = _read_marks(path, modules)
        return outputs

    def finish(self, trace: Trace) -> Trace:
        ops = []
        called = set(trace.called_modules)
        for call in trace.ops:
            if call.scope[:1] == (_TOKEN,):
                scope, function = self.found.get(int(call.scope[1]), (("",), None))
                call = replace(call, scope=scope, function=call.function or function)
                called.update(scope)
            ops.append(call)
        return replace(trace, ops=tuple(ops), called_modules=frozenset(called & set(trace.modules)))


class _ScriptModules:
    """A TorchScript module's submodules, to read the paths of its profiler's hierarchy."""

    def __init__(self, model: nn.Module) -> None:
        self.canonical: dict[str, str] = {}  # every name -> the first name of its module
        self.types: dict[str, str] = {}
        self.children: dict[str, list[str]] = {}
        first: dict[int, str] = {}
        for name, module in model.named_modules(remove_duplicate=False):
            self.canonical[name] = first.setdefault(id(module), name)
            self.types[name] = str(getattr(module, "original_name", type(module).__name__))
            if name:
                self.children.setdefault(name.rpartition(".")[0], []).append(name)

    def child(self, path: str, instance: str, type_name: str) -> str:
        """The submodule `instance` of `path`: a direct child, or one inside a child container
        (TorchScript unrolls a loop over a ModuleList or ModuleDict, leaving no frame for it)."""
        direct = f"{path}.{instance}" if path else instance
        if direct in self.types:
            return direct
        for child in self.children.get(path, ()):
            nested = f"{child}.{instance}"
            if self.types.get(nested) == type_name:
                return nested
        return direct


class _Marks(TorchDispatchMode):
    """Above the recorder: gives op n the scope ``(_TOKEN, "n")`` (backward ops inherit it from
    their forward op) and, once recorded, leaves the profiler mark ``torchtally#n``."""

    def __init__(self, context: RunContext) -> None:
        super().__init__()
        self.scope = context.scope
        self.ops = context.recorder.ops

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        index = len(self.ops)
        saved, self.scope.stack = self.scope.stack, (_TOKEN, str(index))
        try:
            with torch._C.DisableTorchFunction():  # TorchScript calls no torch function: no name
                out = func(*args, **(kwargs or {}))
        finally:
            self.scope.stack = saved
        if len(self.ops) > index:  # a mark that runs no op, which the recorder would record
            with _RecordFunctionFast(f"{_MARK}{index}"):
                pass
        return out


# What the profiler records: everything but TorchScript's function frames, whose events carry
# nothing the marks need, and for which PyTorch's module hierarchy reads before the start of a
# function whose first instruction calls another (torchvision's `_assert_has_ops`, reached from
# `nms`), a segmentation fault in unoptimised execution.
_SCOPES = frozenset(
    scope for scope in RecordScope.__members__.values() if scope != RecordScope.TORCHSCRIPT_FUNCTION
)


def _enable(config: ProfilerConfig, activities: set[ProfilerActivity]) -> None:
    """The profiler's start, for the scopes in `_SCOPES` (the binding takes them; its type
    stub lags)."""
    enable: Callable[..., None] = torch._C._autograd._enable_profiler
    enable(config, activities, set(_SCOPES))


@contextlib.contextmanager
def _profiled(path: str) -> Iterator[None]:
    """Profile CPU ops with their TorchScript module hierarchy; write the trace to `path`."""
    profiler = profile(activities=[ProfilerActivity.CPU], with_modules=True)
    with (
        _quiet_kineto(),
        unittest.mock.patch.object(autograd_profiler, "_enable_profiler", _enable),
    ):
        profiler.start()
    try:
        yield
    finally:
        with _quiet_kineto():
            profiler.stop()
    profiler.export_chrome_trace(path)


@contextlib.contextmanager
def _quiet_kineto() -> Iterator[None]:
    """Drop the lines the profiler's C++ side prints to the standard error file when it starts
    and stops; anything else printed there meanwhile is passed on."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = _KINETO_LINE.sub(b"", captured.read())
            if rest:
                os.write(2, rest)


Found = dict[int, tuple[tuple[str, ...], str | None]]  # op index -> (scope, function)


def _read_marks(path: str, modules: _ScriptModules) -> Found:
    """Per mark: the scope and function its module hierarchy gives (`_scope_and_function`)."""
    with open(path, encoding="utf-8") as file:
        events = [e for e in json.load(file).get("traceEvents", []) if e.get("ph") == "X"]
    events.sort(key=lambda e: (str(e.get("tid")), e["ts"], -e["dur"]))
    found: Found = {}
    running: list[tuple[float, str]] = []  # (end, name) of the events around the current one
    thread = None
    for event in events:
        if event.get("tid") != thread:
            thread, running = event.get("tid"), []
        while running and running[-1][0] <= event["ts"]:
            running.pop()
        name = str(event["name"])
        if name.startswith(_MARK):
            outer = next((n for _, n in running if "::" in n), None)  # the op TorchScript called
            hierarchy = str(event.get("args", {}).get("Module Hierarchy", ""))
            found[int(name[len(_MARK) :])] = _scope_and_function(hierarchy, outer, modules)
        running.append((event["ts"] + event["dur"], name))
    return found


def _scope_and_function(
    hierarchy: str, outer_op: str | None, modules: _ScriptModules
) -> tuple[tuple[str, ...], str | None]:
    """``TOP(ResNet)::forward.layer1(Sequential)::forward.0(BasicBlock)::forward.::relu.`` gives
    the scope ``("", "layer1", "layer1.0")`` and the function ``relu``: the first TorchScript
    function below the innermost module that is a torch function (as the function mode names the
    outermost torch function eager code calls), else the op TorchScript called (``aten::linear``:
    ``linear``)."""
    path, scope, functions = "", [""], list[str]()
    for instance, type_name, method in _FRAME.findall(hierarchy):
        if type_name:  # a module's method; SELF is a method calling another of the same module
            functions = []
            if instance not in ("TOP", "SELF"):
                path = modules.child(path, instance, type_name)
                scope.append(modules.canonical.get(path, path))
        else:
            functions.append(method)
    function = next((f for f in functions if _is_torch_function(f)), None)
    if function is None and outer_op is not None:
        function = outer_op.rpartition("::")[2]
    return tuple(scope), function


def _is_torch_function(name: str) -> bool:
    return any(hasattr(where, name) for where in (nn.functional, torch, torch.Tensor))
