"""Kernels that element-wise counting used to leave unsupported: embedding bags, F.fold/unfold,
weight norm and the CTC loss. Each counts with elementwise=True (listed as unsupported without
it), forward and backward, the same in every mode (docs/conventions.md)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchtally_testing import Fn

import torchtally
from torchtally.ops import ctc


def analyse(model: nn.Module, inputs: Any, mode: str, **kwargs: Any) -> torchtally.Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torchtally.analyze(model, inputs, mode=mode, warn_unsupported=False, **kwargs)


def counted(build: Callable[[], nn.Module], inputs: Any, *, meta: bool = True) -> tuple[int, int]:
    """(forward, backward) flops with element-wise counting, equal in every mode."""
    counts = {}
    for mode in ("real", "fake", "auto"):
        analysis = analyse(build(), inputs, mode, backward=True, elementwise=True)
        assert analysis.recount(elementwise=True).unsupported_ops() == {}
        counts[mode] = tuple(analysis.total(phase=p) for p in ("forward", "backward"))
    if meta:
        with torch.device("meta"):
            model = build()
        analysis = analyse(model, inputs, "meta", backward=True, elementwise=True)
        counts["meta"] = tuple(analysis.total(phase=p) for p in ("forward", "backward"))
    assert len(set(counts.values())) == 1, counts
    return counts["real"]


BAGS = torch.tensor([[1, 2, 3], [4, 5, 6]])  # 2 bags of 3 lookups


@pytest.mark.parametrize(("mode", "forward"), [("sum", 24), ("max", 24), ("mean", 24 + 8)])
def test_embedding_bags_add_their_rows(mode: str, forward: int) -> None:
    """6 lookups x 4 dims, each added (or compared) into its bag; mean divides 2 bags x 4 dims.
    The gradient adds each bag's gradient back into its 6 rows."""
    assert counted(lambda: nn.EmbeddingBag(10, 4, mode=mode), (BAGS,)) == (forward, 24)


def test_embedding_bags_with_offsets_and_weights() -> None:
    indices, offsets = torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([0, 2])
    weights = torch.rand(6)
    model = lambda: nn.EmbeddingBag(10, 4, mode="sum")  # noqa: E731
    # the per-sample weights multiply-add into the bag: still 1 per index and dim
    assert counted(model, (indices, offsets, weights)) == (24, 24)


def test_a_backward_pass_of_ignored_ops_is_still_a_phase() -> None:
    """F.fold's gradient is im2col, a copy: the backward phase counts 0, and is there."""
    cols = torch.randn(2, 27, 64, requires_grad=True)
    fold = analyse(Fn(lambda c: F.fold(c, (8, 8), 3, padding=1)), cols, "fake", backward=True)
    assert fold.phases == ("forward", "backward")
    assert fold.total(phase="backward") == 0


def test_unfold_copies_and_fold_adds_overlaps() -> None:
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    columns = 2 * 27 * 64  # 3 x 3 patches of 3 channels at 64 positions, 2 images
    unfold = analyse(Fn(lambda x: F.unfold(x, 3, padding=1)), x, "fake", backward=True)
    assert unfold.recount(elementwise=True).total(phase="backward") == columns  # col2im
    assert unfold.total(phase="forward") == 0  # im2col copies
    for mode in ("real", "fake", "auto"):
        cols = torch.randn(2, 27, 64)
        fold = analyse(Fn(lambda c: F.fold(c, (8, 8), 3, padding=1)), cols, mode, elementwise=True)
        assert fold.total() == columns
        assert analyse(
            Fn(lambda c: F.fold(c, (8, 8), 3, padding=1)), cols, mode
        ).unsupported_ops() == {"aten::col2im": 1}


