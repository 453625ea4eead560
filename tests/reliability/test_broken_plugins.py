"""Broken plugins: each failure is reported with the plugin's name, the rest of the analysis
completes and the affected op is listed as unsupported; strict mode raises instead.

tests/core/test_plugins.py covers a plugin that fails to import (warning, the rest works) and the
warning for two plugins claiming one op; this file covers everything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from reliability.helpers import MODES
from torch import nn
from torchtally_testing import FakeDist, FakeEntryPoint

import torchtally
from torchtally import plugins
from torchtally.plugins import PluginError
from torchtally.reporting import Reporter, ReporterError

# Two custom ops only plugins count (CompositeExplicitAutograd: they run under fake tensors too).
_lib = torch.library.Library("tt_reliability", "DEF")
_lib.define("double(Tensor x) -> Tensor")
_lib.impl("double", lambda x: x * 2, "CompositeExplicitAutograd")
_lib.define("triple(Tensor x) -> Tensor")
_lib.impl("triple", lambda x: x * 3, "CompositeExplicitAutograd")
DOUBLE, TRIPLE = "tt_reliability::double", "tt_reliability::triple"


class TwoOps(nn.Module):
    """A linear (core counts it) and the two custom ops."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return torch.ops.tt_reliability.triple(torch.ops.tt_reliability.double(y))


X = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
LINEAR = 2 * 4 * 3
ELEMENTS = 2 * 3  # elements each custom op produces


def handlers_plugin(make: Callable[[], Any]) -> object:
    """A plugin whose torchtally_handlers hook returns make() (or raises what make raises)."""

    class Plugin:
        @torchtally.hookimpl
        def torchtally_handlers(self) -> Any:
            return make()

    return Plugin()


def counting(op: str, handler: Callable[..., Any]) -> object:
    def make() -> torchtally.HandlerSet:
        handlers = torchtally.HandlerSet()
        handlers.add("flops", op, handler)
        return handlers

    return handlers_plugin(make)


def per_element(cost: int) -> Callable[[torchtally.OpCall], int]:
    return lambda call: cost * call.output_tensors[0].numel


def reporters_plugin(make: Callable[[], Any]) -> object:
    class Plugin:
        @torchtally.hookimpl
        def torchtally_reporters(self) -> Any:
            return make()

    return Plugin()


def add(found: list[FakeEntryPoint], name: str, target: Any) -> None:
    found.append(FakeEntryPoint(name, target, FakeDist(f"{name}-dist", "0.3")))


# --- plugins that fail before any counting ---------------------------------------------------


def test_a_plugin_that_raises_while_importing_is_named(
    entry_points: list[FakeEntryPoint],
) -> None:
    error = torchtally.CompositeOpError("aten::linear is a composite op")
    add(entry_points, "bad-import", error)
    add(entry_points, "double", counting(DOUBLE, per_element(1)))
    with pytest.warns(torchtally.PluginWarning, match="'bad-import' .*bad-import-dist 0.3"):
        analysis = torchtally.analyze(TwoOps(), X, warn_unsupported=False)
    assert analysis.total() == LINEAR + ELEMENTS
    assert analysis.unsupported_ops() == {TRIPLE: 1}
    with pytest.raises(PluginError, match=r"'bad-import'.*CompositeOpError: aten::linear"):
        plugins.handler_registry(strict=True)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: 1 / 0, "torchtally_handlers\\(\\) raised ZeroDivisionError: division by zero"),
        (lambda: {DOUBLE: 1}, "torchtally_handlers\\(\\) returned dict, expected a torchtally"),
    ],
    ids=["raises", "wrong-type"],
)
def test_a_handlers_hook_that_fails_is_named_and_skipped(
    entry_points: list[FakeEntryPoint], make: Callable[[], Any], problem: str
) -> None:
    add(entry_points, "broken", handlers_plugin(make))
    add(entry_points, "triple", counting(TRIPLE, per_element(1)))
    with pytest.warns(torchtally.PluginWarning, match=f"'broken' .*broken-dist 0.3.*{problem}"):
        analysis = torchtally.analyze(TwoOps(), X, warn_unsupported=False)
    assert analysis.total() == LINEAR + ELEMENTS  # core and the other plugin still count
    assert analysis.unsupported_ops() == {DOUBLE: 1}
    assert [f.name for f in torchtally.plugin_failures()] == ["broken"]
    with pytest.raises(PluginError, match="'broken'"):
        plugins.handler_registry(strict=True)


