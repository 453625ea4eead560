"""Leave the user's model, everything it holds and its inputs exactly as they were.

`ModelGuard` snapshots, before a run, every object reachable from the model and the inputs:
the contents of lists, dicts and sets, the attributes (``__dict__`` and slots) and class of
modules, dataclasses and other objects (caches, configs, a Hugging Face ``Cache``), at any depth,
by identity; and every tensor it meets: its binding (storage, offset, shape, strides, dtype),
``requires_grad``, ``.grad``, hooks and version. Tensor data is copied on write: the tracer
calls `before_write` before an op writes to a tensor, and the whole storage under it is copied
once, so every tensor over that storage (views of a flat buffer) is restored. `restore` runs
each step whatever the others do and raises `RestoreError` for what it could not put back.
"""

from __future__ import annotations

import logging
import sys
import types
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, unset_fake_temporarily
from torch.nn.parameter import is_lazy
from torch.utils._mode_utils import no_dispatch
from torch.utils._pytree import tree_map

from torchtally.process import ProcessState, RestoreError, run_steps

logger = logging.getLogger("torchtally")

# Objects reached from a model beyond this many are not snapshotted (a warning says so).
MAX_OBJECTS = 500_000

_ATOMS = frozenset(
    {
        int,
        float,
        complex,
        bool,
        str,
        bytes,
        type(None),
        type(Ellipsis),
        range,
        slice,
        torch.dtype,
        torch.device,
        torch.layout,
        torch.memory_format,
        torch.Size,
    }
)
# Objects whose insides are not the model's state: code, classes, modules, references.
_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
    types.GeneratorType,
    weakref.ref,
    torch.Generator,
    torch.UntypedStorage,
    torch.TypedStorage,
)
_MISSING = object()
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)


@contextmanager
def plain_torch() -> Iterator[None]:
    """Ops on real tensors as they are: no torch function or dispatch mode (fake mode
    included), no autograd, no inference mode. The guard's own copies are always real."""
    with (
        no_dispatch(),
        torch._C.DisableTorchFunction(),
        torch.no_grad(),
        torch.inference_mode(False),
    ):
        yield


def _is_real(tensor: torch.Tensor) -> bool:
    """A tensor with data of its own: not meta, fake or an uninitialized lazy parameter."""
    return not (tensor.device.type == "meta" or isinstance(tensor, FakeTensor) or is_lazy(tensor))


def _is_plain(tensor: torch.Tensor) -> bool:
    """A dense tensor of torch's own type (no subclass, not sparse): it has a storage."""
    return type(tensor) in _PLAIN_TENSORS and tensor.layout == torch.strided


def _stdlib(kind: type) -> bool:
    return kind.__module__.partition(".")[0] in sys.stdlib_module_names


# --- saved objects ------------------------------------------------------------------------------


class _Saved:
    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def restore(self) -> None:
        raise NotImplementedError


class _SavedList(_Saved):
    __slots__ = ("items",)

    def __init__(self, obj: list[Any]) -> None:
        super().__init__(obj)
        self.items = list.copy(obj)

    def restore(self) -> None:
        now = self.obj
        if len(now) != len(self.items) or any(
            a is not b for a, b in zip(now, self.items, strict=True)
        ):
            list.__setitem__(now, slice(None), self.items)


def _dict_base(obj: dict[Any, Any]) -> type[dict[Any, Any]]:
    """The mapping type whose methods change `obj` without a subclass' checks (a Hugging Face
    ``ModelOutput`` refuses ``update``), keeping an OrderedDict's own order bookkeeping."""
    return OrderedDict if isinstance(obj, OrderedDict) else dict


class _SavedDict(_Saved):
    __slots__ = ("items",)

    def __init__(self, obj: dict[Any, Any]) -> None:
        super().__init__(obj)
        self.items = list(dict.items(obj))

    def restore(self) -> None:
        now = list(dict.items(self.obj))
        if len(now) == len(self.items) and all(
            a[1] is b[1] and (a[0] is b[0] or a[0] == b[0])
            for a, b in zip(now, self.items, strict=True)
        ):
            return
        base = _dict_base(self.obj)
        base.clear(self.obj)
        for key, value in self.items:
            base.__setitem__(self.obj, key, value)


