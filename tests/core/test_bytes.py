"""The ``bytes`` metric: hand-computed memory traffic per op family, in every mode and phase."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import torchtally
from torchtally import HandlerSet
from torchtally.ops.traffic import VIEW_OPS

F32 = 4


class Lambda(nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(*args)


def moved(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor, **kwargs: object) -> int:
    analysis = torchtally.analyze(Lambda(fn), inputs, warn_unsupported=False, **kwargs)
    return analysis.total("bytes")


def test_bias_free_linear_reads_weight_and_input_and_writes_output() -> None:
    analysis = torchtally.analyze(nn.Linear(4096, 4096, bias=False), torch.randn(8, 4096))
    assert analysis.total("bytes") == 4096 * 4096 * 4 + 2 * 8 * 4096 * 4
    assert analysis.by_operator("bytes") == {"linear": 4096 * 4096 * 4 + 2 * 8 * 4096 * 4}


def test_bfloat16_halves_the_bytes() -> None:
    model = nn.Linear(4096, 4096, bias=False).to(torch.bfloat16)
    analysis = torchtally.analyze(model, torch.randn(8, 4096, dtype=torch.bfloat16))
    assert analysis.total("bytes") == (4096 * 4096 + 2 * 8 * 4096) * 2


def test_linear_with_bias_reads_the_bias_once() -> None:
    analysis = torchtally.analyze(nn.Linear(10, 20), torch.randn(3, 10))
    assert analysis.total("bytes") == (20 + 3 * 10 + 20 * 10 + 3 * 20) * F32


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.view(16, 4),
        lambda x: x.t(),
        lambda x: x.permute(1, 0),
        lambda x: x[None].expand(3, 8, 8),
        lambda x: x[2:5],
        lambda x: x.reshape(64),
        lambda x: x.detach(),
        lambda x: torch.empty(100),
        lambda x: torch.empty_like(x),
    ],
    ids=["view", "t", "permute", "expand", "slice", "reshape", "detach", "empty", "empty_like"],
)
def test_views_and_metadata_only_ops_move_nothing(fn: Callable[..., torch.Tensor]) -> None:
    analysis = torchtally.analyze(Lambda(fn), torch.randn(8, 8), warn_unsupported=False)
    assert analysis.trace.ops  # something ran
    assert analysis.total("bytes") == 0
    assert analysis.by_operator("bytes") == {}


def test_elementwise_ops_move_bytes_even_when_their_flops_are_not_counted() -> None:
    analysis = torchtally.analyze(Lambda(torch.relu), torch.randn(10, 10), warn_unsupported=False)
    assert analysis.unsupported_ops() == {"aten::relu": 1}  # flops: not counted
    assert analysis.by_operator("bytes") == {"relu": 2 * 100 * F32}
    assert analysis.unsupported_ops("bytes") == {}


@pytest.mark.parametrize(
    ("fn", "elements"),
    [
        (lambda x, y: x + y, 3 * 64),
        (lambda x, y: x.add_(y), 3 * 64),  # reads both, writes x
        (lambda x, y: x.relu_(), 2 * 64),
        (lambda x, y: x.sum(dim=1), 64 + 8),
        (lambda x, y: torch.softmax(x, dim=-1), 2 * 64),
        (lambda x, y: torch.cat([x, y]), 2 * 64 + 128),
        (lambda x, y: x.t().contiguous(), 2 * 64),  # a clone of a transposed view
    ],
    ids=["add", "add_", "relu_", "sum", "softmax", "cat", "contiguous"],
)
def test_elementwise_reductions_and_copies(fn: Callable[..., torch.Tensor], elements: int) -> None:
    assert moved(fn, torch.randn(8, 8), torch.randn(8, 8)) == elements * F32


def test_where_reads_a_one_byte_mask() -> None:
    x, y = torch.randn(8, 8), torch.randn(8, 8)
    # gt: reads x (64 floats), writes the mask (64 bools); where: reads mask, x, y, writes 64 floats
    assert moved(lambda x, y: torch.where(x > 0, x, y), x, y) == (64 * F32 + 64) + (
        64 + 3 * 64 * F32
    )


def test_expanded_arguments_count_their_distinct_elements() -> None:
    x, b = torch.randn(16, 32), torch.randn(32)
    # the expand is a view (0); add reads 16x32 + 32 distinct elements, writes 16x32
    assert moved(lambda x, b: x + b.expand(16, 32), x, b) == (2 * 16 * 32 + 32) * F32


def test_dtype_conversion_reads_one_size_and_writes_the_other() -> None:
    assert moved(lambda x: x.to(torch.float16), torch.randn(10)) == 10 * F32 + 10 * 2


def test_copy_and_fill_write_without_reading_their_destination() -> None:
    x, y = torch.randn(10), torch.randn(10)
    assert moved(lambda x, y: x.copy_(y), x, y) == 2 * 10 * F32
    assert moved(lambda x: x.zero_(), torch.randn(10)) == 10 * F32
    assert moved(lambda x: x.fill_(3.0), torch.randn(10)) == 10 * F32
    assert moved(lambda x: torch.zeros(10) + 0 * x, torch.randn(10)) == (
        10 * F32  # zeros writes
        + 2 * 10 * F32  # mul reads x, writes
        + 3 * 10 * F32  # add
    )


def test_out_targets_are_written_not_read() -> None:
    x, y, out = torch.randn(10), torch.randn(10), torch.empty(10)
    assert moved(lambda x, y, out: torch.add(x, y, out=out), x, y, out) == 3 * 10 * F32


def test_matmuls_and_convolutions() -> None:
    a, b = torch.randn(2, 3, 5), torch.randn(2, 5, 7)
    assert moved(torch.bmm, a, b) == 2 * (3 * 5 + 5 * 7 + 3 * 7) * F32
    conv = nn.Conv2d(3, 8, 3, padding=1)
    analysis = torchtally.analyze(conv, torch.randn(1, 3, 16, 16))
    inputs, weight, bias, output = 3 * 16 * 16, 8 * 3 * 3 * 3, 8, 8 * 16 * 16
    assert analysis.total("bytes") == (inputs + weight + bias + output) * F32
    assert analysis.by_operator("bytes") == {"conv": (inputs + weight + bias + output) * F32}


def test_embedding_reads_the_rows_it_gathers_not_the_table() -> None:
    table = nn.Embedding(32000, 64)
    ids = torch.randint(0, 32000, (2, 5))
    analysis = torchtally.analyze(table, ids)
    rows = 2 * 5 * 64 * F32
    assert analysis.total("bytes") == 2 * 5 * 8 + 2 * rows  # int64 ids, rows read and written


def test_in_place_scatter_writes_what_it_scatters_not_the_whole_cache() -> None:
    cache, index, new = torch.zeros(1, 8, 1024, 64), torch.tensor([7]), torch.randn(1, 8, 1, 64)
    got = moved(lambda c, i, n: c.index_copy_(2, i, n), cache, index, new)
    assert got == 8 + 2 * 8 * 64 * F32  # index, values read, as many elements written
    got = moved(lambda c, i, n: c.index_add_(2, i, n), cache, index, new)
    assert got == 8 + 3 * 8 * 64 * F32  # accumulating: the destination elements are read too


def test_slice_assignment_copies_into_the_slice_only() -> None:
    def write(cache: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        cache[:, :, 7:8] = new
        return cache

    got = moved(write, torch.zeros(1, 8, 1024, 64), torch.randn(1, 8, 1, 64))
    assert got == 2 * 8 * 64 * F32


def test_backward_bytes_by_phase() -> None:
    analysis = torchtally.analyze(nn.Linear(64, 32, bias=False), torch.randn(4, 64), backward=True)
    forward = (64 * 32 + 4 * 64 + 4 * 32) * F32
    grad_weight = (4 * 32 + 4 * 64 + 32 * 64) * F32  # mm(grad_out.t(), x); the input needs none
    assert analysis.total("bytes", phase="forward") == forward
    assert analysis.total("bytes", phase="backward") == grad_weight
    assert analysis.total("bytes") == forward + grad_weight


@pytest.mark.parametrize("mode", ["real", "fake"])
def test_every_mode_gives_the_same_bytes(mode: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    reference = torchtally.analyze(model, x, mode="real", warn_unsupported=False)
    analysis = torchtally.analyze(model, x, mode=mode, warn_unsupported=False)
    assert analysis.by_module_and_operator("bytes") == reference.by_module_and_operator("bytes")
    assert reference.total("bytes") > 11_689_512 * F32  # the weights are read at least once


def test_meta_mode_counts_bytes() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(100, 200), nn.ReLU())
    analysis = torchtally.analyze(model, torch.randn(3, 100))
    assert analysis.mode == "meta"
    linear = (200 + 3 * 100 + 200 * 100 + 3 * 200) * F32
    assert analysis.by_module("bytes") == {"": linear + 2 * 600 * F32, "0": linear, "1": 2400 * 2}


def test_recount_and_overrides() -> None:
    analysis = torchtally.analyze(Lambda(torch.relu), torch.randn(10), metrics=("flops",))
    assert analysis.metrics == ("flops",)
    recounted = analysis.recount(metrics=("bytes",))
    assert recounted.total("bytes") == 80
    mine = HandlerSet()
    mine.add("bytes", "aten::relu", lambda call: 1)
    assert recounted.recount(mine).total("bytes") == 1
    ignored = HandlerSet()
    ignored.ignore("aten::relu", metric="bytes")
    assert recounted.recount(ignored).total("bytes") == 0
    # an op ignored for every metric (no arithmetic) still moves bytes
    assert recounted.recount({"aten::relu": None}).total("bytes") == 80


def test_default_handler_can_be_replaced() -> None:
    mine = HandlerSet()
    mine.default("bytes", lambda call: 7)
    analysis = torchtally.analyze(Lambda(lambda x: x.view(5, 2).abs() + 1), torch.randn(10))
    # core ignores the commonest views for bytes, so the default never sees them
    assert analysis.recount(mine).by_operator("bytes") == {"abs": 7, "add": 7}
    with pytest.raises(TypeError, match="must be callable"):
        mine.default("bytes", 3)  # type: ignore[arg-type]


def test_default_table_is_unchanged_and_bytes_are_shown_on_request() -> None:
    analysis = torchtally.analyze(nn.Linear(10, 20), torch.randn(3, 10))
    assert "#bytes" not in analysis.render("table")
    assert "#bytes" in analysis.render("table", metrics=("params", "bytes"))
    assert "bytes" in analysis.render("markdown", metrics=("flops", "bytes"))
    assert '"bytes"' in analysis.render("json")
    assert '"bytes"' not in analysis.render("json", metrics=("flops",))


def test_the_views_ignored_up_front_are_views() -> None:
    for name in VIEW_OPS:
        namespace, _, op = name.partition("::")
        packet = getattr(getattr(torch.ops, namespace), op)
        for overload in packet.overloads():
            schema = getattr(packet, overload)._schema
            if any(a.is_out for a in schema.arguments) or "Tensor" not in str(schema.returns):
                continue  # out= variants; list ops (slice.t) TorchScript runs on lists
            returns = schema.returns
            assert returns and all(r.alias_info is not None for r in returns), (name, overload)
            assert not any(r.alias_info.is_write for r in returns), (name, overload)


def test_bytes_go_under_the_operator_name_the_flop_handler_gives() -> None:
    named = HandlerSet()
    named.add("flops", "aten::mm", lambda call: {"my_matmul": 5})
    named.add("flops", "aten::relu", lambda call: {"split": 1, "parts": 2})
    model = Lambda(lambda x: torch.relu(x @ x))
    analysis = torchtally.analyze(model, torch.randn(4, 4), warn_unsupported=False)
    counted = analysis.recount(named)
    assert counted.by_operator("flops") == {"my_matmul": 5, "split": 1, "parts": 2}
    # one name: the bytes follow it; several names: the op's own name
    assert counted.by_operator("bytes") == {"my_matmul": 3 * 64, "relu": 2 * 64}
    # the same names when bytes are counted without flops
    alone = analysis.recount(named, metrics=("bytes",))
    assert alone.by_operator("bytes") == counted.by_operator("bytes")
    roofline = counted.roofline("h100-sxm").by_operator()
    assert set(roofline) == {"my_matmul", "relu"}
