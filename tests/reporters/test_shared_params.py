"""Tied weights (GPT-2's and T5's lm_head) are marked as shared, with the name they are counted
under, in the analysis, the JSON, the tables and the HTML report."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torchtally_browser import Page, launched_browser

import torchtally

transformers = pytest.importorskip("transformers")


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied, as language models tie their heads
        self.again = self.head  # a shared module: its parameters are not "tied" again

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.embed(ids))
        return out


@pytest.fixture(scope="module")
def tied() -> torchtally.Analysis:
    return torchtally.analyze(Tied(), torch.zeros(1, 3, dtype=torch.long), warn_unsupported=False)


def test_shared_params(tied: torchtally.Analysis) -> None:
    assert dict(tied.shared_params) == {"head.weight": "embed.weight"}
    assert tied.params[""] == 40  # counted once
    assert json.loads(tied.render("json"))["params"]["shared"] == {"head.weight": "embed.weight"}


def test_tables_mark_the_shared_weight(
    tied: torchtally.Analysis, parse_table: Callable[[str], list[list[str]]]
) -> None:
    rows = {row[0]: row[1] for row in parse_table(tied.render("table"))}
    assert rows["head"] == "0 (shared)"
    assert rows["head.weight"] == "shared: embed.weight"
    assert rows["embed.weight"] == "(10, 4)"
    assert "#params: 0 (shared: embed.weight), #flops: 0.12K" in tied.render("arch")
    markdown = tied.render("markdown", show_param_shapes=False)
    assert "| `head`   |    0 (shared) |" in markdown and "head.weight" not in markdown


@pytest.mark.parametrize(
    ("model_class", "config_class", "tied_name", "counted"),
    [
        ("GPT2LMHeadModel", "GPT2Config", "lm_head.weight", "transformer.wte.weight"),
        ("T5ForConditionalGeneration", "T5Config", "lm_head.weight", "shared.weight"),
    ],
)
def test_language_models(
    model_class: str,
    config_class: str,
    tied_name: str,
    counted: str,
    parse_table: Callable[[str], list[list[str]]],
) -> None:
    small = {"vocab_size": 50, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    if config_class == "GPT2Config":
        config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, **small)
        inputs = {"input_ids": torch.zeros(1, 4, dtype=torch.long)}
    else:
        config = transformers.T5Config(
            num_layers=1,
            d_model=16,
            d_kv=8,
            d_ff=32,
            num_heads=2,
            **small,
            decoder_start_token_id=0,
        )
        ids = torch.zeros(1, 4, dtype=torch.long)
        inputs = {"input_ids": ids, "decoder_input_ids": ids}
    logging.disable(logging.WARNING)
    try:
        model = getattr(transformers, model_class)(config).eval()
    finally:
        logging.disable(logging.NOTSET)
    analysis = torchtally.analyze(model, inputs, warn_unsupported=False)
    assert analysis.shared_params[tied_name] == counted
    rows = {row[0]: row[1] for row in parse_table(analysis.render("table", max_depth=1))}
    assert rows["lm_head"] == "0 (shared)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_browser() as launched:
        yield launched


@pytest.mark.slow
def test_html_marks_the_shared_weight(
    browser: Any, tied: torchtally.Analysis, tmp_path: Path
) -> None:
    path = tied.save(tmp_path / "tied.html", "html")
    page = Page(browser, path)
    cell = ".row[data-name=head] [data-col=params] span"
    assert page.page.inner_text(cell) == "0 (shared)"
    assert page.page.get_attribute(cell, "title") == "head.weight is embed.weight, counted there"
    page.page.check("#show-params")
    assert page.page.inner_text(".row[data-name='head.weight'] [data-col=params]") == "shared"
    assert page.errors == []
