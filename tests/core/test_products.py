"""Matmul-like products: torch.cdist, nn.Bilinear (_trilinear) and sparse matmuls count their
multiply-adds, forward and backward, the same in every mode (docs/conventions.md)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torchtally_testing import Fn, T, count_calls, recorded

import torchtally


def analyse(model: nn.Module, inputs: Any, mode: str, **kwargs: Any) -> torchtally.Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torchtally.analyze(model, inputs, mode=mode, warn_unsupported=False, **kwargs)


def every_mode(model: nn.Module, inputs: Any, **kwargs: Any) -> tuple[int, int]:
    """(forward, backward) flops, checked equal in real, fake and auto mode."""
    counts = set()
    for mode in ("real", "fake", "auto"):
        analysis = analyse(model, inputs, mode, backward=True, **kwargs)
        counts.add((analysis.total(phase="forward"), analysis.total(phase="backward")))
    assert len(counts) == 1, counts
    return counts.pop()


@pytest.mark.parametrize(
    ("rows", "p", "mode"),
    [
        (5, 2.0, "use_mm_for_euclid_dist_if_necessary"),  # few rows: the direct kernel
        (30, 2.0, "use_mm_for_euclid_dist_if_necessary"),  # many: _euclidean_dist (a matmul)
        (30, 2.0, "donot_use_mm_for_euclid_dist"),
        (30, 1.0, "use_mm_for_euclid_dist_if_necessary"),
    ],
)
def test_cdist_is_one_multiply_add_per_pair_and_feature(rows: int, p: float, mode: str) -> None:
    """Every path counts P x R pairs x M features forward, and the same again per operand
    gradient (the matmul path's gradients are the matmuls grad @ x2 and grad.T @ x1)."""
    fn = Fn(lambda a, b: torch.cdist(a, b, p=p, compute_mode=mode))
    x1 = torch.randn(2, rows, 3, requires_grad=True)
    x2 = torch.randn(2, 40, 3, requires_grad=True)
    pairs_features = 2 * rows * 40 * 3
    assert every_mode(fn, (x1, x2)) == (pairs_features, 2 * pairs_features)
    analysis = analyse(fn, (x1, x2), "fake")
    assert analysis.by_operator() == {"cdist": pairs_features}


def test_bilinear_counts_its_two_staged_products() -> None:
    """x1^T A x2 per output: x1 against A (N x out x in1 x in2), then the result against x2
    (N x out x in2). Its weight gradient is a _trilinear too: grad (N, out) times x1 (N x out x
    in1), then times x2, summed over N (N x out x in1 x in2)."""
    N, in1, in2, out = 5, 3, 4, 6
    model = nn.Bilinear(in1, in2, out)
    forward = N * out * in2 * (in1 + 1)
    weight_grad = N * out * in1 + N * out * in1 * in2
    assert every_mode(model, (torch.randn(N, in1), torch.randn(N, in2))) == (forward, weight_grad)
    with torch.device("meta"):
        meta = nn.Bilinear(in1, in2, out)
    analysis = analyse(meta, (torch.randn(N, in1), torch.randn(N, in2)), "meta")
    assert analysis.by_operator() == {"bilinear": forward}
    assert analysis.total("activations") == N * out


def test_trilinear_in_general() -> None:
    """i1 (2, 3) and i2 (4, 3, 5) first: broadcast (2, 4, 3, 5), summed over dim 2 (i3 lacks
    it); then (2, 4, 1, 5) against i3 (2, 5) broadcast (2, 4, 1, 5), summed over dim 3."""
    call = recorded(
        torch.ops.aten._trilinear.default,
        T(2, 3),
        T(4, 3, 5),
        T(2, 5),
        [1, 3],
        [0],
        [1, 2],
        [2, 3],
        1,
        outputs=(T(2, 4, 1, 1),),
    )
    assert count_calls(call).total() == 2 * 4 * 3 * 5 + 2 * 4 * 5


def adjacency(nodes: int, edges: int) -> torch.Tensor:
    index = torch.stack([torch.arange(edges) % nodes, (torch.arange(edges) * 7 + 1) % nodes])
    return torch.sparse_coo_tensor(
        index, torch.ones(edges), (nodes, nodes), check_invariants=True
    ).coalesce()


class GraphConvolution(nn.Module):
    """A GCN layer: sparse adjacency @ (features @ weight)."""

    def __init__(self, features: int, out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, out, bias=False)

    def forward(self, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(a, self.linear(x))


def test_a_sparse_matmul_counts_the_stored_elements_only() -> None:
    nodes, features, out = 10, 4, 3
    a = adjacency(nodes, 25)
    stored = a._nnz()
    forward = nodes * features * out + stored * out
    # the dense product's gradient through A^T (stored x out) and the weight's (nodes x in x out)
    backward = stored * out + nodes * features * out
    assert every_mode(GraphConvolution(features, out), (a, torch.randn(nodes, features))) == (
        forward,
        backward,
    )


@pytest.mark.parametrize("order", ["sparse @ dense", "dense @ sparse"])
def test_sparse_operands_of_mm(order: str) -> None:
    a = adjacency(6, 9)
    d = torch.randn(6, 4, requires_grad=True)
    if order == "sparse @ dense":
        fn, inputs, macs = Fn(lambda s, x: s @ x), (a, d), a._nnz() * 4
    else:
        d = torch.randn(4, 6, requires_grad=True)
        fn, inputs, macs = Fn(lambda x, s: x @ s), (d, a), 4 * a._nnz()
    assert every_mode(fn, inputs) == (macs, macs)


def test_recorded_sparse_calls() -> None:
    sparse = T(100, 50)._replace(nnz=30)
    dense = T(50, 8)
    ops = torch.ops.aten
    out = (T(100, 8),)
    addmm = recorded(ops._sparse_addmm.default, T(100, 8), sparse, dense, outputs=out)
    assert count_calls(addmm).total() == 30 * 8
    assert count_calls(recorded(ops.hspmm.default, sparse, dense, outputs=out)).total() == 30 * 8
    other = T(50, 20)._replace(nnz=40)
    # two sparse operands: nnz(a) * nnz(b) / k expected products
    product = recorded(ops._sparse_sparse_matmul.default, sparse, other, outputs=(T(100, 20),))
    assert count_calls(product).total() == 24
