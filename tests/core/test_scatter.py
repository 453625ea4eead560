"""Graph aggregations and accumulating writes: one flop per element scattered with element-wise
counting on (mean: one more per element and one per target), listed as unsupported without it,
and 0 for the writes that do not reduce."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torchtally_testing import Fn

import torchtally

INDEX = torch.tensor([0, 2, 1, 0, 2])  # 5 source rows into 3 target rows
SCATTER_INDEX = INDEX[:, None].expand(5, 4)


def analyse(model: nn.Module, inputs: Any, mode: str, **kwargs: Any) -> torchtally.Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torchtally.analyze(model, inputs, mode=mode, warn_unsupported=False, **kwargs)


ROWS = (torch.zeros(3, 4), torch.randn(5, 4))
CASES: list[tuple[str, Callable[..., torch.Tensor], tuple[Any, ...], int]] = [
    ("index_add", lambda x, s: x.index_add(0, INDEX, s), ROWS, 20),
    ("index_add_", lambda x, s: x.clone().index_add_(0, INDEX, s, alpha=2), ROWS, 20),
    ("scatter_add", lambda x, s: x.scatter_add(0, SCATTER_INDEX, s), ROWS, 20),
    ("scatter_reduce amax", lambda x, s: x.scatter_reduce(0, SCATTER_INDEX, s, "amax"), ROWS, 20),
    # mean: sums and counts per element scattered, a divide per target element
    (
        "scatter_reduce mean",
        lambda x, s: x.scatter_reduce(0, SCATTER_INDEX, s, "mean"),
        ROWS,
        2 * 20 + 12,
    ),
    ("index_reduce prod", lambda x, s: x.index_reduce(0, INDEX, s, "prod"), ROWS, 20),
    ("scatter reduce=add", lambda x, s: x.scatter(0, SCATTER_INDEX, s, reduce="add"), ROWS, 20),
    ("index_put accumulate", lambda x, s: x.index_put((INDEX,), s, accumulate=True), ROWS, 20),
    # a mask and one value: every element the mask covers (the true ones are data)
    (
        "masked accumulate",
        lambda x, m: x.index_put((m,), torch.tensor(1.0), accumulate=True),
        (torch.zeros(3, 4), torch.rand(3, 4) > 0.5),
        12,
    ),
    (
        "segment_reduce",
        lambda d, n: torch.segment_reduce(d, "sum", lengths=n),
        (torch.randn(6, 2), torch.tensor([2, 4])),
        12,
    ),
]


@pytest.mark.parametrize(("name", "fn", "inputs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_reductions_count_with_elementwise_counting(
    name: str, fn: Callable[..., torch.Tensor], inputs: tuple[Any, ...], expected: int
) -> None:
    model = Fn(fn)
    counts = {
        m: analyse(model, inputs, m, elementwise=True).total() for m in ("real", "fake", "auto")
    }
    assert set(counts.values()) == {expected}, counts
    off = analyse(model, inputs, "fake")
    assert off.total() == 0
    assert len(off.unsupported_ops()) == 1  # listed, never dropped


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, s: x.scatter(0, SCATTER_INDEX, s),
        lambda x, s: x.index_put((INDEX,), s),
        lambda x, s: x.clone().index_put_((INDEX,), s),
    ],
)
def test_writes_without_a_reduction_do_no_arithmetic(fn: Callable[..., torch.Tensor]) -> None:
    analysis = analyse(Fn(fn), (torch.zeros(3, 4), torch.randn(5, 4)), "fake")
    assert analysis.total() == 0
    assert analysis.unsupported_ops() == {}


class MessagePassing(nn.Module):
    """A graph layer as PyTorch Geometric writes one: gather the neighbours' messages, sum them
    into each node with index_add_, and a linear update."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, features, bias=False)

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        messages = self.linear(x)[edges[0]]
        return torch.zeros_like(x).index_add_(0, edges[1], messages)


def test_a_message_passing_layer_forward_and_backward() -> None:
    nodes, features, edges = 6, 4, 10
    edge_index = torch.randint(0, nodes, (2, edges))
    x = torch.randn(nodes, features)
    matmul = nodes * features * features
    for mode in ("real", "fake", "auto"):
        analysis = analyse(MessagePassing(features), (x, edge_index), mode, backward=True)
        assert analysis.total(phase="forward") == matmul
        assert set(analysis.unsupported_ops(phase="forward")) == {"aten::index_add_"}
        on = analysis.recount(elementwise=True)
        assert on.total(phase="forward") == matmul + edges * features
        # the gradient gathers (index_select), then scatters back: an accumulating index_put
        assert on.total(phase="backward") == matmul + edges * features
