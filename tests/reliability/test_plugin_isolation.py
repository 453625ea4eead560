"""Issue 13, class 18: a plugin's code runs apart from the user's process. A plugin that parses
the command line or exits when imported (or in a hook) is reported by name like one that raises,
and the rest work; one that draws random numbers or flips torch's switches at import leaves the
user's generators and switches as they were."""

from __future__ import annotations

import argparse
import random
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch
from reliability.helpers import global_state
from torch import nn
from torchtally_testing import FakeDist, FakeEntryPoint

import torchtally
from torchtally import plugins
from torchtally_cli.cli import main

X = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
MODELS = "from torch import nn\n\n\ndef make():\n    return nn.Linear(4, 2)\n"


class CodeEntryPoint(FakeEntryPoint):
    """An entry point whose import runs `target` (a plugin module's top-level code) and gives
    the module it returns."""

    def load(self) -> Any:
        return self.target()


def module_with(handlers: Any = None) -> types.ModuleType:
    """A plugin module: optionally a ``torchtally_handlers`` hook returning `handlers`."""
    module = types.ModuleType("fake_plugin")
    if handlers is not None:

        @torchtally.hookimpl
        def torchtally_handlers() -> Any:
            return handlers()

        module.torchtally_handlers = torchtally_handlers  # type: ignore[attr-defined]
    return module


def parses_the_command_line() -> types.ModuleType:
    parser = argparse.ArgumentParser(prog="plugin-tool")
    parser.add_argument("--plugin-level", required=True)
    parser.parse_args()  # the user's command line, or none: exits with its usage
    return module_with()


def exits_at_import() -> types.ModuleType:
    sys.exit(0)


def exits_with_a_message() -> types.ModuleType:
    raise SystemExit("this plugin needs a GPU")


def draws_random_numbers() -> types.ModuleType:
    torch.rand(3)
    random.random()
    numpy.random.rand(2)
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.set_float32_matmul_precision("medium")
    return module_with()


seen_argv: list[list[str]] = []


def records_argv() -> types.ModuleType:
    seen_argv.append(list(sys.argv))
    return module_with()


def exits_in_its_hook() -> types.ModuleType:
    def handlers() -> Any:
        sys.exit(4)

    return module_with(handlers)


def dist(name: str) -> FakeDist:
    return FakeDist(f"torchtally-{name}", "1.0")


@pytest.mark.parametrize(
    ("load", "said"),
    [
        (parses_the_command_line, "it called sys.exit(2): plugin-tool: error: the following"),
        (exits_at_import, "it called sys.exit(0)"),
        (exits_with_a_message, "sys.exit('this plugin needs a GPU')"),
    ],
)
def test_a_plugin_that_exits_at_import_is_reported_like_one_that_raises(
    entry_points: list[FakeEntryPoint],
    monkeypatch: pytest.MonkeyPatch,
    load: Callable[[], types.ModuleType],
    said: str,
) -> None:
    monkeypatch.setattr(sys, "argv", ["torchtally", "torchvision:resnet18", "--shape", "224"])
    entry_points.append(CodeEntryPoint("exiting", load, dist("exiting")))
    entry_points.append(FakeEntryPoint("fine", module_with(), dist("fine")))
    with pytest.warns(torchtally.PluginWarning, match="'exiting'") as warned:
        names = [info.name for info in torchtally.list_plugins()]
    assert "fine" in names and "exiting" not in names
    (failure,) = torchtally.plugin_failures()
    assert failure.name == "exiting" and said in failure.error
    assert isinstance(failure.cause, SystemExit)
    assert len(warned) == 1
    analysis = torchtally.analyze(nn.Linear(4, 4), X)  # the rest works
    assert analysis.total() == 2 * 4 * 4


def test_a_plugin_that_exits_in_its_hook_is_reported(entry_points: list[FakeEntryPoint]) -> None:
    entry_points.append(CodeEntryPoint("hooked", exits_in_its_hook, dist("hooked")))
    with pytest.warns(torchtally.PluginWarning, match=r"'hooked'.*sys\.exit\(4\)"):
        analysis = torchtally.analyze(nn.Linear(4, 4), X)
    assert analysis.total() == 2 * 4 * 4


def test_a_plugin_sees_no_command_line(
    entry_points: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["torchtally", "timm:resnet18", "--set", "x=1"])
    seen_argv.clear()
    entry_points.append(CodeEntryPoint("reader", records_argv, dist("reader")))
    torchtally.list_plugins()
    assert seen_argv == [["torchtally"]]
    assert sys.argv == ["torchtally", "timm:resnet18", "--set", "x=1"]


def test_a_plugin_drawing_random_numbers_at_import_leaves_the_users_generators(
    entry_points: list[FakeEntryPoint],
) -> None:
    entry_points.append(CodeEntryPoint("noisy", draws_random_numbers, dist("noisy")))
    model = nn.Linear(4, 4)
    torch.manual_seed(123)
    random.seed(123)
    numpy.random.seed(123)
    before = global_state(), torch.get_rng_state(), numpy.random.get_state()[1].copy()
    torchtally.analyze(model, X)  # the first analysis loads the plugins
    after = global_state(), torch.get_rng_state(), numpy.random.get_state()[1].copy()
    assert after[0] == before[0]
    assert torch.equal(after[1], before[1]) and (after[2] == before[2]).all()
    assert "noisy" in [info.name for info in torchtally.list_plugins()]  # it did load


def test_the_command_line_survives_a_plugin_that_parses_arguments(
    entry_points: list[FakeEntryPoint],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torchtally_reporters  # the table's format

    (tmp_path / "models.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    entry_points.append(FakeEntryPoint("reporters", torchtally_reporters, dist("reporters")))
    entry_points.append(CodeEntryPoint("argparser", parses_the_command_line, dist("argparser")))
    argv = ["./models.py:make", "--shape", "4,", "-q"]
    monkeypatch.setattr(sys, "argv", ["torchtally", *argv])
    with pytest.warns(torchtally.PluginWarning, match="'argparser'"):
        code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Flops: 8" in captured.out
    assert "usage: plugin-tool" not in captured.out + captured.err
    plugins.reset_plugins()
