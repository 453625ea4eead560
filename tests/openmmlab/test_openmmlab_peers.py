"""torchtally on OpenMMLab configs against each codebase's own get_flops computation.

Each config is built once by the source; torchtally analyses it, then mmengine's
``get_model_complexity_info`` analyses the same model on the same input, called as the codebase's
``tools/analysis_tools/get_flops.py`` calls it: mmpretrain with the input shape (its forward is
``extract_feat``); mmseg with the preprocessed ``inputs`` (its script also passes the shape,
which mmengine 0.10.7 refuses); mmdet with the preprocessed ``inputs`` and ``forward`` bound to
the data samples. Shapes are small so the tests stay short; the counts do not depend on the
random input except below the RPN of a two-stage detector, which is deterministic on one input.

Where the numbers differ, the difference is exactly what torchtally counts and mmengine's
``torch.jit.trace`` cannot see: torchvision's ``nms`` and ``roi_align`` (mmcv's ops, standing in
for mmcv-lite's missing compiled ones, run inside autograd functions that the trace records as one
opaque call) and ``scaled_dot_product_attention`` (not among mmengine's handlers).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import pytest
from openmmlab.helpers import needs

import torchtally
from torchtally_cli.sources import example_inputs, load_model

# (config, --shape, ops torchtally counts that mmengine does not)
MMPRETRAIN = [
    ("resnet/resnet50_8xb32_in1k.py", None, ()),
    ("mobilenet_v2/mobilenet-v2_8xb32_in1k.py", None, ()),
    ("efficientnet/efficientnet-b0_8xb32_in1k.py", None, ()),
    ("swin_transformer/swin-tiny_16xb64_in1k.py", None, ()),
    ("deit/deit-tiny_4xb256_in1k.py", None, ("scaled_dot_product_attention",)),
]
MMDET = [
    ("retinanet/retinanet_r18_fpn_1x_coco.py", "320 320", ()),
    ("fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py", "320 320", ()),
    ("yolox/yolox_tiny_8xb8-300e_coco.py", "320 320", ()),
    ("faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py", "320 320", ("nms", "roi_align")),
]
MMSEG = [
    ("pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py", "256 512", ()),
    ("deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py", "256 512", ()),
    ("segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py", "256 256", ()),
    ("upernet/upernet_r18_4xb2-40k_cityscapes-512x1024.py", "256 512", ()),
]


def mmengine_counts(model: Any, inputs: Any, scope: str, **options: Any) -> dict[str, Any]:
    """What the codebase's get_flops.py gets from mmengine for `model` on `inputs`."""
    from mmengine.analysis import get_model_complexity_info

    logging.getLogger("mmengine").setLevel(logging.ERROR)  # its unsupported-op lines
    if scope == "mmpretrain":
        return get_model_complexity_info(model, tuple(inputs.shape[1:]), **options)
    if scope == "mmseg":
        return get_model_complexity_info(model, None, inputs=inputs, **options)
    model.forward = partial(model.forward, data_samples=inputs["data_samples"])
    try:
        return get_model_complexity_info(model, None, inputs=inputs["inputs"], **options)
    finally:
        del model.forward  # the class' forward again


def check(source: str, shape: str | None, differences: tuple[str, ...]) -> torchtally.Analysis:
    loaded = load_model(source)
    inputs = example_inputs(loaded, shape=shape.split() if shape else None)
    ours = torchtally.analyze(loaded.model, inputs, warn_unsupported=False)
    theirs = mmengine_counts(loaded.model, inputs, loaded.task, show_table=False, show_arch=False)
    by_operator = ours.by_operator()
    extra = sum(by_operator[op] for op in differences)
    assert all(by_operator[op] > 0 for op in differences)
    assert ours.total() - extra == theirs["flops"]
    assert ours.params[""] == theirs["params"]
    if "scaled_dot_product_attention" not in differences:  # its output is an activation to us
        assert ours.total("activations") == theirs["activations"]
    return ours


def cases(codebase: str, configs: list[tuple[str, str | None, tuple[str, ...]]]) -> list[Any]:
    """One test case per config of `codebase`, skipped unless the codebase is installed."""
    return [
        pytest.param(f"{codebase}::{config}", shape, differences, marks=needs(codebase))
        for config, shape, differences in configs
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "shape", "differences"),
    cases("mmpretrain", MMPRETRAIN) + cases("mmdet", MMDET) + cases("mmseg", MMSEG),
    ids=str,
)
def test_config_equals_mmengine(
    source: str, shape: str | None, differences: tuple[str, ...]
) -> None:
    check(source, shape, differences)


@pytest.mark.slow
@needs("mmpretrain")
def test_the_table_is_mmengines_table_spaces_included() -> None:
    """The seed's table is mmengine's: the same text, character for character."""
    loaded = load_model("mmpretrain::resnet/resnet50_8xb32_in1k.py")
    inputs = example_inputs(loaded, shape=["224"])
    ours = torchtally.analyze(loaded.model, inputs, warn_unsupported=False)
    theirs = mmengine_counts(loaded.model, inputs, "mmpretrain", show_arch=False)
    assert ours.render("table") == theirs["out_table"].strip("\n")  # mmengine adds newlines