def test_two_plugins_claiming_one_op_are_an_error_when_strict(
    entry_points: list[FakeEntryPoint],
) -> None:
    add(entry_points, "alpha", counting(DOUBLE, per_element(1)))
    add(entry_points, "beta", counting(DOUBLE, per_element(2)))
    with pytest.warns(torchtally.PluginWarning, match="alpha and beta both handle"):
        registry = plugins.handler_registry()
    assert registry.lookup("flops", DOUBLE).source == "beta"
    with pytest.raises(PluginError, match=f"alpha and beta both handle {DOUBLE} \\(flops\\)"):
        plugins.handler_registry(strict=True)


def test_analyze_strict_raises_for_a_broken_plugin(entry_points: list[FakeEntryPoint]) -> None:
    add(entry_points, "bad-import", ImportError("no module named nowhere"))
    with pytest.warns(torchtally.PluginWarning), pytest.raises(PluginError, match="bad-import"):
        torchtally.analyze(TwoOps(), X, strict=True)


# --- handlers that fail while counting -------------------------------------------------------


def boom(call: torchtally.OpCall) -> int:
    raise KeyError("weight")


@pytest.mark.parametrize(
    ("handler", "problem"),
    [
        (boom, "raised KeyError: 'weight'"),
        (lambda call: -6, "returned -6, expected a count that is not negative"),
        (lambda call: math.nan, "returned nan, expected a finite number"),
        (lambda call: math.inf, "returned inf, expected a finite number"),
        (lambda call: "6", "returned '6', expected a number or a mapping of names to numbers"),
        (lambda call: None, "returned None, expected a number"),
        (lambda call: True, "returned True, expected a number"),
        (lambda call: {"double": 3, "extra": -1}, "returned -1, expected a count that is not"),
        (lambda call: torch.tensor(6), "returned tensor\\(6\\), expected a number"),
    ],
    ids=["raises", "negative", "nan", "inf", "str", "none", "bool", "mapping", "tensor"],
)
def test_a_failing_handler_is_named_and_its_op_unsupported(
    entry_points: list[FakeEntryPoint], handler: Callable[..., Any], problem: str
) -> None:
    add(entry_points, "shaky", counting(DOUBLE, handler))
    add(entry_points, "triple", counting(TRIPLE, per_element(5)))
    expected = f"the flops handler for {DOUBLE} from plugin 'shaky' {problem}"
    with pytest.warns(torchtally.HandlerWarning, match=expected):
        analysis = torchtally.analyze(TwoOps(), X, warn_unsupported=False)
    assert analysis.total() == LINEAR + 5 * ELEMENTS  # everything else is counted
    assert analysis.unsupported_ops() == {DOUBLE: 1}
    assert [(f.op, f.source) for f in analysis.handler_failures] == [(DOUBLE, "shaky")]
    with pytest.raises(torchtally.HandlerError, match=expected):
        torchtally.analyze(TwoOps(), X, strict=True)


@pytest.mark.parametrize("mode", MODES)
def test_a_handler_failure_is_the_same_in_every_mode(
    entry_points: list[FakeEntryPoint], mode: str
) -> None:
    add(entry_points, "shaky", counting(DOUBLE, boom))
    with pytest.warns(torchtally.HandlerWarning, match="from plugin 'shaky' raised KeyError"):
        analysis = torchtally.analyze(TwoOps(), X, mode=mode, warn_unsupported=False)
    assert analysis.total() == LINEAR
    assert analysis.unsupported_ops() == {DOUBLE: 1, TRIPLE: 1}


def test_the_strict_error_chains_the_handlers_exception(
    entry_points: list[FakeEntryPoint],
) -> None:
    add(entry_points, "shaky", counting(DOUBLE, boom))
    with pytest.raises(torchtally.HandlerError) as raised:
        torchtally.analyze(TwoOps(), X, strict=True)
    assert isinstance(raised.value.__cause__, KeyError)


def test_a_failing_handler_warns_once_however_often_its_op_runs(
    entry_points: list[FakeEntryPoint],
) -> None:
    add(entry_points, "shaky", counting(DOUBLE, boom))
    model = nn.Sequential(TwoOps(), nn.Linear(3, 4), TwoOps())
    with pytest.warns(torchtally.HandlerWarning) as warned:
        analysis = torchtally.analyze(model, X, warn_unsupported=False)
    assert len([w for w in warned if "shaky" in str(w.message)]) == 1
    assert analysis.unsupported_ops()[DOUBLE] == 2


