"""The ``bytes`` metric: memory traffic, bytes read plus bytes written, for every op.

One default handler covers every recorded op (a plugin or user handler for ``bytes`` overrides it
per op). The rule: an op reads every tensor argument and writes every tensor it returns (and any
argument it mutates without returning it), each at its dtype's element size, counting only the
distinct elements a strided tensor addresses (an expanded dimension once). Views and
metadata-only ops move nothing. Arguments an op only overwrites (``out=`` targets, ``copy_``'s and
``fill_``'s destination) are written, not read. Gathers read what they gather, not their whole
source; in-place scatters write what they scatter, not their whole destination. Fused kernels and
caches make real traffic lower: see docs/conventions.md ("Bytes moved").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from torchtally.handlers import HandlerSet
from torchtally.records import OpCall, PackedMeta, TensorMeta

# The commonest views, ignored for bytes up front so counting skips them; any other view is found
# from its schema (every return aliases an argument without writing it) and moves 0 as well.
VIEW_OPS = frozenset(
    {
        "aten::_reshape_alias",
        "aten::alias",
        "aten::as_strided",
        "aten::detach",
        "aten::diagonal",
        "aten::expand",
        "aten::permute",
        "aten::select",
        "aten::slice",
        "aten::split",
        "aten::split_with_sizes",
        "aten::squeeze",
        "aten::t",
        "aten::transpose",
        "aten::unbind",
        "aten::unfold",
        "aten::unsqueeze",
        "aten::view",
        "aten::view_as_complex",
        "aten::view_as_real",
    }
)
# Ops that only make or change metadata: no element is read or written.
METADATA_OPS = frozenset(
    {
        "aten::_efficientzerotensor",
        "aten::_reshape_alias",
        "aten::_resize_output_",
        "aten::_unsafe_view",
        "aten::empty",
        "aten::empty_like",
        "aten::empty_permuted",
        "aten::empty_strided",
        "aten::lift",
        "aten::lift_fresh",
        "aten::new_empty",
        "aten::new_empty_strided",
        "aten::resize_",
        "aten::resize_as_",
        "aten::set_",
    }
)
# In-place ops that overwrite `self` without reading it (their other tensor arguments are read).
OVERWRITE_OPS = frozenset(
    {
        "aten::bernoulli_",
        "aten::cauchy_",
        "aten::copy_",
        "aten::exponential_",
        "aten::fill_",
        "aten::geometric_",
        "aten::log_normal_",
        "aten::normal_",
        "aten::random_",
        "aten::uniform_",
        "aten::zero_",
    }
)
# Gathers: the argument they gather from, of which only what lands in the output is read.
GATHER_SOURCES = {
    "aten::embedding": "weight",
    "aten::gather": "self",
    "aten::index": "self",
    "aten::index_select": "self",
    "aten::take": "self",
    "aten::take_along_dim": "self",
}
# In-place scatters: they write as many elements as their largest other tensor argument (the
# values or the index), not the whole `self`; the accumulating ones also read those elements.
SCATTER_OPS = frozenset(
    {
        "aten::_index_put_impl_",
        "aten::index_copy_",
        "aten::index_put_",
        "aten::masked_scatter_",
        "aten::scatter_",
    }
)
ACCUMULATING_SCATTER_OPS = frozenset(
    {"aten::index_add_", "aten::index_reduce_", "aten::scatter_add_", "aten::scatter_reduce_"}
)


GENERAL, NOTHING, GATHER, SCATTER = range(4)  # which rule an op follows


@dataclass(frozen=True)
class _Schema:
    """What the ``bytes`` rule needs to know about an op overload."""

    kind: int = GENERAL
    not_read: frozenset[str] = frozenset()  # arguments only written (out=, overwritten self)
    written: tuple[str, ...] = ()  # arguments written but not returned


_SCHEMAS: dict[tuple[str, str], _Schema] = {}


def _schema(op: str, overload: str) -> _Schema:
    """The rule for one op overload, worked out once."""
    info = _SCHEMAS.get((op, overload))
    if info is None:
        info = _SCHEMAS[(op, overload)] = _read_schema(op, overload)
    return info


def _read_schema(op: str, overload: str) -> _Schema:
    if op in METADATA_OPS:
        return _Schema(NOTHING)
    if op in GATHER_SOURCES:
        return _Schema(GATHER)
    if op in SCATTER_OPS or op in ACCUMULATING_SCATTER_OPS:
        return _Schema(SCATTER)
    namespace, _, name = op.partition("::")
    try:
        func = getattr(getattr(getattr(torch.ops, namespace), name), overload)
        schema = func._schema
    except (AttributeError, RuntimeError):
        return _Schema()  # a higher-order op, or a library not loaded: the general rule
    if torch.Tag.inplace_view in func.tags:
        return _Schema(NOTHING)  # t_, squeeze_, as_strided_: metadata in place
    returns = schema.returns
    if returns and all(r.alias_info is not None and not r.alias_info.is_write for r in returns):
        return _Schema(NOTHING)  # a view
    returned = {
        alias for r in returns if r.alias_info is not None for alias in r.alias_info.before_set
    }
    not_read: set[str] = set()
    written: list[str] = []
    for argument in schema.arguments:
        alias = argument.alias_info
        if alias is None or not alias.is_write:
            continue
        if argument.is_out or (op in OVERWRITE_OPS and argument.name == "self"):
            not_read.add(argument.name)
        if not returned.intersection(alias.before_set):
            written.append(argument.name)
    return _Schema(GENERAL, frozenset(not_read), tuple(written))


def _nbytes(value: Any) -> int:
    """Bytes of every tensor in a recorded value (a tensor, a list or tuple of them, a packed
    weight)."""
    kind = type(value)
    if kind is TensorMeta:
        return int(value.nbytes)
    if kind is list or kind is tuple:
        return sum(v.nbytes for v in value if type(v) is TensorMeta)
    if kind is PackedMeta and value.weight is not None:
        return int(value.weight.nbytes)  # a quantized op's packed weight
    return 0


_CONTAINERS = (list, tuple, PackedMeta)  # what else may hold tensors in a recorded argument


def bytes_moved(call: OpCall, options: Any = None) -> int:
    """Bytes `call` reads and writes (see the module docstring). `options` is not read (it is
    taken so that counting calls this directly)."""
    info = _SCHEMAS.get((call.op, call.overload)) or _schema(call.op, call.overload)
    kind = info.kind
    if kind != GENERAL:
        if kind == NOTHING:
            return 0
        if kind == GATHER:
            return _gather_bytes(call, GATHER_SOURCES[call.op])
        return _scatter_bytes(call)
    not_read = info.not_read
    moved = 0
    for name, value in call.arguments.items():
        value_type = type(value)
        if value_type is TensorMeta:  # most arguments: inlined
            if name not in not_read:
                moved += value.nbytes
        elif value_type in _CONTAINERS and name not in not_read:
            moved += _nbytes(value)
    for name in info.written:
        moved += _nbytes(call.arguments[name])
    for value in call.outputs:
        moved += value.nbytes if type(value) is TensorMeta else _nbytes(value)
    return moved


def _gather_bytes(call: OpCall, source: str) -> int:
    """Indices read, gathered elements read from the source, and the output written."""
    out = sum(_nbytes(value) for value in call.outputs)
    indices = sum(_nbytes(v) for name, v in call.arguments.items() if name != source)
    return indices + 2 * out


def _scatter_bytes(call: OpCall) -> int:
    """Values and indices read; as many elements of `self` written (read too if accumulating)."""
    target = call.arguments["self"]
    others = [
        t
        for name, value in call.arguments.items()
        if name != "self"
        for t in (value if type(value) in (list, tuple) else (value,))  # TensorMeta is a tuple
        if type(t) is TensorMeta
    ]
    read = sum(t.nbytes for t in others)
    elements = max((t.nbytes // t.dtype.itemsize for t in others), default=0)
    written = min(elements, target.numel) * target.dtype.itemsize
    accumulate = call.op in ACCUMULATING_SCATTER_OPS or call.arguments.get("accumulate") is True
    return int(read + written * (2 if accumulate else 1))


def conv_bytes(call: OpCall) -> dict[str, int]:
    """A convolution's bytes under the name its flops have (``conv``), whichever op ran it."""
    return {"conv": bytes_moved(call)}


def register(handlers: HandlerSet) -> None:
    handlers.default("bytes", bytes_moved)
    handlers.add_ops(
        ("aten::convolution", "aten::_convolution", "aten::convolution_backward"),
        bytes=conv_bytes,
    )
    handlers.ignore(*VIEW_OPS, *METADATA_OPS, metric="bytes")
