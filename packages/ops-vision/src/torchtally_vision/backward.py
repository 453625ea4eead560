"""Backward-pass ops of resampling and of torchvision's ops (``phase="backward"``).

A gradient of a resampling op sends each output gradient back along the taps the forward read,
with the same weights: the forward's count, per grad_output element. grid_sample also
differentiates the taps' weights with respect to the grid coordinates. Ops whose forward counts
only with element-wise counting (roi_pool, ps_roi_pool) do so here too; activations are 0
(gradients are not activations). Each is reported under its forward op's operator name
(``upsample_bilinear2d``, ``grid_sampler``, ``roi_align``), so the phases line up. README.md,
"Backward pass", has the table.
"""

from __future__ import annotations

import math
from typing import Any

from torchtally.plugin import (
    CountOptions,
    HandlerSet,
    OpCall,
    OpHandler,
    TensorMeta,
    no_activations,
)
from torchtally_vision.resampling import (
    AFFINE_GRID_NAME,
    ANTIALIAS_TAPS,
    GRID_SAMPLER_MODES,
    GRID_SAMPLER_NAME,
    LINEAR,
    NEAREST,
    UPSAMPLE_TAPS,
    antialias_taps,
)
from torchtally_vision.torchvision_ops import BILINEAR, bin_cells, roi_samples

# backward op -> its forward op in resampling.py's tables
UPSAMPLE_BACKWARDS = {f"{op}_backward": op for op in UPSAMPLE_TAPS}
ANTIALIAS_BACKWARDS = {f"{op}_backward": op for op in ANTIALIAS_TAPS}
GRID_SAMPLER_BACKWARDS = {
    "aten::grid_sampler_2d_backward": 2,
    "aten::grid_sampler_3d_backward": 3,
    "aten::_grid_sampler_2d_cpu_fallback_backward": 2,
}


def forward_name(call: OpCall) -> str:
    """The forward op's by_operator key: ``aten::upsample_bilinear2d_backward`` ->
    ``upsample_bilinear2d``, ``torchvision::_roi_align_backward`` -> ``roi_align``."""
    namespace, name = call.op.split("::", 1)
    name = name.removesuffix("_backward")
    return name.removeprefix("_") if namespace == "torchvision" else name


def _grad_elements(call: OpCall, name: str = "grad_output") -> int:
    grad: TensorMeta = call.arg(name)
    return grad.numel


def upsample_backward_flops(call: OpCall) -> dict[str, int]:
    """The forward's taps per output element, per grad_output element."""
    return {forward_name(call): UPSAMPLE_TAPS[UPSAMPLE_BACKWARDS[call.op]] * _grad_elements(call)}


def antialias_backward_flops(call: OpCall) -> dict[str, int]:
    """The forward's filter (widened when shrinking) per grad_output element."""
    grad_output: TensorMeta = call.arg("grad_output")
    sizes_in = list(call.arg("input_size"))[2:]
    taps = ANTIALIAS_TAPS[ANTIALIAS_BACKWARDS[call.op]]
    per_output = math.prod(
        antialias_taps(taps, size_in, size_out)
        for size_in, size_out in zip(sizes_in, grad_output.shape[2:], strict=True)
    )
    return {forward_name(call): per_output * grad_output.numel}


def grid_sampler_backward_flops(call: OpCall) -> Any:
    """grad_input: the forward's taps per output element. grad_grid: each tap's weight
    differentiated along each of the d coordinates, d multiply-adds per tap (nearest: none,
    its gradient with respect to the grid is 0)."""
    mode = call.arg("interpolation_mode")
    if mode not in GRID_SAMPLER_MODES:
        return NotImplemented
    dims = GRID_SAMPLER_BACKWARDS[call.op]
    taps = GRID_SAMPLER_MODES[mode] ** dims
    grad_input, grad_grid = (bool(m) for m in call.arguments.get("output_mask", (True, True)))
    per_output = taps * grad_input
    if grad_grid and GRID_SAMPLER_MODES[mode] != NEAREST:
        per_output += taps * dims
    return {GRID_SAMPLER_NAME: per_output * _grad_elements(call)}