class _SavedSet(_Saved):
    __slots__ = ("items",)

    def __init__(self, obj: set[Any]) -> None:
        super().__init__(obj)
        self.items = set.copy(obj)

    def restore(self) -> None:
        if len(self.obj) != len(self.items) or not set.issubset(self.obj, self.items):
            set.clear(self.obj)
            set.update(self.obj, self.items)


class _SavedDeque(_Saved):
    __slots__ = ("items",)

    def __init__(self, obj: deque[Any]) -> None:
        super().__init__(obj)
        self.items = list(obj)

    def restore(self) -> None:
        if len(self.obj) != len(self.items) or any(
            a is not b for a, b in zip(self.obj, self.items, strict=True)
        ):
            self.obj.clear()
            self.obj.extend(self.items)


class _SavedAttributes(_Saved):
    """An object's class, its ``__dict__`` (the dict itself and what it holds) and its slots."""

    __slots__ = ("attributes", "cls", "namespace", "slots")

    def __init__(self, obj: Any, namespace: dict[str, Any] | None, slots: list[Any]) -> None:
        super().__init__(obj)
        self.cls = type(obj)
        self.namespace = namespace
        self.attributes = list(namespace.items()) if namespace is not None else []
        self.slots = [(slot, _read_slot(slot, obj)) for slot in slots]

    def restore(self) -> None:
        obj = self.obj
        if type(obj) is not self.cls:
            object.__setattr__(obj, "__class__", self.cls)  # lazy modules change their class
        if self.namespace is not None:
            if object.__getattribute__(obj, "__dict__") is not self.namespace:
                object.__setattr__(obj, "__dict__", self.namespace)
            now = list(self.namespace.items())
            if len(now) != len(self.attributes) or any(
                a[0] != b[0] or a[1] is not b[1] for a, b in zip(now, self.attributes, strict=True)
            ):
                self.namespace.clear()
                self.namespace.update(self.attributes)
        for slot, value in self.slots:
            if _read_slot(slot, obj) is not value:
                if value is _MISSING:
                    slot.__delete__(obj)
                else:
                    slot.__set__(obj, value)


def _read_slot(slot: Any, obj: Any) -> Any:
    try:
        return slot.__get__(obj, type(obj))
    except AttributeError:
        return _MISSING


def _slots(kind: type) -> list[Any]:
    """The slot descriptors of `kind` and its bases (``__dict__`` and ``__weakref__`` aside)."""
    found = []
    for cls in kind.__mro__:
        names = cls.__dict__.get("__slots__", ())
        for name in (names,) if isinstance(names, str) else names:
            if name not in ("__dict__", "__weakref__"):
                descriptor = cls.__dict__.get(name)
                if isinstance(descriptor, types.MemberDescriptorType):
                    found.append(descriptor)
    return found


_SLOTS_BY_CLASS: dict[type, list[Any]] = {}


_SAVERS: dict[type, Callable[[Any], _Saved]] = {
    list: _SavedList,
    dict: _SavedDict,
    set: _SavedSet,
    deque: _SavedDeque,
}
_TENSOR = object()  # the container kind of tensors
_CONTAINERS = (tuple, list, dict, set, frozenset, deque)
_KINDS: dict[type, tuple[Any, bool]] = {}  # type -> (container kind or None, has attributes)


def _classify(kind: type) -> tuple[Any, bool]:
    """What the walk does with objects of `kind`: the container type it is (its contents are
    walked and, unless immutable, saved), and whether its attributes are saved and walked
    (not for code, classes, references, the standard library's objects or torch's C types)."""
    if issubclass(kind, torch.Tensor):
        found: tuple[Any, bool] = (_TENSOR, False)
    else:
        container = next((c for c in _CONTAINERS if issubclass(kind, c)), None)
        opaque = (
            kind in _CONTAINERS
            or issubclass(kind, _OPAQUE)
            or _stdlib(kind)
            or kind.__module__.startswith("torch._C")
        )
        found = (container, not opaque)
    _KINDS[kind] = found
    return found


