"""The ``html`` format: a self-contained page whose numbers are the analysis' numbers.

The page itself is checked in headless Chromium (see `tests/torchtally_browser.py`): no console
errors, no network, collapsing and sorting work, and every number shown equals ``to_dict()``'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torchtally_browser import Page, launched_browser
from torchtally_testing import TINY_LLAMA

import torchtally
from torchtally_reporters.html_report import script_json

Case = tuple[nn.Module, torchtally.Analysis]

# Every row of the module tree, read by scrolling through it (only the rows in view exist).
READ_ROWS = """() => {
  const body = document.querySelector('#tab-modules .grid .body');
  const seen = new Map();
  for (let top = 0; ; top += body.clientHeight / 2) {
    body.scrollTop = top;
    body.dispatchEvent(new Event('scroll'));
    for (const row of body.querySelectorAll('.row')) {
      const values = {};
      for (const cell of row.querySelectorAll('[data-col]')) {
        const span = cell.querySelector('[data-raw]');
        values[cell.dataset.col] = span ? Number(span.dataset.raw) : null;
      }
      seen.set(row.dataset.kind + ':' + row.dataset.name, {name: row.dataset.name, values});
    }
    if (top > body.scrollHeight) break;
  }
  return [...seen.values()];
}"""


def embedded(page_text: str) -> dict[str, Any]:
    start = '<script type="application/json" id="torchtally-data">'
    match = re.search(start + r"\n(.*)\n</script>", page_text)
    assert match
    payload: dict[str, Any] = json.loads(match.group(1))
    return payload


def test_page_is_self_contained(resnet50_case: Case) -> None:
    _, analysis = resnet50_case
    text = analysis.render("html")
    assert "<script src" not in text and "<link" not in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    payload = embedded(text)
    assert payload["kind"] == "analysis" and payload["title"] == "ResNet"
    shown = payload["analysis"]
    # to_dict() with the flop unit named, and the metrics the table shows by default (bytes only
    # on request)
    default = ("params", "flops", "activations")
    assert shown == json.loads(analysis.render("json", metrics=default))
    document = json.loads(json.dumps(analysis.to_dict()))
    del document["metrics"]["bytes"]
    assert {k: v for k, v in shown.items() if k != "conventions"} == {
        k: v for k, v in document.items() if k != "conventions"
    }
    assert len(text) < 150_000  # 25 KB of data, 15 KB of d3-hierarchy, the page's own code


def test_script_json_cannot_end_the_script() -> None:
    text = script_json({"name": "</script><script>alert(1)</script>", "b": "<!--"})
    assert "<" not in text and json.loads(text)["name"].startswith("</script>")


def test_html_options(testnet_case: Case) -> None:
    _, analysis = testnet_case
    payload = embedded(analysis.render("html", metrics=["flops"], flop_unit="flop", title="Net"))
    assert payload["title"] == "Net"
    assert payload["analysis"]["metrics"]["flops"]["total"] == 800
    assert "activations" not in payload["analysis"]["metrics"]
    with pytest.raises(TypeError, match="title must be a string"):
        analysis.render("html", title=3)
    with pytest.raises(TypeError, match="valid options"):
        analysis.render("html", max_depth=2)


# --- in the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_browser() as launched:
        yield launched


def open_report(
    browser: Any, analysis: torchtally.Analysis, tmp_path: Path, **options: Any
) -> Page:
    path = tmp_path / "report.html"
    analysis.save(path, "html", **options)
    return Page(browser, path)


@pytest.mark.slow
def test_numbers_in_the_page_equal_to_dict(
    browser: Any, resnet50_case: Case, tmp_path: Path
) -> None:
    _, analysis = resnet50_case
    document = analysis.to_dict()
    page = open_report(browser, analysis, tmp_path)
    page.page.click("text=expand all")
    rows = page.page.evaluate(READ_ROWS)
    assert [row["name"] for row in rows] == list(analysis.modules)
    for row in rows:
        name = row["name"]
        assert row["values"]["params"] == document["params"]["by_module"][name]
        for metric in ("flops", "activations"):
            assert row["values"][metric] == document["metrics"][metric]["by_module"][name], name
    totals = page.page.eval_on_selector_all(
        "[data-total] b", "cells => cells.map(c => Number(c.dataset.raw))"
    )
    assert totals == [25557032, 4111512576, 11114984]
    page.page.click("button[data-tab=operators]")
    shown = page.page.eval_on_selector_all(
        "table[data-metric=flops] tr",
        "rows => rows.slice(1).map(r => [r.cells[0].textContent, "
        "Number(r.cells[1].querySelector('[data-raw]').dataset.raw)])",
    )
    assert dict(shown) == document["metrics"]["flops"]["by_operator"]
    page.page.click("button[data-tab=issues]")
    assert "aten::relu_" in page.page.inner_text("#tab-issues")
    page.page.click("button[data-tab=map]")
    assert page.page.locator("#map rect").count() > 50
    page.page.locator("#map rect[data-name='layer3.0.conv2']").click()
    assert page.page.inner_text(".crumbs") == "model › layer3 › 0"
    assert page.errors == []


@pytest.mark.slow
def test_collapse_and_sort(browser: Any, resnet50_case: Case, tmp_path: Path) -> None:
    _, analysis = resnet50_case
    page = open_report(browser, analysis, tmp_path)
    names = page.page.locator("#tab-modules .rows .row")
    shown = lambda: names.evaluate_all("rows => rows.map(r => r.dataset.name)")  # noqa: E731
    assert "layer1.0" in shown() and "layer1.0.conv1" not in shown()  # two levels open
    page.page.click("[aria-label='collapse layer1']")
    assert not any(name.startswith("layer1.") for name in shown())
    page.page.click("[aria-label='expand layer1']")
    assert "layer1.2" in shown()
    page.page.click("text=collapse all")
    assert shown() == [
        "",
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "fc",
    ]
    header = "#tab-modules .head [data-col=flops]"
    flops = analysis.by_module()
    top = [name for name in shown() if name]
    page.page.click(header)
    assert page.page.get_attribute(header, "aria-sort") == "descending"
    assert shown()[1:] == sorted(top, key=lambda n: -flops[n])
    assert shown()[1:5] == ["layer3", "layer2", "layer4", "layer1"]
    page.page.click(header)
    assert shown()[1:] == sorted(top, key=lambda n: flops[n])
    page.page.click(header)
    assert shown()[1:] == top  # back to module order
    page.page.fill("input[type=search]", "downsample")
    assert shown() == [
        "",
        "layer1",
        "layer1.0",
        "layer1.0.downsample",
        "layer1.0.downsample.0",
        "layer1.0.downsample.1",
        "layer2",
        "layer2.0",
        "layer2.0.downsample",
        "layer2.0.downsample.0",
        "layer2.0.downsample.1",
        "layer3",
        "layer3.0",
        "layer3.0.downsample",
        "layer3.0.downsample.0",
        "layer3.0.downsample.1",
        "layer4",
        "layer4.0",
        "layer4.0.downsample",
        "layer4.0.downsample.0",
        "layer4.0.downsample.1",
    ]
    assert page.errors == []


@pytest.mark.slow
def test_a_large_model_keeps_a_small_page(browser: Any, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(**{**TINY_LLAMA, "num_hidden_layers": 80})
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    inputs = {"input_ids": torch.zeros(1, 16, dtype=torch.long)}
    analysis = torchtally.analyze(model, inputs, warn_unsupported=False)
    assert len(analysis.modules) > 1000
    page = open_report(browser, analysis, tmp_path)
    page.page.click("text=expand all")
    elements = page.page.evaluate("document.getElementsByTagName('*').length")
    assert elements < 2500  # about 60 rows of the 1,047 are in the page at any time
    rows = page.page.evaluate(READ_ROWS)
    assert len(rows) == len(analysis.modules)
    assert rows[-1]["name"] == "lm_head"
    assert rows[-1]["values"]["flops"] == analysis.total(module="lm_head")
    assert page.errors == []


@pytest.mark.slow
def test_backward_phases_and_uncalled_modules(
    browser: Any, tricky_analysis: torchtally.Analysis, tmp_path: Path
) -> None:
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 10))
    analysis = torchtally.analyze(model, torch.randn(1, 10), backward=True, warn_unsupported=False)
    page = open_report(browser, analysis, tmp_path)
    headers = page.page.eval_on_selector_all(
        "#tab-modules .head [data-col]", "cells => cells.map(c => c.dataset.col)"
    )
    assert headers == ["params", "flops:forward", "flops:backward", "flops", "activations"]
    rows = {row["name"]: row["values"] for row in page.page.evaluate(READ_ROWS)}
    assert rows[""]["flops:forward"] == 200 and rows[""]["flops:backward"] == 300
    page.close()
    page = open_report(browser, tricky_analysis, tmp_path)
    rows = {row["name"]: row["values"] for row in page.page.evaluate(READ_ROWS)}
    assert rows["direct"]["flops"] is None  # never called: shown as a dash, counted in its parent
    assert page.page.inner_text(".row[data-name=direct] [data-col=flops]") == "\u2014"
    page.page.click("button[data-tab=issues]")
    assert "direct (Linear)" in page.page.inner_text("#uncalled")
    assert page.errors == []


def test_missing_browser_skips_or_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchtally_browser

    monkeypatch.setattr(torchtally_browser.shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        torchtally_browser.require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but Chromium"):
        torchtally_browser.require_browser()


@pytest.mark.slow
def test_any_metric_the_analysis_has_is_shown(browser: Any, tmp_path: Path) -> None:
    # A metric asked for (bytes moved, here from a handler of the test's own) gets its columns,
    # card, operators and treemap; the page's default metrics are the table's.
    handlers = torchtally.HandlerSet()
    handlers.add("bytes", "aten::addmm", lambda call: 4 * sum(t.numel for t in call.output_tensors))
    model = nn.Sequential(nn.Linear(10, 8), nn.Linear(8, 4))
    analysis = torchtally.analyze(
        model, torch.randn(2, 10), handlers=handlers, metrics=("flops", "bytes")
    )
    assert analysis.total("bytes") == 4 * (2 * 8 + 2 * 4)
    page = open_report(browser, analysis, tmp_path, metrics=("params", "flops", "bytes"))
    headers = page.page.eval_on_selector_all(
        "#tab-modules .head [data-col]", "cells => cells.map(c => c.dataset.col)"
    )
    assert headers == ["params", "flops", "bytes"]
    rows = {row["name"]: row["values"] for row in page.page.evaluate(READ_ROWS)}
    assert rows["1"]["bytes"] == 32 and rows[""]["bytes"] == 96
    page.page.click("button[data-tab=map]")
    options = page.page.eval_on_selector_all("#tab-map option", "os => os.map(o => o.value)")
    assert options == ["params", "flops", "bytes"]
    page.page.select_option("#tab-map select", "bytes")
    assert page.page.locator("#map rect").count() == 3  # the model and its two layers
    assert page.errors == []
