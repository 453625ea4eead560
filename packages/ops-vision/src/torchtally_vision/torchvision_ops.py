"""torchvision's custom ops, as the dispatcher sees them (``torchvision::roi_align``, ...).

Keyed by op name only: nothing here imports torchvision. Each count follows the work of
torchvision's CPU kernel; README.md has the table and the reasons.

- roi_align, ps_roi_align: per output element, `samples` bilinear reads of 4 multiply-adds.
  samples = sampling_ratio ** 2, or, for an adaptive sampling_ratio (<= 0), one per feature-map
  cell a bin covers: box data the trace does not keep. We assume bins of ROI_BIN_CELLS x
  ROI_BIN_CELLS cells (2 x 2 = 4 samples, what torchvision's detection models fix with
  sampling_ratio=2); ``options={"roi_bin_cells": n or (h, w)}`` sets another size.
- roi_pool (max) and ps_roi_pool (average) are pooling: like core's max and average pooling they
  count only with element-wise counting on, one compare or add per bin cell per output element.
- deform_conv2d: the convolution's multiply-adds (core's formula) plus the bilinear sampling of
  its columns, 4 per sampled value and 1 more for the mask.
- nms: 3 flops per box for its area, 13 per IoU test (see NMS_IOU_FLOPS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torchtally.plugin import (
    CountOptions,
    HandlerSet,
    OpCall,
    TensorMeta,
    first_output,
    no_activations,
)

BILINEAR = 4  # multiply-adds of one bilinear read: 4 weighted corners
ROI_BIN_CELLS = 2  # assumed bin size, in feature-map cells per side, when the data decides
ROI_BIN_CELLS_OPTION = "roi_bin_cells"

# One IoU test of the CPU kernel: 4 min/max for the intersection corners, 2 subtractions and 2
# clamps at 0 for its sides, 1 multiply for its area, 3 for inter / (area_i + area_j - inter),
# 1 compare with the threshold.
NMS_IOU_FLOPS = 4 + 4 + 1 + 3 + 1
NMS_AREA_FLOPS = 3  # (x2 - x1) * (y2 - y1), once per box


def short_name(call: OpCall) -> str:
    """``torchvision::roi_align`` -> ``roi_align``: the by_operator key."""
    return call.op.split("::", 1)[1]


def bin_cells(options: CountOptions) -> tuple[int, int]:
    """Feature-map cells per bin side (h, w) assumed where the boxes decide."""
    value = options.get(ROI_BIN_CELLS_OPTION, ROI_BIN_CELLS)
    cells: Sequence[int] = (value, value) if isinstance(value, int) else tuple(value)
    if len(cells) != 2 or not all(isinstance(c, int) and c > 0 for c in cells):
        raise ValueError(
            f"option {ROI_BIN_CELLS_OPTION!r} must be a positive int or a pair (h, w) of them, "
            f"got {value!r}"
        )
    return cells[0], cells[1]


def roi_samples(call: OpCall, options: CountOptions) -> int:
    """Bilinear samples averaged into one output element of roi_align / ps_roi_align."""
    ratio = call.arg("sampling_ratio")
    if ratio > 0:
        return int(ratio) ** 2
    return math.prod(bin_cells(options))


def roi_align_flops(call: OpCall, options: CountOptions) -> dict[str, int]:
    """Output elements x samples x 4 (ps_roi_align's output already divides the channels)."""
    out = first_output(call)
    return {short_name(call): out.numel * roi_samples(call, options) * BILINEAR}


def roi_pool_flops(call: OpCall, options: CountOptions) -> Any:
    """Output elements x bin cells (a compare or an add each); element-wise counting only."""
    if not options.elementwise:
        return NotImplemented
    return {short_name(call): first_output(call).numel * math.prod(bin_cells(options))}


def deform_conv2d_flops(call: OpCall) -> dict[str, int]:
    """Convolution multiply-adds plus the bilinear sampling of every column value."""
    x: TensorMeta = call.arg("input")
    w: TensorMeta = call.arg("weight")
    out = first_output(call)
    positions = x.shape[0] * math.prod(out.shape[2:])  # batch x output pixels
    conv = positions * w.numel  # w: (C_out, C_in / groups, kh, kw)
    columns = positions * x.shape[1] * math.prod(w.shape[2:])  # C_in x kh x kw per position
    per_sample = BILINEAR + (1 if call.arg("use_mask") else 0)
    return {short_name(call): conv + columns * per_sample}


def nms_iou_tests(boxes: int, kept: int) -> int:
    """IoU tests of the greedy CPU kernel, at most: each kept box against every later box.

    The k-th kept box (0-based) has at least k boxes before it in score order, so it tests at
    most boxes - 1 - k others; suppressed boxes test none. With nothing suppressed this is
    boxes * (boxes - 1) / 2, about what the CUDA kernel computes whatever it keeps.
    """
    return kept * (boxes - 1) - kept * (kept - 1) // 2


def nms_flops(call: OpCall) -> dict[str, int]:
    """Box areas plus the IoU tests (bounded by the number of kept boxes, the output's size)."""
    boxes = call.arg("dets").shape[0]
    kept = first_output(call).numel
    return {short_name(call): NMS_AREA_FLOPS * boxes + NMS_IOU_FLOPS * nms_iou_tests(boxes, kept)}


def deform_conv2d_activations(call: OpCall) -> dict[str, int]:
    """Output elements, as for a convolution."""
    return {short_name(call): first_output(call).numel}


ROI_ALIGNS = ("torchvision::roi_align", "torchvision::ps_roi_align")
ROI_POOLS = ("torchvision::roi_pool", "torchvision::ps_roi_pool")


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(ROI_ALIGNS, flops=roi_align_flops, activations=no_activations)
    handlers.add_ops(ROI_POOLS, flops=roi_pool_flops, activations=no_activations)
    handlers.add_ops(
        "torchvision::deform_conv2d",
        flops=deform_conv2d_flops,
        activations=deform_conv2d_activations,
    )
    handlers.add_ops("torchvision::nms", flops=nms_flops, activations=no_activations)