# --- saved tensors ------------------------------------------------------------------------------


class _SavedTensor:
    """A tensor's binding (the tensor it was: storage, offset, shape, strides, dtype, kept as a
    detached alias), autograd flags, ``.grad``, version and (suspended) backward hooks."""

    __slots__ = (
        "binding",
        "grad",
        "hooks",
        "post_hooks",
        "requires_grad",
        "storage",
        "tensor",
        "version",
    )

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self.requires_grad = tensor.requires_grad
        self.grad: Any = tensor.grad if tensor.is_leaf and not is_lazy(tensor) else _MISSING
        self.binding: Any = None
        self.storage: torch.UntypedStorage | None = None  # kept: the binding may be undone
        if _is_plain(tensor) and not is_lazy(tensor):
            self.binding = _binding(tensor)
            self.storage = tensor.untyped_storage()
        self.version: int | None
        try:
            self.version = tensor._version
        except RuntimeError:  # inference tensors have none
            self.version = None
        self.hooks = _hook_dict(tensor, "_backward_hooks")
        self.post_hooks = _hook_dict(tensor, "_post_accumulate_grad_hooks")

    def suspend_hooks(self) -> None:
        """Take the user's backward hooks off for the analysis (they must not run)."""
        for saved in (self.hooks, self.post_hooks):
            if saved is not None and saved[1]:
                saved[0].clear()

    def restore_binding(self) -> None:
        saved, storage = self.binding, self.storage
        if saved is None or storage is None or _binding(self.tensor) == saved:
            return
        _, offset, shape, stride, dtype = saved
        with plain_torch():  # back onto its own storage, shape, strides and dtype
            original = torch.empty(0, dtype=dtype, device=storage.device)
            original.set_(storage, offset, shape, stride)
            self.tensor.data = original

    def restore_flags(self) -> None:
        tensor = self.tensor
        if tensor.requires_grad != self.requires_grad:
            tensor.requires_grad_(self.requires_grad)
        if self.grad is not _MISSING and tensor.grad is not self.grad:
            tensor.grad = self.grad
        for attr, saved in (
            ("_backward_hooks", self.hooks),
            ("_post_accumulate_grad_hooks", self.post_hooks),
        ):
            now = getattr(tensor, attr)
            if saved is None:
                if now:
                    now.clear()  # hooks the forward registered on the user's tensor
                continue
            hooks, items = saved
            if now is not hooks:
                setattr(tensor, attr, hooks)
            if list(hooks.items()) != items:
                hooks.clear()
                hooks.update(items)

    def restore_version(self) -> None:
        if self.version is not None and self.tensor._version != self.version:
            torch._C._autograd._unsafe_set_version_counter((self.tensor,), (self.version,))


def _binding(tensor: torch.Tensor) -> tuple[Any, ...]:
    """Where a dense tensor's data is and how it is read: storage, offset, shape, strides, dtype."""
    return (
        tensor.untyped_storage()._cdata,
        tensor.storage_offset(),
        tensor.shape,
        tensor.stride(),
        tensor.dtype,
    )


def _hook_dict(tensor: torch.Tensor, attr: str) -> tuple[dict[Any, Any], list[Any]] | None:
    hooks = getattr(tensor, attr, None)
    return (hooks, list(hooks.items())) if isinstance(hooks, dict) else None


def _storage_key(tensor: torch.Tensor) -> int | None:
    """The address of the storage under a real dense tensor (shared by all its views)."""
    if not _is_plain(tensor) or not _is_real(tensor):
        return None
    try:
        storage = tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None
    return storage.data_ptr() if storage.nbytes() else None


# --- the guard ----------------------------------------------------------------------------------


