"""torchvision's ops against counts worked out by hand (README.md, "Formulas")."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torchvision import ops

import torchtally

# Two boxes on image 0, (batch index, x1, y1, x2, y2); outputs have one row per box.
BOXES = torch.tensor([[0, 0.0, 0.0, 4.0, 4.0], [0, 1.0, 1.0, 7.0, 6.0]])


@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_roi_align_counts_ratio_squared_bilinear_reads_per_output(
    tally: Any, image: torch.Tensor, ratio: int
) -> None:
    analysis = tally(lambda x, b: ops.roi_align(x, b, (2, 3), 0.5, ratio, True), image, BOXES)
    # 2 boxes x 4 channels x (2 x 3) bins, ratio^2 samples of 4 multiply-adds each
    assert analysis.by_operator() == {"roi_align": 2 * 4 * (2 * 3) * ratio**2 * 4}
    assert analysis.total("activations") == 0
    assert analysis.unsupported_ops() == {}


def test_roi_align_adaptive_ratio_assumes_two_by_two_cells(tally: Any, image: torch.Tensor) -> None:
    analysis = tally(lambda x, b: ops.roi_align(x, b, (2, 2), 1.0, -1), image, BOXES)
    assert analysis.total() == 2 * 4 * (2 * 2) * (2 * 2) * 4


@pytest.mark.parametrize(("cells", "samples"), [(3, 3 * 3), ((2, 5), 2 * 5), ([1, 1], 1)])
def test_roi_bin_cells_option_sets_the_adaptive_samples(
    tally: Any, image: torch.Tensor, cells: Any, samples: int
) -> None:
    analysis = tally(
        lambda x, b: ops.roi_align(x, b, (2, 2), 1.0, 0),
        image,
        BOXES,
        options={"roi_bin_cells": cells},
    )
    assert analysis.total() == 2 * 4 * (2 * 2) * samples * 4


def test_roi_bin_cells_option_is_checked(tally: Any, image: torch.Tensor) -> None:
    with pytest.raises(torchtally.HandlerError, match="roi_bin_cells"):
        tally(
            lambda x, b: ops.roi_align(x, b, (2, 2), 1.0, 0),
            image,
            BOXES,
            options={"roi_bin_cells": 0},
            strict=True,
        )


def test_an_explicit_ratio_ignores_the_bin_cells_option(tally: Any, image: torch.Tensor) -> None:
    analysis = tally(
        lambda x, b: ops.roi_align(x, b, (2, 2), 1.0, 2), image, BOXES, options={"roi_bin_cells": 7}
    )
    assert analysis.total() == 2 * 4 * (2 * 2) * (2 * 2) * 4


def test_ps_roi_align_counts_its_output_channels_only(tally: Any) -> None:
    x = torch.randn(1, 8, 8, 8)  # 8 channels / (2 x 2) bins = 2 output channels
    analysis = tally(lambda x, b: ops.ps_roi_align(x, b, (2, 2), 1.0, 2), x, BOXES)
    assert analysis.by_operator() == {"ps_roi_align": 2 * 2 * (2 * 2) * (2 * 2) * 4}
    assert analysis.total("activations") == 0


@pytest.mark.parametrize(
    ("pool", "channels", "name"),
    [(ops.roi_pool, 4, "roi_pool"), (ops.ps_roi_pool, 4 // (2 * 2), "ps_roi_pool")],
)
def test_roi_pools_count_bin_cells_only_with_elementwise_counting(
    tally: Any, image: torch.Tensor, pool: Any, channels: int, name: str
) -> None:
    off = tally(lambda x, b: pool(x, b, (2, 2), 1.0), image, BOXES)
    assert off.total() == 0
    assert off.unsupported_ops() == {f"torchvision::{name}": 1}
    on = tally(lambda x, b: pool(x, b, (2, 2), 1.0), image, BOXES, elementwise=True)
    # 2 boxes x channels x (2 x 2) bins, each comparing (or adding) 2 x 2 cells
    assert on.by_operator() == {name: 2 * channels * (2 * 2) * (2 * 2)}
    assert on.unsupported_ops() == {}
    assert on.total("activations") == 0


def deform_inputs(
    offset_groups: int = 1, stride: int = 1, padding: int = 0
) -> tuple[torch.Tensor, ...]:
    x = torch.randn(1, 4, 8, 8)
    size = (8 + 2 * padding - 3) // stride + 1
    offset = torch.randn(1, offset_groups * 2 * 3 * 3, size, size)
    mask = torch.rand(1, offset_groups * 3 * 3, size, size)
    return x, offset, mask


def test_deform_conv2d_is_a_convolution_plus_bilinear_sampling(tally: Any) -> None:
    x, offset, _ = deform_inputs()
    weight, bias = torch.randn(6, 4, 3, 3), torch.randn(6)
    analysis = tally(lambda x, o, w, b: ops.deform_conv2d(x, o, w, b), x, offset, weight, bias)
    conv = 1 * (6 * 4 * 3 * 3) * (6 * 6)  # N * prod(weight) * output pixels
    sampling = 1 * 4 * (3 * 3) * (6 * 6) * 4  # N * C_in * kh * kw * output pixels * 4
    assert analysis.by_operator() == {"deform_conv2d": conv + sampling}
    assert analysis.by_operator("activations") == {"deform_conv2d": 1 * 6 * 6 * 6}
    assert analysis.unsupported_ops() == {}


def test_deform_conv2d_mask_adds_one_multiply_per_sample(tally: Any) -> None:
    x, offset, mask = deform_inputs()
    weight = torch.randn(6, 4, 3, 3)
    analysis = tally(lambda x, o, w, m: ops.deform_conv2d(x, o, w, mask=m), x, offset, weight, mask)
    conv = 1 * (6 * 4 * 3 * 3) * (6 * 6)
    sampling = 1 * 4 * (3 * 3) * (6 * 6) * (4 + 1)
    assert analysis.total() == conv + sampling


def test_deform_conv2d_groups_stride_padding(tally: Any) -> None:
    x, offset, _ = deform_inputs(offset_groups=2, stride=2, padding=1)  # output 4 x 4
    weight = torch.randn(6, 2, 3, 3)  # 4 input channels / 2 per group: groups=2
    analysis = tally(
        lambda x, o, w: ops.deform_conv2d(x, o, w, stride=2, padding=1), x, offset, weight
    )
    conv = 1 * (6 * 2 * 3 * 3) * (4 * 4)
    sampling = 1 * 4 * (3 * 3) * (4 * 4) * 4  # every input channel is sampled, whatever groups
    assert analysis.total() == conv + sampling
    assert analysis.total("activations") == 1 * 6 * 4 * 4


def disjoint_boxes(n: int) -> torch.Tensor:
    """n unit boxes side by side, none overlapping: NMS keeps them all."""
    x = 2.0 * torch.arange(n)
    return torch.stack([x, torch.zeros(n), x + 1, torch.ones(n)], dim=1)


def test_nms_bound_uses_the_kept_boxes(tally: Any) -> None:
    boxes = torch.tensor(
        [[0, 0, 4, 4], [0, 0, 4, 4.5], [10, 10, 12, 12], [20, 20, 22, 22]], dtype=torch.float
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    analysis = tally(lambda b, s: ops.nms(b, s, 0.5), boxes, scores)
    # 4 boxes, 3 kept (box 1 overlaps box 0): the kept ones test at most 3 + 2 + 1 boxes
    assert analysis.by_operator() == {"nms": 3 * 4 + 13 * (3 + 2 + 1)}
    assert analysis.total("activations") == 0


def test_nms_keeping_everything_tests_every_pair(tally: Any) -> None:
    n = 6
    analysis = tally(lambda b, s: ops.nms(b, s, 0.5), disjoint_boxes(n), torch.rand(n))
    assert analysis.total() == 3 * n + 13 * n * (n - 1) // 2


def test_nms_of_no_boxes_counts_nothing(tally: Any) -> None:
    # analyze refuses empty inputs, so the model empties them (as a detector's score threshold)
    analysis = tally(lambda b, s: ops.nms(b[:0], s[:0], 0.5), torch.zeros(3, 4), torch.zeros(3))
    assert [
        call.arg("dets").shape for call in analysis.trace.ops if call.op == "torchvision::nms"
    ] == [(0, 4)]
    assert analysis.total() == 0
    assert analysis.unsupported_ops() == {}


def test_batched_nms_coordinate_trick_runs_one_nms(tally: Any) -> None:
    n = 5
    boxes, scores, classes = disjoint_boxes(n), torch.rand(n), torch.tensor([0, 1, 0, 1, 1])
    analysis = tally(lambda b, s, i: ops.batched_nms(b, s, i, 0.5), boxes, scores, classes)
    # boxes of different classes are moved apart: one nms over all 5, all kept
    assert analysis.by_operator() == {"nms": 3 * n + 13 * n * (n - 1) // 2}
    assert set(analysis.unsupported_ops()) == {"aten::max", "aten::add", "aten::mul"}
    on = tally(
        lambda b, s, i: ops.batched_nms(b, s, i, 0.5), boxes, scores, classes, elementwise=True
    )
    assert on.unsupported_ops() == {}


def test_batched_nms_per_class_runs_one_nms_per_class(tally: Any) -> None:
    n = 1001  # more than 4000 coordinates: the per-class path on CPU
    classes = torch.arange(n) % 2  # 501 boxes of class 0, 500 of class 1
    analysis = tally(
        lambda b, s, i: ops.batched_nms(b, s, i, 0.5),
        disjoint_boxes(n),
        torch.rand(n),
        classes,
        elementwise=True,
    )
    per_class = [3 * m + 13 * m * (m - 1) // 2 for m in (501, 500)]
    assert analysis.by_operator()["nms"] == sum(per_class)
    assert analysis.unsupported_ops() == {}


def test_bytes_are_named_as_the_flops_are(tally: Any, image: torch.Tensor) -> None:
    def detect(x: torch.Tensor, b: torch.Tensor) -> Any:
        pooled = ops.roi_align(x, b, (2, 2), 1.0, 2)
        keep = ops.nms(b[:, 1:], torch.tensor([0.9, 0.8]), 0.5)
        return pooled, keep

    analysis = tally(detect, image, BOXES)
    assert set(analysis.by_operator()) == {"roi_align", "nms"}
    moved = analysis.by_operator("bytes")
    assert {"roi_align", "nms"} <= set(moved)
    assert not [name for name in moved if name.startswith("torchvision::")]
    # roi_align reads the image and the boxes and writes 2 x 4 x 2 x 2 floats
    assert moved["roi_align"] == (image.numel() + BOXES.numel() + 2 * 4 * 2 * 2) * 4
