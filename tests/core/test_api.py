"""The native API: input forms, the Analysis object, trace(), units and the command line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import torchtally


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return (self.a(x) + self.b(y)) * scale


LINEARS = 2 * 4 * 3 + 2 * 6 * 3  # both linears, batch 2


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x, y: torchtally.analyze(m, (x, y)),
        lambda m, x, y: torchtally.analyze(m, {"x": x, "y": y}),
        lambda m, x, y: torchtally.analyze(m, (x,), kwargs={"y": y, "scale": 2.0}),
        lambda m, x, y: torchtally.analyze(m, kwargs={"x": x, "y": y}),
    ],
    ids=["tuple", "dict", "args+kwargs", "kwargs-only"],
)
def test_input_forms(call: object) -> None:
    analysis = call(TwoInputs(), torch.randn(2, 4), torch.randn(2, 6))  # type: ignore[operator]
    assert analysis.total() == LINEARS
    assert analysis.by_module() == {"": LINEARS, "a": 2 * 4 * 3, "b": 2 * 6 * 3}


def test_input_shape_builds_batch_one_inputs_on_the_model_dtype() -> None:
    model = TwoInputs().double()
    analysis = torchtally.analyze(model, input_shape=((4,), (6,)))
    assert analysis.total() == LINEARS // 2
    assert analysis.input_shapes[0][0].dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "no inputs given"),
        ({"inputs": torch.randn(1, 4), "input_shape": (4,)}, "either input_shape or inputs"),
        ({"input_shape": [4]}, "input_shape must be a tuple of ints"),
        ({"input_shape": ((4,), "6")}, "input_shape must be a tuple of ints"),
    ],
)
def test_bad_inputs_say_what_was_expected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        torchtally.analyze(nn.Linear(4, 3), **kwargs)  # type: ignore[arg-type]


def test_a_list_is_one_positional_argument() -> None:
    class Images(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
            return [self.conv(image[None]) for image in images]

    analysis = torchtally.analyze(Images(), [torch.randn(3, 4, 4), torch.randn(3, 2, 2)])
    assert analysis.total() == (3 * 2) * (4 * 4) + (3 * 2) * (2 * 2)


@dataclass
class Output:
    logits: torch.Tensor
    extras: dict[str, list[torch.Tensor]]


def test_outputs_of_any_nesting() -> None:
    class Nested(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> Output:
            y = self.fc(x)
            return Output(y, {"all": [y, (y, None)]})  # type: ignore[list-item]

    assert torchtally.analyze(Nested(), torch.randn(1, 2)).total() == 4


def test_analysis_is_immutable_and_results_are_copies() -> None:
    analysis = torchtally.analyze(nn.Linear(4, 3), torch.randn(2, 4))
    by_operator = analysis.by_operator()
    by_operator["linear"] = 0
    assert analysis.by_operator() == {"linear": 24}
    with pytest.raises(AttributeError):
        analysis.metrics = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        analysis.params[""] = 0  # type: ignore[index]


def test_unknown_metric_and_module_are_clear_errors() -> None:
    analysis = torchtally.analyze(TwoInputs(), (torch.randn(1, 4), torch.randn(1, 6)))
    with pytest.raises(KeyError, match="no metric 'latency'; it counted flops, activations"):
        analysis.total("latency")
    with pytest.raises(KeyError, match="'c' is not a module of the analysed model"):
        analysis.total(module="c")


def test_to_dict_is_json_ready_and_complete() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    analysis = torchtally.analyze(model, torch.randn(1, 3, 6, 6), warn_unsupported=False)
    data = json.loads(json.dumps(analysis.to_dict()))
    flops = data["metrics"]["flops"]
    assert flops["total"] == analysis.total() == 4 * 27 * 16 + 64 * 2
    assert flops["by_operator"] == {"conv": 4 * 27 * 16, "linear": 128}
    assert flops["unsupported_ops"] == {"aten::relu": 1}
    assert data["params"]["total"] == 4 * 27 + 4 + 64 * 2 + 2
    assert data["params"]["shapes"]["0.weight"] == [4, 3, 3, 3]
    assert data["modules"]["3"] == {"type": "Linear", "aliases": []}
    assert data["inputs"] == [[{"shape": [1, 3, 6, 6], "dtype": "float32"}], {}]


def test_recount_changes_counting_without_running_again() -> None:
    calls = []
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU())
    model.register_forward_pre_hook(lambda *args: calls.append(1))
    analysis = torchtally.analyze(model, torch.randn(3, 4), warn_unsupported=False)
    assert analysis.unsupported_ops() == {"aten::gelu": 1}
    with_elementwise = analysis.recount(elementwise=True)
    assert with_elementwise.unsupported_ops() == {}
    gelu = torchtally.ops.catalog.POINTWISE_FLOPS["aten::gelu"] * 3 * 4
    assert with_elementwise.total() == 3 * 4 * 4 + gelu
    assert analysis.recount(torchtally.HandlerSet.from_mapping({"aten::addmm": None})).total() == 0
    assert len(calls) == 1


def test_trace_lists_the_ops_that_ran() -> None:
    recorded = torchtally.trace(nn.Linear(4, 3), torch.randn(2, 4))
    (addmm,) = [call for call in recorded.ops if call.op == "aten::addmm"]
    assert addmm.function == "linear" and addmm.scope == ("",)
    assert addmm.arg("mat1") == torchtally.TensorMeta((2, 4), torch.float32)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (40, "40"),
        (100, "100"),
        (440, "0.44K"),
        (9408, "9.408K"),
        (1_606_000, "1.606M"),
        (25_557_032, "25.557M"),
        (4_109_000_000, "4.109G"),
        (4_144_854_528, "4.145G"),
        (2 * 10**15, "2P"),
    ],
)
def test_format_count(value: int, text: str) -> None:
    assert torchtally.format_count(value) == text


def test_save_writes_the_format_of_the_suffix(tmp_path: Path) -> None:
    analysis = torchtally.analyze(nn.Linear(4, 3), torch.randn(2, 4))
    saved = analysis.save(tmp_path / "report.json")
    assert json.loads(saved.read_text())["metrics"]["flops"]["total"] == 24
    assert analysis.save(tmp_path / "report.md").read_text().startswith("**Totals:**")
    table = analysis.save(tmp_path / "report.txt", max_depth=1).read_text()
    assert table == analysis.render("table", max_depth=1) + "\n"
