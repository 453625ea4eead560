"""The command line as a new user meets it: fast answers, one clear message per mistake, in the
command line's words, and the comparison, sweep, CSV, HTML and per-operator outputs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from torchtally_testing import TINY_LLAMA

import torchtally
from torchtally_cli.cli import EXIT_ANALYSIS, EXIT_USAGE, cli_words, main

Run = Callable[..., tuple[int, str, str]]
TINY = [f"{key}={value}" for key, value in TINY_LLAMA.items() if key != "model_type"]
LLAMA = ["transformers:LlamaForCausalLM", "--config", "LlamaConfig", "--set", *TINY]

MODELS = """
from torch import nn


def linear():
    return nn.Linear(10, 4)


def relu_linear():
    return nn.Sequential(nn.Linear(10, 4), nn.ReLU())


def wide():
    return nn.Sequential(nn.Linear(10, 8), nn.Linear(8, 4))


def raises():
    raise RuntimeError("out of widgets")
"""


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


@pytest.fixture
def models(tmp_path: Path) -> str:
    path = tmp_path / "edge_models.py"
    path.write_text(MODELS)
    return str(path)


def command(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torchtally_cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


# --- 1. --help, --version and argument errors answer at once ---------------------------------

NOT_IMPORTED = """
import sys, time
start = time.perf_counter()
from torchtally_cli.cli import main
code = main(sys.argv[1:])
print(code, 'torch' in sys.modules, 'torchtally' in sys.modules, time.perf_counter() - start,
      file=sys.stderr)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "code"),
    [(["--help"], 0), (["--version"], 0), (["m:f", "--mode", "bogus"], 2), (["diff", "--help"], 0)],
)
def test_help_version_and_argument_errors_import_no_torch(argv: list[str], code: int) -> None:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", NOT_IMPORTED, *argv], capture_output=True, text=True, timeout=60
    )
    elapsed = time.perf_counter() - started
    got, torch_imported, torchtally_imported, _ = done.stderr.splitlines()[-1].split()
    assert (int(got), torch_imported, torchtally_imported) == (code, "False", "False")
    # Under 0.5 s on an idle 2-core machine (0.35 s measured, interpreter start included); the
    # bound leaves room for a busy one. What makes it fast is that torch is never imported.
    assert elapsed < 3


# --- 2. a shape mismatch: one clear message, no log, no real rerun ------------------------------


@pytest.mark.slow
def test_a_shape_mismatch_is_one_message(models: str) -> None:
    done = command(f"{models}:linear", "--shape", "12,")
    assert done.returncode == EXIT_ANALYSIS
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # the error and what to check; no fake_tensor log
    assert lines[0].startswith("torchtally: error: analysing ")
    assert "must have same reduction dim, but got [1, 12] X [10, 4]" in lines[0]
    assert "inputs: (1, 12); set them with --shape or --seq-len" in lines[0]
    assert "running it for real" not in done.stderr


