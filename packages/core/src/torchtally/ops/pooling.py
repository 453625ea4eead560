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
    """Each output element reads one window: one compare or add per tap inside the padded input
    (prod(kernel_size), except for the windows ceil_mode lets run past the end)."""
    if not options.elementwise:
        return NotImplemented
    return window_reads(call, WINDOW_POOLS[call.op], call.output_tensors[0])


def window_reads(call: OpCall, dims: int, out: TensorMeta) -> int:
    """Taps of every window of a pooling call (forward or backward) with output shape `out`."""
    return window_taps(call, dims, call.arg("self"), out)


def window_taps(call: OpCall, dims: int, x: TensorMeta, out: TensorMeta) -> int:
    """Taps of every window over input `x` of a pooling call with output shape `out`."""
    kernel = _per_dim(call.arg("kernel_size"), dims)
    stride = _per_dim(call.arg("stride") or kernel, dims)
    padding = _per_dim(call.arg("padding"), dims)
    dilation = _per_dim(call.arguments.get("dilation") or [1], dims)
    taps = 1
    for d in range(dims):  # windows are boxes, so the taps of each dim multiply
        size, length = x.shape[d - dims], out.shape[d - dims]
        low, high = -padding[d], size + padding[d]
        taps *= sum(
            1
            for j in range(length)
            for t in range(kernel[d])
            if low <= j * stride[d] - padding[d] + t * dilation[d] < high
        )
    return math.prod(out.shape[:-dims]) * taps


def _per_dim(values: Any, dims: int) -> list[int]:
    """A pooling argument as one int per pooled dim (PyTorch allows one for all)."""
    per_dim = [int(v) for v in values]
    return per_dim * dims if len(per_dim) == 1 else per_dim


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


def _fractional_flops(call: OpCall, options: CountOptions) -> Any:
    """Fractional max pooling: each output compares its kernel_size window."""
    if not options.elementwise:
        return NotImplemented
    return call.output_tensors[0].numel * math.prod(call.arg("kernel_size"))


def _mkldnn_max_pool_flops(call: OpCall, options: CountOptions) -> Any:
    if not options.elementwise:
        return NotImplemented
    dims = len(call.arg("kernel_size"))
    return window_taps(call, dims, call.arg("self"), call.output_tensors[0])


def _per_grad_output(call: OpCall, options: CountOptions) -> Any:
    """A max pool's gradient: each output gradient added to its window's maximum."""
    if not options.elementwise:
        return NotImplemented
    grad: TensorMeta = call.arg("grad_output")
    return grad.numel


MORE_MAX_POOLS = {
    "aten::fractional_max_pool2d": _fractional_flops,
    "aten::fractional_max_pool3d": _fractional_flops,
    "aten::mkldnn_max_pool2d": _mkldnn_max_pool_flops,
    "aten::mkldnn_max_pool3d": _mkldnn_max_pool_flops,
    "aten::fractional_max_pool2d_backward": _per_grad_output,
    "aten::fractional_max_pool3d_backward": _per_grad_output,
    "aten::mkldnn_max_pool2d_backward": _per_grad_output,
    "aten::mkldnn_max_pool3d_backward": _per_grad_output,
    "aten::max_pool2d_backward": _per_grad_output,
}
# adaptive average pooling's other kernels and gradients: 1 per input element, always
MORE_ADAPTIVE_AVG_POOLS = (
    "aten::mkldnn_adaptive_avg_pool2d",
    "aten::mkldnn_adaptive_avg_pool2d_backward",
    "aten::adaptive_avg_pool3d_backward",
)


def register(handlers: HandlerSet) -> None:
    for op, handler in MORE_MAX_POOLS.items():
        handlers.add_ops(op, flops=handler, activations=no_activations)
    handlers.add_ops(MORE_ADAPTIVE_AVG_POOLS, flops=_input_elements, activations=no_activations)
    handlers.add_ops(WINDOW_POOLS, flops=_window_flops, activations=no_activations)
    handlers.add_ops(ADAPTIVE_MAX_POOLS, flops=_adaptive_max_flops, activations=no_activations)
    adaptive_avg_pools = ("aten::_adaptive_avg_pool2d", "aten::_adaptive_avg_pool3d")
    handlers.add_ops(adaptive_avg_pools, flops=_input_elements, activations=no_activations)
    handlers.add_ops("aten::mean", flops=_mean, activations=no_activations)
    handlers.name_functions(ADAPTIVE_AVG_POOL_FUNCTIONS)
