"""The table and markdown formats' extra columns: measured time, shares, shapes, the top
modules (by a count or the estimated time); the summary's trainable and frozen parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchtally
from torchtally_reporters.extras import shapes_text


@pytest.fixture(scope="module")
def analysis() -> torchtally.Analysis:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 256), nn.LayerNorm(256)
    ).to(torch.bfloat16)
    return torchtally.analyze(
        model, torch.randn(64, 256, dtype=torch.bfloat16), mode="meta", warn_unsupported=False
    )


def test_shapes_text() -> None:
    meta = torchtally.TensorMeta((1, 3), torch.float32)
    assert shapes_text((meta,)) == "[1, 3]"
    assert shapes_text(({"x": meta, "n": 3},)) == "x: [1, 3]"


def test_percent_and_shapes(analysis: torchtally.Analysis) -> None:
    text = analysis.render("table", percent=True, shapes=True, max_depth=1)
    lines = text.splitlines()
    assert "%flops" in lines[1] and "input shapes" in lines[1] and "output shapes" in lines[1]
    first = next(line for line in lines if line.startswith("|  0 "))
    assert "50.0%" in first  # two equal linears
    assert "[64, 256]" in first and "[64, 1024]" in first


def test_top_modules(analysis: torchtally.Analysis) -> None:
    text = analysis.render("table", hardware="h100-sxm", top=2)
    names = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("|")][1:]
    assert names[0] == "model" and len(names) == 3
    roof = analysis.roofline("h100-sxm").by_module()
    leaves = sorted(["0", "1", "2", "3"], key=lambda n: -roof[n])
    assert names[1:] == leaves[:2]
    by_flops = analysis.render("table", top=1, top_by="flops")
    assert by_flops.splitlines()[4].split("|")[1].strip() in ("0", "2")
    by_time = analysis.render("table", hardware="h100-sxm", top=1, top_by="time")
    assert by_time.splitlines()[4].split("|")[1].strip() == names[1]
    with pytest.raises(ValueError, match="top_by must be one of"):
        analysis.render("table", top=1, top_by="latency")
    with pytest.raises(ValueError, match="positive number of modules"):
        analysis.render("table", top=0)
    with pytest.raises(ValueError, match="give top=K"):
        analysis.render("table", top_by="flops")


def test_summary_lines() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
    model[0].requires_grad_(False)
    analysis = torchtally.analyze(model, torch.randn(4, 8))
    summary = analysis.render("summary")
    assert "Params: 90 (trainable 18, frozen 72)" in summary
    trainable = torchtally.analyze(nn.Linear(8, 2), torch.randn(4, 8)).render("summary")
    assert "Params: 18\n" in trainable  # mmpretrain's line as it is


def test_measured_columns() -> None:
    analysis = torchtally.analyze(
        nn.Sequential(nn.Linear(64, 64), nn.ReLU()), torch.randn(8, 64), measure=True,
        measure_repeats=2, warn_unsupported=False,
    )  # fmt: skip
    text = analysis.render("table")
    assert "measured (cpu)" in text and "achieved FLOP/s" in text
    assert "measured (cpu)" not in analysis.render("table", measured=False)
    assert "measured on cpu: forward pass" in text
    with pytest.raises(ValueError, match="measure=True"):
        torchtally.analyze(nn.Linear(4, 4), torch.randn(2, 4)).render("table", measured=True)
