"""Fake tensors: run a model on shapes and dtypes alone, with no real memory and no real compute.

`fake_model` swaps every parameter and buffer for a `FakeTensor` of the same shape, dtype and
``requires_grad`` (tied weights stay tied); `preserve_model_state` puts the originals back. A model
built on the meta device gets fakes that claim the inputs' device, so meta weights and CPU inputs
meet as they would on a real machine. A lazy module's uninitialized tensors have no shape yet: the
tracer fakes them once its first forward has materialised them (on the meta device).

`FakeOutputs` makes a fake run cheap: an op met again with the same argument metadata reuses what
it gave before instead of going through `FakeTensorMode`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
    FakeTensorMode,
    unset_fake_temporarily,
)
from torch.nn.parameter import is_lazy
from torch.utils._mode_utils import no_dispatch
from torch.utils._pytree import tree_flatten, tree_map

MODES = ("auto", "real", "fake", "meta")

# What a fake run raises when the model needs real data (nms, nonzero, .item() on a result).
# (An op with no fake kernel raises UnsupportedOperatorException: a gap in PyTorch, not data.)
NEEDS_REAL_DATA = (DataDependentOutputException, DynamicOutputShapeException)
# FakeTensorMode logs the traceback of every kernel that raises before raising it to us; we report
# the error once, in our words, so that log is muted while a model runs on fake tensors.
_FAKE_TENSOR_LOG = logging.getLogger("torch._subclasses.fake_tensor")


def rejected_inputs(error: BaseException) -> bool:
    """Whether `error` is an op's kernel refusing its arguments on fake tensors (a shape or dtype
    mismatch: the inputs are wrong, and a real run would fail the same way), as opposed to an op
    fake tensors cannot run (no fake kernel, data-dependent output) or Python code that needs
    data."""
    if isinstance(error, (*NEEDS_REAL_DATA, NotImplementedError)) or not isinstance(
        error, (RuntimeError, ValueError, TypeError, IndexError)
    ):
        return False
    traceback = error.__traceback__
    while traceback is not None:
        code = traceback.tb_frame.f_code
        if code.co_name == "_dispatch_impl" and code.co_filename.endswith("fake_tensor.py"):
            return type(error).__name__ != "UnsupportedOperatorException"
        traceback = traceback.tb_next
    return False


@dataclass(frozen=True)
class TensorSpec:
    """A tensor argument of a failed op: what it takes to make a real one like it (a dataclass,
    so that pytree maps it as one value)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device


