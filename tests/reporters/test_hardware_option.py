"""The ``hardware`` option: the roofline's time and bound per module in table, markdown and json."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import torchtally
from torchtally_reporters import load_schema

H100_BW = 3.35e12


@pytest.fixture(scope="module")
def analysis() -> torchtally.Analysis:
    block = nn.Sequential(
        nn.Linear(4096, 4096, bias=False), nn.GELU(), nn.Linear(4096, 4096, bias=False)
    ).to(torch.bfloat16)
    return torchtally.analyze(block, torch.randn(8, 4096, dtype=torch.bfloat16), mode="meta")


def test_table_gets_time_and_bound_columns_and_a_summary(analysis: torchtally.Analysis) -> None:
    text = analysis.render("table", hardware="h100-sxm")
    lines = text.splitlines()
    assert "| time (h100-sxm) | bound " in lines[1]
    # each linear reads its weights (4096 x 4096 x 2 bytes) and moves 8 x 4096 x 2 in and out
    each = (4096 * 4096 + 2 * 8 * 4096) * 2 / H100_BW
    assert each == pytest.approx(10.06e-6, rel=1e-3)
    (model,) = [line for line in lines if line.startswith("| model")]
    assert "| 20.1 us " in model and "| memory " in model
    (gelu,) = [line for line in lines if line.startswith("|  1 ")]  # only takes time: kept
    assert "ns " in gelu and "memory" in gelu
    assert lines[-1].startswith("estimated time on h100-sxm: 20.1 us, 0% compute-bound, 100%")
    raw = analysis.render("table", hardware="h100-sxm", units="raw")
    assert repr(analysis.roofline("h100-sxm").total()) in raw
    assert "time (" not in analysis.render("table")  # unchanged without the option


def test_markdown_and_json(analysis: torchtally.Analysis) -> None:
    text = analysis.render("markdown", hardware="h100-sxm")
    assert "\n\nestimated time on h100-sxm: 20.1 us" in text
    assert "|   time (h100-sxm) |   bound |" in text
    document = json.loads(analysis.render("json", hardware="h100-sxm"))
    roofline = analysis.roofline("h100-sxm")
    assert document["roofline"]["total_seconds"] == roofline.total()
    assert document["roofline"]["by_module"]["0"]["bound"] == "memory"
    assert "roofline" not in json.loads(analysis.render("json"))
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(load_schema()).validate(document)


def test_a_device_of_ones_own_and_errors(analysis: torchtally.Analysis) -> None:
    mine = torchtally.Hardware("mine", peak_flops={"bfloat16": 1e12}, memory_bandwidth=1e12)
    assert "time (mine)" in analysis.render("table", hardware=mine)
    with pytest.raises(ValueError, match="no device named 'h100-sxn'; did you mean 'h100-sxm'"):
        analysis.render("table", hardware="h100-sxn")
    with pytest.raises(TypeError, match="hardware must be a device name"):
        analysis.render("markdown", hardware=3)
    with pytest.raises(TypeError, match="unexpected option"):
        analysis.render("arch", hardware="h100-sxm")
