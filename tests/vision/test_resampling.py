"""Upsampling, grid_sample, affine_grid and pixel (un)shuffle against counts worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

X1 = torch.randn(1, 2, 5)  # (N, C, W)
X2 = torch.randn(1, 2, 4, 4)  # (N, C, H, W)
X3 = torch.randn(1, 2, 3, 3, 3)  # (N, C, D, H, W)


@pytest.mark.parametrize(
    ("x", "mode", "op", "flops"),
    [
        # scale 2: outputs (1, 2, 10), (1, 2, 8, 8), (1, 2, 6, 6, 6)
        (X1, "nearest", "upsample_nearest1d", 1 * (1 * 2 * 10)),
        (X2, "nearest", "upsample_nearest2d", 1 * (1 * 2 * 8 * 8)),
        (X3, "nearest", "upsample_nearest3d", 1 * (1 * 2 * 6 * 6 * 6)),
        (X1, "nearest-exact", "_upsample_nearest_exact1d", 1 * (1 * 2 * 10)),
        (X2, "nearest-exact", "_upsample_nearest_exact2d", 1 * (1 * 2 * 8 * 8)),
        (X3, "nearest-exact", "_upsample_nearest_exact3d", 1 * (1 * 2 * 6 * 6 * 6)),
        (X1, "linear", "upsample_linear1d", 2 * (1 * 2 * 10)),
        (X2, "bilinear", "upsample_bilinear2d", 4 * (1 * 2 * 8 * 8)),
        (X3, "trilinear", "upsample_trilinear3d", 8 * (1 * 2 * 6 * 6 * 6)),
        (X2, "bicubic", "upsample_bicubic2d", 16 * (1 * 2 * 8 * 8)),
    ],
)
def test_upsample_counts_samples_read_per_output_element(
    tally: Any, x: torch.Tensor, mode: str, op: str, flops: int
) -> None:
    analysis = tally(lambda t: F.interpolate(t, scale_factor=2, mode=mode), x)
    assert analysis.by_operator() == {op: flops}
    assert analysis.total("activations") == 0
    assert analysis.unsupported_ops() == {}


def test_align_corners_and_upsample_module_count_the_same(tally: Any) -> None:
    module = torch.nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True)
    assert tally(module, X2).by_operator() == {"upsample_bilinear2d": 4 * (1 * 2 * 5 * 7)}


@pytest.mark.parametrize(
    ("mode", "size", "flops"),
    [
        # enlarging: the plain filter, 2 (bilinear) or 4 (bicubic) taps per dimension
        ("bilinear", (8, 8), (2 * 2) * (1 * 2 * 8 * 8)),
        ("bicubic", (8, 8), (4 * 4) * (1 * 2 * 8 * 8)),
    ],
)
def test_antialias_enlarging_uses_the_plain_filter(
    tally: Any, mode: str, size: tuple[int, int], flops: int
) -> None:
    analysis = tally(lambda t: F.interpolate(t, size=size, mode=mode, antialias=True), X2)
    assert analysis.by_operator() == {f"_upsample_{mode}2d_aa": flops}


@pytest.mark.parametrize(
    ("mode", "size", "flops"),
    [
        # 8 x 8 -> 4 x 4: shrink factor 2 per dimension, so 2 * 2 (bilinear) or 4 * 2 taps
        ("bilinear", (4, 4), (4 * 4) * (1 * 2 * 4 * 4)),
        ("bicubic", (4, 4), (8 * 8) * (1 * 2 * 4 * 4)),
        # 8 x 8 -> 3 x 8: height shrinks by 8/3 (ceil(2 * 8/3) = 6 taps), width keeps 2 taps
        ("bilinear", (3, 8), (6 * 2) * (1 * 2 * 3 * 8)),
    ],
)
def test_antialias_downscale_widens_the_filter(
    tally: Any, mode: str, size: tuple[int, int], flops: int
) -> None:
    x = torch.randn(1, 2, 8, 8)
    analysis = tally(lambda t: F.interpolate(t, size=size, mode=mode, antialias=True), x)
    assert analysis.by_operator() == {f"_upsample_{mode}2d_aa": flops}
    assert analysis.total("activations") == 0


GRID2 = torch.rand(1, 5, 3, 2) * 2 - 1  # output (1, 2, 5, 3): 30 elements
GRID3 = torch.rand(1, 2, 2, 2, 3) * 2 - 1  # output (1, 2, 2, 2, 2): 16 elements


@pytest.mark.parametrize(
    ("x", "grid", "mode", "flops"),
    [
        (X2, GRID2, "bilinear", 4 * 30),  # fvcore's and mmengine's 4 per output element
        (X2, GRID2, "nearest", 1 * 30),
        (X2, GRID2, "bicubic", 16 * 30),
        (X3, GRID3, "bilinear", 8 * 16),  # trilinear in 3d
        (X3, GRID3, "nearest", 1 * 16),
    ],
)
def test_grid_sample_is_reported_as_fvcore_names_it(
    tally: Any, x: torch.Tensor, grid: torch.Tensor, mode: str, flops: int
) -> None:
    analysis = tally(
        lambda t, g: F.grid_sample(t, g, mode=mode, padding_mode="border", align_corners=False),
        x,
        grid,
    )
    assert analysis.by_operator() == {"grid_sampler": flops}
    assert analysis.total("activations") == 0
    assert analysis.unsupported_ops() == {}


def test_affine_grid_is_a_small_matmul(tally: Any) -> None:
    two_d = tally(
        lambda t: F.affine_grid(t, [1, 4, 5, 5], align_corners=False), torch.randn(1, 2, 3)
    )
    # (1, 5, 5, 2) coordinates, each theta's row . (x, y, 1)
    assert two_d.by_operator() == {"affine_grid_generator": 3 * (1 * 5 * 5 * 2)}
    three_d = tally(
        lambda t: F.affine_grid(t, [1, 1, 2, 3, 4], align_corners=False), torch.randn(1, 3, 4)
    )
    assert three_d.by_operator() == {"affine_grid_generator": 4 * (1 * 2 * 3 * 4 * 3)}
    assert three_d.total("activations") == 0


@pytest.mark.parametrize(
    "module", [torch.nn.PixelShuffle(2), torch.nn.PixelUnshuffle(2)], ids=["shuffle", "unshuffle"]
)
def test_pixel_shuffle_moves_data_only(tally: Any, module: torch.nn.Module) -> None:
    analysis = tally(module, torch.randn(1, 4, 4, 4), elementwise=True)
    assert analysis.total() == 0
    assert analysis.unsupported_ops() == {}
    assert {call.op for call in analysis.trace.ops} <= {
        "aten::pixel_shuffle",
        "aten::pixel_unshuffle",
    }
