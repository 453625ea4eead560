"""The torchvision model zoo of the test suite: one `ZooModel` type, two selections.

- `ZOO`: the reference models (19) at the sizes their numbers are quoted for: 224 x 224 for
  classification, one 128 x 128 image for the R-CNN, RetinaNet and FCOS detectors
  (``min_size=max_size=128`` keeps their transform from resizing it to 800), 300 x 300 for SSD300,
  128 x 128 for segmentation, 8 frames of 112 x 112 for r3d_18, the 16 x 224 x 224 clip mvit_v2_s
  is built for, and two 128 x 128 frames for RAFT. The vision tests and
  scripts/vision_vs_fvcore.py compare them with fvcore and mmengine.
- `case(name)` for every model ``torchvision.models.list_models()`` names (`ALL`), at the
  smallest input it accepts, with a cheap deterministic initialisation (random initialisation of
  the large models takes longer than analysing them, and counts do not depend on weights): the
  mode fuzz of tests/reliability/test_zoo_fuzz.py.

Nothing is downloaded (``weights=None``, ``weights_backbone=None``). Weights and inputs come from
fixed seeds, so the data-dependent parts of the detectors (how many boxes survive NMS) are the
same each run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision import models
from torchvision.models import detection, optical_flow, segmentation, video

SEED = 0


@dataclass(frozen=True)
class ZooModel:
    name: str
    kind: str  # classification, detection, segmentation, video, optical_flow or quantization
    factory: Callable[[], nn.Module]
    shapes: tuple[tuple[int, ...], ...]  # one tensor per positional argument
    as_list: bool = False  # detection models take a list of 3-D images as their one argument
    kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the call

    def build(self) -> nn.Module:
        """The model in eval mode, from a fixed seed."""
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


# --- the reference models ---------------------------------------------------------------------

DETECTION_SIZE = 128


def _classifier(name: str) -> ZooModel:
    return ZooModel(
        name,
        "classification",
        lambda: torchvision.models.get_model(name, weights=None),
        ((1, 3, 224, 224),),
    )


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


_REFERENCE = [
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
        "optical_flow",
        lambda: optical_flow.raft_small(weights=None),  # 12 flow updates, its default
        ((1, 3, 128, 128), (1, 3, 128, 128)),
    ),
]

ZOO: dict[str, ZooModel] = {model.name: model for model in _REFERENCE}


# --- every torchvision model, small --------------------------------------------------------------

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
    """Every random initialiser fills 1 / fan_in instead: each layer averages its inputs, so
    activations stay finite, and building a large model takes no time."""
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


def kind(name: str) -> str:
    module = models.get_model_builder(name).__module__
    for family in ("detection", "segmentation", "video", "optical_flow", "quantization"):
        if f".{family}" in module:
            return family
    return "classification"


def _cheap_factory(name: str, family: str) -> Callable[[], nn.Module]:
    options: dict[str, Any] = {"weights": None}
    if family in ("detection", "segmentation"):
        options["weights_backbone"] = None
    if family == "quantization":
        options["quantize"] = False
    options.update(_BUILD_KWARGS.get(name, {}))

    def build() -> nn.Module:
        with cheap_init():
            return models.get_model(name, **options)

    return build


def case(name: str) -> ZooModel:
    """Any torchvision model at the smallest input it accepts, cheaply initialised."""
    family = kind(name)
    factory = _cheap_factory(name, family)
    if family == "detection":
        size = 300 if name.startswith("ssd300") else 320 if name.startswith("ssdlite") else 128
        return ZooModel(name, family, factory, ((3, size, size),), as_list=True)
    if family == "video":
        return ZooModel(name, family, factory, (_VIDEO_SHAPE.get(name, (1, 3, 4, 32, 32)),))
    if family == "optical_flow":
        # the correlation pyramid needs feature maps of 16 (images of 128)
        images = ((1, 3, 128, 128), (1, 3, 128, 128))
        return ZooModel(name, family, factory, images, kwargs={"num_flow_updates": 2})
    size = _IMAGE_SIZE.get(name, 64)
    return ZooModel(name, family, factory, ((1, 3, size, size),))
