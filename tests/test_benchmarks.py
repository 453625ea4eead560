"""The benchmark scripts run and every tool counts what it should (no timing is checked)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow  # runs the benchmark scripts

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RESNET50_MACS = 4_111_512_576  # torchtally, fvcore and mmengine agree
FLOPCOUNTER_RESNET50_MACS = 4_089_184_256  # FlopCounterMode counts no batch norm


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def benchmark() -> ModuleType:
    return load("benchmark")


@pytest.mark.parametrize(
    ("tool", "macs"),
    [
        ("plain", None),
        ("torchtally-real", RESNET50_MACS),
        ("torchtally-fake", RESNET50_MACS),
        ("fvcore", RESNET50_MACS),
        ("mmengine", RESNET50_MACS),
        ("flopcounter-real", FLOPCOUNTER_RESNET50_MACS),
        ("flopcounter-fake", FLOPCOUNTER_RESNET50_MACS),
    ],
)
def test_every_tool_counts_resnet50(
    benchmark: ModuleType, tmp_path: Path, tool: str, macs: int | None
) -> None:
    out = tmp_path / "result.json"
    benchmark.worker("resnet50", tool, 1, "median", out)
    result = json.loads(out.read_text())
    assert result["error"] is None
    if macs is not None:
        assert result["macs"] == macs
        assert result["attention_macs"] == 0
    assert result["ratio"] > 0 and result["peak_rss_mb"] > 0


def test_tables(benchmark: ModuleType) -> None:
    result = benchmark.Result
    rows = [
        result("resnet50", "plain", seconds=0.05, first_seconds=0.08, forward_seconds=0.05),
        result("resnet50", "fvcore", error="RuntimeError: no"),
    ]
    rows[0].ratio = 1.0
    table = benchmark.comparison_table(rows).splitlines()
    header = [cell.strip() for cell in table[0].split("|")[1:-1]]
    assert header[4:8] == ["first s", "time s", "fwd s", "x fwd"]
    times = [cell.strip() for cell in table[2].split("|")[5:9]]
    assert times == ["0.080", "0.050", "0.050", "1.00"]  # first, warm, forward, ratio
    assert "RuntimeError: no" in table[3]
    big = [
        result("llama70b-80", "torchtally-meta", macs=2 * 10**12, attention_macs=0, seconds=1.0),
        result("llama70b-40", "torchtally-meta", macs=10**12, attention_macs=0, seconds=0.5),
    ]
    assert benchmark.llama70b_table(big).endswith("80 layers over 40 layers: 2.00x the time")


def test_floor_prints_every_case(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    floor = load("floor")
    monkeypatch.setattr(sys, "argv", ["floor.py", "--repeats", "1"])
    floor.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ResNet-50, 1x3x224x224")
    assert [line.split("  ")[0] for line in lines[1:]] == [
        "plain forward",
        "+ do-nothing dispatch mode",
        "+ function mode and module hooks",
        "torchtally mode='real'",
        "torchtally mode='fake'",
    ]


def test_generation_benchmark_counts_and_tabulates(tmp_path: Path) -> None:
    generation = load("generation")
    generation.CASES["tiny"] = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 100,
    }
    out = tmp_path / "figures.json"
    generation.worker("tiny", 1, False, out)
    figures = json.loads(out.read_text())
    # per token: 2 layers x (q, o 64*64; k, v 64*32; MLP 3*64*128); the head on one position
    per_token = 2 * 36_864
    assert figures["prefill"] == 2048 * per_token + 2 * 2 * 4 * 16 * 2048**2 + 64 * 100
    assert figures["traced_steps"] == [1, 64, 127]
    figures["whole_s"] = 1.0
    text = generation.table([figures])
    assert "| tiny " in text and "3 of 127" in text
