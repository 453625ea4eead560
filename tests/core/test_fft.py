"""FFTs: 5/2 * M * log2(M) multiply-adds per complex transform of M points, half that when the
input or the output is real (docs/conventions.md, "Fast Fourier transforms"), forward and
backward, the same in every mode."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torchtally_testing import Fn, T, count_calls, recorded

import torchtally


def complex_fft(points: int, batch: int = 1) -> int:
    return round(batch * 5 / 2 * points * math.log2(points))


def real_fft(points: int, batch: int = 1) -> int:
    return round(batch * 5 / 4 * points * math.log2(points))


class GlobalFilter(nn.Module):
    """GFNet's global filter: rfft2, a learned complex filter, irfft2."""

    def __init__(self, h: int = 8, w: int = 8, c: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(h, w // 2 + 1, c, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        y = torch.fft.rfft2(x, dim=(1, 2), norm="ortho") * torch.view_as_complex(self.weight)
        return torch.fft.irfft2(y, s=(h, w), dim=(1, 2), norm="ortho")


def analyse(model: nn.Module, x: Any, mode: str, **kwargs: Any) -> torchtally.Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torchtally.analyze(model, x, mode=mode, warn_unsupported=False, **kwargs)


def test_a_global_filter_counts_its_two_real_transforms_in_every_mode() -> None:
    x = torch.randn(2, 8, 8, 4)
    per_transform = real_fft(64, batch=2 * 4)  # 8 x 8 points, for 2 images x 4 channels
    counts = {}
    for mode in ("real", "fake", "auto"):
        analysis = analyse(GlobalFilter(), x, mode, backward=True)
        counts[mode] = (analysis.total(phase="forward"), analysis.total(phase="backward"))
    with torch.device("meta"):
        meta_model = GlobalFilter()
    meta = analyse(meta_model, x, "meta", backward=True)
    counts["meta"] = (meta.total(phase="forward"), meta.total(phase="backward"))
    # forward rfft2 and irfft2; backward: irfft2's gradient is an rfft2 (x needs no gradient)
    assert set(counts.values()) == {(2 * per_transform, per_transform)}
    assert meta.by_operator(phase="forward") == {
        "_fft_r2c": per_transform,
        "_fft_c2r": per_transform,
    }


CASES: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], tuple[int, ...], int]] = [
    # a complex transform of a real input is a real one, whose other half is conjugates
    ("fft of a real input", lambda x: torch.fft.fft(x).real, (3, 16), real_fft(16, 3)),
    (
        "fft of a complex input",
        lambda x: torch.fft.fft(torch.fft.fft(x, dim=0), dim=1).real,
        (8, 6),
        real_fft(8, 6) + complex_fft(6, 8),
    ),
    # fftn makes a real input complex first (FNet's mixing): a complex transform
    ("fftn (FNet)", lambda x: torch.fft.fftn(x, dim=(1, 2)).real, (2, 8, 4), complex_fft(32, 2)),
    (
        "irfft, odd size",
        lambda x: torch.fft.irfft(torch.fft.rfft(x), n=9),
        (4, 9),
        2 * real_fft(9, 4),
    ),
    (
        "stft",
        lambda x: torch.stft(x, 16, return_complex=True).abs(),
        (2, 100),
        real_fft(16, 2 * 26),
    ),
    ("one point", lambda x: torch.fft.fft(x, dim=1).real, (5, 1), 0),
]


@pytest.mark.parametrize(("name", "fn", "shape", "expected"), CASES, ids=[c[0] for c in CASES])
def test_transforms_count_their_points(
    name: str, fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], expected: int
) -> None:
    x = torch.randn(*shape)
    counts = {mode: analyse(Fn(fn), x, mode).total() for mode in ("real", "fake", "auto")}
    assert set(counts.values()) == {expected}, counts


def test_the_backward_pass_counts_the_gradient_transforms() -> None:
    """fft(x) of a complex x: its gradient is an inverse complex transform of the same size."""
    x = torch.randn(4, 8, requires_grad=True)
    fn = Fn(lambda x: torch.fft.fft(torch.fft.fft(x, dim=1), dim=0).abs())
    for mode in ("real", "fake"):
        analysis = analyse(fn, x, mode, backward=True)
        forward = real_fft(8, 4) + complex_fft(4, 8)
        assert analysis.total(phase="forward") == forward
        # both gradients are complex transforms (the real input's one too, then its real part)
        assert analysis.total(phase="backward") == complex_fft(4, 8) + complex_fft(8, 4)


def test_recorded_calls() -> None:
    ops = torch.ops.aten
    r2c = recorded(ops._fft_r2c.default, T(2, 16, 16), [1, 2], 0, True)
    c2r = recorded(
        ops._fft_c2r.default,
        T(2, 16, 9, dtype=torch.complex64),
        [1, 2],
        2,
        16,
        outputs=(T(2, 16, 16),),
    )
    c2c = recorded(ops._fft_c2c.default, T(3, 12, dtype=torch.complex64), [1], 0, True)
    assert count_calls(r2c).total() == 2 * 5 / 4 * 256 * 8
    assert count_calls(c2r).total() == 2 * 5 / 4 * 256 * 8
    assert count_calls(c2c).total() == round(3 * 5 / 2 * 12 * math.log2(12))
    assert count_calls(r2c, c2r, c2c).total("activations") == 0