class ModelGuard:
    """Snapshot of the model, what it holds and the inputs, put back by `restore`."""

    def __init__(self, model: nn.Module, inputs: Any = ()) -> None:
        roots = [model, inputs, *model.parameters(), *model.buffers()]
        self.objects: list[_Saved] = []
        self.modules: list[nn.Module] = []
        tensors = self._reach(roots)
        self.tensors = [_SavedTensor(t) for t in tensors]
        self._storages: dict[int, torch.UntypedStorage] = {}
        self._identity: dict[int, torch.Tensor] = {}  # tensors without a storage: by identity
        for tensor in tensors:
            key = _storage_key(tensor)
            if key is not None:
                self._storages.setdefault(key, tensor.untyped_storage())
            elif _is_real(tensor) and not is_lazy(tensor):
                self._identity[id(tensor)] = tensor
        self._backups: dict[int, tuple[torch.UntypedStorage, torch.UntypedStorage]] = {}
        self._tensor_backups: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _reach(self, roots: list[Any]) -> list[torch.Tensor]:
        """Snapshot every object reachable from `roots`; return the tensors met."""
        seen: set[int] = set()
        tensors: list[torch.Tensor] = []
        objects = self.objects
        stack = list(reversed(roots))
        kinds = _KINDS
        while stack:
            value = stack.pop()
            kind = type(value)
            if kind in _ATOMS or id(value) in seen:
                continue
            seen.add(id(value))
            if len(seen) > MAX_OBJECTS:
                logger.warning(
                    "the model and its inputs hold more than %d objects; those beyond are not "
                    "snapshotted, so changes the forward makes to them are not undone",
                    MAX_OBJECTS,
                )
                break
            container, attributes = kinds.get(kind) or _classify(kind)
            if container is _TENSOR:
                tensors.append(value)
                namespace = getattr(value, "__dict__", None)
                if namespace:
                    objects.append(_SavedDict(namespace))
                    stack.extend(namespace.values())
                if value.is_leaf and value.grad is not None:
                    stack.append(value.grad)
                continue
            if container is tuple:
                stack.extend(value)
            elif container is not None:
                if container is not frozenset:
                    objects.append(_SAVERS[container](value))
                if container is dict:
                    stack.extend(dict.values(value))
                elif container in (list, deque):
                    stack.extend(value)
            if attributes:
                if isinstance(value, nn.Module):
                    self.modules.append(value)
                self._save_attributes(value, stack)
        return tensors

    def _save_attributes(self, value: Any, stack: list[Any]) -> None:
        kind = type(value)
        slots = _SLOTS_BY_CLASS.get(kind)
        if slots is None:
            slots = _SLOTS_BY_CLASS[kind] = _slots(kind)
        try:
            namespace = object.__getattribute__(value, "__dict__")
        except (AttributeError, TypeError):
            namespace = None
        if not isinstance(namespace, dict):
            namespace = None
        if namespace is None and not slots:
            return
        saved = _SavedAttributes(value, namespace, slots)
        self.objects.append(saved)
        stack.extend(item for _, item in saved.attributes)
        stack.extend(item for _, item in saved.slots if item is not _MISSING)

    def suspend_backward_hooks(self) -> None:
        """The user's backward hooks (on tensors, after gradient accumulation, on modules) do
        not run during the analysis; `restore` puts them back."""
        for saved in self.tensors:
            saved.suspend_hooks()
        for module in self.modules:
            for attr in ("_backward_hooks", "_backward_pre_hooks"):
                hooks = vars(module).get(attr)
                if hooks:
                    hooks.clear()

    def before_write(self, value: Any) -> None:
        """Called by the tracer before an op writes to `value` in place: the storage under it
        (or, for a tensor without one, the tensor) is copied once, for real."""
        if not isinstance(value, torch.Tensor):
            return
        key = _storage_key(value)
        if key is not None:
            storage = self._storages.get(key)
            if storage is not None and key not in self._backups:
                with plain_torch():
                    self._backups[key] = (storage, storage.clone())
            return
        owner = self._identity.get(id(value))
        if owner is not None and id(owner) not in self._tensor_backups:
            with unset_fake_temporarily(), torch.no_grad(), torch.inference_mode(False):
                self._tensor_backups[id(owner)] = (owner, owner.clone())

    def before_resize(self, value: Any) -> None:
        """Called before an op that may reallocate `value`'s storage (``resize_``): a tensor
        over a watched storage is moved onto a copy of it first, so the storage keeps its
        memory (its other tensors are unaffected; the guard binds the tensor back)."""
        if not isinstance(value, torch.Tensor):
            return
        key = _storage_key(value)
        if key is None or key not in self._storages:
            return
        with plain_torch():
            private = value.untyped_storage().clone()
            value.set_(private, value.storage_offset(), value.shape, value.stride())

    def restore(self) -> list[str]:
        """Put everything back; every step runs whatever the others do. Returns what failed."""
        steps: list[tuple[str, Callable[[], None]]] = []
        steps += [(f"{_describe(s.obj)}", s.restore) for s in self.objects]
        steps += [
            (f"a {_shape(s.tensor)} tensor's binding", s.restore_binding) for s in self.tensors
        ]
        steps += [
            (f"a {storage.nbytes()}-byte storage", partial_copy(storage, backup))
            for storage, backup in self._backups.values()
        ]
        steps += [
            (f"a {_shape(t)} tensor", partial_tensor_copy(t, backup))
            for t, backup in self._tensor_backups.values()
        ]
        steps += [(f"a {_shape(s.tensor)} tensor's flags", s.restore_flags) for s in self.tensors]
        steps += [
            (f"a {_shape(s.tensor)} tensor's version", s.restore_version) for s in self.tensors
        ]
        with plain_torch():
            return run_steps(steps)


