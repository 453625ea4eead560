"""Golden files, the seed document's TestNet example, and the mmengine/fvcore entry points."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from torch import nn

import torchtally

Case = tuple[nn.Module, torchtally.Analysis]


def test_matches_golden_file(
    golden_case: tuple[str, nn.Module, torchtally.Analysis],
    golden_format: str,
    read_golden: Callable[[str, str], str],
) -> None:
    case, _, analysis = golden_case
    assert analysis.render(golden_format) == read_golden(case, golden_format), (
        f"{case}.{golden_format} changed: run tests/reporters/update_golden.py and review the diff"
    )


def collapse(text: str) -> str:
    """`text` with every run of whitespace made one space, as the seed document shows it."""
    return " ".join(text.split())


@pytest.mark.parametrize("fmt", ["table", "arch"])
def test_testnet_matches_seed_document(
    testnet_case: Case, read_golden: Callable[[str, str], str], fmt: str
) -> None:
    # The seed document lost its line breaks and runs of spaces; every cell, border (with its
    # width) and line of the example must still be there, in order.
    _, analysis = testnet_case
    assert collapse(analysis.render(fmt)) == read_golden("seed_testnet", fmt)


def seed_table_rows(collapsed: str, columns: int) -> list[list[str]]:
    """Rows of a whitespace-collapsed grid table: ``| a | b | | c | d |`` -> [[a, b], [c, d]]."""
    body = " ".join(part for part in collapsed.split() if not part.startswith("+"))
    cells = [cell.strip() for cell in body.split("|")][1:]
    return [cells[i : i + columns] for i in range(0, len(cells) - 1, columns + 1)]


def test_testnet_table_cells_match_seed(
    testnet_case: Case,
    read_golden: Callable[[str, str], str],
    parse_table: Callable[[str], list[list[str]]],
) -> None:
    _, analysis = testnet_case
    rows = parse_table(analysis.render("table"))
    assert rows == seed_table_rows(read_golden("seed_testnet", "table"), columns=4)
    assert rows[:2] == [
        ["module", "#parameters or shape", "#flops", "#activations"],
        ["model", "0.44K", "0.4K", "40"],
    ]
    assert len(rows) == 15


def test_get_model_complexity_info_reproduces_seed_example(
    build_model: Callable[[str], nn.Module], read_golden: Callable[[str, str], str]
) -> None:
    info = torchtally.get_model_complexity_info(build_model("testnet"), (10,))
    assert (info["params"], info["flops"], info["activations"]) == (440, 400, 40)
    assert (info["params_str"], info["flops_str"], info["activations_str"]) == (
        "0.44K",
        "0.4K",
        "40",
    )
    assert info["out_table"].rstrip("\n") == "\n" + read_golden("testnet", "table")
    assert info["out_arch"] == "\n" + read_golden("testnet", "arch")


@pytest.mark.parametrize("case", ["testnet", "resnet50"])
def test_parameter_count_table_is_the_parameters_format(
    build_model: Callable[[str], nn.Module], read_golden: Callable[[str, str], str], case: str
) -> None:
    assert torchtally.parameter_count_table(build_model(case)) == read_golden(case, "parameters")
