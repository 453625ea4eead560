"""RMSNorm: ``x / sqrt(mean(x^2) + eps) * weight`` over the last dimensions.

``F.rms_norm`` (``nn.RMSNorm``) runs the fused kernel ``aten::_fused_rms_norm`` on CUDA and
decomposes into element-wise ops on the CPU (pow, mean, add, rsqrt, mul); Hugging Face's
``LlamaRMSNorm`` and its copies always run those element-wise ops. Both are element-wise
arithmetic, so like every element-wise op they count only with ``elementwise=True``, and the
fused kernel costs exactly what its decomposition costs in core's catalog: the forward count does
not depend on the device. Both are reported as ``rms_norm``. The fused backward kernel is counted
like core's layer norm backward; the CPU's decomposed backward runs (and core counts) the
autograd of each element-wise op, about twice as many.
"""

from __future__ import annotations

import math
from typing import Any

from torchtally.plugin import (
    POINTWISE_FLOPS,
    REDUCTION_FLOPS,
    CountOptions,
    HandlerSet,
    OpCall,
    TensorMeta,
    no_activations,
)

RMS_NORM = "rms_norm"

# Per element: x * x, the mean's sum, x * rstd; and * weight when there is one.
PER_ELEMENT = (
    POINTWISE_FLOPS["aten::pow"] + REDUCTION_FLOPS["aten::mean"] + POINTWISE_FLOPS["aten::mul"]
)
WEIGHT = POINTWISE_FLOPS["aten::mul"]
# Per normalised row: + eps, rsqrt.
PER_ROW = POINTWISE_FLOPS["aten::add"] + POINTWISE_FLOPS["aten::rsqrt"]

# Backward, per element, as core counts layer norm's backward (ops/backward.py): grad_input forms
# h = weight * g (1, with a weight), sums h * x per row (1) and takes 2 FMAs,
# rstd * h - x * (rstd^3 * sum / n); grad_weight sums g * x * rstd over rows (2). One sum fewer
# than layer norm: there is no mean to subtract.
INPUT_GRADIENT = 1 + 2
WEIGHT_GRADIENT = 2


def _sizes(call: OpCall) -> tuple[int, int]:
    """Elements and normalised rows."""
    x: TensorMeta = call.arg("input")
    row = math.prod(call.arg("normalized_shape"))
    return x.numel, x.numel // row if row else 0


def fused_rms_norm_flops(call: OpCall, options: CountOptions) -> Any:
    if not options.elementwise:
        return NotImplemented
    elements, rows = _sizes(call)
    weighted = WEIGHT if call.arguments.get("weight") is not None else 0
    return {RMS_NORM: elements * (PER_ELEMENT + weighted) + rows * PER_ROW}


def fused_rms_norm_backward_flops(call: OpCall, options: CountOptions) -> Any:
    if not options.elementwise:
        return NotImplemented
    elements, _ = _sizes(call)
    grad_input, grad_weight = (bool(m) for m in call.arguments.get("output_mask") or (1, 1))
    weighted = call.arguments.get("weight") is not None
    per_element = (INPUT_GRADIENT + weighted) * grad_input + WEIGHT_GRADIENT * (
        grad_weight and weighted
    )
    return {RMS_NORM: elements * per_element}


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(
        "aten::_fused_rms_norm", flops=fused_rms_norm_flops, activations=no_activations
    )
    handlers.add_ops(
        "aten::_fused_rms_norm_backward",
        flops=fused_rms_norm_backward_flops,
        activations=no_activations,
    )
    handlers.name_functions({"rms_norm": RMS_NORM})
