"""The torchvision zoo end to end: every model runs through `torchtally.analyze` and every op it
runs is counted.

With element-wise counting on nothing is unsupported; off, only the ops that count solely with it
are (core's catalog of element-wise ops and reductions, max and average pooling, and this
plugin's roi_pool / ps_roi_pool). Random weights, small inputs (tests/zoo.py). Besides,
each model's distinctive part is checked against a count worked out by hand.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from vision.conftest import ZooRun
from zoo import DETECTION_SIZE, ZOO, ZooModel

import torchtally
from torchtally.ops.catalog import POINTWISE_FLOPS, REDUCTION_FLOPS
from torchtally.ops.pooling import ADAPTIVE_MAX_POOLS, WINDOW_POOLS
from torchtally_vision.torchvision_ops import ROI_POOLS

pytestmark = pytest.mark.slow  # every reference zoo model built and analysed

# Ops counted only with elementwise=True, from the catalogs that define them.
ELEMENTWISE_ONLY = {
    *POINTWISE_FLOPS,
    *REDUCTION_FLOPS,
    *WINDOW_POOLS,
    *ADAPTIVE_MAX_POOLS,
    *ROI_POOLS,
}

# vit_b_16's attention: nn.MultiheadAttention's slow path ends in scaled_dot_product_attention
# (its fused fast path is skipped under torchtally's TorchFunctionMode), counted by the
# torchtally-transformer plugin.
ATTENTION_OP = "aten::_scaled_dot_product_flash_attention_for_cpu"
TRANSFORMER_PLUGIN = "transformer"


def transformer_plugin_missing() -> bool:
    return TRANSFORMER_PLUGIN not in {info.name for info in torchtally.list_plugins()}


def needs_attention_plugin(request: pytest.FixtureRequest, spec: ZooModel) -> None:
    if spec.name == "vit_b_16" and transformer_plugin_missing():
        request.applymarker(
            pytest.mark.xfail(
                strict=False,
                reason=f"{ATTENTION_OP} is counted by torchtally-transformer "
                "(packages/ops-transformer), which is not installed",
            )
        )


def test_counts_flops_activations_and_parameters(zoo: ZooRun) -> None:
    analysis = zoo.analysis
    assert analysis.total() > 0
    assert analysis.total("activations") > 0
    assert analysis.params[""] == sum(p.numel() for p in zoo.model.parameters())
    assert not analysis.handler_failures


def test_only_elementwise_ops_are_unsupported_when_off(
    zoo: ZooRun, request: pytest.FixtureRequest
) -> None:
    analysis = zoo.analysis
    needs_attention_plugin(request, zoo.spec)
    assert set(analysis.unsupported_ops()) - ELEMENTWISE_ONLY == set()
    assert analysis.unsupported_ops("activations") == {}


def test_nothing_is_unsupported_with_elementwise(
    zoo: ZooRun, request: pytest.FixtureRequest
) -> None:
    needs_attention_plugin(request, zoo.spec)
    on = zoo.analysis.recount(elementwise=True)
    assert on.unsupported_ops() == {}
    assert on.total() > zoo.analysis.total()  # every model has element-wise ops


def test_hand_computed_counts(zoo: ZooRun) -> None:
    HAND_COUNTS[zoo.spec.name](zoo.analysis)


def test_vit_b_16_is_counted_apart_from_attention() -> None:
    """What holds whether torchtally-transformer is installed or not."""
    spec = ZOO["vit_b_16"]
    analysis = torchtally.analyze(spec.build(), spec.inputs(), warn_unsupported=False)
    attention = {ATTENTION_OP}
    assert set(analysis.unsupported_ops()) - ELEMENTWISE_ONLY <= attention
    assert set(analysis.recount(elementwise=True).unsupported_ops()) <= attention
    check_vit_b_16(analysis)


# --- counts by hand ------------------------------------------------------------------------


def calls(analysis: torchtally.Analysis, op: str) -> list[torchtally.OpCall]:
    return [call for call in analysis.trace.ops if call.op == op]


def out_numel(call: torchtally.OpCall) -> int:
    return call.output_tensors[0].numel


def check_resnet50(analysis: torchtally.Analysis) -> None:
    # mmengine 0.10.7's figures for 1x3x224x224 in eval mode (the DESIGN reference).
    assert analysis.total() == 4_111_512_576
    assert analysis.params[""] == 25_557_032
    assert analysis.total("activations") == 11_114_984


def linear_head(in_features: int, out_features: int, module: str) -> Callable[..., None]:
    def check(analysis: torchtally.Analysis) -> None:
        assert analysis.by_operator(module=module) == {"linear": in_features * out_features}

    return check


def check_mobilenet_v3_large(analysis: torchtally.Analysis) -> None:
    # classifier: Linear(960, 1280), Hardswish, Dropout, Linear(1280, 1000)
    assert analysis.by_operator(module="classifier") == {"linear": 960 * 1280 + 1280 * 1000}


def check_convnext_tiny(analysis: torchtally.Analysis) -> None:
    # stem: Conv2d(3, 96, 4, stride 4) to 56 x 56, then LayerNorm2d(96) with affine: 5 per element
    assert analysis.total(module="features.0.0") == (96 * 3 * 4 * 4) * (56 * 56)
    assert analysis.total(module="features.0.1") == 5 * 96 * 56 * 56


def check_swin_t(analysis: torchtally.Analysis) -> None:
    # first block's attention: 3136 tokens in 64 windows of 7 x 7, 3 heads of 32, dim 96
    windows, tokens, heads, head_dim, dim = 64, 49, 3, 32, 96
    qkv = windows * tokens * dim * 3 * dim
    proj = windows * tokens * dim * dim
    scores = windows * heads * tokens * head_dim * tokens  # q @ k^T
    mix = windows * heads * tokens * tokens * head_dim  # attn @ v
    assert analysis.by_operator(module="features.1.0.attn") == {
        "linear": qkv + proj,
        "matmul": scores + mix,
    }


def check_vit_b_16(analysis: torchtally.Analysis) -> None:
    tokens, dim, mlp = 14 * 14 + 1, 768, 3072
    per_block = tokens * dim * (3 * dim + dim + 2 * mlp)  # in_proj, out_proj, MLP
    head = 1 * dim * 1000  # the class token only
    flops = analysis.recount(handlers={ATTENTION_OP: None}).by_operator()
    assert flops["linear"] == 12 * per_block + head
    assert flops["conv"] == (dim * 3 * 16 * 16) * (14 * 14)  # 16 x 16 patches, stride 16
    assert flops["layer_norm"] == 25 * 5 * tokens * dim  # 2 per block + the final one


def check_roi_align(analysis: torchtally.Analysis, output_sizes: set[int]) -> None:
    """MultiScaleRoIAlign with sampling_ratio=2: 2 x 2 bilinear reads (4 each) per bin."""
    roi_calls = calls(analysis, "torchvision::roi_align")
    assert {call.output_tensors[0].shape[-1] for call in roi_calls} == output_sizes
    per_call = [
        call.arg("rois").shape[0] * 256 * call.arg("pooled_height") * call.arg("pooled_width")
        for call in roi_calls
    ]
    assert sum(per_call) > 0
    assert analysis.by_operator()["roi_align"] == sum(bins * (2 * 2) * 4 for bins in per_call)


def check_rcnn_common(analysis: torchtally.Analysis) -> dict[str, int]:
    ops = analysis.by_operator()
    assert ops["nms"] > 0  # the RPN's and the box head's batched_nms
    # GeneralizedRCNNTransform resizes the image (to its own size): 4 reads per output element
    resize = analysis.by_operator(module="transform")
    assert resize == {"upsample_bilinear2d": 4 * 3 * DETECTION_SIZE * DETECTION_SIZE}
    # the FPN's top-down path upsamples 3 times (nearest: 1 read per output element) to the
    # strides 16, 8, 4 of the 128 x 128 image
    side = [DETECTION_SIZE // stride for stride in (16, 8, 4)]
    assert ops["upsample_nearest2d"] == sum(256 * s * s for s in side)
    return ops


def check_fasterrcnn(analysis: torchtally.Analysis) -> None:
    check_rcnn_common(analysis)
    check_roi_align(analysis, {7})


def check_maskrcnn(analysis: torchtally.Analysis) -> None:
    ops = check_rcnn_common(analysis)
    check_roi_align(analysis, {7, 14})  # box head 7 x 7, mask head 14 x 14
    # paste_masks_in_image: each detection's 28 x 28 mask (padded to 30 x 30) is resized
    # bilinearly to its box, outside the transform module
    pastes = [c for c in calls(analysis, "aten::upsample_bilinear2d") if c.scope[-1:] == ("",)]
    assert pastes and all(c.input_tensors[0].shape == (1, 1, 30, 30) for c in pastes)
    resize = 4 * 3 * DETECTION_SIZE * DETECTION_SIZE
    assert ops["upsample_bilinear2d"] == resize + sum(4 * out_numel(c) for c in pastes)


def check_keypointrcnn(analysis: torchtally.Analysis) -> None:
    ops = check_rcnn_common(analysis)
    check_roi_align(analysis, {7, 14})  # box head 7 x 7, keypoint head 14 x 14
    # heatmaps_to_keypoints: each detection's 17 heatmaps of 56 x 56 resized bicubically to
    # its box (4 x 4 reads per output element)
    heatmaps = calls(analysis, "aten::upsample_bicubic2d")
    assert heatmaps and all(c.input_tensors[0].shape == (17, 1, 56, 56) for c in heatmaps)
    assert ops["upsample_bicubic2d"] == sum(16 * out_numel(c) for c in heatmaps)


def check_one_stage(analysis: torchtally.Analysis) -> None:
    # RetinaNet and FCOS: convolutions, norms and the resizing; with untrained heads no score
    # passes the 0.05 threshold, so their NMS runs on no box and costs nothing
    assert set(analysis.by_operator()) <= {
        "conv",
        "batch_norm",
        "group_norm",
        "upsample_bilinear2d",
        "upsample_nearest2d",
    }
    assert sum(call.arg("dets").shape[0] for call in calls(analysis, "torchvision::nms")) == 0


def check_ssd300_vgg16(analysis: torchtally.Analysis) -> None:
    ops = analysis.by_operator()
    assert ops["upsample_bilinear2d"] == 4 * 3 * 300 * 300  # the transform's resize
    # over 1000 candidate boxes (4000 coordinates): batched_nms runs one nms per class
    nms_calls = calls(analysis, "torchvision::nms")
    assert len(nms_calls) > 1
    areas = sum(3 * call.arg("dets").shape[0] for call in nms_calls)
    assert ops["nms"] > areas > 0  # box areas, then IoU tests
    # F.normalize of conv4_3's 512 x 38 x 38 features: a vector norm, 1 flop per element,
    # counted only with element-wise counting on
    assert analysis.unsupported_ops(module="backbone")["aten::linalg_vector_norm"] == 1
    on = analysis.recount(elementwise=True).by_operator(module="backbone")
    assert on["linalg_vector_norm"] == 512 * 38 * 38


def check_deeplabv3(analysis: torchtally.Analysis) -> None:
    # ASPP's image pooling (1 x 1) back to 16 x 16, and the 21 classes back to 128 x 128
    assert analysis.by_operator()["upsample_bilinear2d"] == 4 * (256 * 16 * 16 + 21 * 128 * 128)
    assert analysis.by_operator()["adaptive_avg_pool2d"] == 2048 * 16 * 16


def check_fcn(analysis: torchtally.Analysis) -> None:
    assert analysis.by_operator()["upsample_bilinear2d"] == 4 * 21 * 128 * 128


def check_lraspp(analysis: torchtally.Analysis) -> None:
    # the 1/16 branch (128 channels, 8 x 8) up to 1/8 (16 x 16), and 21 classes to 128 x 128
    assert analysis.by_operator()["upsample_bilinear2d"] == 4 * (128 * 16 * 16 + 21 * 128 * 128)


def check_r3d_18(analysis: torchtally.Analysis) -> None:
    # the stem: Conv3d(3, 64, (3, 7, 7), stride (1, 2, 2)) over 8 x 56 x 56 output positions
    assert analysis.total(module="stem.0") == (64 * 3 * 3 * 7 * 7) * (8 * 56 * 56)
    # AdaptiveAvgPool3d over the last 512 x 1 x 7 x 7 features, then Linear(512, 400)
    assert analysis.by_operator(module="avgpool") == {"adaptive_avg_pool3d": 512 * 1 * 7 * 7}
    assert analysis.by_operator(module="fc") == {"linear": 512 * 400}


def check_mvit_v2_s(analysis: torchtally.Analysis) -> None:
    # conv_proj: Conv3d(3, 96, (3, 7, 7), stride (2, 4, 4)) over 8 x 56 x 56 output positions
    assert analysis.total(module="conv_proj") == (96 * 3 * 3 * 7 * 7) * (8 * 56 * 56)
    # the relative position terms of the first block: 8 x 56 x 56 queries of one head of 96
    # channels, against the 7 key rows and the 7 key columns its pooled keys have left
    # (stride 8): two einsums, one bmm each
    queries = 8 * 56 * 56
    assert analysis.by_operator(module="blocks.0.attn")["einsum"] == 2 * queries * 96 * 7


def check_raft_small(analysis: torchtally.Analysis) -> None:
    ops = analysis.by_operator()
    samplers = calls(analysis, "aten::grid_sampler_2d")
    assert samplers and all(call.arg("interpolation_mode") == 0 for call in samplers)  # bilinear
    assert ops["grid_sampler"] == sum(4 * out_numel(call) for call in samplers)
    # each of the 12 updates upsamples its (1, 2, 16, 16) flow 8x to (1, 2, 128, 128)
    assert ops["upsample_bilinear2d"] == 12 * 4 * (1 * 2 * 128 * 128)


HAND_COUNTS: dict[str, Callable[[torchtally.Analysis], None]] = {
    "resnet50": check_resnet50,
    "mobilenet_v3_large": check_mobilenet_v3_large,
    "efficientnet_b0": linear_head(1280, 1000, "classifier"),
    "convnext_tiny": check_convnext_tiny,
    "swin_t": check_swin_t,
    "vit_b_16": check_vit_b_16,
    "regnet_y_400mf": linear_head(440, 1000, "fc"),
    "fasterrcnn_resnet50_fpn": check_fasterrcnn,
    "maskrcnn_resnet50_fpn": check_maskrcnn,
    "retinanet_resnet50_fpn": check_one_stage,
    "fcos_resnet50_fpn": check_one_stage,
    "keypointrcnn_resnet50_fpn": check_keypointrcnn,
    "ssd300_vgg16": check_ssd300_vgg16,
    "deeplabv3_resnet50": check_deeplabv3,
    "fcn_resnet50": check_fcn,
    "lraspp_mobilenet_v3_large": check_lraspp,
    "r3d_18": check_r3d_18,
    "mvit_v2_s": check_mvit_v2_s,
    "raft_small": check_raft_small,
}


def test_every_zoo_model_has_hand_counts() -> None:
    assert set(HAND_COUNTS) == set(ZOO)
