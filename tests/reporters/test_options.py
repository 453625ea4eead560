"""Options shared by the formats: depth, metrics, units, flop unit; errors; purity."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from torch import nn

import torchtally
from torchtally_reporters import REPORTERS

Case = tuple[nn.Module, torchtally.Analysis]
Rows = Callable[[str], list[list[str]]]
FORMATS = [reporter.name for reporter in REPORTERS]


def test_all_formats_are_installed() -> None:
    installed = torchtally.plugins.reporters()
    assert set(FORMATS) <= set(installed)
    assert all(installed[name][1] == "reporters" for name in FORMATS)


def test_unknown_format_lists_the_installed_ones(testnet_case: Case) -> None:
    _, analysis = testnet_case
    with pytest.raises(torchtally.UnknownFormatError, match="'yaml'") as error:
        analysis.render("yaml")
    assert "installed formats: " in str(error.value)
    assert all(f"{name}," in f"{error.value}," for name in FORMATS)


@pytest.mark.parametrize(
    ("fmt", "valid"),
    [
        (
            "table",
            "flop_unit, hardware, max_depth, measured, metrics, percent, shapes, "
            "show_param_shapes, split_phases, style, top, top_by, units",
        ),
        (
            "markdown",
            "flop_unit, hardware, max_depth, measured, metrics, percent, shapes, "
            "show_param_shapes, split_phases, top, top_by, units",
        ),
        ("arch", "flop_unit, max_depth, metrics, split_phases, uncalled_note, units"),
        ("json", "flop_unit, hardware, metrics"),
        ("parameters", "max_depth, style, title, units"),
    ],
)
def test_unknown_option_names_the_valid_ones(testnet_case: Case, fmt: str, valid: str) -> None:
    _, analysis = testnet_case
    with pytest.raises(TypeError) as error:
        analysis.render(fmt, colour="red", size=3)
    assert str(error.value) == (
        f"the {fmt!r} format got unexpected option(s) colour, size; valid options: {valid}"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_depth": -1}, "max_depth must be a non-negative int"),
        ({"max_depth": True}, "max_depth must be a non-negative int"),
        ({"units": "si"}, "units must be one of 'human', 'raw'"),
        ({"flop_unit": "gflop"}, "flop_unit must be one of 'mac', 'flop'"),
        ({"metrics": ["flops", "latency"]}, "'latency' not available; .* params, flops"),
        ({"metrics": ["flops", "flops"]}, "must not repeat"),
    ],
)
def test_bad_option_values(testnet_case: Case, options: dict[str, object], message: str) -> None:
    _, analysis = testnet_case
    with pytest.raises(ValueError, match=message):
        analysis.render("table", **options)


def test_option_types(testnet_case: Case) -> None:
    _, analysis = testnet_case
    with pytest.raises(TypeError, match="metrics must be a sequence of names"):
        analysis.render("table", metrics=[1])
    with pytest.raises(TypeError, match="show_param_shapes must be True or False"):
        analysis.render("table", show_param_shapes="yes")


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_is_pure(testnet_case: Case, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, analysis = testnet_case
    before = analysis.to_dict()
    first = analysis.render(fmt)
    assert analysis.render(fmt) == first
    assert analysis.to_dict() == before
    assert capsys.readouterr() == ("", "")


def test_table_max_depth(resnet50_case: Case, parse_table: Rows) -> None:
    _, analysis = resnet50_case
    assert [row[0] for row in parse_table(analysis.render("table", max_depth=0))] == [
        "module",
        "model",
    ]
    names = [row[0] for row in parse_table(analysis.render("table", max_depth=1))][1:]
    assert names == [
        "model",
        "conv1",
        "bn1",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "fc",
        "avgpool",
    ]
    deep = analysis.render("table", max_depth=None)
    assert "layer1.0.downsample.0.weight" in deep
    assert "layer1.0.downsample.0" not in analysis.render("table")


def test_table_metrics_units_and_flop_unit(testnet_case: Case, parse_table: Rows) -> None:
    _, analysis = testnet_case
    rows = parse_table(analysis.render("table", metrics=["flops", "params"], units="raw"))
    assert rows[:3] == [
        ["module", "#flops", "#parameters or shape"],
        ["model", "400", "440"],
        ["fc1", "100", "110"],
    ]
    doubled = parse_table(analysis.render("table", metrics="flops", flop_unit="flop"))
    assert doubled[:3] == [["module", "#flops"], ["model", "0.8K"], ["fc1", "0.2K"]]


def test_table_without_parameter_shapes(testnet_case: Case, parse_table: Rows) -> None:
    _, analysis = testnet_case
    rows = parse_table(analysis.render("table", show_param_shapes=False))
    assert rows[0][1] == "#parameters"
    assert [row[0] for row in rows[1:]] == [
        "model",
        "fc1",
        "fc2",
        "inner",
        "inner.fc1",
        "inner.fc2",
    ]


def test_table_without_parameters_has_no_parameter_rows(
    testnet_case: Case, parse_table: Rows
) -> None:
    _, analysis = testnet_case
    rows = parse_table(analysis.render("table", metrics=["activations"]))
    assert rows == [
        ["module", "#activations"],
        ["model", "40"],
        ["fc1", "10"],
        ["fc2", "10"],
        ["inner", "20"],
        ["inner.fc1", "10"],
        ["inner.fc2", "10"],
    ]


def test_arch_options(testnet_case: Case) -> None:
    _, analysis = testnet_case
    assert (
        analysis.render("arch", max_depth=0) == "TestNet(#params: 0.44K, #flops: 0.4K, #acts: 40)"
    )
    shallow = analysis.render("arch", max_depth=1, metrics=["flops"], flop_unit="flop", units="raw")
    assert shallow.splitlines()[:6] == [
        "TestNet(",
        "  #flops: 800",
        "  (fc1): Linear(",
        "    in_features=10, out_features=10, bias=True",
        "    #flops: 200",
        "  )",
    ]
    # Cut off below max_depth, a module keeps only its counts: a one-line repr.
    assert shallow.splitlines()[-2:] == ["  (inner): InnerNet(#flops: 400)", ")"]


def test_arch_shows_uncalled_and_shared_modules(tricky_analysis: torchtally.Analysis) -> None:
    text = tricky_analysis.render("arch")
    assert text.startswith("N/A: ")
    assert "(unused_act): ReLU(#params: 0, #flops: N/A, #acts: N/A)" in text
    # A shared module prints again under its second name, without counts (they are under its first).
    assert "(shared): Conv2d(8, 8, kernel_size=(1, 1), stride=(1, 1))" in text
    assert not tricky_analysis.render("arch", metrics=["params"]).startswith("N/A")


def test_json_options(testnet_case: Case) -> None:
    _, analysis = testnet_case
    doubled = json.loads(analysis.render("json", flop_unit="flop", metrics=["flops"]))
    assert doubled["conventions"]["flop_unit"] == "flop"
    assert "two flops" in doubled["conventions"]["flop"]
    assert list(doubled["metrics"]) == ["flops"]
    assert "params" not in doubled
    flops = doubled["metrics"]["flops"]
    assert flops["total"] == 800
    assert flops["by_module"] == {k: 2 * v for k, v in analysis.by_module("flops").items()}
    assert flops["by_operator"] == {"linear": 800}
    assert flops["by_module_and_operator"]["inner"] == {"linear": 400}


def test_params_only_analysis_renders_everywhere(
    build_model: Callable[[str], nn.Module], parse_table: Rows
) -> None:
    # parameter_count_table's analysis counts no metric: every format still works on it.
    model = build_model("testnet")
    analysis = torchtally.analyze(model, input_shape=(10,), metrics=())
    assert parse_table(analysis.render("table"))[:2] == [
        ["module", "#parameters or shape"],
        ["model", "0.44K"],
    ]
    assert analysis.render("arch").splitlines()[1] == "  #params: 0.44K"
    assert json.loads(analysis.render("json"))["metrics"] == {}
    assert analysis.render("markdown").startswith("**Totals:** 0.44K parameters\n")


def test_parameters_options(testnet_case: Case, parse_table: Rows) -> None:
    _, analysis = testnet_case
    rows = parse_table(analysis.render("parameters", max_depth=1, units="raw"))
    assert rows == [
        ["name", "#elements or shape"],
        ["model", "440"],
        ["fc1", "110"],
        ["fc2", "110"],
        ["inner", "220"],
    ]
    with pytest.raises(TypeError, match="valid options: max_depth, style, title, units"):
        analysis.render("parameters", metrics=["params"])