def partial_copy(storage: torch.UntypedStorage, backup: torch.UntypedStorage) -> Callable[[], None]:
    def copy() -> None:
        if storage.nbytes() != backup.nbytes():  # grown by a resize through another tensor
            storage.resize_(backup.nbytes())
        storage.copy_(backup)

    return copy


def partial_tensor_copy(tensor: torch.Tensor, backup: torch.Tensor) -> Callable[[], None]:
    def copy() -> None:
        with unset_fake_temporarily(), torch.no_grad():
            tensor.copy_(backup)

    return copy


def _describe(obj: Any) -> str:
    return f"the contents of a {type(obj).__name__}"


def _shape(tensor: torch.Tensor) -> str:
    try:
        return "x".join(map(str, tensor.shape)) or "scalar"
    except Exception:
        return type(tensor).__name__


def stand_ins(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """For a real run: the model's parameters and buffers, and the input tensors, are swapped
    for detached aliases over the same storage (tied ones stay tied), so that the run writes
    the same memory but autograd, ``.grad``, hooks and rebinding (``.data =``, ``set_``) touch
    only the aliases. The guard puts the originals back. TorchScript modules keep theirs."""
    made: dict[int, torch.Tensor] = {}

    def alias(value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or not _is_plain(value) or is_lazy(value):
            return value
        fresh = made.get(id(value))
        if fresh is None:
            with plain_torch():
                fresh = value.clone() if value.is_inference() else value.detach()
            if isinstance(value, nn.Parameter):
                fresh = nn.Parameter(fresh, requires_grad=value.requires_grad)
            elif value.requires_grad:
                fresh.requires_grad_(True)
            made[id(value)] = fresh
        return fresh

    for module in model.modules():
        if isinstance(module, torch.jit.ScriptModule):
            continue
        for slots in (module._parameters, module._buffers):
            for name, tensor in slots.items():
                if tensor is not None:
                    slots[name] = alias(tensor)
    return tree_map(alias, args), tree_map(alias, kwargs)


@contextmanager
def preserve_model_state(
    model: nn.Module, inputs: Any = (), process: bool = True
) -> Iterator[ModelGuard]:
    """Restore the model, what it holds and `inputs` (and, with `process`, torch's switches,
    modes, global hooks and random generators) on exit, whether or not the body raised; raise
    `RestoreError` naming what could not be restored."""
    guard = ModelGuard(model, inputs)
    state = ProcessState() if process else None
    with ExitStack() as stack:
        stack.callback(_raise_failures, guard, state)
        yield guard


def _raise_failures(guard: ModelGuard, state: ProcessState | None) -> None:
    failures = guard.restore()
    if state is not None:
        failures += state.restore()
    if failures:
        raise RestoreError(
            "torchtally could not put the model back exactly as it was:\n  "
            + "\n  ".join(failures[:20])
            + (f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else "")
        )
