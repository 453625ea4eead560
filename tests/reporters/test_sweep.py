"""`torchtally.Sweep`: one analysis per input size, one row per point in every format that can."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torchtally_browser import Page, launched_browser

import torchtally


@pytest.fixture(scope="module")
def sweep() -> torchtally.Sweep:
    model = nn.Sequential(nn.Linear(10, 8), nn.Linear(8, 4))
    batches = (1, 2, 8)
    analyses = tuple(
        torchtally.analyze(model, torch.randn(n, 10), warn_unsupported=False) for n in batches
    )
    return torchtally.Sweep(("batch",), tuple((n,) for n in batches), analyses)


def test_totals_and_labels(sweep: torchtally.Sweep) -> None:
    assert sweep.metrics == ("params", "flops", "activations", "bytes")
    assert sweep.labels() == ["1", "2", "8"]
    assert sweep.totals("flops") == [112, 224, 896]  # n x (10*8 + 8*4)
    assert sweep.totals("params") == [124, 124, 124]
    document = sweep.to_dict()
    # bytes: each linear reads its bias, input and weight and writes its output (float32)
    moved = 4 * ((8 + 8 * 10 + 80 + 8 * 8) + (4 + 8 * 8 + 32 + 8 * 4))
    assert document["points"][2]["totals"] == {
        "params": 124,
        "flops": 896,
        "activations": 96,
        "bytes": moved,
    }
    assert document["points"][2]["values"] == {"batch": 8}
    with pytest.raises(ValueError, match="one analysis per point"):
        torchtally.Sweep(("batch",), ((1,),), ())


def test_table_csv_json(
    sweep: torchtally.Sweep, parse_table: Callable[[str], list[list[str]]]
) -> None:
    rows = parse_table(sweep.render("table", units="raw", metrics=["flops"]))
    assert rows == [
        ["batch", "#flops", "x first"],
        ["1", "112", "1.00"],
        ["2", "224", "2.00"],
        ["8", "896", "8.00"],
    ]
    table = list(csv.reader(io.StringIO(sweep.render("csv", flop_unit="flop"))))
    assert table[0] == ["batch", "params", "flops", "activations"] and table[3][2] == "1792"
    assert json.loads(sweep.render("json"))["kind"] == "sweep"
    assert sweep.render("markdown").startswith("| batch   |   #params |")
    with pytest.raises(torchtally.UnknownFormatError, match="cannot show a sweep"):
        sweep.render("arch")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_browser() as launched:
        yield launched


@pytest.mark.slow
def test_html_sweep_plots(browser: Any, sweep: torchtally.Sweep, tmp_path: Path) -> None:
    path = tmp_path / "sweep.html"
    path.write_text(sweep.render("html"), encoding="utf-8")
    page = Page(browser, path)
    assert page.page.locator(".plot canvas").count() == len(sweep.metrics)  # one per metric
    shown = page.page.eval_on_selector_all(
        "#sweep-table tr",
        "rows => rows.slice(1).map(r => Number(r.cells[3].querySelector('[data-raw]')"
        ".dataset.raw))",
    )
    assert shown == sweep.totals("flops")
    assert page.errors == []
