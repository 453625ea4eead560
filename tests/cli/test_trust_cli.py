"""Issue 13, classes 16 and 17: every failure of the command line maps to a documented exit code
with a one-line message (no traceback), a model file that exits is a failure, and ``-o FILE`` is
written all or nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import torchtally
from torchtally import formats
from torchtally_cli import cli
from torchtally_cli.cli import EXIT_ANALYSIS, EXIT_MODEL, EXIT_USAGE, main

EXIT_FAILURE = 1  # torchtally_cli.cli.EXIT_FAILURE: anything else (documented in --help)

Run = Callable[..., tuple[int, str, str]]

MODELS = """
import sys
import torch
from torch import nn


def make(width=4):
    return nn.Linear(width, 2)


def takes_source(source=0, width=4):
    return nn.Linear(width, 2)


def exits():
    sys.exit(3)


class ExitsInForward(nn.Linear):
    def forward(self, x):
        sys.exit(0)


def exits_in_forward():
    return ExitsInForward(4, 2)
"""


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run(*argv)`` in a folder holding ``models.py`` and ``exits_at_import.py``:
    (exit code, stdout, stderr)."""
    (tmp_path / "models.py").write_text(MODELS)
    (tmp_path / "exits_at_import.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "exits_with_code.py").write_text("raise SystemExit('no GPU here')\n")
    monkeypatch.chdir(tmp_path)

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def one_line(err: str) -> str:
    """The error line, checked to be the only one, with no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("torchtally: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- 16. exit codes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["timm:resnet18", "--set", "pretrained=true"], EXIT_USAGE, "pretrained=False itself"),
        (["timm:resnet18", "--set", "model_name=x"], EXIT_USAGE, "model_name='resnet18' itself"),
        (["torchvision:resnet18", "--set", "weights=DEFAULT"], EXIT_USAGE, "weights=None"),
        (["./models.py:make", "--set", "source=1"], EXIT_MODEL, "unexpected keyword"),
        (["x" * 5000 + ".py:make"], EXIT_USAGE, "File name too long"),
        (["./exits_at_import.py:make"], EXIT_MODEL, "it called sys.exit(0)"),
        (["./exits_with_code.py:make"], EXIT_MODEL, "sys.exit('no GPU here')"),
        (["./models.py:exits"], EXIT_MODEL, "it called sys.exit(3)"),
        (["./models.py:exits_in_forward", "--shape", "4,"], EXIT_ANALYSIS, "sys.exit(0)"),
        (["./models.py:make", "--shape", "4000000,4000000"], EXIT_USAGE, "too large to build"),
        (
            ["./models.py:make", "--shape", "4000000,4000000", "--mode", "real"],
            EXIT_USAGE,
            "use --mode fake",
        ),
        (["./models.py:make", "--shape", "5,"], EXIT_ANALYSIS, "in module '<root>' (Linear)"),
    ],
)
def test_every_failure_has_its_exit_code_and_one_line(
    run: Run, argv: list[str], code: int, message: str
) -> None:
    got, out, err = run(*argv)
    assert (got, out) == (code, ""), err
    assert message in one_line(err)


def test_a_factory_may_take_an_argument_named_source(run: Run) -> None:
    code, out, err = run("./models.py:takes_source", "--set", "source=1", "--shape", "4,")
    assert code == 0, err
    assert "Flops: 8" in out


@pytest.mark.parametrize("mode", ["fake", "meta"])
def test_a_huge_shape_costs_nothing_in_shape_only_modes(run: Run, mode: str) -> None:
    """(1, 4000000, 4) floats would be 64 MB; (1, 40000000000, 4) 640 GB: built on meta."""
    code, out, err = run("./models.py:make", "--shape", "40000000000,4", "--mode", mode, "-q")
    assert code == 0, err
    assert "Flops: 0.32T" in out


def test_an_unexpected_error_is_one_line_and_the_traceback_on_request(
    run: Run, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "_render_options", broken)
    code, _, err = run("./models.py:make", "--shape", "4,")
    assert code == EXIT_FAILURE
    assert "KeyError: 'a bug'" in one_line(err) and "TORCHTALLY_TRACEBACK=1" in err
    monkeypatch.setenv("TORCHTALLY_TRACEBACK", "1")
    code, _, err = run("./models.py:make", "--shape", "4,")
    assert code == EXIT_FAILURE and "Traceback" in err


def test_help_documents_every_exit_code(run: Run) -> None:
    code, out, _ = run("--help")
    assert code == 0
    codes = out[out.index("exit codes:") :]
    for number in ("0 success", "2 bad", "3 the model", "4 the model", "5 a package", "1 anything"):
        assert number in codes


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "code"), [("./exits_at_import.py:make", EXIT_MODEL), ("./models.py:exits", 3)]
)
def test_the_command_exits_with_the_code_not_the_models(
    tmp_path: Path, source: str, code: int
) -> None:
    (tmp_path / "models.py").write_text(MODELS)
    (tmp_path / "exits_at_import.py").write_text("import sys\nsys.exit(0)\n")
    done = subprocess.run(
        [sys.executable, "-m", "torchtally_cli", source],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == code
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- 17. -o FILE all or nothing ------------------------------------------------------------------


_FDOPEN = os.fdopen


class _FailingFile:
    """A file whose write gets halfway and fails (a full disk)."""

    def __init__(self, handle: int, *args: Any, **kwargs: Any) -> None:
        self.file = _FDOPEN(handle, *args, **kwargs)

    def __enter__(self) -> _FailingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def write(self, text: str) -> int:
        self.file.write(text[: len(text) // 2])
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("suffix", [".json", ".txt", ".md"])
def test_a_failed_write_leaves_the_previous_report(
    run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, suffix: str
) -> None:
    report = tmp_path / f"report{suffix}"
    code, _, err = run("./models.py:make", "--shape", "4,", "-o", str(report))
    assert code == 0, err
    previous = report.read_text()
    monkeypatch.setattr(formats.os, "fdopen", _FailingFile)
    code, _, err = run("./models.py:make", "--shape", "8,", "--set", "width=8", "-o", str(report))
    assert code == EXIT_USAGE
    assert "No space left on device" in one_line(err)
    assert report.read_text() == previous
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".report")) == []


def test_save_is_all_or_nothing_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    analysis = torchtally.analyze(torchtally_linear(), input_shape=(4,))
    report = tmp_path / "report.json"
    analysis.save(report)
    previous = report.read_text()
    monkeypatch.setattr(formats.os, "fdopen", _FailingFile)
    with pytest.raises(OSError, match="No space"):
        analysis.save(report)
    assert report.read_text() == previous
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def torchtally_linear() -> Any:
    from torch import nn

    return nn.Linear(4, 2)


def test_a_report_replaces_the_previous_one_whole(run: Run, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text("x" * 100_000)  # longer than the new report
    code, _, err = run("./models.py:make", "--shape", "4,", "-o", str(report), "-q")
    assert code == 0, err
    assert report.read_text().startswith("{") and "x" * 10 not in report.read_text()
