"""The torchvision zoo for the fuzz test: every model ``torchvision.models.list_models()`` names,
built without downloading weights, at the smallest input it accepts.

Random initialisation of the large models takes longer than analysing them, and counts do not
depend on weights, so `build` replaces the random initialisers with a cheap deterministic fill
(1 / fan_in: every layer averages its inputs, so activations stay finite)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torchvision import models

_RANDOM_INITS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "orthogonal_",
)


def _fill(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    with torch.no_grad():
        if tensor.ndim < 2:
            return tensor.zero_()
        return tensor.fill_(1.0 / max(1, math.prod(tensor.shape[1:])))


@contextmanager
def cheap_init() -> Iterator[None]:
    saved = {name: getattr(nn.init, name) for name in _RANDOM_INITS}
    try:
        for name in _RANDOM_INITS:
            setattr(nn.init, name, _fill)
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


ALL = tuple(models.list_models())

# Models whose architecture fixes the input size: they get a smaller configuration of the same
# architecture (ViT's image_size) or the size they need.
# ViT: two patches per side (vit_h_14's patches are 14 pixels, the others' 16 or 32).
_VIT_SIZE = {name: 2 * int(name.rsplit("_", 1)[1]) for name in ALL if name.startswith("vit_")}
_BUILD_KWARGS: dict[str, dict[str, Any]] = {
    **{name: {"image_size": size} for name, size in _VIT_SIZE.items()},
    **{name: {"min_size": 128, "max_size": 128} for name in ALL if "rcnn" in name},
    "retinanet_resnet50_fpn": {"min_size": 128, "max_size": 128},
    "retinanet_resnet50_fpn_v2": {"min_size": 128, "max_size": 128},
    "fcos_resnet50_fpn": {"min_size": 128, "max_size": 128},
}
_IMAGE_SIZE: dict[str, int] = {
    **_VIT_SIZE,
    "inception_v3": 96,  # its stem needs at least 75 pixels
    "quantized_inception_v3": 96,
    "maxvit_t": 224,  # block and grid partitions of 7 at every stage
}
_VIDEO_SHAPE: dict[str, tuple[int, ...]] = {
    "mvit_v1_b": (1, 3, 16, 224, 224),  # a fixed positional embedding
    "mvit_v2_s": (1, 3, 16, 224, 224),
    "s3d": (1, 3, 16, 224, 224),  # a final (2, 7, 7) average pool
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

    def build(self) -> nn.Module:
        """The model in eval mode, with deterministic weights."""
        options = dict(_NO_WEIGHTS)
        if self.kind in ("detection", "segmentation"):
            options["weights_backbone"] = None
        if self.kind == "quantization":
            options["quantize"] = False
        options.update(_BUILD_KWARGS.get(self.name, {}))
        torch.manual_seed(0)
        with cheap_init():
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
        # the correlation pyramid needs feature maps of 16 (images of 128)
        images = tuple(torch.rand(1, 3, 128, 128, generator=generator) for _ in range(2))
        return ZooCase(name, family, images, {"num_flow_updates": 2})
    size = _IMAGE_SIZE.get(name, 64)
    return ZooCase(name, family, (torch.rand(1, 3, size, size, generator=generator),))
