"""Deployed models: TorchScript modules, exported programs, FX graphs count as the eager model."""

from __future__ import annotations

import torch
from torch import nn

import torchtally


class Convs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.up = nn.ConvTranspose2d(8, 3, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.conv(x))


# conv: batch 2 x weight (8, 2, 3, 3) x output 6x6; transposed: 2 x (8, 3, 2, 2) x input 6x6
CONVS = 2 * 8 * 2 * 3 * 3 * 36 + 2 * 8 * 3 * 2 * 2 * 36


def test_torchscript_convolution_counts_as_convolution() -> None:
    """TorchScript runs aten::_convolution (traced) at the dispatcher: it counts as convolution."""
    model = Convs().eval()
    x = torch.randn(2, 4, 6, 6)
    traced = torch.jit.trace(model, x)
    ops = {call.op for call in torchtally.trace(traced, x).ops}
    assert "aten::_convolution" in ops
    for mode in ("real", "fake"):
        analysis = torchtally.analyze(traced, x, mode=mode)
        assert analysis.by_operator() == {"conv": CONVS}
        assert analysis.total("activations") == 2 * 8 * 36 + 2 * 3 * 144
        assert analysis.unsupported_ops() == {}
