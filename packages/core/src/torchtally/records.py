"""What a trace records: tensors as shape/dtype, one `OpCall` per op that ran, one `ModuleCall` per
module call, and the model's module tree. Records hold no tensor data, so a trace can be recounted
with other handlers long after the model ran."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily


class TensorMeta(NamedTuple):
    """A tensor as the trace keeps it: its shape and dtype, never its data. A sparse tensor also
    keeps how many elements it stores (`nnz`; None for a dense one); a dense tensor that is not
    contiguous (a transposed or expanded view) its strides (`stride`; None when contiguous)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    nnz: int | None = None
    stride: tuple[int, ...] | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def stored(self) -> int:
        """Elements stored: `nnz` for a sparse tensor, else every element."""
        return self.numel if self.nnz is None else self.nnz

    @property
    def nbytes(self) -> int:
        """Bytes of the distinct elements it addresses: an expanded (stride 0) dimension counts
        once, so ``x.expand(8, 1024)`` of a 1024-element ``x`` is 1024 elements, not 8192; a
        sparse tensor's stored values (its indices not included)."""
        if self.stride is None:  # the common case, inlined: this runs for every tensor
            stored = math.prod(self.shape) if self.nnz is None else self.nnz
            return stored * self.dtype.itemsize
        size = 1
        for n, step in zip(self.shape, self.stride, strict=False):
            if step or n == 0:
                size *= n
        return size * self.dtype.itemsize

    def __repr__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        nnz = "" if self.nnz is None else f", nnz={self.nnz}"
        stride = "" if self.stride is None else f", stride={list(self.stride)}"
        return f"TensorMeta({list(self.shape)}, {dtype}{nnz}{stride})"


class PackedMeta(NamedTuple):
    """A packed weight (the ``torch.ScriptObject`` quantized linear and convolution ops take) as
    the trace keeps it: the unpacked weight's shape and dtype, and a convolution's geometry.
    Another script object is kept as its class name (`weight` None)."""

    kind: str
    weight: TensorMeta | None = None
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    transposed: bool = False


def tensor_meta(tensor: torch.Tensor) -> TensorMeta:
    """`tensor`'s `TensorMeta`: strides only when it is dense and not contiguous."""
    if tensor.layout is not torch.strided:
        return _sparse_meta(tensor)
    if tensor.is_contiguous():
        return TensorMeta(tuple(tensor.shape), tensor.dtype)
    return TensorMeta(tuple(tensor.shape), tensor.dtype, None, tuple(tensor.stride()))


_SCALARS = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device})


def record_value(value: Any) -> Any:
    """Replace every tensor in `value` (nested in lists, tuples, dicts) by its `TensorMeta`."""
    if type(value) in _SCALARS:  # most arguments: checked first, as this runs for every op
        return value
    if isinstance(value, torch.Tensor):
        return tensor_meta(value)
    if isinstance(value, (list, tuple)):
        recorded = [record_value(v) for v in value]
        return recorded if isinstance(value, list) else tuple(recorded)
    if isinstance(value, Mapping):
        return {k: record_value(v) for k, v in value.items()}
    if isinstance(value, torch.ScriptObject):
        return _packed_meta(value)
    return value


def _packed_meta(value: Any) -> PackedMeta:
    """What a script object's `unpack` and geometry methods say (run on the real object, outside
    any fake mode: they only read it); never the object itself, which holds the weights."""
    kind = value._type().qualified_name().rsplit(".", 1)[-1]
    methods = set(value._method_names())
    if "unpack" not in methods:
        return PackedMeta(kind)
    with unset_fake_temporarily():
        weight = value.unpack()[0]
        meta = PackedMeta(kind, TensorMeta(tuple(weight.shape), weight.dtype))
        if "stride" in methods:
            meta = meta._replace(
                stride=tuple(value.stride()),
                padding=tuple(value.padding()),
                dilation=tuple(value.dilation()),
                groups=int(value.groups()),
                transposed=bool(value.transpose()),
            )
    return meta


def _sparse_meta(value: torch.Tensor) -> TensorMeta:
    try:
        nnz = int(value._nnz())
    except (RuntimeError, NotImplementedError):  # a layout without stored elements to count
        nnz = None
    return TensorMeta(tuple(value.shape), value.dtype, nnz)


def iter_tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside `value`: nested lists, tuples, dicts and dataclasses, depth first."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from iter_tensors(v)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from iter_tensors(v)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from iter_tensors(getattr(value, f.name))


def iter_tensor_metas(value: Any) -> Iterator[TensorMeta]:
    """Every `TensorMeta` inside a recorded value, depth first."""
    if isinstance(value, TensorMeta):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from iter_tensor_metas(v)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from iter_tensor_metas(v)


