"""The ``csv`` and ``operators`` formats: their numbers are the analysis' numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
import torch
from torch import nn

import torchtally

Case = tuple[nn.Module, torchtally.Analysis]


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_has_one_row_per_module_with_raw_counts(resnet50_case: Case) -> None:
    _, analysis = resnet50_case
    rows = read_csv(analysis.render("csv"))
    assert [row["module"] for row in rows] == list(analysis.modules)
    assert list(rows[0]) == ["module", "type", "called", "params", "flops", "activations"]
    for row in rows:
        name = row["module"]
        assert int(row["params"]) == analysis.params.get(name, 0)
        assert int(row["flops"]) == analysis.by_module()[name]
        assert int(row["activations"]) == analysis.by_module("activations")[name]
    assert rows[0] == {
        "module": "",
        "type": "ResNet",
        "called": "true",
        "params": "25557032",
        "flops": "4111512576",
        "activations": "11114984",
    }


def test_csv_marks_uncalled_modules(tricky_analysis: torchtally.Analysis) -> None:
    rows = {row["module"]: row for row in read_csv(tricky_analysis.render("csv"))}
    assert rows["direct"]["called"] == "false"  # run through .forward()
    assert rows["unused"]["called"] == "false"
    assert rows["stem"]["called"] == "true"
    assert "shared" not in rows  # a shared module is listed under its first name


def test_csv_names_where_tied_weights_are_counted() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight  # GPT-2's lm_head
            self.scale = nn.Parameter(torch.ones(4))
            self.gain = self.scale  # the same parameter twice, on the model itself

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(ids) * self.scale)

    analysis = torchtally.analyze(Tied(), torch.zeros(2, 3, dtype=torch.long))
    assert dict(analysis.shared_params) == {"head.weight": "embed.weight", "gain": "scale"}
    rows = {row["module"]: row for row in read_csv(analysis.render("csv"))}
    assert list(rows[""])[:5] == ["module", "type", "called", "params", "shared_params"]
    assert rows["head"]["shared_params"] == "weight=embed.weight"
    assert rows["head"]["params"] == "0" and rows["embed"]["params"] == "40"
    assert rows[""]["shared_params"] == "gain=scale" and rows[""]["params"] == "44"
    assert rows["embed"]["shared_params"] == ""
    no_params = read_csv(analysis.render("csv", metrics=["flops"]))
    assert list(no_params[0]) == ["module", "type", "called", "flops"]


def test_csv_per_operator_and_flop_unit(resnet50_case: Case) -> None:
    _, analysis = resnet50_case
    rows = read_csv(analysis.render("csv", by_operator=True, flop_unit="flop"))
    assert list(rows[0]) == ["module", "operator", "flops", "activations"]
    table = analysis.by_module_and_operator()
    got = {(r["module"], r["operator"]): int(r["flops"]) for r in rows}
    assert got == {(m, op): 2 * n for m, ops in table.items() for op, n in ops.items()}
    assert got[("layer1.0.conv1", "conv")] == 2 * 12845056


def test_csv_splits_phases_with_a_backward_pass() -> None:
    analysis = torchtally.analyze(
        nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 10)),
        torch.randn(1, 10),
        backward=True,
        warn_unsupported=False,
    )
    (model, *_) = read_csv(analysis.render("csv", metrics=["flops"]))
    # fc weight gradients (100 each) and the second layer's input gradient (100)
    assert model == {
        "module": "",
        "type": "Sequential",
        "called": "true",
        "flops_forward": "200",
        "flops_backward": "300",
        "flops": "500",
    }


def test_csv_rejects_bad_options(testnet_case: Case) -> None:
    _, analysis = testnet_case
    with pytest.raises(TypeError, match="by_operator must be True or False"):
        analysis.render("csv", by_operator="yes")
    with pytest.raises(TypeError, match="valid options"):
        analysis.render("csv", max_depth=2)


def test_operators_table(
    resnet50_case: Case, parse_table: Callable[[str], list[list[str]]]
) -> None:
    _, analysis = resnet50_case
    text = analysis.render("operators", units="raw")
    rows = parse_table(text)
    assert rows[0] == ["operator", "#flops", "%", "#activations", "%"]
    body = {row[0]: row[1:] for row in rows[1:]}
    assert list(body) == ["conv", "batch_norm", "linear", "adaptive_avg_pool2d", "total"]
    for op, flops in analysis.by_operator().items():
        assert int(body[op][0]) == flops
    assert body["conv"][1] == "99.4"  # 4,087,136,256 of 4,111,512,576
    assert body["total"] == ["4111512576", "100.0", "11114984", "100.0"]
    assert text.splitlines()[-1] == (
        "not counted in flops (no handler): aten::add_ (16x), "
        "aten::max_pool2d_with_indices (1x), aten::relu_ (49x)"
    )


def test_operators_of_one_module(
    resnet50_case: Case, parse_table: Callable[[str], list[list[str]]]
) -> None:
    _, analysis = resnet50_case
    text = analysis.render("operators", module="layer1", metrics=["flops"], units="raw")
    assert text.startswith("module: layer1\n")
    rows = parse_table(text)
    # 56x56 positions x (block 0: 64*64 + 9*64*64 + 64*256 + 64*256 (downsample);
    # blocks 1, 2: 256*64 + 9*64*64 + 64*256 each)
    convs = 56 * 56 * (4096 + 36864 + 16384 + 16384 + 2 * (16384 + 36864 + 16384))
    assert convs == 667942912
    assert rows[1:] == [
        ["conv", "667942912", "98.7"],
        ["batch_norm", "8830976", "1.3"],
        ["total", "676773888", "100.0"],
    ]
    with pytest.raises(ValueError, match="not a module of the analysed model"):
        analysis.render("operators", module="layer9")
    with pytest.raises(ValueError, match="parameters have no operator"):
        analysis.render("operators", metrics=["params"])
