"""`torchtally.diff`: two analyses (or JSON reports) per module and operator, in every format
that can show a comparison."""

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


class Small(nn.Module):
    def __init__(self, width: int, extra: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, width)
        self.fc2 = nn.Linear(width, 10)
        self.extra = nn.Linear(10, 10) if extra else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc2(torch.relu(self.fc1(x)))
        return self.extra(x) if self.extra is not None else x


def analyse(width: int, extra: bool) -> torchtally.Analysis:
    torch.manual_seed(0)
    return torchtally.analyze(Small(width, extra), torch.randn(2, 10), warn_unsupported=False)


@pytest.fixture(scope="module")
def diff() -> torchtally.Diff:
    return torchtally.diff(analyse(20, False), analyse(40, True), labels=["narrow", "wide"])


def test_pairs_per_module_and_operator(diff: torchtally.Diff) -> None:
    assert diff.labels == ("narrow", "wide")
    assert diff.metrics == ("params", "flops", "activations", "bytes")
    assert diff.modules == ("", "fc1", "fc2", "extra")
    # flops: batch 2 x (10 x width + width x 10) (+ 2 x 100 for extra)
    assert diff.by_module("flops") == {
        "": (800, 1800),
        "fc1": (400, 800),
        "fc2": (400, 800),
        "extra": (None, 200),
    }
    assert diff.by_module("params")["fc1"] == (220, 440)
    assert diff.total("activations") == (2 * 30, 2 * 60)
    assert diff.by_operator("flops") == {"linear": (800, 1800)}
    assert diff.only_in(0) == () and diff.only_in(1) == ("extra",)
    assert diff.module_types("extra") == (None, "Linear")
    with pytest.raises(KeyError, match="neither side has the metric 'latency'"):
        diff.by_module("latency")


def test_json_reports_compare_like_analyses(diff: torchtally.Diff, tmp_path: Path) -> None:
    narrow, wide = analyse(20, False), analyse(40, True)
    path = tmp_path / "narrow.json"
    narrow.save(path, "json", flop_unit="flop")  # read back in MACs
    from_files = torchtally.diff(path, json.loads(wide.render("json")))
    assert from_files.labels == ("narrow.json", "Small")
    assert from_files.to_dict()["modules"] == diff.to_dict()["modules"]
    with pytest.raises(torchtally.ReportError, match="no such report file"):
        torchtally.diff(tmp_path / "missing.json", wide)
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(torchtally.ReportError, match="not a torchtally JSON report"):
        torchtally.diff(tmp_path / "bad.json", wide)
    with pytest.raises(TypeError, match="diff compares Analysis objects"):
        torchtally.diff(3, wide)  # type: ignore[arg-type]


def test_same_labels_are_told_apart() -> None:
    a = analyse(20, False)
    assert torchtally.diff(a, a).labels == ("Small (A)", "Small (B)")


def test_table(diff: torchtally.Diff, parse_table: Callable[[str], list[list[str]]]) -> None:
    text = diff.render("table", metrics=["flops"])
    assert text.splitlines()[:3] == ["A: narrow", "B: wide", "only in B: extra"]
    rows = parse_table(text)
    assert rows[:5] == [
        ["module", "#flops A", "#flops B", "change"],
        ["model", "0.8K", "1.8K", "+1K (+125.0%)"],
        ["fc1", "0.4K", "0.8K", "+0.4K (+100.0%)"],
        ["fc2", "0.4K", "0.8K", "+0.4K (+100.0%)"],
        ["extra", "\u2014", "0.2K", "only in B"],
    ]
    assert rows[5:] == [
        ["operator", "#flops A", "#flops B", "change"],
        ["linear", "0.8K", "1.8K", "+1K (+125.0%)"],
    ]
    raw = parse_table(diff.render("table", metrics=["flops"], units="raw", flop_unit="flop"))
    assert raw[1] == ["model", "1600", "3600", "+2000 (+125.0%)"]
    changed = parse_table(diff.render("table", changed_only=True, max_depth=0))
    assert [row[0] for row in changed][:2] == ["module", "model"]


def test_markdown_csv_json(diff: torchtally.Diff) -> None:
    markdown = diff.render("markdown", metrics=["params"])
    assert "| `extra`  |" in markdown and "**only in B:** extra" in markdown
    rows = list(csv.DictReader(io.StringIO(diff.render("csv"))))
    assert rows[0]["module"] == "" and rows[0]["flops_change"] == "1000"
    assert rows[3] == {
        "module": "extra",
        "type_a": "",
        "type_b": "Linear",
        "params_a": "",
        "params_b": "110",
        "params_change": "",
        "flops_a": "",
        "flops_b": "200",
        "flops_change": "",
        "activations_a": "",
        "activations_b": "20",
        "activations_change": "",
    }
    document = json.loads(diff.render("json"))
    assert document["kind"] == "diff"
    assert document["totals"]["flops"] == {"a": 800, "b": 1800, "delta": 1000}
    assert document["modules"]["extra"]["flops"] == {"a": None, "b": 200, "delta": None}
    assert document["only_in_b"] == ["extra"]


def test_formats_that_cannot_compare_say_which_can(diff: torchtally.Diff) -> None:
    with pytest.raises(torchtally.UnknownFormatError, match="formats that can: csv, html, json"):
        diff.render("arch")
    with pytest.raises(TypeError, match="valid options"):
        diff.render("table", show_param_shapes=False)
    with pytest.raises(ValueError, match="not available"):
        diff.render("table", metrics=["latency"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_browser() as launched:
        yield launched


@pytest.mark.slow
def test_html_diff_page(browser: Any, diff: torchtally.Diff, tmp_path: Path) -> None:
    path = tmp_path / "diff.html"
    path.write_text(diff.render("html"), encoding="utf-8")
    page = Page(browser, path)
    cells = page.page.eval_on_selector_all(
        "#tab-modules .rows .row",
        "rows => rows.map(r => [r.dataset.name, [...r.querySelectorAll('[data-col]')].map("
        "c => c.querySelector('[data-raw]') ? Number(c.querySelector('[data-raw]').dataset.raw) "
        ": c.textContent)])",
    )
    expected = diff.by_module("flops")
    for name, values in cells:
        a, b = expected[name]
        assert values[3:6] == [
            "\u2014" if a is None else a,
            "\u2014" if b is None else b,
            "only in B" if a is None else b - a,
        ]
    assert "only in B" in page.page.inner_text(".row[data-name=extra] .name")
    page.page.click("button[data-tab=only]")
    assert page.page.inner_text("#only-b") == "extra"
    assert page.errors == []
