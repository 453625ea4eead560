"""The torchvision zoo for the fuzz test: every model ``torchvision.models.list_models()`` names,
built with random weights (never downloaded) at the smallest input it accepts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torchvision import models

ALL = tuple(models.list_models())

# Models whose architecture fixes the input size: they get a smaller configuration of the same
# architecture (ViT's image_size) or the size they need.
_BUILD_KWARGS: dict[str, dict[str, Any]] = {
    **{name: {"image_size": 32} for name in ALL if name.startswith("vit_")},
    **{name: {"min_size": 128, "max_size": 128} for name in ALL if "rcnn" in name},
    "retinanet_resnet50_fpn": {"min_size": 128, "max_size": 128},
    "retinanet_resnet50_fpn_v2": {"min_size": 128, "max_size": 128},
    "fcos_resnet50_fpn": {"min_size": 128, "max_size": 128},
}
_IMAGE_SIZE: dict[str, int] = {
    "inception_v3": 96,  # its stem needs at least 75 pixels
    "quantized_inception_v3": 96,
    "maxvit_t": 224,  # block and grid partitions of 7 at every stage
}
_VIDEO_SHAPE: dict[str, tuple[int, ...]] = {
    "mvit_v1_b": (1, 3, 16, 224, 224),  # a fixed positional embedding
    "mvit_v2_s": (1, 3, 16, 224, 224),
    "s3d": (1, 3, 8, 64, 64),
}
_NO_WEIGHTS = {"weights": None}


def kind(name: str) -> str:
    module = models.get_model_builder(name).__module__
    for family in ("detection", "segmentation", "video", "optical_flow", "quantization"):
        if f".{family}" in module:
            return family
    return "classification"


@dataclass
class ZooCase:
    name: str
    kind: str
    inputs: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, device: str | None = None) -> nn.Module:
        """The model in eval mode, with random weights (seeded), or on `device` ("meta")."""
        options = dict(_NO_WEIGHTS)
        if self.kind in ("detection", "segmentation"):
            options["weights_backbone"] = None
        if self.kind == "quantization":
            options["quantize"] = False
        options.update(_BUILD_KWARGS.get(self.name, {}))
        torch.manual_seed(0)
        if device is None:
            return models.get_model(self.name, **options).eval()
        with torch.device(device):
            return models.get_model(self.name, **options).eval()


def case(name: str) -> ZooCase:
    family = kind(name)
    generator = torch.Generator().manual_seed(0)
    if family == "detection":
        size = 300 if name.startswith("ssd300") else 320 if name.startswith("ssdlite") else 128
        return ZooCase(name, family, ([torch.rand(3, size, size, generator=generator)],))
    if family == "video":
        shape = _VIDEO_SHAPE.get(name, (1, 3, 4, 32, 32))
        return ZooCase(name, family, (torch.rand(shape, generator=generator),))
    if family == "optical_flow":
        images = tuple(torch.rand(1, 3, 64, 64, generator=generator) for _ in range(2))
        return ZooCase(name, family, images, {"num_flow_updates": 2})
    size = _IMAGE_SIZE.get(name, 64)
    return ZooCase(name, family, (torch.rand(1, 3, size, size, generator=generator),))
