"""Cross-checks with fvcore and mmengine on the resampling ops they count too."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchtally

pytestmark = pytest.mark.slow  # peer cross-check


class Resampler(nn.Module):
    """Convolutions around nearest and bilinear upsampling and a bilinear grid_sample."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.up2 = nn.Upsample(size=(20, 24), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up2(self.conv2(self.up1(self.conv1(x))))
        grid = torch.zeros(x.shape[0], 7, 9, 2)
        return F.grid_sample(y, grid, mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def ours() -> dict[str, int]:
    analysis = torchtally.analyze(Resampler(), torch.randn(2, 3, 6, 8), warn_unsupported=False)
    assert analysis.unsupported_ops() == {}
    return analysis.by_operator()


def expected() -> dict[str, int]:
    return {
        "conv": 2 * (4 * 3 * 3 * 3) * (6 * 8) + 2 * (4 * 4 * 3 * 3) * (12 * 16),
        "upsample_nearest2d": 1 * (2 * 4 * 12 * 16),
        "upsample_bilinear2d": 4 * (2 * 4 * 20 * 24),
        "grid_sampler": 4 * (2 * 4 * 7 * 9),
    }


def test_by_operator_by_hand(ours: dict[str, int]) -> None:
    assert ours == expected()


def test_fvcore_agrees(ours: dict[str, int]) -> None:
    fvcore = pytest.importorskip("fvcore.nn")
    peer = fvcore.FlopCountAnalysis(Resampler(), torch.randn(2, 3, 6, 8))
    peer.unsupported_ops_warnings(False)
    assert dict(peer.by_operator()) == ours


def test_mmengine_agrees(ours: dict[str, int]) -> None:
    analysis = pytest.importorskip("mmengine.analysis")
    peer = analysis.FlopAnalyzer(Resampler(), torch.randn(2, 3, 6, 8))
    peer.unsupported_ops_warnings(False)
    assert dict(peer.by_operator()) == ours
