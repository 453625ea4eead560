"""torchvision models end to end: with the vision plugin every op they run is counted.

With element-wise counting on nothing is unsupported; off, only the ops core leaves to it
(element-wise ops, reductions, max and average pooling) are. Untrained weights, small inputs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models import detection, optical_flow, segmentation, video

import torchtally
from torchtally.ops.catalog import POINTWISE_FLOPS, REDUCTION_FLOPS
from torchtally.ops.pooling import ADAPTIVE_MAX_POOLS, WINDOW_POOLS

# Ops core counts only with elementwise=True.
ELEMENTWISE_ONLY = {*POINTWISE_FLOPS, *REDUCTION_FLOPS, *WINDOW_POOLS, *ADAPTIVE_MAX_POOLS}


def analyze(model: nn.Module, inputs: Any, **kwargs: Any) -> torchtally.Analysis:
    torch.manual_seed(0)
    return torchtally.analyze(model.eval(), inputs, warn_unsupported=False, **kwargs)


def check_supported(analysis: torchtally.Analysis) -> None:
    off = analysis.unsupported_ops()
    assert set(off) <= ELEMENTWISE_ONLY, set(off) - ELEMENTWISE_ONLY
    assert analysis.recount(elementwise=True).unsupported_ops() == {}


def calls(analysis: torchtally.Analysis, op: str) -> list[torchtally.OpCall]:
    return [call for call in analysis.trace.ops if call.op == op]


def test_fasterrcnn_resnet50_fpn() -> None:
    torch.manual_seed(0)
    model = detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=128, max_size=128
    )
    analysis = analyze(model, ([torch.rand(3, 128, 128)],))
    check_supported(analysis)
    ops = analysis.by_operator()
    # MultiScaleRoIAlign: 7 x 7 bins of 256 channels per box, sampling_ratio=2
    boxes = sum(call.arg("rois").shape[0] for call in calls(analysis, "torchvision::roi_align"))
    assert boxes > 0
    assert ops["roi_align"] == boxes * 256 * (7 * 7) * (2 * 2) * 4
    assert ops["nms"] > 0
    assert ops["upsample_nearest2d"] > 0  # FPN's top-down path
    assert ops["upsample_bilinear2d"] > 0  # GeneralizedRCNNTransform's resize


def test_deeplabv3_resnet50() -> None:
    model = segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None)
    analysis = analyze(model, torch.rand(1, 3, 64, 64))
    check_supported(analysis)
    # the head's 8 x 8 ASPP pooling back to 8 x 8, and the 21 classes back to 64 x 64
    assert analysis.by_operator()["upsample_bilinear2d"] == 4 * (1 * 256 * 8 * 8 + 1 * 21 * 64 * 64)


def test_raft_small() -> None:
    model = optical_flow.raft_small(weights=None)
    images = (torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128))
    analysis = analyze(model, images, kwargs={"num_flow_updates": 2})
    check_supported(analysis)
    ops = analysis.by_operator()
    samplers = calls(analysis, "aten::grid_sampler_2d")
    assert samplers
    assert ops["grid_sampler"] == sum(4 * call.output_tensors[0].numel for call in samplers)
    # each update's flow is upsampled 8x to (1, 2, 128, 128)
    assert ops["upsample_bilinear2d"] == 2 * 4 * (1 * 2 * 128 * 128)


def test_r3d_18() -> None:
    analysis = analyze(video.r3d_18(weights=None), torch.rand(1, 3, 4, 32, 32))
    check_supported(analysis)
