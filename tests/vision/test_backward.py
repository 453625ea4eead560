"""The vision plugin's backward-pass handlers, against counts worked out by hand (README.md,
"Backward pass"), on calls from real backward runs (``analyze(..., backward=True)``)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torchvision import ops
from torchvision.models import detection, segmentation

import torchtally

# Two boxes on image 0, (batch index, x1, y1, x2, y2), as in test_torchvision_ops.py.
BOXES = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0], [0, 1.0, 1.0, 7.0, 6.0]])


def grad_input(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0)).requires_grad_()


def backward_ops(analysis: torchtally.Analysis) -> dict[str, int]:
    return dict(analysis.by_operator(phase="backward"))


# -- resampling -------------------------------------------------------------------------------

UPSAMPLE_CASES = [
    # (interpolate options, forward op, samples read per output element)
    ({"mode": "nearest"}, "upsample_nearest2d", 1),
    ({"mode": "nearest-exact"}, "_upsample_nearest_exact2d", 1),
    ({"mode": "bilinear"}, "upsample_bilinear2d", 2 * 2),
    ({"mode": "bilinear", "align_corners": True}, "upsample_bilinear2d", 2 * 2),
    ({"mode": "bicubic"}, "upsample_bicubic2d", 4 * 4),
]


@pytest.mark.parametrize(("options", "op", "taps"), UPSAMPLE_CASES)
def test_upsample_backward_sends_each_gradient_back_along_the_forward_taps(
    tally: Any, options: dict[str, Any], op: str, taps: int
) -> None:
    analysis = tally(
        lambda x: F.interpolate(x, scale_factor=2, **options), grad_input(1, 2, 4, 4), backward=True
    )
    # grad_output (1, 2, 8, 8): 128 elements, each scattered to its taps; reported under the
    # forward op's name
    assert backward_ops(analysis) == {op: 128 * taps}
    assert analysis.unsupported_ops(phase="backward") == {}
    assert analysis.by_operator(phase="forward") == {op: 128 * taps}
    assert analysis.total("activations", phase="backward") == 0


@pytest.mark.parametrize(
    ("mode", "shape", "op", "flops"),
    [
        ("linear", (1, 2, 4), "upsample_linear1d", (1 * 2 * 8) * 2),
        ("nearest", (1, 2, 4), "upsample_nearest1d", (1 * 2 * 8) * 1),
        ("trilinear", (1, 2, 2, 2, 2), "upsample_trilinear3d", (1 * 2 * 4 * 4 * 4) * 8),
        ("nearest", (1, 2, 2, 2, 2), "upsample_nearest3d", (1 * 2 * 4 * 4 * 4) * 1),
    ],
)
def test_upsample_backward_in_1d_and_3d(
    tally: Any, mode: str, shape: tuple[int, ...], op: str, flops: int
) -> None:
    analysis = tally(
        lambda x: F.interpolate(x, scale_factor=2, mode=mode), grad_input(*shape), backward=True
    )
    assert backward_ops(analysis) == {op: flops}
    assert analysis.unsupported_ops(phase="backward") == {}


@pytest.mark.parametrize(
    ("mode", "size", "flops"),
    [
        # 8 -> 3 shrinks by 8/3: ceil(2 * 8/3) = 6 taps; 8 -> 5: ceil(2 * 1.6) = 4; out 2*3*5
        ("bilinear", (3, 5), (2 * 3 * 5) * (6 * 4)),
        # 8 -> 4: ceil(4 * 2) = 8 taps; 8 -> 16 enlarges: the plain 4; out 2*4*16
        ("bicubic", (4, 16), (2 * 4 * 16) * (8 * 4)),
    ],
)
def test_antialias_backward_uses_the_forward_filter(
    tally: Any, mode: str, size: tuple[int, int], flops: int
) -> None:
    analysis = tally(
        lambda x: F.interpolate(x, size=size, mode=mode, antialias=True),
        grad_input(1, 2, 8, 8),
        backward=True,
    )
    assert backward_ops(analysis) == {f"_upsample_{mode}2d_aa": flops}
    assert analysis.total(phase="backward") == analysis.total(phase="forward")


# grid_sample: (1, 2, 4, 4) sampled at a (1, 3, 5) grid: 1 * 2 * 3 * 5 = 30 output elements.
GRID_CASES = [
    # (mode, input needs grad, grid needs grad, flops per output element)
    ("bilinear", True, True, 4 + 4 * 2),  # 4 taps; each tap's weight along x and y
    ("bilinear", True, False, 4),
    ("bilinear", False, True, 4 * 2),
    ("nearest", True, True, 1),  # no gradient with respect to the grid
    ("bicubic", True, True, 16 + 16 * 2),
]


@pytest.mark.parametrize(("mode", "input_grad", "grid_grad", "per_output"), GRID_CASES)
def test_grid_sampler_backward_counts_each_gradient_it_computes(
    tally: Any, mode: str, input_grad: bool, grid_grad: bool, per_output: int
) -> None:
    x = torch.randn(1, 2, 4, 4).requires_grad_(input_grad)
    grid = (torch.rand(1, 3, 5, 2) * 2 - 1).requires_grad_(grid_grad)
    analysis = tally(
        lambda x, g: F.grid_sample(x, g, mode=mode, align_corners=False), x, grid, backward=True
    )
    assert backward_ops(analysis) == {"grid_sampler": 30 * per_output}


def test_grid_sampler_3d_backward(tally: Any) -> None:
    x = grad_input(1, 2, 3, 4, 4)
    grid = (torch.rand(1, 2, 3, 3, 3) * 2 - 1).requires_grad_()
    analysis = tally(lambda x, g: F.grid_sample(x, g, align_corners=False), x, grid, backward=True)
    # output (1, 2, 2, 3, 3) = 36 elements; trilinear: 8 taps, each differentiated along 3 dims
    assert backward_ops(analysis) == {"grid_sampler": 36 * (8 + 8 * 3)}


# -- torchvision's ops ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "options", "samples"),
    [(2, {}, 2 * 2), (-1, {}, 2 * 2), (0, {"roi_bin_cells": 3}, 3 * 3), (1, {}, 1)],
)
def test_roi_align_backward_scatters_each_sample_to_four_cells(
    tally: Any, ratio: int, options: dict[str, Any], samples: int
) -> None:
    analysis = tally(
        lambda x: ops.roi_align(x, BOXES, (2, 3), 0.5, ratio, True),
        grad_input(1, 4, 8, 8),
        backward=True,
        options=options,
    )
    # grad (2 boxes, 4 channels, 2 x 3 bins), samples bilinear scatters of 4 multiply-adds each
    assert backward_ops(analysis) == {"roi_align": 2 * 4 * (2 * 3) * samples * 4}
    assert analysis.total(phase="backward") == analysis.total(phase="forward")
    assert analysis.total("activations", phase="backward") == 0


def test_ps_roi_align_backward(tally: Any) -> None:
    analysis = tally(
        lambda x: ops.ps_roi_align(x, BOXES, (2, 2), 1.0, 2), grad_input(1, 8, 8, 8), backward=True
    )
    # grad (2 boxes, 8 / (2 x 2) = 2 channels, 2 x 2 bins), 2 x 2 samples of 4 each
    assert backward_ops(analysis) == {"ps_roi_align": 2 * 2 * (2 * 2) * (2 * 2) * 4}


@pytest.mark.parametrize(
    ("pool", "channels", "op", "per_bin"),
    [
        (ops.roi_pool, 8, "roi_pool", 1),  # added to the bin's argmax
        (ops.ps_roi_pool, 8 // (2 * 2), "ps_roi_pool", 2 * 2),  # to each of B cells
    ],
)
def test_roi_pool_backwards_count_only_with_elementwise_counting(
    tally: Any, pool: Any, channels: int, op: str, per_bin: int
) -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return pool(x, BOXES, (2, 2), 1.0)

    on = tally(fn, grad_input(1, 8, 8, 8), backward=True, elementwise=True)
    assert backward_ops(on) == {op: 2 * channels * (2 * 2) * per_bin}
    off = tally(fn, grad_input(1, 8, 8, 8), backward=True)
    assert off.total(phase="backward") == 0
    assert off.unsupported_ops(phase="backward") == {f"torchvision::_{op}_backward": 1}


@pytest.mark.parametrize(
    ("use_mask", "per_column"),
    [
        # re-sample 4, scatter 4, offset gradients 2 x (4 + 1)
        (False, 4 + 4 + 2 * (4 + 1)),
        # and a mask multiply in each of those 4 passes, grad_mask = a bilinear read (4) x 1
        (True, 4 + 4 + 2 * (4 + 1) + 4 + 4 + 1),
    ],
)
@pytest.mark.parametrize("elementwise", [False, True])
def test_deform_conv2d_backward(
    tally: Any, use_mask: bool, per_column: int, elementwise: bool
) -> None:
    x = grad_input(1, 4, 5, 5)
    weight = grad_input(3, 4, 3, 3)
    offset = grad_input(1, 2 * 3 * 3, 3, 3)
    mask = torch.rand(1, 3 * 3, 3, 3).requires_grad_() if use_mask else None
    analysis = tally(
        lambda x, o, w: ops.deform_conv2d(x, o, w, mask=mask),
        x,
        offset,
        weight,
        backward=True,
        elementwise=elementwise,
    )
    positions = 1 * 3 * 3  # output pixels
    conv = positions * (3 * 4 * 3 * 3)  # the forward's multiply-adds, once per matmul
    columns = positions * 4 * 3 * 3  # C_in x kh x kw sampled values per output pixel
    # grad_bias, a sum of grad, is not counted (as the bias is not), element-wise or not
    assert backward_ops(analysis) == {"deform_conv2d": 2 * conv + columns * per_column}


# -- whole models in training mode ------------------------------------------------------------


@pytest.mark.slow
def test_mask_rcnn_training_backward_counts_roi_align_like_the_forward() -> None:
    torch.manual_seed(0)
    model = detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=96, max_size=96, num_classes=3
    ).train()
    image = [torch.rand(3, 96, 96)]
    target = [
        {
            "boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]),
            "labels": torch.tensor([1]),
            "masks": torch.zeros(1, 96, 96, dtype=torch.uint8),
        }
    ]
    analysis = torchtally.analyze(
        model,
        (image, target),
        mode="real",
        backward=True,
        loss_fn=lambda losses: sum(losses.values()),
        elementwise=True,
        warn_unsupported=False,
    )
    assert analysis.unsupported_ops(phase="backward") == {}
    forward, backward = analysis.by_operator(phase="forward"), backward_ops(analysis)
    # roi_align on the 256-channel features (box and mask heads, sampling_ratio=2) has a
    # gradient; the one that crops the ground-truth masks (1 channel) to make mask targets has
    # none. Each feature crop: output elements x 2 x 2 samples x 4, forward and backward alike.
    crops = [c for c in analysis.trace.ops if c.op == "torchvision::roi_align"]
    features = [c for c in crops if c.arg("input").shape[1] == 256]
    assert len(features) < len(crops)
    feature_flops = sum(c.output_tensors[0].numel * (2 * 2) * 4 for c in features)
    assert backward["roi_align"] == feature_flops < forward["roi_align"]
    # FPN's top-down nearest upsampling has a gradient; resizing the ground-truth mask
    # (1, 1, 96, 96) with the image, 1 per output element, has none
    assert backward["upsample_nearest2d"] == forward["upsample_nearest2d"] - 96 * 96


@pytest.mark.slow
def test_deeplabv3_training_backward_upsampling() -> None:
    torch.manual_seed(0)
    model = segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3
    ).train()
    analysis = torchtally.analyze(
        model, torch.rand(2, 3, 64, 64), backward=True, elementwise=True, warn_unsupported=False
    )
    assert analysis.unsupported_ops(phase="backward") == {}
    # the ASPP pooling branch (2, 256, 1, 1) -> (2, 256, 4, 4) and the logits (2, 3, 4, 4)
    # -> (2, 3, 64, 64): 4 taps per grad_output element, as the forward
    bilinear = 4 * (2 * 256 * 4 * 4 + 2 * 3 * 64 * 64)
    assert analysis.by_operator(phase="forward")["upsample_bilinear2d"] == bilinear
    assert backward_ops(analysis)["upsample_bilinear2d"] == bilinear
