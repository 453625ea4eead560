"""Where torchtally's flops differ from fvcore's (and mmengine's, fvcore's code) on the zoo.

One `Difference` per model and operator: what torchtally counts, what fvcore counts, both worked
out from the calls torchtally recorded, and why they differ. Every other operator must be equal.
tests/vision/test_vs_fvcore.py checks this list against both libraries; scripts/vision_vs_fvcore.py
prints it into docs/vision-vs-fvcore.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torchtally
from torchtally import OpCall

Count = Callable[[torchtally.Analysis], float]


@dataclass(frozen=True)
class Difference:
    operator: str  # the by_operator key
    ours: Count
    theirs: Count
    why: str
    plugin: str | None = None  # the difference exists only with this plugin installed


def calls(analysis: torchtally.Analysis, op: str, function: str | None = None) -> list[OpCall]:
    return [
        call
        for call in analysis.trace.ops
        if call.op == op and (function is None or call.function == function)
    ]


def out_numel(call: OpCall) -> int:
    return call.output_tensors[0].numel


def nothing(analysis: torchtally.Analysis) -> int:
    return 0


# --- what torchtally counts ------------------------------------------------------------------


def roi_align(analysis: torchtally.Analysis) -> int:
    """sampling_ratio ** 2 bilinear reads of 4 multiply-adds per output element."""
    return sum(
        out_numel(call) * call.arg("sampling_ratio") ** 2 * 4
        for call in calls(analysis, "torchvision::roi_align")
    )


def nms(analysis: torchtally.Analysis) -> int:
    """3 per box (its area) and 13 per IoU test, k kept of n: k (n - 1) - k (k - 1) / 2 tests."""
    total = 0
    for call in calls(analysis, "torchvision::nms"):
        n, k = call.arg("dets").shape[0], out_numel(call)
        total += 3 * n + 13 * (k * (n - 1) - k * (k - 1) // 2)
    return total


def bilinear_resizes(analysis: torchtally.Analysis) -> int:
    return sum(4 * out_numel(call) for call in calls(analysis, "aten::upsample_bilinear2d"))


def transform_resizes(analysis: torchtally.Analysis) -> int:
    """The resizes GeneralizedRCNNTransform (the module `transform`) does: all fvcore sees."""
    return sum(
        4 * out_numel(call)
        for call in calls(analysis, "aten::upsample_bilinear2d")
        if "transform" in call.scope
    )


def bicubic_resizes(analysis: torchtally.Analysis) -> int:
    return sum(16 * out_numel(call) for call in calls(analysis, "aten::upsample_bicubic2d"))


def adaptive_avg_pool3d(analysis: torchtally.Analysis) -> int:
    """1 per input element (ATen computes a 1 x 1 x 1 output as a mean)."""
    pools = calls(analysis, "aten::mean", function="adaptive_avg_pool3d")
    return sum(call.input_tensors[0].numel for call in pools)


def einsum_bmms(analysis: torchtally.Analysis) -> list[int]:
    """The multiply-adds of each bmm an einsum ran: (B, m, k) @ (B, k, n) -> B m k n."""
    return [
        call.arg("self").numel * call.arg("mat2").shape[-1]
        for call in calls(analysis, "aten::bmm", function="einsum")
    ]


def einsum_exact(analysis: torchtally.Analysis) -> int:
    return sum(einsum_bmms(analysis))


def attention(analysis: torchtally.Analysis) -> int:
    """q @ k^T and weights @ v: 2 B H L S D multiply-adds."""
    return sum(
        2 * call.arg("query").numel * call.arg("key").shape[-2]
        for call in calls(analysis, ATTENTION_OP)
    )


ATTENTION_OP = "aten::_scaled_dot_product_flash_attention_for_cpu"

# --- what fvcore counts ----------------------------------------------------------------------


def numpy_estimate(multiply_adds: int) -> float:
    """fvcore's einsum count: numpy's printed "Optimized FLOP count" (2 per multiply-add, shown
    with 4 significant digits as ``%.3e``), halved and floored."""
    return float(math.floor(float(f"{2 * multiply_adds:.3e}") / 2))


def einsum_estimates(analysis: torchtally.Analysis) -> float:
    return sum(numpy_estimate(flops) for flops in einsum_bmms(analysis))


# --- why -----------------------------------------------------------------------------------

ROI_ALIGN = (
    "fvcore has no handler for `torchvision::roi_align` and lists it as unsupported. "
    "torchtally-vision counts what the kernel does: per output bin and channel, "
    "`sampling_ratio ** 2` bilinear reads (2 x 2 in torchvision's R-CNN heads) of 4 "
    "multiply-adds each."
)
NMS = (
    "When traced, torchvision's `batched_nms` calls a scripted function "
    "(`_batched_nms_coordinate_trick`), which the JIT graph shows as one `prim::CallFunction` "
    "that fvcore cannot look into (it lists `prim::CallFunction` as unsupported); it has no "
    "handler for `torchvision::nms` either. torchtally-vision counts each box's area (3 flops) "
    "and 13 flops per IoU test, at most `k (n - 1) - k (k - 1) / 2` tests for `k` of `n` boxes "
    "kept. How many boxes reach NMS depends on the (here random) weights."
)
PASTE_MASKS = (
    "When traced, `paste_masks_in_image` runs a scripted loop (`prim::CallFunction`), so fvcore "
    "sees only the transform's resize of the image. torchtally also counts the bilinear resize "
    "(4 per output element) of each detection's 28 x 28 mask to its box."
)
HEATMAPS = (
    "When traced, `heatmaps_to_keypoints` runs a scripted loop (`prim::CallFunction`), and "
    "fvcore has no handler for bicubic resizing anyway. torchtally-vision counts 16 reads (4 x 4 "
    "taps) per output element of the bicubic resize of each detection's 17 heatmaps to its box."
)
ADAPTIVE_AVG_POOL3D = (
    "fvcore counts `adaptive_avg_pool2d` (1 per input element) but has no handler for the 3d "
    "one and lists `aten::adaptive_avg_pool3d` as unsupported. torchtally counts it like the 2d "
    "one."
)
EINSUM = (
    "fvcore counts an einsum it has no formula for by asking numpy's `einsum_path` and parsing "
    "its printed report, which shows 4 significant digits (`%.3e`): each of MViT's 32 "
    "relative-position einsums (`bythwc,hkc->bythwk`) is rounded, halved and floored, and the "
    "sum is a float. torchtally counts the `bmm` each einsum runs, exactly. Per einsum the two "
    "agree up to numpy's rounding."
)
ATTENTION = (
    "fvcore has no handler for `aten::scaled_dot_product_attention` and lists it as "
    "unsupported. torchtally-transformer counts the two matmuls of attention, "
    "`2 * B * H * L * S * D`. (torchvision's `nn.MultiheadAttention` ends in SDPA in both tools: "
    "under torchtally's and the JIT's tracing it takes its non-fused path.)"
)


def _detection(*extra: Difference) -> tuple[Difference, ...]:
    return (
        Difference("roi_align", roi_align, nothing, ROI_ALIGN),
        Difference("nms", nms, nothing, NMS),
        *extra,
    )


DIFFERENCES: dict[str, tuple[Difference, ...]] = {
    "vit_b_16": (
        Difference(
            "scaled_dot_product_attention", attention, nothing, ATTENTION, plugin="transformer"
        ),
    ),
    "fasterrcnn_resnet50_fpn": _detection(),
    "maskrcnn_resnet50_fpn": _detection(
        Difference("upsample_bilinear2d", bilinear_resizes, transform_resizes, PASTE_MASKS)
    ),
    "keypointrcnn_resnet50_fpn": _detection(
        Difference("upsample_bicubic2d", bicubic_resizes, nothing, HEATMAPS)
    ),
    "ssd300_vgg16": (Difference("nms", nms, nothing, NMS),),
    "r3d_18": (
        Difference("adaptive_avg_pool3d", adaptive_avg_pool3d, nothing, ADAPTIVE_AVG_POOL3D),
    ),
    "mvit_v2_s": (Difference("einsum", einsum_exact, einsum_estimates, EINSUM),),
}


def differences(model: str, plugins: set[str]) -> tuple[Difference, ...]:
    """The documented differences for `model` with `plugins` (names) installed."""
    return tuple(d for d in DIFFERENCES.get(model, ()) if d.plugin is None or d.plugin in plugins)


def installed_plugins() -> set[str]:
    return {info.name for info in torchtally.list_plugins()}