def test_a_shape_mismatch_is_not_run_for_real(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchtally import api

    modes: list[str] = []
    real_run = api.run_traced

    def spy(*args: object, mode: str, **kwargs: object) -> torchtally.Trace:
        modes.append(mode)
        return real_run(*args, mode=mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "run_traced", spy)
    with pytest.raises(torchtally.TraceError, match="same reduction dim"):
        torchtally.analyze(nn.Linear(10, 4), torch.randn(1, 12))
    assert modes == ["fake"]


# --- 3. messages in the command line's words ----------------------------------------------------


def test_cli_words() -> None:
    assert cli_words("(register a handler, or pass elementwise=True for element-wise ops)") == (
        "(register a handler, or use --elementwise for element-wise ops)"
    )
    assert cli_words("running it for real instead (pass mode='real' to skip the attempt)") == (
        "running it for real instead (use --mode real to skip the attempt)"
    )
    assert cli_words("use mode='meta' (or 'auto'), which counts") == (
        "use --mode meta (or --mode auto), which counts"
    )
    assert cli_words("analyse with backward=True") == "analyse with --backward"
    assert cli_words("needs an analysis with a backward pass (analyze(..., backward=True))") == (
        "needs an analysis with a backward pass (--backward)"
    )


@pytest.mark.slow
def test_warnings_use_the_command_line_words(models: str) -> None:
    done = command(f"{models}:relu_linear", "--shape", "10,")
    assert done.returncode == 0
    assert "use --elementwise for element-wise ops" in done.stderr
    assert "elementwise=True" not in done.stderr


# --- 4-7. checked before anything is built, with suggestions ------------------------------------


def test_unknown_transformers_setting(run: Run) -> None:
    code, out, err = run(*LLAMA, "num_hidden_layerz=2", "--mode", "meta", "-q")
    assert (code, out) == (EXIT_USAGE, "")
    assert "--set num_hidden_layerz: LlamaConfig has no setting 'num_hidden_layerz'" in err
    assert "did you mean num_hidden_layers?" in err and "--set-unknown" in err
    code, out, _ = run(*LLAMA, "num_hidden_layerz=2", "--set-unknown", "--mode", "meta", "-q")
    assert code == 0 and "Params:" in out
    # names the configuration maps to its own (GPT-2's n_layer) are known
    code, _, err = run(
        "transformers:GPT2Model",
        "--set",
        "n_layer=1",
        "n_embd=32",
        "n_head=2",
        "vocab_size=50",
        "--seq-len",
        "4",
        "-q",
        "--mode",
        "meta",
    )
    assert code == 0, err


def test_metrics_are_checked_before_the_model_is_built(run: Run, models: str) -> None:
    code, _, err = run(f"{models}:raises", "--metrics", "latency")  # the factory would raise
    assert code == EXIT_USAGE
    assert (
        "--metrics latency: no such metric; this command counts params, flops, activations" in err
    )
    code, _, err = run(f"{models}:raises", "--metrics", "params", "flop")
    assert code == EXIT_USAGE and "did you mean flops?" in err


def test_a_misspelt_source_gets_a_suggestion(run: Run) -> None:
    code, _, err = run("torchvison:resnet18")
    assert code == EXIT_USAGE
    assert "did you mean torchvision:resnet18?" in err


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("report.JSON", lambda text: json.loads(text)["metrics"]["flops"]["total"] == 40),
        ("report.Md", lambda text: text.startswith("**Totals:**")),
        ("report.CSV", lambda text: text.startswith("module,type,called,params,flops")),
        ("report.HTML", lambda text: text.startswith("<!doctype html>")),
    ],
)
def test_output_suffixes_ignore_case(
    run: Run, models: str, tmp_path: Path, name: str, check: Callable[[str], bool]
) -> None:
    target = tmp_path / name
    code, _, err = run(f"{models}:linear", "--shape", "10,", "-q", "-o", str(target))
    assert code == 0, err
    assert check(target.read_text())


def test_operators_format(run: Run, models: str) -> None:
    code, out, _ = run(
        f"{models}:wide", "--shape", "10,", "-q", "--format", "operators", "--units", "raw"
    )
    assert code == 0
    assert "| linear   |    112 | 100.0 |           12 | 100.0 |" in out  # 10*8 + 8*4


# --- diff and sweeps --------------------------------------------------------------------------


def test_diff_of_two_models_and_a_report(run: Run, models: str, tmp_path: Path) -> None:
    report = tmp_path / "linear.json"
    assert run(f"{models}:linear", "--shape", "10,", "-q", "-o", str(report))[0] == 0
    code, out, err = run(
        "diff", str(report), f"{models}:wide", "--shape", "10,", "-q", "--format", "csv"
    )
    assert code == 0, err
    rows = {row["module"]: row for row in csv.DictReader(io.StringIO(out))}
    assert rows[""]["flops_a"] == "40" and rows[""]["flops_b"] == "112"
    assert rows["0"]["type_a"] == "" and rows["0"]["type_b"] == "Linear"  # only in B
    code, out, _ = run("diff", f"{models}:linear", f"{models}:wide", "--shape", "10,", "-q")
    assert code == 0
    assert out.splitlines()[:2] == [f"A: {models}:linear", f"B: {models}:wide"]
    assert "only in B" in out
    code, _, err = run("diff", str(report), str(report), "--format", "arch")
    assert code == EXIT_USAGE and "--format arch cannot show a comparison" in err
    code, _, err = run("diff", str(tmp_path / "missing.json"), str(report))
    assert code == EXIT_USAGE and "no such report file" in err


def test_sweeps(run: Run, models: str) -> None:
    code, out, err = run(
        f"{models}:linear", "--shape", "10,", "--batch", "1", "2", "8", "-q", "--format", "csv"
    )
    assert code == 0, err
    assert out.splitlines() == [
        "batch,params,flops,activations",
        "1,44,40,4",
        "2,44,80,8",
        "8,44,320,32",
    ]
    code, out, err = run(*LLAMA, "--seq-len", "8", "16", "-q", "--mode", "meta", "--units", "raw")
    assert code == 0, err
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")]
    assert [cell.strip() for cell in rows[0]][:4] == ["seq_len", "#params", "x first", "#flops"]
    assert rows[1][0].strip() == "8"
    code, out, _ = run(f"{models}:linear", "--shape", "10,", "--shape", "10,", "-q")
    assert code == 0 and "varying shape" in out
    code, _, err = run(
        f"{models}:linear", "--shape", "10,", "--batch", "1", "2", "--format", "arch"
    )
    assert code == EXIT_USAGE and "--format arch cannot show a sweep" in err
