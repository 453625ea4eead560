"""Helpers for the reliability tests: a full snapshot of a model, of everything it and its inputs
hold, and of the process, and the modes to run in. Imported as ``reliability.helpers`` (tests/
is on sys.path).

`Snapshot.take(model, inputs)` records, independently of torchtally's own guard:

- the model's ``state_dict`` bitwise, parameter identities and storages;
- every object reachable from the model and the inputs (module attributes, lists, dicts, sets,
  dataclasses and other objects, at any depth) by identity, and every tensor met: its bits,
  storage, offset, shape, strides, dtype, ``requires_grad``, ``.grad``, version and hooks;
- the process: grad, inference and anomaly mode, default dtype and device, deterministic mode,
  matmul and backend switches, autocast, thread count, the function and dispatch mode stacks,
  global module hooks, and the torch, Python and NumPy random generators.

`assert_unchanged()` compares all of it and says what changed; no fake tensor may be reachable.
"""

from __future__ import annotations

import random
import sys
import types
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.utils._python_dispatch as python_dispatch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor
from torch.nn.parameter import is_lazy

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
_hypothesis = pytest.importorskip("hypothesis")
numpy = pytest.importorskip("numpy")
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

    An uninitialized lazy parameter or a meta tensor has no bytes: it gives an empty tensor. A
    quantized tensor gives its integers and its quantization parameters; a list or tuple (a
    quantized module's packed weight and bias) the bytes of each; anything else, itself."""
    if isinstance(tensor, (list, tuple)):
        return type(tensor)(bits(t) for t in tensor)
    if not isinstance(tensor, torch.Tensor):
        return tensor
    if is_lazy(tensor) or tensor.device.type == "meta":
        return torch.empty(0, dtype=torch.uint8)
    if tensor.layout != torch.strided:
        return bits(tensor.to_dense())
    if tensor.is_quantized:  # its integers and its quantization parameters
        if tensor.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            scale = torch.tensor([tensor.q_scale(), tensor.q_zero_point()], dtype=torch.float64)
        else:
            scale = torch.cat([tensor.q_per_channel_scales(), tensor.q_per_channel_zero_points()])
        return torch.cat([bits(tensor.int_repr()), bits(scale)])
    if type(tensor) not in (torch.Tensor, nn.Parameter):
        return torch.empty(0, dtype=torch.uint8)
    return tensor.detach().reshape(-1).contiguous().view(torch.uint8).clone()


def _bits_tree(value: Any) -> Any:
    """A state_dict value's bits: a tensor, or a tuple of them (quantized packed parameters)."""
    if isinstance(value, torch.Tensor):
        return bits(value)
    if isinstance(value, (tuple, list)):
        return tuple(_bits_tree(v) for v in value)
    return value


def _same_tree(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(map(_same_tree, a, b))
    return bool(a == b)


def _data_ptr(tensor: torch.Tensor) -> int:
    plain = type(tensor) in (torch.Tensor, nn.Parameter) and tensor.layout == torch.strided
    return tensor.data_ptr() if plain and not is_lazy(tensor) else 0


def _stack(length: int, at: Any) -> list[int]:
    return [id(at(i)) for i in range(length)]


def global_state() -> dict[str, Any]:
    """Torch's process-wide state an analysis could leave changed."""
    module_hooks = nn.modules.module
    cuda_matmul = torch.backends.cuda.matmul
    return {
        "grad_enabled": torch.is_grad_enabled(),
        "inference_mode": torch.is_inference_mode_enabled(),
        "anomaly": (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
        "default_dtype": torch.get_default_dtype(),
        "default_device": torch.get_default_device(),
        "deterministic": (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        ),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "threads": torch.get_num_threads(),
        "cudnn": (
            torch.backends.cudnn.enabled,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.allow_tf32,
        ),
        "cuda_matmul": (
            cuda_matmul.allow_tf32,
            cuda_matmul.allow_fp16_reduced_precision_reduction,
            cuda_matmul.allow_bf16_reduced_precision_reduction,
        ),
        "autocast": (
            torch.is_autocast_enabled("cpu"),
            torch.get_autocast_dtype("cpu"),
            torch.is_autocast_enabled("cuda"),
            torch.is_autocast_cache_enabled(),
        ),
        "function_modes": _stack(
            torch._C._len_torch_function_stack(), torch._C._get_function_stack_at
        ),
        "dispatch_modes": _stack(
            torch._C._len_torch_dispatch_stack(), torch._C._get_dispatch_stack_at
        ),
        "dispatch_flags": (
            python_dispatch._is_in_torch_dispatch_mode,
            python_dispatch._is_in_non_infra_torch_dispatch_mode,
        ),
        "device_context": id(getattr(torch._GLOBAL_DEVICE_CONTEXT, "device_context", None)),
        "global_hooks": {
            name: [(k, id(v)) for k, v in getattr(module_hooks, name, {}).items()]
            for name in _GLOBAL_HOOK_DICTS
        },
        "python_random": random.getstate(),
    }


# --- everything reachable -----------------------------------------------------------------------

_ATOMS = (int, float, complex, bool, str, bytes, type(None), torch.dtype, torch.device, torch.Size)
_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    weakref.ref,
    torch.Generator,
)


@dataclass
class _TensorFacts:
    tensor: torch.Tensor
    facts: tuple[Any, ...]
    data: torch.Tensor
    grad: torch.Tensor | None


def _tensor_facts(tensor: torch.Tensor) -> _TensorFacts:
    plain = type(tensor) in (torch.Tensor, nn.Parameter) and tensor.layout == torch.strided
    storage = (
        (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if plain and not is_lazy(tensor) and tensor.device.type != "meta"
        else None
    )
    try:
        version = tensor._version
    except RuntimeError:
        version = None
    grad = tensor.grad if tensor.is_leaf and not is_lazy(tensor) else None
    hooks = [
        [(k, id(v)) for k, v in (getattr(tensor, attr, None) or {}).items()]
        for attr in ("_backward_hooks", "_post_accumulate_grad_hooks")
    ]
    facts = (
        type(tensor),
        tensor.dtype,
        "lazy" if is_lazy(tensor) else tuple(tensor.shape),
        tensor.stride() if plain else None,
        tensor.storage_offset() if plain else None,
        storage,
        tensor.requires_grad,
        id(grad),
        version,
        hooks,
    )
    return _TensorFacts(tensor, facts, bits(tensor), None if grad is None else bits(grad))


def _children(value: Any) -> list[tuple[Any, Any]] | None:
    """(key, child) pairs of a container or object, or None for a leaf."""
    if isinstance(value, dict):
        pairs = [(("item", k), v) for k, v in dict.items(value)]
    elif isinstance(value, (list, tuple, deque)):
        pairs = list(enumerate(value))
    elif isinstance(value, (set, frozenset)):
        return [(("member", repr(v)), v) for v in sorted(value, key=repr)]
    elif isinstance(value, _OPAQUE) or type(value).__module__.partition(".")[0] in (
        *sys.stdlib_module_names,
        "numpy",
    ):
        return None
    else:
        pairs = []
    if type(value).__module__.startswith("torch._C"):
        return pairs or None
    namespace = getattr(value, "__dict__", None)
    if isinstance(namespace, dict):
        pairs += [(("attr", k), v) for k, v in namespace.items()]
    for cls in type(value).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            descriptor = cls.__dict__.get(name)
            if isinstance(descriptor, types.MemberDescriptorType):
                try:
                    pairs.append((("slot", name), descriptor.__get__(value, cls)))
                except AttributeError:
                    pairs.append((("slot", name), "<unset>"))
    return pairs


def _ref(value: Any) -> Any:
    return ("=", value) if isinstance(value, _ATOMS) else ("id", id(value))


@dataclass
class Reachable:
    """Every object reachable from the roots: its type and children (by identity), and the
    facts of every tensor."""

    objects: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # id -> (obj, structure)
    tensors: dict[int, _TensorFacts] = field(default_factory=dict)
    fakes: list[str] = field(default_factory=list)

    @classmethod
    def take(cls, *roots: Any) -> Reachable:
        found = cls()
        stack: list[tuple[str, Any]] = [(f"root {i}", root) for i, root in enumerate(roots)]
        while stack:
            path, value = stack.pop()
            if isinstance(value, _ATOMS) or id(value) in found.objects:
                continue
            if isinstance(value, FakeTensor):
                found.fakes.append(path)
            if isinstance(value, torch.Tensor):
                found.tensors[id(value)] = _tensor_facts(value)
                found.objects[id(value)] = (value, type(value))
                namespace = getattr(value, "__dict__", None)
                if namespace:
                    stack += [(f"{path}.{k}", v) for k, v in namespace.items()]
                if value.is_leaf and value.grad is not None:
                    stack.append((f"{path}.grad", value.grad))
                continue
            children = _children(value)
            if children is None:
                found.objects[id(value)] = (value, type(value))
                continue
            found.objects[id(value)] = (value, (type(value), [(k, _ref(v)) for k, v in children]))
            stack += [(f"{path}[{k if isinstance(k, int) else k[1]!r}]", v) for k, v in children]
        return found

    def assert_same(self, after: Reachable) -> None:
        assert not after.fakes, f"fake tensors are left in the model or inputs: {after.fakes}"
        for key, (obj, structure) in self.objects.items():
            assert key in after.objects, f"{type(obj).__name__} is no longer reachable"
            now = after.objects[key][1]
            assert now == structure, f"{type(obj).__name__} changed: {structure} -> {now}"
        extra = [type(after.objects[k][0]).__name__ for k in after.objects if k not in self.objects]
        assert not extra, f"objects appeared in the model or inputs: {extra}"
        for key, before in self.tensors.items():
            now = after.tensors[key]
            assert now.facts == before.facts, f"a tensor changed: {before.facts} -> {now.facts}"
            assert torch.equal(now.data, before.data), "a tensor's data changed"
            if before.grad is not None:
                assert now.grad is not None and torch.equal(now.grad, before.grad)


@dataclass
class Snapshot:
    """Everything about a model, its inputs and torch that an analysis must leave as it was."""

    model: nn.Module
    inputs: Any
    state: dict[str, torch.Tensor]
    param_ids: list[int]
    data_ptrs: list[int]
    flags: list[tuple[str, bool]]
    hooks: list[tuple[str, str, list[Any]]]
    attributes: list[tuple[str, list[str]]]
    classes: list[type]
    reachable: Reachable
    global_state: dict[str, Any]
    rng: torch.Tensor
    numpy_rng: Any

    @classmethod
    def take(cls, model: nn.Module, inputs: Any = ()) -> Snapshot:
        params = list(model.parameters())
        modules = list(model.named_modules(remove_duplicate=False))
        return cls(
            model=model,
            inputs=inputs,
            state={k: _bits_tree(v) for k, v in model.state_dict(keep_vars=True).items()},
            param_ids=[id(p) for p in params],
            data_ptrs=[_data_ptr(p) for p in params],
            flags=[(name, m.training) for name, m in modules],
            hooks=[
                (name, attr, list(getattr(m, attr)))
                for name, m in modules
                for attr in _MODULE_HOOK_DICTS
                if hasattr(m, attr)
            ],
            attributes=[(name, sorted(vars(m))) for name, m in modules],
            classes=[type(m) for _, m in modules],
            reachable=Reachable.take(model, inputs),
            global_state=global_state(),
            rng=torch.get_rng_state(),
            numpy_rng=numpy.random.get_state(),
        )

    def assert_unchanged(self) -> None:
        after = Snapshot.take(self.model, self.inputs)
        assert list(after.state) == list(self.state), "state_dict keys changed"
        for key, value in self.state.items():
            assert _same_tree(after.state[key], value), f"{key} changed"
        assert after.param_ids == self.param_ids, "parameters were replaced"
        assert after.data_ptrs == self.data_ptrs, "parameter storage was replaced"
        assert after.flags == self.flags, "training flags changed"
        assert after.hooks == self.hooks, "hooks changed"
        assert after.attributes == self.attributes, "module attributes added or removed"
        assert after.classes == self.classes, "module classes changed"
        self.reachable.assert_same(after.reachable)
        for key, value in self.global_state.items():
            assert after.global_state[key] == value, f"global state {key!r} changed"
        assert torch.equal(after.rng, self.rng), "the RNG state changed"
        numpy_before, numpy_after = self.numpy_rng, after.numpy_rng
        assert numpy_before[0] == numpy_after[0] and (numpy_before[1] == numpy_after[1]).all()


def unchanged_after(call: Any, model: nn.Module, inputs: Any = ()) -> Any:
    """Run `call()`, check the model, its inputs and the process are as they were, and return
    what it returned (or the exception it raised, which is then not re-raised)."""
    before = Snapshot.take(model, inputs)
    try:
        result = call()
    except Exception as error:  # the caller checks the error; the state is checked here
        result = error
    before.assert_unchanged()
    return result
