"""RMSNorm: ``x / sqrt(mean(x^2) + eps) * weight`` over the last dimensions.

``F.rms_norm`` (``nn.RMSNorm``) runs the fused kernel ``aten::_fused_rms_norm`` on CUDA and
decomposes into element-wise ops on the CPU (pow, mean, add, rsqrt, mul); Hugging Face's
``LlamaRMSNorm`` and its copies always run those element-wise ops. Both are element-wise
arithmetic, so like every element-wise op they count only with ``elementwise=True``, and the
fused kernel costs exactly what its decomposition costs in core's catalog: the total does not
depend on the device. Both are reported as ``rms_norm``.
"""

from __future__ import annotations

import math
from typing import Any

from torchtally.handlers import CountOptions, HandlerSet
from torchtally.ops.catalog import POINTWISE_FLOPS, REDUCTION_FLOPS
from torchtally.ops.common import no_activations
from torchtally.records import OpCall, TensorMeta

RMS_NORM = "rms_norm"

# Per element: x * x, the mean's sum, x * rstd; and * weight when there is one.
PER_ELEMENT = (
    POINTWISE_FLOPS["aten::pow"] + REDUCTION_FLOPS["aten::mean"] + POINTWISE_FLOPS["aten::mul"]
)
WEIGHT = POINTWISE_FLOPS["aten::mul"]
# Per normalised row: + eps, rsqrt.
PER_ROW = POINTWISE_FLOPS["aten::add"] + POINTWISE_FLOPS["aten::rsqrt"]

# Backward, per element: g * w, the row's sum of (g * w) * x, x * coefficient, the difference,
# times rstd; the weight's gradient adds x * rstd * g summed over rows.
BACKWARD_PER_ELEMENT = 5
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
    mask = call.arguments.get("output_mask") or (True, True)
    weight_grad = WEIGHT_GRADIENT if mask[1] and call.arguments.get("weight") is not None else 0
    input_grad = BACKWARD_PER_ELEMENT if mask[0] else 0
    return {RMS_NORM: elements * (input_grad + weight_grad)}


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
