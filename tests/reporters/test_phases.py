"""Analyses with a backward pass: forward, backward and total columns, totals lines and JSON.

TestNet is four ``Linear(10, 10)`` on one sample of 10 features, applied in the order
inner.fc2, inner.fc1, fc2, fc1 (the forward is ``fc1(fc2(inner(x)))``, inner being ``fc1(fc2(x))``).

- forward: each linear is a (1, 10) @ (10, 10) matmul, 1 * 10 * 10 = 100 flops, 4 * 100 = 400;
  activations are the outputs, 10 each, 40.
- backward: each linear's weight gradient is grad_out^T @ input, (10, 1) @ (1, 10) = 100 flops;
  the input gradient grad_out @ W, (1, 10) @ (10, 10) = 100 flops, is computed by every linear
  but inner.fc2, whose input (the model's input) needs no gradient: 3 * 200 + 100 = 700 flops.
  Activations are the forward pass's outputs only: 0 in the backward pass.
- total: 1100 flops, 40 activations.

By default only metrics with counts after the forward pass (flops here) get per-phase columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from torch import nn

import torchtally
from torchtally_reporters import load_schema

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
jsonschema = pytest.importorskip("jsonschema")

FORWARD_FLOPS = 4 * (1 * 10 * 10)
BACKWARD_FLOPS = 3 * (10 * 1 * 10 + 1 * 10 * 10) + 10 * 1 * 10
FORWARD_ACTS = 4 * 10


@pytest.fixture(scope="module")
def backward_analysis(build_model: Callable[[str], nn.Module]) -> torchtally.Analysis:
    model = build_model("testnet")
    return torchtally.analyze(model, input_shape=(10,), backward=True, warn_unsupported=False)


@pytest.fixture(scope="module")
def tricky_backward(build_tricky: Callable[[bool], nn.Module]) -> torchtally.Analysis:
    return torchtally.analyze(
        build_tricky(False), input_shape=(3, 16, 16), backward=True, warn_unsupported=False
    )


def test_hand_counts(backward_analysis: torchtally.Analysis) -> None:
    assert backward_analysis.phases == ("forward", "backward")
    assert backward_analysis.total(phase="forward") == FORWARD_FLOPS == 400
    assert backward_analysis.total(phase="backward") == BACKWARD_FLOPS == 700
    assert backward_analysis.total("activations", phase="backward") == 0


def test_table_columns_per_phase(
    backward_analysis: torchtally.Analysis, parse_table: Callable[[str], list[list[str]]]
) -> None:
    rows = parse_table(backward_analysis.render("table", units="raw"))
    assert rows[0] == [
        "module",
        "#parameters or shape",
        "#flops (forward)",
        "#flops (backward)",
        "#flops (total)",
        "#activations",
    ]
    assert rows[1] == ["model", "440", "400", "700", "1100", "40"]
    by_name = {row[0]: row for row in rows}
    # inner.fc2 sees the model's input: no input gradient, only the weight's (100 flops)
    assert by_name["inner.fc2"][2:] == ["100", "100", "200", "10"]
    assert by_name["fc1"][2:] == ["100", "200", "300", "10"]


def test_split_columns_add_up_on_every_row(
    tricky_backward: torchtally.Analysis, parse_table: Callable[[str], list[list[str]]]
) -> None:
    rows = parse_table(
        tricky_backward.render("table", units="raw", max_depth=None, split_phases=True)
    )
    header, body = rows[0], rows[1:]
    for metric in ("#flops", "#activations"):
        forward = header.index(f"{metric} (forward)")
        checked = 0
        for row in body:
            if row[forward]:  # empty for parameter rows and uncalled modules
                total = int(row[forward]) + int(row[forward + 1])
                assert total == int(row[forward + 2]), row
                checked += 1
        assert checked > 3


def test_split_phases_option(
    backward_analysis: torchtally.Analysis,
    testnet_case: tuple[nn.Module, torchtally.Analysis],
    parse_table: Callable[[str], list[list[str]]],
) -> None:
    totals_only = parse_table(backward_analysis.render("table", split_phases=False, units="raw"))
    assert totals_only[0] == ["module", "#parameters or shape", "#flops", "#activations"]
    assert totals_only[1] == ["model", "440", "1100", "40"]
    every_metric = parse_table(backward_analysis.render("table", split_phases=True, units="raw"))
    assert every_metric[0][-3:] == [
        "#activations (forward)",
        "#activations (backward)",
        "#activations (total)",
    ]
    assert every_metric[1][-3:] == ["40", "0", "40"]
    _, forward_only = testnet_case
    assert forward_only.render("table", split_phases=None) == forward_only.render("table")
    with pytest.raises(ValueError, match="needs an analysis with a backward pass"):
        forward_only.render("table", split_phases=True)
    with pytest.raises(TypeError, match="split_phases must be True, False or None"):
        backward_analysis.render("table", split_phases="yes")


def test_metrics_and_flop_unit_apply_to_each_phase(
    backward_analysis: torchtally.Analysis, parse_table: Callable[[str], list[list[str]]]
) -> None:
    rows = parse_table(
        backward_analysis.render("table", metrics=["flops"], flop_unit="flop", units="raw")
    )
    assert rows[0] == ["module", "#flops (forward)", "#flops (backward)", "#flops (total)"]
    assert rows[1] == ["model", "800", "1400", "2200"]


def test_markdown_totals_line_and_columns(
    backward_analysis: torchtally.Analysis, parse_table: Callable[[str], list[list[str]]]
) -> None:
    text = backward_analysis.render("markdown", max_depth=1)
    assert text.splitlines()[0] == (
        "**Totals:** 0.44K parameters, 1.1K flops (forward 0.4K, backward 0.7K), 40 activations"
    )
    rows = parse_table(text)
    assert rows[1] == ["`model`", "0.44K", "0.4K", "0.7K", "1.1K", "40"]


def test_arch_lines_show_the_phases(backward_analysis: torchtally.Analysis) -> None:
    lines = backward_analysis.render("arch").splitlines()
    assert lines[1] == "  #params: 0.44K, #flops: 1.1K (forward 0.4K, backward 0.7K), #acts: 40"
    plain = backward_analysis.render("arch", split_phases=False).splitlines()
    assert plain[1] == "  #params: 0.44K, #flops: 1.1K, #acts: 40"


def test_json_phases_section(backward_analysis: torchtally.Analysis) -> None:
    document = json.loads(backward_analysis.render("json"))
    jsonschema.Draft202012Validator(load_schema()).validate(document)
    assert document["schema_version"] == 1
    # metrics holds the sums, as a reader that knows nothing of phases expects
    assert document["metrics"]["flops"]["total"] == FORWARD_FLOPS + BACKWARD_FLOPS
    phases = document["phases"]
    assert list(phases) == ["forward", "backward"]
    assert phases["forward"]["flops"]["total"] == FORWARD_FLOPS
    assert phases["backward"]["flops"]["total"] == BACKWARD_FLOPS
    assert phases["backward"]["activations"]["total"] == 0
    assert phases["backward"]["flops"]["by_module"]["inner.fc2"] == 10 * 1 * 10
    for phase in ("forward", "backward"):
        for metric in ("flops", "activations"):
            section = phases[phase][metric]
            assert section["by_module"] == backward_analysis.by_module(metric, phase=phase)
            assert section["by_operator"] == backward_analysis.by_operator(metric, phase=phase)


def test_json_phases_follow_metrics_and_flop_unit(backward_analysis: torchtally.Analysis) -> None:
    document = json.loads(backward_analysis.render("json", metrics=["flops"], flop_unit="flop"))
    jsonschema.Draft202012Validator(load_schema()).validate(document)
    assert {phase: list(s) for phase, s in document["phases"].items()} == {
        "forward": ["flops"],
        "backward": ["flops"],
    }
    assert document["phases"]["backward"]["flops"]["total"] == 2 * BACKWARD_FLOPS
    assert document["phases"]["backward"]["flops"]["by_module"]["fc1"] == 2 * 200


def test_forward_only_json_has_no_phases(
    testnet_case: tuple[nn.Module, torchtally.Analysis],
) -> None:
    _, analysis = testnet_case
    assert "phases" not in json.loads(analysis.render("json"))


def test_schema_rejects_a_bad_phase(backward_analysis: torchtally.Analysis) -> None:
    validator = jsonschema.Draft202012Validator(load_schema())
    document = json.loads(backward_analysis.render("json"))
    document["phases"]["sideways"] = document["phases"]["forward"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(document)
    document = json.loads(backward_analysis.render("json"))
    document["phases"]["backward"]["flops"]["total"] = -1
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(document)
