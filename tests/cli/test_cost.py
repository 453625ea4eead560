"""The command line's cost options: --measure, --top, --percent, --shapes (with --hardware)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from torchtally_cli.cli import EXIT_USAGE, main

Run = Callable[..., tuple[int, str, str]]
MODEL = ("torchvision:resnet18", "--shape", "3", "64", "64", "-q")


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(*argv)`` -> (exit code, stdout, stderr)."""

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def test_top_percent_and_shapes(run: Run) -> None:
    code, out, err = run(*MODEL, "--hardware", "l4", "--top", "3", "--percent", "--shapes")
    assert code == 0, err
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert "%flops" in table[0] and "input shapes" in table[0]
    assert len(table) == 1 + 1 + 3  # header, the model, three modules
    code, out, err = run(*MODEL, "--top", "2", "--top-by", "bytes", "--metrics", "flops", "bytes")
    assert code == 0, err


def test_measure(run: Run) -> None:
    code, out, err = run(*MODEL, "--measure", "--max-depth", "1")
    assert code == 0, err
    assert "measured on cpu: forward pass" in out
    assert "measured (cpu)" in out and "achieved FLOP/s" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--top", "3", "--format", "json"), "--top add to --format table or markdown"),
        (("--shapes", "--batch", "1", "2"), "--shapes add to --format table or markdown of one"),
        (("--measure", "--mode", "fake"), "--measure times one forward pass running for real"),
        (("--top", "2", "--top-by", "latency"), "top_by must be one of"),
    ],
)
def test_refused(run: Run, argv: tuple[str, ...], message: str) -> None:
    code, _, err = run(*MODEL, *argv)
    assert code == EXIT_USAGE and message in err
