"""Leave the user's model exactly as it was: weights, buffers, gradients, flags, hooks, attributes,
grad mode, default dtype and device, deterministic mode and RNG."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import is_lazy

# Per-module dicts a forward may change in place: slots, submodules and every kind of hook.
_MODULE_DICTS = (
    "_parameters",
    "_buffers",
    "_modules",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
_MODULE_CONTAINERS = (*_MODULE_DICTS, "_non_persistent_buffers_set")


class ModelGuard:
    """Snapshot of what a forward (and backward) pass may change, restored by `restore`.

    Module attributes that hold tensors or modules are restored shallowly: one a forward added (a
    cache, maybe of fake tensors) is removed, one it rebound is bound back; a class it changed
    (lazy modules) is changed back, and a lazy module gets all its attributes back, as its first
    forward initialises it (sets ``in_features``, removes its init hooks). Parameters, buffers and
    gradients are copied only when an op is about to write to one (copy on write: the tracer
    calls `before_write` for the arguments an op's schema says it writes, and for batch norm's
    running statistics in training, which the schema does not say), so a large model costs no
    extra memory.
    """

    def __init__(self, model: nn.Module) -> None:
        self.modules = [_ModuleSnapshot(m) for m in model.modules()]
        params = list(model.parameters())
        self.requires_grad = [(p, p.requires_grad) for p in params]
        self.grads = [(p, p.grad) for p in params if not is_lazy(p)]
        watched = [*params, *model.buffers(), *(grad for _, grad in self.grads if grad is not None)]
        self._storages = {
            _storage_key(t): t for t in watched if _is_real(t) and t.numel() > 0
        }  # storage -> the parameter, buffer or gradient that owns it
        self._saved: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def before_write(self, value: Any) -> None:
        """Called by the tracer before an op writes to `value` in place."""
        if not isinstance(value, torch.Tensor) or not self._storages or not _is_real(value):
            return
        owner = self._storages.get(_storage_key(value))
        if owner is not None and id(owner) not in self._saved:
            self._saved[id(owner)] = (owner, owner.detach().clone())

    def restore(self) -> None:
        with torch.no_grad():
            for snapshot in self.modules:
                snapshot.restore()
            for tensor, tensor_copy in self._saved.values():
                tensor.copy_(tensor_copy)
            for param, flag in self.requires_grad:
                if param.requires_grad != flag:
                    param.requires_grad_(flag)
            for param, grad in self.grads:
                if param.grad is not grad:
                    param.grad = grad


class _ModuleSnapshot:
    """One module's class, training flag, attributes, and the contents of its dicts and sets
    (copied only when not empty: most hook dicts are)."""

    __slots__ = ("attributes", "cls", "containers", "lazy", "module", "training")

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.cls = type(module)
        self.training = module.training
        self.lazy = isinstance(module, LazyModuleMixin) and module.has_uninitialized_params()
        state = vars(module)
        self.attributes = dict(state)
        self.containers: list[tuple[str, Any]] = []
        for attr in _MODULE_CONTAINERS:
            container = state.get(attr)
            if isinstance(container, (dict, set)):
                self.containers.append((attr, container.copy() if container else None))

    def restore(self) -> None:
        module = self.module
        if type(module) is not self.cls:
            module.__class__ = self.cls
        module.training = self.training
        state = vars(module)
        if self.lazy:
            _replace(state, self.attributes)
        else:
            _restore_attributes(state, self.attributes)
        for attr, saved in self.containers:
            current = state[attr] = self.attributes[attr]  # the original object, bound back
            if saved is None:
                if current:
                    current.clear()
            elif isinstance(current, set):
                if current != saved:
                    current.clear()
                    current.update(saved)
            else:
                _replace(current, saved)


_MISSING = object()


def _restore_attributes(current: dict[str, Any], saved: dict[str, Any]) -> None:
    """Undo what a forward did to attributes that hold tensors or modules (caches, fakes).

    Plain Python values (a call counter, a flag) are left as the forward set them, as after an
    ordinary call of the model.
    """
    for key in [k for k in current if k not in saved and _holds_tensors(current[k])]:
        del current[key]
    for key, value in saved.items():
        now = current.get(key, _MISSING)
        if now is not value and (_holds_tensors(value) or _holds_tensors(now)):
            current[key] = value


def _holds_tensors(value: Any, depth: int = 3) -> bool:
    if isinstance(value, (torch.Tensor, nn.Module)):
        return True
    if depth == 0:
        return False
    if isinstance(value, (list, tuple, set)):
        return any(_holds_tensors(v, depth - 1) for v in value)
    if isinstance(value, dict):
        return any(_holds_tensors(v, depth - 1) for v in value.values())
    return False


def _replace(target: dict[Any, Any], saved: dict[Any, Any]) -> None:
    if list(target) != list(saved) or any(target[k] is not v for k, v in saved.items()):
        target.clear()
        target.update(saved)


def _is_real(tensor: torch.Tensor) -> bool:
    """A tensor with data of its own: not meta, fake or an uninitialized lazy parameter."""
    return not (tensor.device.type == "meta" or isinstance(tensor, FakeTensor) or is_lazy(tensor))


def _storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


@contextmanager
def preserve_model_state(model: nn.Module) -> Iterator[ModelGuard]:
    """Restore the model and torch's global state on exit, whether or not the body raised."""
    guard = ModelGuard(model)
    grad_enabled = torch.is_grad_enabled()
    default_dtype = torch.get_default_dtype()
    default_device = torch.get_default_device()
    deterministic = torch.are_deterministic_algorithms_enabled()
    deterministic_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield guard
    finally:
        guard.restore()
        torch.set_grad_enabled(grad_enabled)
        torch.set_default_dtype(default_dtype)
        if torch.get_default_device() != default_device:
            torch.set_default_device(default_device)
        if (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ) != (deterministic, deterministic_warn_only):
            torch.use_deterministic_algorithms(deterministic, warn_only=deterministic_warn_only)
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
