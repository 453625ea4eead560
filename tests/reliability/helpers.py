"""Helpers for the reliability tests: a full snapshot of a model and of torch's global state,
and the modes to run in. Imported as ``reliability.helpers`` (tests/ is on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.parameter import is_lazy

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
_hypothesis = pytest.importorskip("hypothesis")
HealthCheck = _hypothesis.HealthCheck
settings = _hypothesis.settings

# Property tests: the same examples every run, no deadline (2 shared cores), modest counts.
deterministic = settings(
    derandomize=True,
    deadline=None,
    max_examples=25,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MODES = ("real", "fake", "meta", "auto")

_MODULE_HOOK_DICTS = (
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
_GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_hooks_always_called",
    "_global_forward_hooks_with_kwargs",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_buffer_registration_hooks",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
)


def bits(tensor: Any) -> Any:
    """The tensor's bytes: equal bits, not just equal values (-0.0 vs 0.0, NaN payloads).

    An uninitialized lazy parameter has no bytes: it gives an empty tensor. A quantized tensor
    gives its integer representation's bytes; what a state_dict holds besides tensors (a
    quantized module's dtype), itself."""
    if isinstance(tensor, (list, tuple)):  # a quantized module's packed (weight, bias)
        return type(tensor)(bits(t) for t in tensor)
    if not isinstance(tensor, torch.Tensor):
        return tensor
    if is_lazy(tensor):
        return torch.empty(0, dtype=torch.uint8)
    if tensor.is_quantized:
        tensor = tensor.int_repr()
    return tensor.detach().reshape(-1).contiguous().view(torch.uint8).clone()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def global_state() -> dict[str, Any]:
    """Torch's process-wide state an analysis could leave changed."""
    module_hooks = nn.modules.module
    return {
        "grad_enabled": torch.is_grad_enabled(),
        "inference_mode": torch.is_inference_mode_enabled(),
        "default_dtype": torch.get_default_dtype(),
        "default_device": torch.get_default_device(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "anomaly": torch.is_anomaly_enabled(),
        "dispatch_modes": torch._C._len_torch_dispatch_stack(),
        "function_modes": torch._C._len_torch_function_stack(),
        "global_hooks": {
            name: list(getattr(module_hooks, name, {})) for name in _GLOBAL_HOOK_DICTS
        },
    }


@dataclass
class Snapshot:
    """Everything about a model (and torch) that an analysis must leave as it was."""

    model: nn.Module
    state: dict[str, torch.Tensor]
    param_ids: list[int]
    data_ptrs: list[int]
    grads: list[tuple[int | None, torch.Tensor | None]]
    flags: list[tuple[str, bool]]
    requires_grad: list[bool]
    hooks: list[tuple[str, str, list[Any]]]
    attributes: list[tuple[str, list[str]]]
    classes: list[type]
    global_state: dict[str, Any]
    rng: torch.Tensor

    @classmethod
    def take(cls, model: nn.Module) -> Snapshot:
        params = list(model.parameters())
        modules = list(model.named_modules(remove_duplicate=False))
        return cls(
            model=model,
            state={k: bits(v) for k, v in model.state_dict(keep_vars=True).items()},
            param_ids=[id(p) for p in params],
            data_ptrs=[0 if is_lazy(p) else p.data_ptr() for p in params],
            grads=[
                (id(p.grad), bits(p.grad)) if p.grad is not None else (None, None) for p in params
            ],
            flags=[(name, m.training) for name, m in modules],
            requires_grad=[p.requires_grad for p in params],
            hooks=[
                (name, attr, list(getattr(m, attr)))
                for name, m in modules
                for attr in _MODULE_HOOK_DICTS
                if hasattr(m, attr)
            ],
            attributes=[(name, sorted(vars(m))) for name, m in modules],
            classes=[type(m) for _, m in modules],
            global_state=global_state(),
            rng=torch.get_rng_state(),
        )

    def assert_unchanged(self) -> None:
        after = Snapshot.take(self.model)
        assert list(after.state) == list(self.state), "state_dict keys changed"
        for key, value in self.state.items():
            assert _same(after.state[key], value), f"{key} changed"
        assert after.param_ids == self.param_ids, "parameters were replaced"
        assert after.data_ptrs == self.data_ptrs, "parameter storage was replaced"
        for (id_before, grad_before), (id_after, grad_after) in zip(
            self.grads, after.grads, strict=True
        ):
            assert id_after == id_before, ".grad was replaced"
            if grad_before is not None:
                assert grad_after is not None and torch.equal(grad_after, grad_before)
        assert after.flags == self.flags, "training flags changed"
        assert after.requires_grad == self.requires_grad, "requires_grad changed"
        assert after.hooks == self.hooks, "hooks changed"
        assert after.attributes == self.attributes, "module attributes added or removed"
        assert after.classes == self.classes, "module classes changed"
        assert after.global_state == self.global_state
        assert torch.equal(after.rng, self.rng), "the RNG state changed"
