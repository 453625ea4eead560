"""Pooling.

Adaptive average pooling always counts, one flop per input element (fvcore's convention). For a
1x1 output ATen computes ``mean`` over the spatial dims instead of calling the pooling kernel, so
``aten::mean`` issued by ``adaptive_avg_pool*d`` is counted as pooling; any other ``mean`` is a
reduction. Max and average pooling over windows are not counted by fvcore, so they count only
with element-wise counting on: one flop per element of each window (a compare or an add).
"""

from __future__ import annotations

import math
from typing import Any

from torchtally.handlers import CountOptions, HandlerSet
from torchtally.ops.common import no_activations
from torchtally.ops.elementwise import reduction_flops
from torchtally.records import OpCall, TensorMeta

ADAPTIVE_AVG_POOL_FUNCTIONS = {
    "adaptive_avg_pool1d": "adaptive_avg_pool1d",
    "adaptive_avg_pool2d": "adaptive_avg_pool2d",
    "adaptive_avg_pool3d": "adaptive_avg_pool3d",
}


WINDOW_POOLS = {  # op -> number of pooled dims
    "aten::max_pool2d_with_indices": 2,
    "aten::max_pool3d_with_indices": 3,
    "aten::avg_pool2d": 2,
    "aten::avg_pool3d": 3,
}
ADAPTIVE_MAX_POOLS = ("aten::adaptive_max_pool2d", "aten::adaptive_max_pool3d")


def _window_flops(call: OpCall, options: CountOptions) -> Any:
    """Each output element reads one window: prod(kernel_size) compares or adds."""
    if not options.elementwise:
        return NotImplemented
    kernel = list(call.arg("kernel_size"))
    if len(kernel) == 1:  # one size for every pooled dim
        kernel = kernel * WINDOW_POOLS[call.op]
    window = math.prod(kernel)
    return call.output_tensors[0].numel * window


def _adaptive_max_flops(call: OpCall, options: CountOptions) -> Any:
    """Windows tile the input, so each input element is compared about once."""
    if not options.elementwise:
        return NotImplemented
    return _input_elements(call)


def _input_elements(call: OpCall) -> int:
    x: TensorMeta = call.arg("self")
    return x.numel


def _mean(call: OpCall, options: CountOptions) -> Any:
    if call.function in ADAPTIVE_AVG_POOL_FUNCTIONS:
        return _input_elements(call)
    return reduction_flops(call, options)


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(WINDOW_POOLS, flops=_window_flops, activations=no_activations)
    handlers.add_ops(ADAPTIVE_MAX_POOLS, flops=_adaptive_max_flops, activations=no_activations)
    adaptive_avg_pools = ("aten::_adaptive_avg_pool2d", "aten::_adaptive_avg_pool3d")
    handlers.add_ops(adaptive_avg_pools, flops=_input_elements, activations=no_activations)
    handlers.add_ops("aten::mean", flops=_mean, activations=no_activations)
    handlers.name_functions(ADAPTIVE_AVG_POOL_FUNCTIONS)
