"""Scatter and index reductions: the aggregations of graph networks (``index_add_``,
``scatter_add_``, ``scatter_reduce``, ``index_reduce``, ``segment_reduce``), accumulating
writes (``index_put_(..., accumulate=True)``, ``scatter(..., reduce="add")``), bags of
embeddings (``nn.EmbeddingBag``) and the overlap-add of ``F.fold`` (``col2im``).

They are reductions, so they count with element-wise counting on, like ``sum``: one flop per
element scattered (an add, multiply, min or max into the target), and for ``"mean"`` one more per
element (the count) and one per target element (the divide). Without it they are listed as
unsupported, never dropped. The same ops without a reduction (``scatter``, ``index_put`` without
``accumulate``) only move data and count 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from torchtally.handlers import CountOptions, HandlerSet
from torchtally.ops.catalog import REDUCTION_FLOPS
from torchtally.ops.common import no_activations
from torchtally.records import OpCall, TensorMeta

_ADD = REDUCTION_FLOPS["aten::sum"]


def _reduced(elements: int, targets: int, reduce: str | None) -> int:
    """Flops of `elements` scattered into `targets` with reduction `reduce`."""
    if reduce == "mean":
        return 2 * elements * _ADD + targets  # sums, counts, then a divide per target
    return elements * _ADD


def index_reduce_flops(call: OpCall, options: CountOptions) -> Any:
    """``index_add``, ``index_reduce``: every element of `source` goes into `self`."""
    if not options.elementwise:
        return NotImplemented
    source: TensorMeta = call.arg("source")
    target: TensorMeta = call.arg("self")
    return _reduced(source.numel, target.numel, call.arguments.get("reduce"))


def scatter_reduce_flops(call: OpCall, options: CountOptions) -> Any:
    """``scatter_add``, ``scatter_reduce``, ``scatter`` with ``reduce=``: one element of `src`
    per element of `index`. Plain ``scatter`` only writes: 0."""
    reduce = call.arguments.get("reduce")
    if call.op in ("aten::scatter", "aten::scatter_") and reduce is None:
        return 0
    if not options.elementwise:
        return NotImplemented
    index: TensorMeta = call.arg("index")
    target: TensorMeta = call.arg("self")
    return _reduced(index.numel, target.numel, "sum" if reduce is None else reduce)


def segment_reduce_flops(call: OpCall, options: CountOptions) -> Any:
    """``segment_reduce``: every element of `data` reduced into its segment's result."""
    if not options.elementwise:
        return NotImplemented
    data: TensorMeta = call.arg("data")
    out: TensorMeta = call.output_tensors[0]
    return _reduced(data.numel, out.numel, call.arg("reduce"))


def index_put_flops(call: OpCall, options: CountOptions) -> Any:
    """``index_put`` with ``accumulate=True`` adds the values into the indexed elements (1 each);
    without it, it only writes: 0."""
    if not call.arguments.get("accumulate"):
        return 0
    if not options.elementwise:
        return NotImplemented
    return _indexed_elements(call.arg("self"), call.arg("indices"), call.arg("values"))


def _indexed_elements(
    target: TensorMeta, indices: list[TensorMeta | None], values: TensorMeta
) -> int:
    """Elements `target[indices]` selects: the indices' broadcast shape times the dims they do
    not index. A boolean mask selects as many elements as it holds true, which is data: `values`
    shows how many unless it is one value broadcast, then every element the mask covers counts
    (an upper bound)."""
    given = [i for i in indices if i is not None]
    rest = [n for d, n in enumerate(target.shape) if d >= len(indices) or indices[d] is None]
    if any(i.dtype == torch.bool for i in given):
        if values.numel > 1:
            return values.numel
        covered = math.prod(n for i in given for n in i.shape)
        return covered * math.prod(target.shape[sum(i.ndim for i in given) :])
    broadcast = _broadcast([i.shape for i in given])
    return math.prod(broadcast) * math.prod(rest)


def _broadcast(shapes: list[tuple[int, ...]]) -> list[int]:
    ndim = max((len(s) for s in shapes), default=0)
    result = [1] * ndim
    for shape in shapes:
        for d, n in enumerate(shape, start=ndim - len(shape)):
            result[d] = max(result[d], n)
    return result


EMBEDDING_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


