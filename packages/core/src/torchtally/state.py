"""Leave the user's model exactly as it was: weights, buffers, flags, hooks, grad mode, RNG."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


class ModelGuard:
    """Snapshot of what a forward pass may change, restored by `restore`.

    Buffers are copied up front (batch norm changes its running statistics without declaring it
    in the op schema). Parameters are copied only when an op declares a write to one (copy on
    write), so a large model costs no extra memory.
    """

    def __init__(self, model: nn.Module) -> None:
        self.modules = list(model.modules())
        self.training = [m.training for m in self.modules]
        self.slots = [(dict(m._parameters), dict(m._buffers)) for m in self.modules]
        self.hooks = [
            {attr: dict(getattr(m, attr)) for attr in _HOOK_DICTS if hasattr(m, attr)}
            for m in self.modules
        ]
        params = list(model.parameters())
        self.requires_grad = [(p, p.requires_grad) for p in params]
        self.buffers = [(b, b.detach().clone()) for b in model.buffers() if _is_real(b)]
        self._param_storages = {_storage_key(p): p for p in params if _is_real(p)}
        self._saved_params: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def before_write(self, value: Any) -> None:
        """Called by the tracer before an op writes to `value` in place."""
        if not isinstance(value, torch.Tensor) or not self._param_storages or not _is_real(value):
            return
        key = _storage_key(value)
        param = self._param_storages.get(key)
        if param is not None and id(param) not in self._saved_params:
            self._saved_params[id(param)] = (param, param.detach().clone())

    def restore(self) -> None:
        with torch.no_grad():
            for module, training, (params, buffers), hooks in zip(
                self.modules, self.training, self.slots, self.hooks, strict=False
            ):
                module.training = training
                _replace(module._parameters, params)
                _replace(module._buffers, buffers)
                for attr, saved_hooks in hooks.items():
                    _replace(getattr(module, attr), saved_hooks)
            for buffer, buffer_copy in self.buffers:
                buffer.copy_(buffer_copy)
            for param, param_copy in self._saved_params.values():
                param.copy_(param_copy)
            for param, flag in self.requires_grad:
                param.requires_grad_(flag)


def _replace(target: dict[Any, Any], saved: dict[Any, Any]) -> None:
    if list(target) != list(saved) or any(target[k] is not v for k, v in saved.items()):
        target.clear()
        target.update(saved)


def _is_real(tensor: torch.Tensor) -> bool:
    return tensor.device.type != "meta" and not isinstance(tensor, FakeTensor)


def _storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


@contextmanager
def preserve_model_state(model: nn.Module) -> Iterator[ModelGuard]:
    """Restore the model and torch's global state on exit, whether or not the body raised."""
    guard = ModelGuard(model)
    grad_enabled = torch.is_grad_enabled()
    default_dtype = torch.get_default_dtype()
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield guard
    finally:
        guard.restore()
        torch.set_grad_enabled(grad_enabled)
        torch.set_default_dtype(default_dtype)
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
