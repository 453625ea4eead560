"""The cost benchmark scripts run (no timing is checked): roofline against measured time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_roofline_against_measured_runs(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torchvision")
    pytest.importorskip("transformers")
    script = load("roofline_vs_measured")
    assert script.main(["--small", "--batches", "1", "--top", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| case | device | estimated | measured (ops)")
    assert sum(line.startswith("| resnet50 batch 1 | cpu |") for line in rows) == 1
    assert any(line.startswith("| llama layer batch 1 x 64 | `layers` |") for line in rows)