def cudnn_grid_sampler_backward_flops(call: OpCall) -> dict[str, int]:
    """cuDNN's bilinear 2d sampler: both gradients, 4 taps x (1 + 2 coordinates) per element."""
    return {GRID_SAMPLER_NAME: LINEAR**2 * 3 * _grad_elements(call)}


def cudnn_affine_grid_backward_flops(call: OpCall) -> dict[str, int]:
    """theta's gradient: each grid coordinate's gradient times (x, y, 1), as the forward."""
    grad: TensorMeta = call.arg("grad")
    return {AFFINE_GRID_NAME: (grad.shape[-1] + 1) * grad.numel}


def roi_align_backward_flops(call: OpCall, options: CountOptions) -> dict[str, int]:
    """Each sample's bilinear weights scatter the bin's gradient to 4 cells, as the forward."""
    samples = roi_samples(call, options)
    return {forward_name(call): _grad_elements(call, "grad") * samples * BILINEAR}


def roi_pool_backward_flops(call: OpCall, options: CountOptions) -> Any:
    """Max pooling: each bin's gradient is added to its argmax cell. Element-wise counting only."""
    if not options.elementwise:
        return NotImplemented
    return {forward_name(call): _grad_elements(call, "grad")}


def ps_roi_pool_backward_flops(call: OpCall, options: CountOptions) -> Any:
    """Average pooling: each bin's gradient, scaled, is added to its B cells (as the forward).
    Element-wise counting only."""
    if not options.elementwise:
        return NotImplemented
    return {forward_name(call): _grad_elements(call, "grad") * math.prod(bin_cells(options))}


# Per column value (C_in * kh * kw per output position) of deform_conv2d's backward kernel:
# re-sampling the column for grad_weight (4), scattering the column gradient into grad_input
# (4), and the two offset gradients: the bilinear read differentiated along y and x (4 each)
# times the column gradient, accumulated (1 each).
DEFORM_COLUMN_FLOPS = BILINEAR + BILINEAR + 2 * (BILINEAR + 1)
# With a mask: a multiply in each of those four (4), and grad_mask = the bilinear read (4)
# times the column gradient, accumulated (1).
DEFORM_MASK_COLUMN_FLOPS = 4 + BILINEAR + 1


def deform_conv2d_backward_flops(call: OpCall) -> dict[str, int]:
    """Two matmuls with the forward's multiply-adds (columns' gradient, weight's gradient) plus
    the bilinear work per column value. torchvision computes every gradient whatever requires
    one; grad_bias (a sum of grad) is not counted, as the forward convention ignores the bias."""
    grad: TensorMeta = call.arg("grad")
    x: TensorMeta = call.arg("input")
    w: TensorMeta = call.arg("weight")
    positions = x.shape[0] * math.prod(grad.shape[2:])  # batch x output pixels
    conv = positions * w.numel
    columns = positions * x.shape[1] * math.prod(w.shape[2:])
    per_column = DEFORM_COLUMN_FLOPS + (DEFORM_MASK_COLUMN_FLOPS if call.arg("use_mask") else 0)
    return {forward_name(call): 2 * conv + columns * per_column}


def register(handlers: HandlerSet) -> None:
    flops: dict[str, OpHandler] = {
        **dict.fromkeys(UPSAMPLE_BACKWARDS, upsample_backward_flops),
        **dict.fromkeys(ANTIALIAS_BACKWARDS, antialias_backward_flops),
        **dict.fromkeys(GRID_SAMPLER_BACKWARDS, grid_sampler_backward_flops),
        "aten::cudnn_grid_sampler_backward": cudnn_grid_sampler_backward_flops,
        "aten::cudnn_affine_grid_generator_backward": cudnn_affine_grid_backward_flops,
        "torchvision::_roi_align_backward": roi_align_backward_flops,
        "torchvision::_ps_roi_align_backward": roi_align_backward_flops,
        "torchvision::_roi_pool_backward": roi_pool_backward_flops,
        "torchvision::_ps_roi_pool_backward": ps_roi_pool_backward_flops,
        "torchvision::_deform_conv2d_backward": deform_conv2d_backward_flops,
    }
    for op, handler in flops.items():
        handlers.add_ops(op, flops=handler, activations=no_activations)
