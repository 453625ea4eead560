"""The ``markdown`` format parses as a GitHub-flavoured table with the right cells."""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn

import torchtally
from torchtally_reporters.markdown import code_span

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
_markdown_it = pytest.importorskip("markdown_it")
MarkdownIt = _markdown_it.MarkdownIt

Case = tuple[nn.Module, torchtally.Analysis]


def parse(text: str) -> tuple[list[str], list[list[str]]]:
    """The paragraphs and the table rows (header first) markdown-it finds in `text`."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    paragraphs: list[str] = []
    rows: list[list[str]] = []
    inside: str | None = None
    for token in tokens:
        if token.type in ("paragraph_open", "th_open", "td_open"):
            inside = token.type
        elif token.type == "tr_open":
            rows.append([])
        elif token.type == "inline" and inside == "paragraph_open":
            paragraphs.append(_text(token))
        elif token.type == "inline" and inside in ("th_open", "td_open"):
            rows[-1].append(_text(token))
    return paragraphs, rows


def _text(token: Any) -> str:
    return "".join(child.content for child in token.children or [])


def test_testnet_table_cells(testnet_case: Case, parse_table: Any) -> None:
    _, analysis = testnet_case
    paragraphs, rows = parse(analysis.render("markdown"))
    assert paragraphs == ["Totals: 0.44K parameters, 0.4K flops, 40 activations"]
    # Same rows and cells as the text table.
    assert rows == parse_table(analysis.render("table"))


def test_resnet50_table_cells(resnet50_case: Case, parse_table: Any) -> None:
    _, analysis = resnet50_case
    paragraphs, rows = parse(analysis.render("markdown"))
    assert paragraphs == ["Totals: 25.557M parameters, 4.112G flops, 11.115M activations"]
    assert rows == parse_table(analysis.render("table"))
    assert rows[-1] == ["avgpool", "", "0.1M", "0"]


def test_names_render_as_code(testnet_case: Case) -> None:
    _, analysis = testnet_case
    tokens = MarkdownIt("commonmark").enable("table").parse(analysis.render("markdown"))
    codes = [
        c.content
        for t in tokens
        if t.type == "inline"
        for c in t.children or []
        if c.type == "code_inline"
    ]
    assert codes[:3] == ["model", "fc1", "fc1.weight"]


@pytest.mark.parametrize("name", ["a|b", "a`b", "`edge`", "x*y_z_", "<tag>"])
def test_awkward_names_survive(name: str) -> None:
    table = f"| module |\n|:--|\n| {code_span(name)} |\n"
    _, rows = parse(table)
    assert rows == [["module"], [name]]


def test_options(testnet_case: Case) -> None:
    _, analysis = testnet_case
    paragraphs, rows = parse(
        analysis.render("markdown", metrics=["flops"], units="raw", flop_unit="flop", max_depth=1)
    )
    assert paragraphs == ["Totals: 800 flops"]
    assert rows == [
        ["module", "#flops"],
        ["model", "800"],
        ["fc1", "200"],
        ["fc2", "200"],
        ["inner", "400"],
    ]
