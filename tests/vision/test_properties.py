"""Property tests for every formula of the vision plugin (torchtally_vision): on random valid
small calls the handler's count equals a brute-force count from the op's definition
(vision/brute.py, checked against torch's and torchvision's results), or, where the
plugin documents its formula as a bound (anti-aliasing, nms), is never below it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops
from reliability.brute import tensor
from reliability.helpers import deterministic
from torchtally_testing import Fn
from vision import brute as bv

import torchtally
import torchtally_vision

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
_hypothesis = pytest.importorskip("hypothesis")
assume = _hypothesis.assume
given = _hypothesis.given
st = pytest.importorskip("hypothesis.strategies")


@pytest.fixture(autouse=True, scope="module")
def vision_plugin() -> None:
    """The plugin as installed, or registered by hand when it is not."""
    manager = torchtally.get_plugin_manager()
    if manager.get_plugin("vision") is None:
        manager.register(torchtally_vision, name="vision")


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def close(result: torch.Tensor, reference: Any) -> None:
    torch.testing.assert_close(result, tensor(reference), rtol=1e-7, atol=1e-7)


def counted(
    fn: Callable[..., Any], *inputs: torch.Tensor, op: str, meta: bool = True, **kwargs: Any
) -> int:
    """Flops of one call of `fn` (which must run `op`), the same in meta mode."""
    kwargs.setdefault("warn_unsupported", False)
    analysis = torchtally.analyze(Fn(fn), inputs, mode="real", strict=True, **kwargs)
    assert op in {call.op for call in analysis.trace.ops}, f"{op} did not run"
    assert analysis.unsupported_ops() == {}, analysis.unsupported_ops()
    if meta:
        on_meta = tuple(x.to("meta") for x in inputs)
        fake = torchtally.analyze(Fn(fn), on_meta, mode="meta", strict=True, **kwargs)
        assert fake.total() == analysis.total(), "meta mode counts differently"
    return analysis.total()


# --- upsampling ----------------------------------------------------------------------------

UPSAMPLE_MODES = {  # mode -> (dims, op, taps(o, in, out, align_corners))
    "nearest": (None, "upsample_nearest{d}d", lambda o, i, n, a: bv.nearest_taps(o, i, n, False)),
    "nearest-exact": (
        None,
        "_upsample_nearest_exact{d}d",
        lambda o, i, n, a: bv.nearest_taps(o, i, n, True),
    ),
    "linear": (1, "upsample_linear1d", bv.linear_taps),
    "bilinear": (2, "upsample_bilinear2d", bv.linear_taps),
    "trilinear": (3, "upsample_trilinear3d", bv.linear_taps),
    "bicubic": (2, "upsample_bicubic2d", bv.cubic_taps),
}


@deterministic
@given(mode=st.sampled_from(sorted(UPSAMPLE_MODES)), data=st.data())
def test_upsampling(mode: str, data: st.DataObject) -> None:
    fixed_dims, op_pattern, taps = UPSAMPLE_MODES[mode]
    dims = fixed_dims or data.draw(st.integers(1, 3))
    size_in = [data.draw(st.integers(1, 4)) for _ in range(dims)]
    size_out = [data.draw(st.integers(1, 5)) for _ in range(dims)]
    align = data.draw(st.booleans()) if mode not in ("nearest", "nearest-exact") else None
    x = randn(data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)), *size_in)

    def call(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=size_out, mode=mode, align_corners=align)

    reference, reads = bv.separable(
        x.tolist(),
        x.shape,
        size_out,
        lambda d, o: taps(o, size_in[d], size_out[d], align),
    )
    close(call(x), reference)
    op = "aten::" + op_pattern.format(d=dims)
    assert counted(call, x, op=op) == reads


@deterministic
@given(
    cubic=st.booleans(),
    size_in=st.tuples(st.integers(1, 9), st.integers(2, 9)),
    size_out=st.tuples(st.integers(1, 5), st.integers(2, 5)),
)
def test_antialiased_resizing_is_an_upper_bound(
    cubic: bool, size_in: tuple[int, int], size_out: tuple[int, int]
) -> None:
    """The plugin documents ceil(taps * max(1, in / out)) per dim as an upper bound: the window
    is clipped to the input at the borders, and a non-integer width rounds down or up. (Widths
    stay above 1: torch 2.13 resizes only the height wrongly when input and output width are 1.)"""
    mode = "bicubic" if cubic else "bilinear"
    x = randn(1, 2, *size_in)

    def call(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=size_out, mode=mode, antialias=True, align_corners=False)

    reference, reads = bv.separable(
        x.tolist(),
        x.shape,
        size_out,
        lambda d, o: bv.antialias_taps(o, size_in[d], size_out[d], cubic),
    )
    close(call(x), reference)
    counted_flops = counted(call, x, op=f"aten::_upsample_{mode}2d_aa")
    assert reads <= counted_flops
    # and never more than the widest window (before clipping) allows, per output element
    taps = 4 if cubic else 2
    widest = math.prod(
        2 * math.ceil(taps / 2 * max(1, i / o)) + 1 for i, o in zip(size_in, size_out, strict=True)
    )
    assert counted_flops <= widest * 2 * math.prod(size_out)


# --- grid sampling -------------------------------------------------------------------------


@deterministic
@given(data=st.data(), dims=st.integers(2, 3), align=st.booleans())
def test_grid_sample(data: st.DataObject, dims: int, align: bool) -> None:
    modes = ["bilinear", "nearest"] + (["bicubic"] if dims == 2 else [])
    mode = data.draw(st.sampled_from(modes))
    spatial = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    out_spatial = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    n, c = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    x = randn(n, c, *spatial)
    # grid points in [-1.1, 1.1], quantised so no coordinate sits exactly on a rounding tie
    grid = (
        torch.randint(-11, 12, (n, *out_spatial, dims), generator=torch.Generator().manual_seed(1))
        / 10
        + 0.013
    ).double()

    def call(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(x, g, mode=mode, padding_mode="zeros", align_corners=align)

    reference, reads = bv.grid_sample(x.tolist(), x.shape, grid.tolist(), out_spatial, mode, align)
    close(call(x, grid), reference)
    assert counted(call, x, grid, op=f"aten::grid_sampler_{dims}d") == reads


@deterministic
@given(
    n=st.integers(1, 2),
    dims=st.integers(2, 3),
    spatial=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    align=st.booleans(),
)
def test_affine_grid(n: int, dims: int, spatial: list[int], align: bool) -> None:
    size = [n, 1, *spatial[:dims]]
    theta = randn(n, dims, dims + 1)

    def call(t: torch.Tensor) -> torch.Tensor:
        return F.affine_grid(t, size, align_corners=align)

    reference, macs = bv.affine_grid(theta.tolist(), size, align)
    close(call(theta), reference)
    assert counted(call, theta, op="aten::affine_grid_generator") == macs


# --- torchvision's ops ---------------------------------------------------------------------


@st.composite
def roi_boxes(draw: st.DrawFn, batch: int, height: int, width: int) -> list[list[float]]:
    """(batch index, x1, y1, x2, y2) boxes, on a 1/4-pixel lattice inside the map or just over."""
    boxes = []
    for _ in range(draw(st.integers(1, 3))):
        x1 = draw(st.integers(0, 4 * width)) / 4
        y1 = draw(st.integers(0, 4 * height)) / 4
        x2 = x1 + draw(st.integers(1, 4 * width)) / 4
        y2 = y1 + draw(st.integers(1, 4 * height)) / 4
        boxes.append([float(draw(st.integers(0, batch - 1))), x1, y1, x2, y2])
    return boxes


@deterministic
@given(data=st.data(), position_sensitive=st.booleans())
def test_roi_align(data: st.DataObject, position_sensitive: bool) -> None:
    pooled = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    batch, height, width = (
        data.draw(st.integers(1, 2)),
        data.draw(st.integers(2, 5)),
        data.draw(st.integers(2, 5)),
    )
    channels = pooled[0] * pooled[1] * data.draw(st.integers(1, 2))
    x = randn(batch, channels, height, width)
    rois = data.draw(roi_boxes(batch, height, width))
    ratio = data.draw(st.integers(1, 3))
    scale = data.draw(st.sampled_from([1.0, 0.5]))
    aligned = False if position_sensitive else data.draw(st.booleans())
    boxes = torch.tensor(rois, dtype=torch.float64)

    def call(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if position_sensitive:
            return torchvision.ops.ps_roi_align(x, b, pooled, scale, ratio)
        return torchvision.ops.roi_align(x, b, pooled, scale, ratio, aligned)

    reference, reads = bv.roi_align(
        x.tolist(), x.shape, rois, pooled, scale, ratio, aligned, position_sensitive
    )
    close(call(x, boxes), reference)
    op = "torchvision::ps_roi_align" if position_sensitive else "torchvision::roi_align"
    assert counted(call, x, boxes, op=op) == reads


@deterministic
@given(
    cells=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pooled=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    data=st.data(),
)
def test_roi_align_with_an_adaptive_sampling_ratio_and_known_bins(
    cells: tuple[int, int], pooled: tuple[int, int], data: st.DataObject
) -> None:
    """sampling_ratio=0 samples ceil(bin size) cells per side: data the trace does not keep, so
    the plugin takes it from options["roi_bin_cells"]; with boxes whose bins are that size the
    count is exact."""
    height, width = cells[0] * pooled[0] + 2, cells[1] * pooled[1] + 2
    x = randn(1, 2, height, width)
    y1, x1 = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))
    rois = [[0.0, x1, y1, x1 + cells[1] * pooled[1], y1 + cells[0] * pooled[0]]]
    boxes = torch.tensor(rois, dtype=torch.float64)

    def call(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torchvision.ops.roi_align(x, b, pooled, 1.0, 0, True)

    reference, reads = bv.roi_align(x.tolist(), x.shape, rois, pooled, 1.0, 0, True, False)
    close(call(x, boxes), reference)
    options = {"roi_bin_cells": cells}
    assert counted(call, x, boxes, op="torchvision::roi_align", options=options) == reads


@deterministic
@given(
    cells=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pooled=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    position_sensitive=st.booleans(),
    data=st.data(),
)
def test_roi_pool_with_known_bins(
    cells: tuple[int, int], pooled: tuple[int, int], position_sensitive: bool, data: st.DataObject
) -> None:
    """roi_pool (max) and ps_roi_pool (average) read every cell of a bin: counted with
    element-wise counting on, from options["roi_bin_cells"] (exact for boxes with such bins)."""
    height, width = cells[0] * pooled[0] + 2, cells[1] * pooled[1] + 2
    channels = pooled[0] * pooled[1] if position_sensitive else 2
    x = randn(1, channels, height, width)
    y1, x1 = data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1))  # clear of the edge
    extra = 0 if position_sensitive else 1  # roi_pool's box includes its last pixel
    y2 = y1 + cells[0] * pooled[0] - extra
    x2 = x1 + cells[1] * pooled[1] - extra
    rois = [[0.0, float(x1), float(y1), float(x2), float(y2)]]
    boxes = torch.tensor(rois, dtype=torch.float64)

    def call(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        pool = torchvision.ops.ps_roi_pool if position_sensitive else torchvision.ops.roi_pool
        return pool(x, b, pooled, 1.0)

    reference, reads = bv.roi_pool(x.tolist(), x.shape, rois, pooled, position_sensitive)
    close(call(x, boxes), reference)
    op = "torchvision::ps_roi_pool" if position_sensitive else "torchvision::roi_pool"
    options = {"roi_bin_cells": cells}
    assert counted(call, x, boxes, op=op, options=options, elementwise=True) == reads


@deterministic
@given(data=st.data(), use_mask=st.booleans())
def test_deform_conv2d(data: st.DataObject, use_mask: bool) -> None:
    groups = data.draw(st.integers(1, 2))
    offset_groups = data.draw(st.sampled_from([g for g in (1, 2) if (groups * 2) % g == 0]))
    c_in = groups * offset_groups * data.draw(st.integers(1, 2))
    c_out = groups * data.draw(st.integers(1, 2))
    kernel = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    padding = (data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1)))
    dilation = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    height, width = data.draw(st.integers(2, 4)), data.draw(st.integers(2, 4))
    out_h = (height + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    assume(out_h > 0 and out_w > 0)
    n = data.draw(st.integers(1, 2))
    x = randn(n, c_in, height, width)
    weight = randn(c_out, c_in // groups, *kernel, seed=1)
    taps = kernel[0] * kernel[1]
    offset = randn(n, 2 * offset_groups * taps, out_h, out_w, seed=2)
    mask = (
        torch.rand(n, offset_groups * taps, out_h, out_w, dtype=torch.float64) if use_mask else None
    )

    def call(x: torch.Tensor, o: torch.Tensor, w: torch.Tensor, *m: torch.Tensor) -> torch.Tensor:
        return torchvision.ops.deform_conv2d(
            x, o, w, None, stride, padding, dilation, m[0] if m else None
        )

    reference, flops = bv.deform_conv2d(
        x.tolist(),
        x.shape,
        weight.tolist(),
        weight.shape,
        offset.tolist(),
        None if mask is None else mask.tolist(),
        stride,
        padding,
        dilation,
        offset_groups,
    )
    inputs = (x, offset, weight) + ((mask,) if mask is not None else ())
    close(call(*inputs), reference)
    assert counted(call, *inputs, op="torchvision::deform_conv2d") == flops


@deterministic
@given(
    boxes=st.integers(1, 12),
    threshold=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    seed=st.integers(0, 99),
)
def test_nms_bounds_its_iou_tests(boxes: int, threshold: float, seed: int) -> None:
    """Areas (3 per box) plus 13 per IoU test; the plugin bounds the tests from the number of
    kept boxes, exact when nothing is suppressed."""
    generator = torch.Generator().manual_seed(seed)
    corners = torch.rand(boxes, 2, generator=generator, dtype=torch.float64) * 10
    sizes = torch.rand(boxes, 2, generator=generator, dtype=torch.float64) * 5 + 0.5
    dets = torch.cat([corners, corners + sizes], dim=1)
    scores = torch.randperm(boxes, generator=generator).double()
    keep, tests = bv.nms(dets.tolist(), scores.tolist(), threshold)
    assert torchvision.ops.nms(dets, scores, threshold).tolist() == keep
    area_flops, iou_flops = 3, 4 + 4 + 1 + 3 + 1
    counted_flops = counted(
        torchvision.ops.nms, dets, scores, threshold, op="torchvision::nms", meta=False
    )  # type: ignore[arg-type]
    assert counted_flops >= area_flops * boxes + iou_flops * tests
    if len(keep) == boxes:  # nothing suppressed: every pair tested, the bound is exact
        assert counted_flops == area_flops * boxes + iou_flops * tests


def test_every_forward_formula_of_the_plugin_has_a_property_test() -> None:
    covered = {
        *(f"aten::upsample_nearest{d}d" for d in (1, 2, 3)),
        *(f"aten::_upsample_nearest_exact{d}d" for d in (1, 2, 3)),
        "aten::upsample_linear1d", "aten::upsample_bilinear2d", "aten::upsample_trilinear3d",
        "aten::upsample_bicubic2d", "aten::_upsample_bilinear2d_aa", "aten::_upsample_bicubic2d_aa",
        "aten::grid_sampler_2d", "aten::grid_sampler_3d", "aten::affine_grid_generator",
        "torchvision::roi_align", "torchvision::ps_roi_align", "torchvision::roi_pool",
        "torchvision::ps_roi_pool", "torchvision::deform_conv2d", "torchvision::nms",
    }  # fmt: skip
    # other backends' kernels, hand-counted from recorded calls (tests/core/test_inventory_handlers)
    hand_counted = {
        "aten::_grid_sampler_2d_cpu_fallback", "aten::cudnn_grid_sampler",
        "aten::cudnn_affine_grid_generator", "aten::_upsample_lanczos2d_aa",
    }  # fmt: skip
    forward = {op for op in torchtally_vision.handlers.op_handlers("flops") if "backward" not in op}
    assert forward - covered - hand_counted == set(), "add a property test for these handlers"