@dataclass(frozen=True)
class FailedCall:
    """An op that raised on fake tensors, with its arguments as `TensorSpec`s: enough to ask its
    real kernel whether it accepts such arguments."""

    func: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @classmethod
    def of(cls, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> FailedCall:
        def spec(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return TensorSpec(tuple(value.shape), value.dtype, value.device)
            return value

        return cls(func, tree_map(spec, args), tree_map(spec, dict(kwargs)))

    def real_kernel_accepts(self, max_elements: int = 1 << 24) -> bool | None:
        """Run the op's real kernel on zeros of the same shapes and dtypes: whether it accepts
        them. None when that cannot be tried here (not on the CPU, larger than `max_elements`
        elements in all, a dtype zeros cannot be made of)."""
        specs = [v for v in tree_flatten((self.args, self.kwargs))[0] if isinstance(v, TensorSpec)]
        if any(s.device.type != "cpu" for s in specs):
            return None
        if sum(math.prod(s.shape) for s in specs) > max_elements:
            return None

        def real(value: Any) -> Any:
            if isinstance(value, TensorSpec):
                return torch.zeros(value.shape, dtype=value.dtype)
            return value

        try:
            with unset_fake_temporarily(), torch.no_grad():
                args, kwargs = tree_map(real, (self.args, self.kwargs))
        except (RuntimeError, TypeError):
            return None
        try:
            with unset_fake_temporarily(), torch.no_grad():
                self.func(*args, **kwargs)
        except Exception:
            return False
        return True


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(
            f"mode must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}: 'real' runs "
            "the model, 'fake' and 'meta' run it on shapes only, 'auto' picks for you"
        )
    return mode


def is_meta_model(model: nn.Module) -> bool:
    """True when a parameter or buffer is on the meta device (built under ``device('meta')``).

    A lazy module's uninitialized tensors hold no weights: they do not count."""
    tensors = [*model.parameters(), *model.buffers()]
    return any(t.device.type == "meta" for t in tensors if not is_lazy(t))


class FakeUnsupportedError(RuntimeError):
    """A parameter or buffer of the model cannot be stood for by a fake tensor."""


def input_device(args: Any, default: torch.device | None = None) -> torch.device:
    """The device of the first real tensor in `args`, else `default`, else the CPU."""
    found: list[torch.device] = []

    def visit(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.device.type != "meta" and not found:
            found.append(value.device)
        return value

    tree_map(visit, args)
    return found[0] if found else default or torch.device("cpu")


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer that is not on the meta device."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.device.type != "meta" and not is_lazy(tensor):
            return tensor.device
    return None


# TorchScript ops that write a new tensor's memory directly, which a fake tensor has none of:
# PyTorch crashes (a segmentation fault) running them on fake tensors.
_WRITES_MEMORY = ("aten::tensor", "aten::as_tensor")


def _script_writing_memory(model: nn.Module) -> str | None:
    """Why fake tensors cannot run a TorchScript module in `model` (the model itself or a
    scripted submodule of an eager one), or None: its code, inlined, builds a tensor from a
    list (``torch.tensor([h, w])``), which TorchScript does by writing into its memory."""
    inside: set[int] = set()  # submodules of a TorchScript module already looked through
    for module in model.modules():
        if not isinstance(module, torch.jit.ScriptModule) or id(module) in inside:
            continue
        inside.update(id(m) for m in module.modules())
        for method in module._c._method_names():
            graph = module._c._get_method(method).graph.copy()
            torch._C._jit_pass_inline(graph)  # the copy: the functions and methods it calls too
            for kind in _WRITES_MEMORY:
                for node in graph.findAllNodes(kind):
                    if str(node.inputsAt(0).type()).startswith("List["):
                        where = str(node.sourceRange()).strip().splitlines()
                        return (
                            f"this TorchScript module builds a tensor from a list ({kind}, "
                            f"{where[0].strip() if where else 'in its code'}), which TorchScript "
                            "does by writing into the tensor's memory, and fake tensors have "
                            "none.\nAnalyse it with mode='real' (mode='auto' falls back to it; "
                            "a module loaded on the meta device needs its weights loaded)."
                        )
    return None


class _Faker:
    """Makes fakes under one `FakeTensorMode`; the same tensor always gets the same fake."""

    def __init__(self, fake_mode: FakeTensorMode, meta_device: torch.device) -> None:
        self.fake_mode = fake_mode
        self.meta_device = meta_device
        self._made: dict[int, torch.Tensor] = {}

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or isinstance(value, FakeTensor):
            return value
        fake = self._made.get(id(value))
        if fake is None:
            fake = self._fake(value)
            self._made[id(value)] = fake
        return fake

    def fake_module(self, module: nn.Module) -> None:
        """Swap the module's own parameters and buffers for fakes; lazy ones are left alone."""
        if isinstance(module, torch.jit.ScriptModule):
            # its slots live in C++ and keep the real tensors: the fake mode is told which fake
            # stands for each, met as an op's argument (meta weights then claim the inputs'
            # device, as an eager module's do)
            converter = self.fake_mode.fake_tensor_converter
            for held in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
                converter.set_tensor_memo(held, self(held))
            return
        for kind, slots in (("parameter", module._parameters), ("buffer", module._buffers)):
            for name, tensor in slots.items():
                if tensor is None or is_lazy(tensor):
                    continue
                try:
                    slots[name] = self(tensor)
                except Exception as error:
                    raise FakeUnsupportedError(
                        f"the {kind} {name!r} of a {type(module).__name__} is a "
                        f"{type(tensor).__name__} ({tensor.layout}, {tensor.dtype}) that fake "
                        f"tensors cannot stand for ({type(error).__name__}: {error}); analyse "
                        "it with mode='real' (mode='auto' falls back to it)"
                    ) from error

    def _fake(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.layout == torch.sparse_coo and tensor.device.type != "meta":
            return self._fake_sparse(tensor)
        if type(tensor) not in (torch.Tensor, nn.Parameter) or tensor.layout != torch.strided:
            return self.fake_mode.from_tensor(tensor)  # subclasses, sparse: the general path
        # Shape, strides and dtype are all a fake needs; much cheaper than from_tensor.
        meta = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta")
        device = self.meta_device if tensor.device.type == "meta" else tensor.device
        fake = FakeTensor(self.fake_mode, meta, device)
        if isinstance(tensor, nn.Parameter):
            fake._is_param = True  # isinstance(fake, Parameter), as from_tensor marks it
        return fake.requires_grad_(True) if tensor.requires_grad else fake

    def _fake_sparse(self, tensor: torch.Tensor) -> torch.Tensor:
        """A sparse COO fake built from fakes of its indices and values, so that it stores as
        many elements as the real one (`from_tensor` gives a fake sparse tensor none)."""
        indices, values = (
            self.fake_mode.from_tensor(t) for t in (tensor._indices(), tensor._values())
        )
        with self.fake_mode:
            fake = torch.sparse_coo_tensor(
                indices, values, tensor.shape, is_coalesced=tensor.is_coalesced()
            )
        return fake.requires_grad_(True) if tensor.requires_grad else fake


FakeModel = tuple[FakeTensorMode, tuple[Any, ...], dict[str, Any], Callable[[nn.Module], None]]


@contextmanager
def fake_model(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterator[FakeModel]:
    """Swap the model's parameters and buffers for fakes; yield the mode, fake inputs, and the
    function that fakes a module's tensors (for lazy modules, once they have materialised).

    The caller restores the originals (`preserve_model_state` does); the mode is not entered.
    """
    refusal = _script_writing_memory(model)
    if refusal is not None:
        raise FakeUnsupportedError(refusal)
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    # meta weights and meta (shape-only) inputs claim the inputs' device, else the model's
    faker = _Faker(fake_mode, input_device((args, kwargs), model_device(model)))
    for module in model.modules():
        faker.fake_module(module)
    muted = _FAKE_TENSOR_LOG.disabled
    _FAKE_TENSOR_LOG.disabled = True
    try:
        yield fake_mode, tree_map(faker, args), tree_map(faker, kwargs), faker.fake_module
    finally:
        _FAKE_TENSOR_LOG.disabled = muted


# Tags of ops whose outputs are not a function of argument metadata alone.
_UNCACHED_TAGS = frozenset(
    {
        torch.Tag.dynamic_output_shape,
        torch.Tag.data_dependent_output,
        torch.Tag.inplace_view,
    }
)
_KEY_SCALARS = frozenset(
    {
        int,
        float,
        bool,
        str,
        type(None),
        torch.dtype,
        torch.device,
        torch.layout,
        torch.memory_format,
    }
)
_DEVICE = torch.ops.prim.device.default
_MAX_RECIPES = 20_000  # under 1 KB each; a ResNet-50 or a Llama-2-70B makes about 55


def reusable_returns(func: Any) -> tuple[int, ...] | None:
    """Whether `func`'s results can be reused from an earlier call with the same argument
    metadata, and how: the arguments an in-place or out= op writes and returns, one per result,
    or ``()`` for a functional op, whose results are new tensors. None for views (they must share
    their base), ops whose data decides the shape, and anything that returns something other than
    tensors."""
    if not isinstance(func, torch._ops.OpOverload) or _UNCACHED_TAGS.intersection(func.tags):
        return None
    schema = func._schema
    returns = schema.returns
    if not returns or any(str(r.type) not in ("Tensor", "Tensor[]") for r in returns):
        return None
    if not schema.is_mutable and all(r.alias_info is None for r in returns):
        return ()
    written = []
    for ret in returns:
        alias = ret.alias_info
        if alias is None or not alias.is_write or str(ret.type) != "Tensor":
            return None
        sources = [
            i
            for i, a in enumerate(schema.arguments)
            if a.alias_info is not None and a.alias_info.before_set == alias.before_set
        ]
        if len(sources) != 1:
            return None
        written.append(sources[0])
    return tuple(written)


OutputMeta = tuple[torch.Size, tuple[int, ...], torch.dtype, torch.device]


@dataclass(frozen=True)
class NewOutputs:
    """Recipe of a functional op: new fakes with this metadata, in this container (None: one)."""

    container: type | None
    outputs: tuple[OutputMeta, ...]


@dataclass(frozen=True)
class ReturnTargets:
    """Recipe of an in-place or out= op that left its targets' metadata alone: return them."""


@dataclass(frozen=True)
class Bypass:
    """Recipe of an op whose results cannot be reused: run it through `FakeTensorMode`."""

    reason: str


Recipe = NewOutputs | ReturnTargets | Bypass
RETURN_TARGETS = ReturnTargets()


@dataclass
class RecipeStats:
    """How often a recipe was reused (hits), made (misses) or said to bypass, by reason."""

    hits: int = 0
    misses: int = 0
    bypasses: Counter[str] = field(default_factory=Counter)


class FakeOutputs:
    """Reuses the results of ops that met the same argument metadata before, without a trip
    through `FakeTensorMode`: a functional op gets new fakes of the shapes, strides and dtypes it
    gave then; an in-place or out= op that left its target's metadata alone returns the target.

    Networks repeat their blocks, so most ops repeat, and `FakeTensorMode`'s own cache hashes
    much more per call. What an op gave is a function of the metadata in the key alone, so the
    recipes are shared by every analysis in the process, as `FakeTensorMode` shares its cache.
    Only fakes of this mode take part (never constants, whose values fake mode tracks).
    """

    _recipes: ClassVar[dict[tuple[Any, ...], Recipe]] = {}
    _returns: ClassVar[dict[Any, tuple[int, ...] | None]] = {}
    stats: ClassVar[RecipeStats] = RecipeStats()

    def __init__(self, fake_mode: FakeTensorMode) -> None:
        self.fake_mode = fake_mode

    def __call__(self, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        if func is _DEVICE and type(args[0]) is FakeTensor:
            return args[0].fake_device  # a fake's device is its own attribute
        kernel = FAKE_KERNELS.get(func)
        if kernel is not None:
            return kernel(self.fake_mode, *args, **kwargs)
        if func in self._returns:
            returns = self._returns[func]
        else:
            returns = self._returns[func] = reusable_returns(func)
        key = None if returns is None else self._key(func, args, kwargs)
        if returns is None or key is None:
            return _sparse_with_stored(func(*args, **kwargs), args, self.fake_mode)
        recipe = self._recipes.get(key)
        if recipe is None:
            self.stats.misses += 1
            targets = _written(func, returns, args, kwargs)
            before = [self._part(t) for t in targets]
            out = func(*args, **kwargs)
            if len(self._recipes) >= _MAX_RECIPES:
                self._recipes.clear()
            self._recipes[key] = self._recipe(out, targets, before)
            return out
        if isinstance(recipe, NewOutputs):
            self.stats.hits += 1
            return self._remake(recipe)
        if isinstance(recipe, ReturnTargets):
            self.stats.hits += 1
            targets = _written(func, returns, args, kwargs)
            return targets[0] if len(targets) == 1 else tuple(targets)
        self.stats.bypasses[recipe.reason] += 1
        return _sparse_with_stored(func(*args, **kwargs), args, self.fake_mode)

    def _key(self, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        parts: list[Any] = [func, torch.get_default_dtype()]
        try:
            for value in args:
                parts.append(self._part(value))
            for name, value in kwargs.items():
                parts.append((name, self._part(value)))
        except _NotCacheable:
            return None
        return tuple(parts)

    def _part(self, value: Any) -> Any:
        kind = type(value)
        if kind in _KEY_SCALARS:
            return (kind, value)
        if kind is FakeTensor:
            if (
                value.fake_mode is not self.fake_mode
                or value.constant is not None
                or value.dtype.is_complex  # conjugate views: left to FakeTensorMode
            ):
                raise _NotCacheable
            return (value.shape, value.stride(), value.dtype, value.device, value.layout)
        if kind in (list, tuple):
            return (kind, *(self._part(v) for v in value))
        raise _NotCacheable  # a real tensor (a constant), a SymInt, anything else

    def _recipe(self, out: Any, targets: list[Any], before: list[Any]) -> Recipe:
        """What to give the next time the same key comes."""
        outputs = out if isinstance(out, (list, tuple)) else (out,)
        if any(type(t) is not FakeTensor or t.fake_mode is not self.fake_mode for t in outputs):
            return Bypass("an output is not a fake tensor of this mode")
        if targets:  # reusable if the op gave its targets back and left their metadata alone
            if len(outputs) == len(targets) and all(
                o is t and self._part(t) == b
                for o, t, b in zip(outputs, targets, before, strict=True)
            ):
                return RETURN_TARGETS
            return Bypass("an in-place or out= op changed or did not return its target")
        metas = []
        for t in outputs:
            if t.layout != torch.strided:
                return Bypass("an output is not strided")
            if t.constant is not None:
                return Bypass("an output is a constant, whose value fake mode tracks")
            if t.storage_offset() != 0:
                return Bypass("an output is a view into a storage")
            if t.dtype.is_complex:
                return Bypass("an output is complex (conjugate views)")
            metas.append((t.shape, t.stride(), t.dtype, t.device))
        return NewOutputs(type(out) if isinstance(out, (list, tuple)) else None, tuple(metas))

    def _remake(self, recipe: NewOutputs) -> Any:
        with no_dispatch():
            metas = [
                torch.empty_strided(shape, stride, dtype=dtype, device="meta")
                for shape, stride, dtype, _ in recipe.outputs
            ]
        fakes = [
            FakeTensor(self.fake_mode, meta, device)
            for meta, (_, _, _, device) in zip(metas, recipe.outputs, strict=True)
        ]
        return fakes[0] if recipe.container is None else recipe.container(fakes)


def new_fake(
    fake_mode: FakeTensorMode,
    like: torch.Tensor,
    shape: tuple[int, ...],
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """A new contiguous fake of `shape` with `like`'s device and dtype (or `dtype`)."""
    with no_dispatch():
        meta = torch.empty(shape, dtype=dtype or like.dtype, device="meta")
    return FakeTensor(fake_mode, meta, like.device)


def _ctc_loss(
    fake_mode: FakeTensorMode,
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: Any,
    target_lengths: Any,
    *args: Any,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``_ctc_loss``: the alphas' size depends on the longest target, known from a list of
    lengths; from tensor lengths (data) the longest target the shapes allow is used."""
    batched = log_probs.dim() == 3
    batch = log_probs.shape[1] if batched else 1
    if isinstance(target_lengths, (list, tuple)):
        labels = max((int(n) for n in target_lengths), default=0)
    else:
        labels = targets.shape[-1] if targets.dim() == 2 else targets.numel()
    nll = new_fake(fake_mode, log_probs, (batch,) if batched else ())
    return nll, new_fake(fake_mode, log_probs, (batch, log_probs.shape[0], 2 * labels + 1))


def _ctc_loss_backward(
    fake_mode: FakeTensorMode, grad: torch.Tensor, log_probs: torch.Tensor, *args: Any, **kw: Any
) -> torch.Tensor:
    return new_fake(fake_mode, log_probs, tuple(log_probs.shape))


def _grouped_mm(
    fake_mode: FakeTensorMode,
    a: torch.Tensor,
    b: torch.Tensor,
    offs: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``_grouped_mm`` (mixture-of-experts layers): PyTorch's meta kernel takes bfloat16 only,
    its CPU and CUDA kernels float32 too. The result's shape, as the meta kernel gives it: 2d x
    2d (G, M, N), 2d x 3d (M, N), 3d x 2d (M, N), 3d x 3d (G, M, N)."""
    shape: tuple[int, ...]
    if a.dim() == 2 and b.dim() == 2:
        shape = (offs.shape[0] if offs is not None else 1, a.shape[0], b.shape[1])
    elif a.dim() == 2:
        shape = (a.shape[0], b.shape[-1])
    elif b.dim() == 2:
        shape = (a.shape[1], b.shape[1])
    else:
        shape = (a.shape[0], a.shape[1], b.shape[-1])
    return new_fake(fake_mode, a, shape, out_dtype)


# Fake kernels for ops fake mode cannot run (no meta kernel, or one it takes for data-dependent)
# though their results' shapes follow from the arguments.
FAKE_KERNELS: dict[Any, Callable[..., Any]] = {
    torch.ops.aten._ctc_loss.default: _ctc_loss,
    torch.ops.aten._ctc_loss.Tensor: _ctc_loss,
    torch.ops.aten._ctc_loss_backward.default: _ctc_loss_backward,
    torch.ops.aten._ctc_loss_backward.Tensor: _ctc_loss_backward,
    torch.ops.aten._grouped_mm.default: _grouped_mm,
}


def _sparse_with_stored(out: Any, args: tuple[Any, ...], fake_mode: FakeTensorMode) -> Any:
    """A sparse COO result as fake mode makes it stores no element (its meta kernels keep none):
    give it as many as its sparse arguments store (``t``, ``clone``, ``mul`` keep their input's;
    several inputs' total bounds a sum), so that ops on it count as in a real run."""
    if type(out) is not FakeTensor or out.layout != torch.sparse_coo or out._nnz():
        return out
    stored = sum(a._nnz() for a in args if type(a) is FakeTensor and a.layout == torch.sparse_coo)
    if not stored:
        return out
    with fake_mode:
        indices = torch.empty((out.sparse_dim(), stored), dtype=torch.long, device=out.device)
        values = torch.empty(
            (stored, *out.shape[out.sparse_dim() :]), dtype=out.dtype, device=out.device
        )
        rebuilt = torch.sparse_coo_tensor(indices, values, out.shape, is_coalesced=True)
    return rebuilt.requires_grad_(out.requires_grad)


def _written(
    func: Any, returns: tuple[int, ...], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> list[Any]:
    """The arguments an in-place or out= op writes and returns (none for a functional op)."""
    arguments = func._schema.arguments
    return [args[i] if i < len(args) else kwargs[arguments[i].name] for i in returns]


class _NotCacheable(Exception):
    pass