def embedding_bag_flops(call: OpCall, options: CountOptions) -> Any:
    """``_embedding_bag``: each looked-up row is added (or compared, for max; multiply-added with
    per-sample weights) into its bag: 1 per index and embedding dim; mean divides each bag once."""
    if not options.elementwise:
        return NotImplemented
    weight: TensorMeta = call.arg("weight")
    indices: TensorMeta = call.arg("indices")
    looked_up = indices.numel * weight.shape[-1] * _ADD
    if EMBEDDING_BAG_MODES.get(int(call.arg("mode"))) == "mean":
        bags: TensorMeta = call.output_tensors[0]
        return looked_up + bags.numel
    return looked_up


def embedding_bag_backward_flops(call: OpCall, options: CountOptions) -> Any:
    """The bags' gradients added back into the looked-up rows: 1 per index and embedding dim
    (the mean's scale and per-sample weights fold into that multiply-add). The per-sample
    weights' own gradient is a dot product of two rows per index: also 1 per index and dim."""
    if not options.elementwise:
        return NotImplemented
    grad: TensorMeta = call.arg("grad")
    indices: TensorMeta = call.arg("indices")
    return indices.numel * grad.shape[-1]


def col2im_flops(call: OpCall, options: CountOptions) -> Any:
    """``col2im`` (``F.fold``, and ``F.unfold``'s gradient): overlapping patches are added into
    the image, 1 per patch element. ``im2col`` (``F.unfold``) only copies."""
    if not options.elementwise:
        return NotImplemented
    columns: TensorMeta = call.arg("self")
    return columns.numel


INDEX_REDUCTIONS = (
    "aten::index_add",
    "aten::index_add_",
    "aten::index_reduce",
    "aten::index_reduce_",
)
SCATTER_REDUCTIONS = (
    "aten::scatter_add",
    "aten::scatter_add_",
    "aten::scatter_reduce",
    "aten::scatter_reduce_",
    "aten::scatter",
    "aten::scatter_",
)
INDEX_PUTS = (
    "aten::index_put",
    "aten::index_put_",
    "aten::_index_put_impl",
    "aten::_index_put_impl_",
    "aten::_unsafe_index_put",
)


def put_flops(call: OpCall, options: CountOptions) -> Any:
    """``put`` with ``accumulate=True`` adds `source` into `self` at flat indices: 1 each."""
    if not call.arguments.get("accumulate"):
        return 0
    if not options.elementwise:
        return NotImplemented
    source: TensorMeta = call.arg("source")
    return source.numel


def masked_accumulate_flops(call: OpCall, options: CountOptions) -> Any:
    """``_unsafe_masked_index_put_accumulate``: the values added into the indexed elements."""
    if not options.elementwise:
        return NotImplemented
    values: TensorMeta = call.arg("values")
    return values.numel


def segment_reduce_backward_flops(call: OpCall, options: CountOptions) -> Any:
    """Each data element gets its segment's gradient (scaled for a mean, compared for max/min,
    divided for a product): 1 per data element."""
    if not options.elementwise:
        return NotImplemented
    data: TensorMeta = call.arg("data")
    return data.numel


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(INDEX_REDUCTIONS, flops=index_reduce_flops, activations=no_activations)
    handlers.add_ops(SCATTER_REDUCTIONS, flops=scatter_reduce_flops, activations=no_activations)
    handlers.add_ops(INDEX_PUTS, flops=index_put_flops, activations=no_activations)
    handlers.add_ops("aten::segment_reduce", flops=segment_reduce_flops, activations=no_activations)
    bags = ("aten::_embedding_bag", "aten::_embedding_bag_forward_only")
    handlers.add_ops(bags, flops=embedding_bag_flops, activations=no_activations)
    bag_gradients = (
        "aten::_embedding_bag_backward",
        "aten::_embedding_bag_dense_backward",
        "aten::_embedding_bag_per_sample_weights_backward",
    )
    handlers.add_ops(bag_gradients, flops=embedding_bag_backward_flops, activations=no_activations)
    handlers.add_ops("aten::col2im", flops=col2im_flops, activations=no_activations)
    handlers.add_ops(("aten::put", "aten::put_"), flops=put_flops, activations=no_activations)
    handlers.add_ops(
        "aten::_unsafe_masked_index_put_accumulate",
        flops=masked_accumulate_flops,
        activations=no_activations,
    )
    handlers.add_ops(
        "aten::_segment_reduce_backward",
        flops=segment_reduce_backward_flops,
        activations=no_activations,
    )