def test_a_failing_module_handler_is_named(entry_points: list[FakeEntryPoint]) -> None:
    def make() -> torchtally.HandlerSet:
        handlers = torchtally.HandlerSet()
        handlers.module(nn.Linear)(boom)
        return handlers

    add(entry_points, "modules", handlers_plugin(make))
    model = nn.Sequential(nn.Linear(4, 3), nn.Conv1d(1, 1, 1))
    expected = "the flops handler for Linear from plugin 'modules' raised KeyError"
    with pytest.warns(torchtally.HandlerWarning, match=expected):
        analysis = torchtally.analyze(model, (torch.randn(1, 4),), warn_unsupported=False)
    assert analysis.unsupported_ops() == {"Linear": 1}
    with pytest.raises(torchtally.HandlerError, match=expected):
        torchtally.analyze(model, (torch.randn(1, 4),), strict=True)


def test_numpy_counts_from_fvcore_style_handlers_are_accepted(
    entry_points: list[FakeEntryPoint],
) -> None:
    add(entry_points, "numpy", counting(DOUBLE, lambda call: np.prod([2, 3])))
    analysis = torchtally.analyze(TwoOps(), X, warn_unsupported=False)
    assert analysis.by_operator() == {"linear": LINEAR, DOUBLE: 6}  # custom ops keep namespaces
    assert type(analysis.total()) is int


# --- reporters -------------------------------------------------------------------------------


def fine_format(analysis: torchtally.Analysis, **options: Any) -> str:
    return f"total {analysis.total()}"


def test_a_reporter_that_raises_is_named_and_the_rest_renders(
    entry_points: list[FakeEntryPoint],
) -> None:
    def crash(analysis: torchtally.Analysis, **options: Any) -> str:
        return str({}["missing"])

    add(entry_points, "formats", reporters_plugin(lambda: [Reporter("fine", fine_format)]))
    add(entry_points, "crashy", reporters_plugin(lambda: [Reporter("crash", crash)]))
    analysis = torchtally.analyze(nn.Linear(4, 3), X)
    with pytest.raises(ReporterError, match="'crash' output format \\(plugin 'crashy'\\) raised"):
        analysis.render("crash")
    assert analysis.render("fine") == f"total {LINEAR}"


def test_a_reporter_that_returns_no_text_is_named(entry_points: list[FakeEntryPoint]) -> None:
    add(entry_points, "silent", reporters_plugin(lambda: [Reporter("none", lambda a: None)]))
    analysis = torchtally.analyze(nn.Linear(4, 3), X)
    with pytest.raises(ReporterError, match="'none' output format \\(plugin 'silent'\\) returned"):
        analysis.render("none")


def test_an_options_error_of_a_reporter_keeps_its_type_and_names_the_plugin(
    entry_points: list[FakeEntryPoint],
) -> None:
    def picky(analysis: torchtally.Analysis, **options: Any) -> str:
        raise TypeError("unexpected option(s) colour")

    add(entry_points, "picky", reporters_plugin(lambda: [Reporter("picky", picky)]))
    analysis = torchtally.analyze(nn.Linear(4, 3), X)
    with pytest.raises(TypeError) as raised:
        analysis.render("picky", colour="red")
    assert str(raised.value) == "unexpected option(s) colour"
    assert raised.value.__notes__ == ["raised by the 'picky' output format (plugin 'picky')"]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: 1 / 0, "torchtally_reporters\\(\\) raised ZeroDivisionError"),
        (lambda: ["table"], "torchtally_reporters\\(\\) gave str, expected torchtally.Reporter"),
    ],
    ids=["raises", "wrong-type"],
)
def test_a_reporters_hook_that_fails_is_named_and_the_rest_renders(
    entry_points: list[FakeEntryPoint], make: Callable[[], Any], problem: str
) -> None:
    add(entry_points, "formats", reporters_plugin(lambda: [Reporter("fine", fine_format)]))
    add(entry_points, "broken", reporters_plugin(make))
    analysis = torchtally.analyze(nn.Linear(4, 3), X)
    with pytest.warns(torchtally.PluginWarning, match=f"'broken' .*{problem}"):
        assert analysis.render("fine") == f"total {LINEAR}"
    assert [info.name for info in torchtally.list_plugins()] == [plugins.CORE, "broken", "formats"]