@pytest.mark.parametrize(
    ("build", "inputs", "elements", "slices"),
    [
        (
            lambda: nn.utils.parametrizations.weight_norm(nn.Linear(4, 5)),
            (torch.randn(3, 4),),
            20,
            5,
        ),
        (
            lambda: nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 6, 3)),
            (torch.randn(2, 4, 10),),
            72,
            6,
        ),
    ],
)
def test_weight_norm_counts_two_per_weight_element_and_three_back(
    build: Callable[[], nn.Module], inputs: tuple[Any, ...], elements: int, slices: int
) -> None:
    """The weight's norm (a square accumulated) and its scale per element of v, g / norm per
    slice; the gradient 3 per element. The layer's own matmul or convolution counts as always."""
    plain = analyse(build(), inputs, "fake", backward=True)
    forward, backward = counted(build, inputs)
    assert forward == plain.total(phase="forward") + 2 * elements + slices
    assert backward == plain.total(phase="backward") + 3 * elements


def test_weight_norm_along_a_middle_dim_runs_unfused_with_the_same_forward_count() -> None:
    """dim=1 of a convolution's weight is neither first nor last: PyTorch runs norm, div and
    mul instead of the fused kernel, which cost what the fused one is charged."""
    model = nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 6, 3), dim=1)
    analysis = analyse(model, torch.randn(2, 4, 10), "fake", elementwise=True)
    assert "aten::_weight_norm_interface" not in {call.op for call in analysis.trace.ops}
    assert analysis.total() == 2 * 4 * 6 * 8 * 3 + 2 * 72 + 4  # conv, then the weight norm


class CtcLoss(nn.Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, *args: Any) -> torch.Tensor:
        return F.ctc_loss(*args, reduction=self.reduction)


T, N, C = 12, 2, 5
LOG_PROBS = torch.randn(T, N, C).log_softmax(2).requires_grad_()
LENGTHS = torch.full((N,), T)


def ctc_counts(cells: int) -> tuple[int, int]:
    """Forward 23 per lattice cell; backward 34 per cell and 11 per log-probability."""
    return cells * 23, cells * 34 + T * N * C * 11


@pytest.mark.parametrize(
    ("targets", "target_lengths", "cells"),
    [
        # padded (N, S) targets with tensor lengths: every sample T x (2 x 4 + 1), an upper bound
        (torch.randint(1, C, (N, 4)), torch.tensor([4, 3]), N * T * 9),
        # concatenated targets: their total (7 labels) is exact: T x (2 x 7 + N)
        (torch.randint(1, C, (7,)), torch.tensor([4, 3]), T * (14 + N)),
    ],
)
def test_ctc_loss_counts_its_lattice_in_every_mode(
    targets: torch.Tensor, target_lengths: torch.Tensor, cells: int
) -> None:
    """Fake mode used to fall back to a real run here (no fake kernel for tensor lengths)."""
    inputs = (LOG_PROBS, targets, LENGTHS, target_lengths)
    analysis = analyse(CtcLoss(), inputs, "fake", backward=True, elementwise=True)
    assert analysis.mode == "fake"
    forward, backward = ctc_counts(cells)
    assert analysis.by_operator(phase="forward")["_ctc_loss"] == forward
    assert analysis.by_operator(phase="backward")["_ctc_loss_backward"] == backward
    assert counted(CtcLoss, inputs, meta=False) == (
        analysis.total(phase="forward"),
        analysis.total(phase="backward"),
    )


def test_ctc_loss_with_list_lengths_is_exact() -> None:
    """Lists are recorded: 12 x (2 x 4 + 1) + 10 x (2 x 3 + 1) cells. (With reduction="mean"
    PyTorch turns the lists into a tensor with real memory, which fake tensors cannot hold: auto
    mode then runs the model for real.)"""
    targets = torch.randint(1, C, (N, 4))
    fn = Fn(lambda lp, t: F.ctc_loss(lp, t, [12, 10], [4, 3], reduction="sum"))
    cells = 12 * 9 + 10 * 7
    for mode in ("real", "fake"):
        analysis = analyse(fn, (LOG_PROBS, targets), mode, backward=True, elementwise=True)
        assert analysis.by_operator(phase="forward")["_ctc_loss"] == cells * 23
        assert analysis.by_operator(phase="backward")["_ctc_loss_backward"] == ctc_counts(cells)[1]


def test_ctc_costs_come_from_the_elementwise_table() -> None:
    assert (ctc.CELL_FLOPS, ctc.CELL_BACKWARD_FLOPS, ctc.LOG_PROB_BACKWARD_FLOPS) == (23, 34, 11)
