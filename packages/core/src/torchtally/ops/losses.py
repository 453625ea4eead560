"""Losses and other element-wise kernels whose cost is per INPUT element or per target, not per
output element, and the foreach lists (optimizers' multi-tensor ops). Counted with element-wise
counting on, as the element-wise table's ops are (catalog.py has the costs)."""

from __future__ import annotations

from typing import Any

from torchtally.handlers import CountOptions, HandlerSet
from torchtally.ops.catalog import LOSS_FLOPS, POINTWISE_FLOPS, REDUCTION_FLOPS
from torchtally.ops.common import no_activations
from torchtally.records import OpCall, TensorMeta, iter_tensor_metas


def loss_flops(call: OpCall, options: CountOptions) -> Any:
    """The loss's formula per input element, and the reduction's add unless it is "none"."""
    if not options.elementwise:
        return NotImplemented
    per_element = LOSS_FLOPS[call.op]
    if not call.op.endswith("_backward") and call.arguments.get("reduction", 1):
        per_element += REDUCTION_FLOPS["aten::sum"]
    x: TensorMeta = call.arg("self")
    return per_element * x.numel


def multilabel_margin_flops(call: OpCall, options: CountOptions) -> Any:
    """Each sample compares every target label with every class: at most C x C terms of
    max(0, 1 - (x[y] - x[i])) (sub, sub, max); how many labels a sample has is data."""
    if not options.elementwise:
        return NotImplemented
    x: TensorMeta = call.arg("self")
    classes = x.shape[-1]
    return 3 * x.numel * classes


def nll_loss_flops(call: OpCall, options: CountOptions) -> Any:
    """One picked log-probability per target, weighted and added up: 1 multiply-add each."""
    if not options.elementwise:
        return NotImplemented
    target: TensorMeta = call.arg("target")
    return target.numel


def mvlgamma_flops(call: OpCall, options: CountOptions) -> Any:
    """log Gamma_p(x): p lgamma calls and adds per element."""
    if not options.elementwise:
        return NotImplemented
    out: TensorMeta = call.output_tensors[0]
    return int(call.arg("p")) * (POINTWISE_FLOPS["aten::lgamma"] + 1) * out.numel


def trace_flops(call: OpCall, options: CountOptions) -> Any:
    """The diagonal's sum: 1 per diagonal element."""
    if not options.elementwise:
        return NotImplemented
    x: TensorMeta = call.arg("self")
    return min(x.shape)


def embedding_renorm_flops(call: OpCall, options: CountOptions) -> Any:
    """Each looked-up row's norm (1 per element) and, when over max_norm, its scale (1)."""
    if not options.elementwise:
        return NotImplemented
    weight: TensorMeta = call.arg("self")
    indices: TensorMeta = call.arg("indices")
    return 2 * indices.numel * weight.shape[-1]


# Optimizer steps, per parameter element (fused multi-tensor kernels).
OPTIMIZER_FLOPS = {
    # m = b1 m + (1 - b1) g (2); v = b2 v + (1 - b2) g g (3); bias corrections folded into the
    # step size; p -= lr m / (sqrt(v) + eps) (sqrt, add, div, FMA: 4); weight decay (1)
    "aten::_fused_adam": 10,
    "aten::_fused_adam_": 10,
    "aten::_fused_adamw": 10,
    "aten::_fused_adamw_": 10,
    # s += g g (1); p -= lr g / (sqrt(s) + eps) (4)
    "aten::_fused_adagrad": 5,
    "aten::_fused_adagrad_": 5,
    # weight decay (1), momentum (1), p -= lr v (1)
    "aten::_fused_sgd": 3,
    "aten::_fused_sgd_": 3,
    # isfinite and x * inv_scale
    "aten::_amp_foreach_non_finite_check_and_unscale": 2,
    "aten::_amp_foreach_non_finite_check_and_unscale_": 2,
}


def optimizer_flops(call: OpCall, options: CountOptions) -> Any:
    """Per element of the parameters (the first list)."""
    if not options.elementwise:
        return NotImplemented
    first = next(iter(call.arguments.values()))
    elements = sum(t.numel for t in iter_tensor_metas(first))
    return OPTIMIZER_FLOPS[call.op] * elements


def _foreach_base(op: str) -> str:
    """``aten::_foreach_add_`` -> ``aten::add``: the op each element of the lists runs."""
    return "aten::" + op.removeprefix("aten::_foreach_").removesuffix("_")


def foreach_flops(call: OpCall, options: CountOptions) -> Any:
    """``_foreach_X``: X on every tensor of the lists, at X's cost: per output element for a
    pointwise op, per input element for a reduction (``_foreach_norm``)."""
    if not options.elementwise:
        return NotImplemented
    base = _foreach_base(call.op)
    if base in REDUCTION_FLOPS or base == "aten::powsum":
        first = next(iter(call.arguments.values()))
        return sum(t.numel for t in iter_tensor_metas(first)) * REDUCTION_FLOPS.get(base, 1)
    tensors = call.output_tensors or list(iter_tensor_metas(call.arg("self")))  # in place: self
    return POINTWISE_FLOPS[base] * sum(t.numel for t in tensors)


def foreach_mm_flops(call: OpCall) -> int:
    """``_foreach_mm``: a matmul per pair of the two lists."""
    pairs = zip(
        iter_tensor_metas(call.arg("self")), iter_tensor_metas(call.arg("mat2")), strict=False
    )
    return sum(a.numel * b.shape[-1] for a, b in pairs)


_FOREACH_POINTWISE = (
    "abs acos add addcdiv addcmul asin atan ceil clamp_max clamp_min cos cosh div erf erfc exp "
    "expm1 floor frac lerp lgamma log log10 log1p log2 maximum minimum mul neg pow reciprocal "
    "round rsqrt sigmoid sign sin sinh sqrt sub tan tanh trunc"
)
FOREACH_OPS = [
    f"aten::_foreach_{name}{suffix}" for name in _FOREACH_POINTWISE.split() for suffix in ("", "_")
] + ["aten::_foreach_max", "aten::_foreach_norm", "aten::_foreach_powsum"]


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(tuple(LOSS_FLOPS), flops=loss_flops, activations=no_activations)
    margin = ("aten::multilabel_margin_loss_forward", "aten::multilabel_margin_loss_backward")
    handlers.add_ops(margin, flops=multilabel_margin_flops, activations=no_activations)
    nll = ("aten::nll_loss_forward", "aten::nll_loss2d_forward")
    handlers.add_ops(nll, flops=nll_loss_flops, activations=no_activations)
    handlers.add_ops(("aten::mvlgamma", "aten::mvlgamma_"), flops=mvlgamma_flops)
    handlers.add_ops("aten::trace", flops=trace_flops, activations=no_activations)
    renorm = ("aten::embedding_renorm", "aten::embedding_renorm_")
    handlers.add_ops(renorm, flops=embedding_renorm_flops, activations=no_activations)
    handlers.add_ops(tuple(OPTIMIZER_FLOPS), flops=optimizer_flops, activations=no_activations)
    handlers.add_ops(tuple(FOREACH_OPS), flops=foreach_flops, activations=no_activations)
    handlers.add_ops("aten::_foreach_mm", flops=foreach_mm_flops, activations=no_activations)
    handlers.add_ops(("aten::mvlgamma", "aten::mvlgamma_"), activations=no_activations)
