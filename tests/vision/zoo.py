"""The torchvision zoo the vision tests and scripts/vision_vs_fvcore.py run: one entry per model.

Real torchvision builders with random weights (``weights=None`` and ``weights_backbone=None``, so
nothing is downloaded) on small inputs: 224 x 224 for classification, one 128 x 128 image for the
R-CNN, RetinaNet and FCOS detectors (``min_size=max_size=128`` keeps their transform from resizing
it to 800), 300 x 300 for SSD300, 128 x 128 for segmentation, 8 frames of 112 x 112 for r3d_18,
the 16 x 224 x 224 clip mvit_v2_s is built for, and two 128 x 128 frames for RAFT.

Weights and inputs come from fixed seeds, so the data-dependent parts of the detectors (how many
boxes survive NMS, how many detections reach the mask and keypoint heads) are the same each run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models import detection, optical_flow, segmentation, video

import torchtally

SEED = 0


@dataclass(frozen=True)
class ZooModel:
    name: str
    kind: str  # classification, detection, segmentation, video or optical flow
    factory: Callable[[], nn.Module]
    shapes: tuple[tuple[int, ...], ...]  # one tensor per positional argument
    as_list: bool = False  # detection models take a list of 3-D images as their one argument

    def build(self) -> nn.Module:
        torch.manual_seed(SEED)
        return self.factory().eval()

    def inputs(self) -> tuple[Any, ...]:
        """Positional arguments, the same tensors every call."""
        generator = torch.Generator().manual_seed(SEED)
        tensors = [torch.rand(shape, generator=generator) for shape in self.shapes]
        return (tensors,) if self.as_list else tuple(tensors)

    @property
    def input_text(self) -> str:
        text = " + ".join("x".join(map(str, shape)) for shape in self.shapes)
        return f"[{text}]" if self.as_list else text


def _classifier(name: str) -> ZooModel:
    return ZooModel(
        name,
        "classification",
        lambda: torchvision.models.get_model(name, weights=None),
        ((1, 3, 224, 224),),
    )


DETECTION_SIZE = 128


def _detector(name: str) -> ZooModel:
    builder = getattr(detection, name)
    return ZooModel(
        name,
        "detection",
        lambda: builder(
            weights=None, weights_backbone=None, min_size=DETECTION_SIZE, max_size=DETECTION_SIZE
        ),
        ((3, DETECTION_SIZE, DETECTION_SIZE),),
        as_list=True,
    )


def _segmenter(name: str) -> ZooModel:
    builder = getattr(segmentation, name)
    return ZooModel(
        name,
        "segmentation",
        lambda: builder(weights=None, weights_backbone=None),
        ((1, 3, 128, 128),),
    )


_MODELS = [
    *map(
        _classifier,
        [
            "resnet50",
            "mobilenet_v3_large",
            "efficientnet_b0",
            "convnext_tiny",
            "swin_t",
            "vit_b_16",
            "regnet_y_400mf",
        ],
    ),
    *map(
        _detector,
        [
            "fasterrcnn_resnet50_fpn",
            "maskrcnn_resnet50_fpn",
            "retinanet_resnet50_fpn",
            "fcos_resnet50_fpn",
            "keypointrcnn_resnet50_fpn",
        ],
    ),
    ZooModel(
        "ssd300_vgg16",
        "detection",
        lambda: detection.ssd300_vgg16(weights=None, weights_backbone=None),
        ((3, 300, 300),),  # its transform resizes every image to 300 x 300
        as_list=True,
    ),
    *map(_segmenter, ["deeplabv3_resnet50", "fcn_resnet50", "lraspp_mobilenet_v3_large"]),
    ZooModel("r3d_18", "video", lambda: video.r3d_18(weights=None), ((1, 3, 8, 112, 112),)),
    # MViT's positional embeddings fix its clip: 16 frames of 224 x 224.
    ZooModel("mvit_v2_s", "video", lambda: video.mvit_v2_s(weights=None), ((1, 3, 16, 224, 224),)),
    ZooModel(
        "raft_small",
        "optical flow",
        lambda: optical_flow.raft_small(weights=None),  # 12 flow updates, its default
        ((1, 3, 128, 128), (1, 3, 128, 128)),
    ),
]

ZOO: dict[str, ZooModel] = {model.name: model for model in _MODELS}


@dataclass(frozen=True)
class ZooRun:
    """A zoo model, built, and its analysis (the `zoo` fixture of tests/vision/conftest.py)."""

    spec: ZooModel
    model: nn.Module
    analysis: torchtally.Analysis
