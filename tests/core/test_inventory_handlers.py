"""The handlers the inventory added, each against a hand count: linear algebra (counted always),
losses, foreach lists and the other element-wise kernels (with element-wise counting), and the
backend ops a model reaches on other hardware (recorded calls, built from torch's schemas)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torchtally_testing import Fn, T, count_calls, recorded

import torchtally

A = torch.randn(2, 5, 5)  # two 5 x 5 matrices
SPD = A @ A.mT + 5 * torch.eye(5)
B = torch.randn(2, 5, 3)  # three right-hand sides each
M = torch.randn(7, 4)  # a tall matrix: m = 7, n = 4


def counted(fn: Callable[..., Any], inputs: tuple[Any, ...], elementwise: bool = False) -> int:
    """The total, equal in real, fake and auto mode."""
    totals = set()
    for mode in ("real", "fake", "auto"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = torchtally.analyze(
                Fn(fn), inputs, mode=mode, elementwise=elementwise, warn_unsupported=False
            )
        totals.add(analysis.total())
        assert analysis.recount(elementwise=True).unsupported_ops() == {}
    assert len(totals) == 1, totals
    return totals.pop()


LINALG = [
    ("inv: n^3", torch.linalg.inv, (A,), 2 * 125),
    ("cholesky: n^3 / 6", torch.linalg.cholesky, (SPD,), round(2 * 125 / 6)),
    ("det: the LU, n^3 / 3", torch.linalg.det, (A,), round(2 * 125 / 3)),
    ("lu_factor", lambda a: torch.linalg.lu_factor(a)[0], (A,), round(2 * 125 / 3)),
    # the LU, then two triangular solves for 3 right-hand sides: n^2 k
    ("solve", torch.linalg.solve, (A, B), round(2 * 125 / 3 + 2 * 25 * 3)),
    (
        "solve_triangular: n^2 k / 2",
        lambda a, b: torch.linalg.solve_triangular(a.triu(), b, upper=True),
        (A, B),
        2 * 25 * 3 // 2,
    ),
    ("cholesky_solve: n^2 k", lambda s, b: torch.cholesky_solve(b, s), (SPD, B), 2 * 25 * 3),
    # Householder QR m n^2 - n^3 / 3, and Q formed: as much again
    ("qr", lambda m: torch.linalg.qr(m)[0], (M,), round(2 * (7 * 16 - 64 / 3))),
    (
        "svd: 3 m n^2 + 5.5 n^3",
        lambda m: torch.linalg.svd(m, full_matrices=False)[0],
        (M,),
        round(3 * 7 * 16 + 5.5 * 64),
    ),
    ("eigh: 4.5 n^3", lambda s: torch.linalg.eigh(s)[0], (SPD,), round(2 * 4.5 * 125)),
    ("eig: 12.5 n^3", lambda a: torch.linalg.eig(a)[0].real, (A,), round(2 * 12.5 * 125)),
    ("matrix_exp: 7.33 n^3", torch.linalg.matrix_exp, (A,), round(2 * (6 + 4 / 3) * 125)),
    ("pinv: the SVD and m n^2", torch.linalg.pinv, (M,), round(3 * 7 * 16 + 5.5 * 64 + 7 * 16)),
]


@pytest.mark.parametrize(("name", "fn", "inputs", "expected"), LINALG, ids=[c[0] for c in LINALG])
def test_linear_algebra(
    name: str, fn: Callable[..., Any], inputs: tuple[Any, ...], expected: int
) -> None:
    assert counted(fn, inputs) == expected


ELEMENTWISE = [
    # per input element: the loss's formula, then 1 for the mean
    ("mse_loss", F.mse_loss, (torch.randn(4, 5), torch.randn(4, 5)), 20 * (2 + 1)),
    ("smooth_l1_loss", F.smooth_l1_loss, (torch.randn(4, 5), torch.randn(4, 5)), 20 * (4 + 1)),
    (
        "binary_cross_entropy",
        F.binary_cross_entropy,
        (torch.rand(4, 5), torch.rand(4, 5)),
        20 * (2 * 4 + 4 + 1),
    ),
    (
        "with logits",
        F.binary_cross_entropy_with_logits,
        (torch.randn(4, 5), torch.rand(4, 5)),
        20 * (2 * 4 + 4 + 1),
    ),
    ("nll_loss: 1 per target", F.nll_loss, (torch.randn(4, 5), torch.tensor([1, 0, 4, 2])), 4),
    (
        "foreach add",
        lambda a, b: torch._foreach_add([a, b], [b, a])[0],
        (torch.randn(3, 4), torch.randn(3, 4)),
        2 * 12,
    ),
    (
        "foreach norm",
        lambda a, b: torch._foreach_norm([a, b])[0],
        (torch.randn(3, 4), torch.randn(2, 2)),
        12 + 4,
    ),
    ("pdist: pairs x features", F.pdist, (torch.randn(6, 3),), 15 * 3),
    (
        "addr: an outer product",
        lambda a, b: torch.addr(torch.zeros(3, 4), a, b),
        (torch.randn(3), torch.randn(4)),
        12,
    ),
    ("linalg.cross", lambda a, b: torch.linalg.cross(a, b), (torch.randn(4, 3),) * 2, 2 * 12),
    ("lgamma", torch.lgamma, (torch.rand(3, 4),), 4 * 12),
    ("trace: the diagonal", torch.trace, (torch.randn(4, 6),), 4),
    ("bincount", torch.bincount, (torch.tensor([0, 1, 1, 3]),), 4),
]


@pytest.mark.parametrize(
    ("name", "fn", "inputs", "expected"), ELEMENTWISE, ids=[c[0] for c in ELEMENTWISE]
)
def test_elementwise_kernels(
    name: str, fn: Callable[..., Any], inputs: tuple[Any, ...], expected: int
) -> None:
    if name == "bincount":  # its output size is the largest value: data, so real mode only
        analysis = torchtally.analyze(Fn(fn), inputs, mode="real", elementwise=True)
        assert analysis.total() == expected
        return
    assert counted(fn, inputs, elementwise=True) == expected


ops = torch.ops.aten
X = T(2, 4, 8, 8)
W = T(6, 4, 3, 3)
OUT = T(2, 6, 6, 6)
CONV = 2 * W.numel * 36


def test_backend_convolutions_and_their_gradients() -> None:
    cudnn = recorded(
        ops.cudnn_convolution.default,
        X,
        W,
        [0, 0],
        [1, 1],
        [1, 1],
        1,
        False,
        False,
        True,
        outputs=(OUT,),
    )
    assert count_calls(cudnn).by_operator() == {"conv": CONV}
    transposed = recorded(
        ops.slow_conv_transpose2d.default,
        T(2, 6, 6, 6),
        T(6, 4, 3, 3),
        [3, 3],
        outputs=(X,),
    )
    assert count_calls(transposed).total() == 2 * 216 * 36  # the input's positions
    tbc = recorded(ops.conv_tbc.default, T(10, 2, 4), T(3, 4, 6), T(6), 0, outputs=(T(8, 2, 6),))
    assert count_calls(tbc).total() == 8 * 2 * 6 * 3 * 4
    backward = recorded(
        ops.mps_convolution_backward.default,
        X,
        OUT,
        W,
        [0, 0],
        [1, 1],
        [1, 1],
        1,
        [False, True, True],
        phase="backward",
    )
    assert count_calls(backward).total() == CONV  # the weight's gradient only


def test_sync_batch_norm_pieces_add_up_to_batch_norm() -> None:
    x = T(2, 4, 8, 8)
    stats = recorded(ops.batch_norm_stats.default, x, 1e-5)
    elemt = recorded(ops.batch_norm_elemt.default, x, T(4), T(4), T(4), T(4), 1e-5)
    assert count_calls(stats, elemt).total() == 5 * x.numel  # as training batch norm
    reduce = recorded(
        ops.batch_norm_backward_reduce.default, x, x, T(4), T(4), T(4), True, True, True
    )
    backward = recorded(
        ops.batch_norm_backward_elemt.default, x, x, T(4), T(4), T(4), T(4), T(4), T(2)
    )
    assert count_calls(reduce, backward).total() == 4 * x.numel  # as its gradient


def test_low_bit_and_fp8_matmuls_count_as_matmuls() -> None:
    out = T(8, 32)
    for call in (
        recorded(ops._int_mm.default, T(8, 16), T(16, 32), outputs=(out,)),
        recorded(ops._weight_int8pack_mm.default, T(8, 16), T(32, 16), T(32), outputs=(out,)),
        recorded(ops._scaled_mm.default, T(8, 16), T(16, 32), T(1), T(1), outputs=(out,)),
    ):
        assert count_calls(call).total() == 8 * 16 * 32
    semi = recorded(
        ops._sparse_semi_structured_mm.default, T(8, 8), T(8, 1), T(16, 32), outputs=(out,)
    )
    assert count_calls(semi).total() == 8 * 8 * 32  # the stored half of k = 16
    linear = recorded(ops.mkldnn_linear.default, T(8, 16), T(32, 16), outputs=(out,))
    assert count_calls(linear).total() == 8 * 16 * 32


def test_resampling_kernels_of_other_backends() -> None:
    grid = recorded(ops.cudnn_grid_sampler.default, X, T(2, 5, 5, 2), outputs=(T(2, 4, 5, 5),))
    assert count_calls(grid).by_operator() == {"grid_sampler": 4 * 2 * 4 * 25}
    affine = recorded(
        ops.cudnn_affine_grid_generator.default, T(2, 2, 3), 2, 4, 5, 5, outputs=(T(2, 5, 5, 2),)
    )
    assert count_calls(affine).total() == 3 * 100
    lanczos = recorded(
        ops._upsample_lanczos2d_aa.default, X, [16, 16], False, outputs=(T(2, 4, 16, 16),)
    )
    assert count_calls(lanczos).total() == 6 * 6 * 2 * 4 * 256  # 6 taps per dimension