@dataclass(frozen=True)
class OpCall:
    """One op that ran under the dispatcher.

    `op` is the op's schema name (``aten::convolution``, ``torchvision::roi_align``), `overload` its
    overload (``default``, ``Tensor``). `arguments` maps every schema argument name to its recorded
    value, defaults filled in. `function` is the outermost torch-level function that issued the op
    (``linear``, ``conv2d``, ``matmul``), or None when no torch function was running (autograd).
    `scope` is the stack of canonical module names whose ``__call__`` was running, outermost first.
    `needs_input_grad`, for a backward op, says which inputs of the forward op whose autograd node
    it runs for need a gradient (autograd's ``next_functions``, in that op's order); None in the
    forward pass. A kernel that computes every gradient is charged only for these.
    `calls` are the ids of the recorded `FunctionCall`s the op ran inside, outermost first (only
    functions the trace was asked to watch; empty otherwise).
    """

    op: str
    overload: str
    arguments: Mapping[str, Any]
    outputs: tuple[Any, ...]
    function: str | None
    scope: tuple[str, ...]
    phase: str = "forward"
    needs_input_grad: tuple[bool, ...] | None = None
    calls: tuple[int, ...] = ()

    @property
    def inputs(self) -> tuple[Any, ...]:
        """The argument values in schema order."""
        return tuple(self.arguments.values())

    def arg(self, name: str) -> Any:
        """The recorded value of the schema argument `name`."""
        try:
            return self.arguments[name]
        except KeyError:
            raise KeyError(
                f"{self.op}.{self.overload} has no argument {name!r}; "
                f"its arguments are {', '.join(self.arguments)}"
            ) from None

    @property
    def input_tensors(self) -> list[TensorMeta]:
        return list(iter_tensor_metas(tuple(self.arguments.values())))

    @property
    def output_tensors(self) -> list[TensorMeta]:
        return list(iter_tensor_metas(self.outputs))


@dataclass(frozen=True)
class FunctionCall:
    """One call of a watched torch-level function (``linear``, ``einsum``) or of a custom
    ``torch.autograd.Function`` (named ``prim::PythonOp.<class name>``), with what it was given
    and what it returned, recorded as for ops. The ops it issued carry its `id` in ``calls``.

    A Python function's arguments (``F.batch_norm``) are all in `kwargs`, by parameter name,
    defaults included; a builtin's (``torch.matmul``, whose arguments follow its ATen schema) are
    as it was called. `position` is the index in ``Trace.ops`` of the first op it issued (where
    it would be, if it issued none); `calls` the ids of the watched calls it ran inside.
    """

    id: int
    name: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    outputs: tuple[Any, ...]
    scope: tuple[str, ...]
    position: int
    calls: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModuleCall:
    """One call of a module's ``__call__``: recorded for module handlers."""

    name: str
    module: torch.nn.Module = field(repr=False, compare=False)
    inputs: tuple[Any, ...]
    outputs: Any
    scope: tuple[str, ...]


@dataclass(frozen=True)
class ModuleInfo:
    """One module of the analysed model, under its canonical (first) name."""

    name: str
    type_name: str
    extra_repr: str
    children: tuple[tuple[str, str], ...]  # (attribute name, canonical name of the child)
    aliases: tuple[str, ...] = ()
    has_forward: bool = True


@dataclass(frozen=True)
class Measurement:
    """The forward pass timed on its device (``measure=True``): each forward op's seconds, in
    trace order, from the median (by total) of `repeats` timed passes after `warmup` ones; and
    the median of `repeats` plain passes, timed whole (the fastest of each with `statistic`
    ``"min"``)."""

    op_seconds: tuple[float, ...]
    forward_seconds: float
    repeats: int
    warmup: int
    device: str
    timer: str
    statistic: str = "median"
    # every module's calls, timed whole (its ops and the code between them), by module name
    module_seconds: Mapping[str, float] = field(default_factory=dict)
    # every pass's seconds, in the order they ran: plain ones, and timed ones (their ops' sum)
    plain_passes: tuple[float, ...] = ()
    timed_passes: tuple[float, ...] = ()


@dataclass(frozen=True)
class StorageLife:
    """One storage the run allocated: its size, the index of the op that made it, and how many
    ops had run when it was freed (None: still alive when the run ended)."""

    nbytes: int
    created: int
    freed: int | None


@dataclass(frozen=True)
class Trace:
    """Everything one run of the model recorded. Counting reads only this."""

    ops: tuple[OpCall, ...]
    module_calls: tuple[ModuleCall, ...]
    modules: Mapping[str, ModuleInfo]
    called_modules: frozenset[str]
    input_shapes: tuple[Any, ...]
    mode: str = "real"
    # every parameter's shape as the model ran (lazy modules materialised), by its first name
    param_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # a parameter registered under a second name (a tied weight: GPT-2's lm_head.weight) -> the
    # name it is counted under (transformer.wte.weight)
    shared_params: Mapping[str, str] = field(default_factory=dict)
    # the calls of watched functions, in the order they started (see `FunctionCall`)
    functions: tuple[FunctionCall, ...] = ()
    # their dtypes, and those that do not require grad; the buffers, by first name
    param_dtypes: Mapping[str, torch.dtype] = field(default_factory=dict)
    frozen_params: frozenset[str] = frozenset()
    buffers: Mapping[str, TensorMeta] = field(default_factory=dict)
    # every storage the run allocated, with when it was made and freed (torchtally.memory)
    storages: tuple[StorageLife, ...] = ()
    # the forward pass timed per op, with measure=True (torchtally.timing)
    measurement: Measurement | None = None
