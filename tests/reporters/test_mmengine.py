"""The ``table`` and ``arch`` formats against mmengine's printer, and ``parameters`` against fvcore.

mmengine lays its table out with rich, which squeezes columns to the terminal width; COLUMNS is
set wide so that its text is comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from torch import nn

import torchtally

pytestmark = pytest.mark.slow  # peer cross-check

mm_analysis = pytest.importorskip("mmengine.analysis")
fvcore_nn = pytest.importorskip("fvcore.nn")

Case = tuple[nn.Module, torchtally.Analysis]
Rows = Callable[[str], list[list[str]]]


@pytest.fixture
def mmengine_info(monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, Any]]:
    monkeypatch.setenv("COLUMNS", "1000")
    return mm_analysis.get_model_complexity_info  # type: ignore[no-any-return]


def without_note(arch: str) -> str:
    """The module tree without the explanatory N/A line (worded differently on purpose)."""
    lines = arch.removeprefix("\n").splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("N/A") else lines)


def test_resnet50_agrees_with_mmengine_in_every_row(
    resnet50_case: Case, mmengine_info: Callable[..., dict[str, Any]], parse_table: Rows
) -> None:
    model, analysis = resnet50_case
    expected = mmengine_info(model, (3, 224, 224))
    assert (analysis.total("flops"), analysis.total("activations"), analysis.params[""]) == (
        expected["flops"],
        expected["activations"],
        expected["params"],
    )
    ours, theirs = parse_table(analysis.render("table")), parse_table(expected["out_table"])
    assert len(ours) == len(theirs) == 131
    for our_row, their_row in zip(ours, theirs, strict=True):
        assert our_row == their_row
    assert analysis.render("table") == expected["out_table"].strip("\n")
    our_arch = analysis.render("arch").splitlines()
    their_arch = expected["out_arch"].removeprefix("\n").splitlines()
    assert len(our_arch) == len(their_arch)
    for our_line, their_line in zip(our_arch, their_arch, strict=True):
        assert our_line == their_line


@pytest.mark.parametrize("wrapped", [False, True], ids=["tricky", "wrapped"])
def test_special_cases_agree_with_mmengine(
    build_tricky: Callable[[bool], nn.Module],
    mmengine_info: Callable[..., dict[str, Any]],
    wrapped: bool,
) -> None:
    # Single-child chains, zero rows, uncalled and unused modules, a shared module, a container.
    model = build_tricky(wrapped)
    ours = torchtally.get_model_complexity_info(model, (3, 16, 16))
    theirs = mmengine_info(model, (3, 16, 16))
    # mmengine's out_table also ends with a newline; compare the tables themselves.
    assert ours["out_table"].strip("\n") == theirs["out_table"].strip("\n")
    assert without_note(ours["out_arch"]) == without_note(theirs["out_arch"])
    assert ours["out_arch"].startswith("\nN/A: ")


@pytest.mark.parametrize("case", ["testnet", "resnet50"])
@pytest.mark.parametrize("max_depth", [1, 3, 5])
def test_parameters_agrees_with_fvcore(
    build_model: Callable[[str], nn.Module], parse_table: Rows, case: str, max_depth: int
) -> None:
    # Cell by cell: tabulate >= 0.10 ignores the PRESERVE_WHITESPACE switch fvcore sets, so
    # fvcore's own output lost its indentation; ours keeps the layout fvcore documents.
    model = build_model(case)
    ours = torchtally.parameter_count_table(model, max_depth=max_depth)
    assert parse_table(ours) == parse_table(fvcore_nn.parameter_count_table(model, max_depth))
