"""The ``json`` format: valid against the packaged schema, and every number comes back."""

from __future__ import annotations

import json

import pytest
from torch import nn

import torchtally
from torchtally.analysis import JSON_SCHEMA_VERSION
from torchtally_reporters import load_schema

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
jsonschema = pytest.importorskip("jsonschema")

Case = tuple[nn.Module, torchtally.Analysis]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_version_matches_the_documents() -> None:
    schema = load_schema()
    assert schema["version"] == JSON_SCHEMA_VERSION
    assert schema["properties"]["schema_version"]["const"] == JSON_SCHEMA_VERSION


@pytest.mark.parametrize(
    "options", [{}, {"flop_unit": "flop"}, {"metrics": ["activations"]}, {"metrics": ["params"]}]
)
def test_valid_against_schema(
    golden_case: tuple[str, nn.Module, torchtally.Analysis],
    validator: jsonschema.Draft202012Validator,
    options: dict[str, object],
) -> None:
    _, _, analysis = golden_case
    validator.validate(json.loads(analysis.render("json", **options)))


def test_special_cases_valid_against_schema(
    tricky_analysis: torchtally.Analysis, validator: jsonschema.Draft202012Validator
) -> None:
    document = json.loads(tricky_analysis.render("json"))
    validator.validate(document)
    assert document["uncalled_modules"] == ["direct", "unused", "unused_act"]
    assert document["modules"]["blocks.0"]["aliases"] == ["shared"]


def test_schema_rejects_a_wrong_document(
    testnet_case: Case, validator: jsonschema.Draft202012Validator
) -> None:
    _, analysis = testnet_case
    document = json.loads(analysis.render("json"))
    document["metrics"]["flops"]["total"] = "0.4K"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(document)


def test_numbers_round_trip(golden_case: tuple[str, nn.Module, torchtally.Analysis]) -> None:
    _, _, analysis = golden_case
    document = json.loads(analysis.render("json"))
    for metric in analysis.metrics:
        section = document["metrics"][metric]
        assert section["total"] == analysis.total(metric)
        assert section["by_module"] == analysis.by_module(metric)
        assert section["by_operator"] == analysis.by_operator(metric)
        assert section["by_module_and_operator"] == analysis.by_module_and_operator(metric)
        assert section["unsupported_ops"] == analysis.unsupported_ops(metric)
        for module in analysis.modules:
            expected = analysis.unsupported_ops(metric, module)
            assert section["unsupported_ops_by_module"].get(module, {}) == expected
    params = analysis.params  # per name prefix, parameters included, as fvcore's parameter_count
    assert document["params"]["by_module"] == {m: params.get(m, 0) for m in analysis.modules}
    assert document["params"]["total"] == params[""]
    assert document["params"]["shapes"] == {k: list(v) for k, v in analysis.param_shapes.items()}
    assert document["uncalled_modules"] == sorted(analysis.uncalled_modules)
    assert list(document["modules"]) == list(analysis.modules)


def test_raw_integers_and_stable_order(
    golden_case: tuple[str, nn.Module, torchtally.Analysis],
) -> None:
    _, _, analysis = golden_case
    text = analysis.render("json")
    assert text == json.dumps(json.loads(text), indent=2)
    document = json.loads(text)
    assert list(document) == [*analysis.to_dict()]
    assert all(isinstance(v, int) for v in document["metrics"]["flops"]["by_module"].values())
