"""The roofline (`Analysis.roofline`): seconds per op and per module on a device, hand-computed."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch import nn
from torchtally_testing import Fn

import torchtally
from torchtally import Hardware

H100 = torchtally.hardware("h100-sxm")
PEAK_BF16 = H100.peak_flops["bfloat16"]
PEAK_TF32 = H100.peak_flops["tf32"]
PEAK_FP32 = H100.vector_flops["float32"]


class MatMul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


# --- the roofline ------------------------------------------------------------------------------


def test_bias_free_linear_in_bfloat16_is_memory_bound_at_ten_microseconds() -> None:
    model = nn.Linear(4096, 4096, bias=False).to(torch.bfloat16)
    analysis = torchtally.analyze(model, torch.randn(8, 4096, dtype=torch.bfloat16))
    estimate = analysis.roofline("h100-sxm")
    moved = (4096 * 4096 + 2 * 8 * 4096) * 2
    assert estimate.total() == pytest.approx(moved / H100.memory_bandwidth)  # 10.06 us
    assert 9.5e-6 < estimate.total() < 10.5e-6
    (mm,) = [t for t in estimate.ops if t.seconds]
    assert mm.bound == "memory" and mm.dtype == "bfloat16" and mm.matrix
    assert mm.compute_seconds == pytest.approx(2 * 8 * 4096 * 4096 / PEAK_BF16)
    assert estimate.bound_share() == {"compute": 0.0, "memory": 1.0}


def test_large_bfloat16_matmul_is_compute_bound_at_about_a_millisecond() -> None:
    with torch.device("meta"):
        a = torch.randn(8192, 8192, dtype=torch.bfloat16)
    estimate = torchtally.analyze(MatMul(), (a, a)).roofline(H100)
    assert estimate.total() == pytest.approx(2 * 8192**3 / PEAK_BF16)  # 1.11 ms
    assert 1.05e-3 < estimate.total() < 1.15e-3
    assert [t.bound for t in estimate.ops if t.seconds] == ["compute"]


def test_float32_matmuls_use_the_fp32_rate_unless_tf32() -> None:
    with torch.device("meta"):
        a = torch.randn(4096, 4096)
    analysis = torchtally.analyze(MatMul(), (a, a))
    assert analysis.roofline(H100).total() == pytest.approx(2 * 4096**3 / PEAK_FP32)
    assert analysis.roofline(H100, tf32=True).total() == pytest.approx(2 * 4096**3 / PEAK_TF32)


def test_ops_without_a_flop_handler_are_timed_by_their_bytes() -> None:
    analysis = torchtally.analyze(Fn(torch.relu), torch.randn(1000, 1000), warn_unsupported=False)
    estimate = analysis.roofline(H100)
    (relu,) = estimate.ops
    assert relu.macs == 0 and relu.bound == "memory"
    assert relu.seconds == pytest.approx(2 * 4e6 / H100.memory_bandwidth)
    # counted as element-wise flops, they run on the vector units: still memory-bound here
    counted = analysis.recount(elementwise=True).roofline(H100).ops[0]
    assert (
        counted.compute_seconds == pytest.approx(2 * 1e6 / PEAK_FP32) and counted.bound == "memory"
    )


def test_per_module_operator_and_phase() -> None:
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 256))
    analysis = torchtally.analyze(
        model, torch.randn(64, 256), backward=True, warn_unsupported=False
    )
    estimate = analysis.roofline("a100-80gb")
    by_module = estimate.by_module()
    assert by_module[""] == pytest.approx(by_module["0"] + by_module["1"] + by_module["2"])
    assert estimate.total() == pytest.approx(by_module[""])
    assert estimate.total() == pytest.approx(
        estimate.total(phase="forward") + estimate.total(phase="backward")
    )
    # the bias gradient's sum belongs to linear; ReLU's gradient keeps its own name
    assert list(estimate.by_operator()) == ["linear", "threshold_backward", "relu"]
    assert estimate.bound_by_module() == {
        "": "compute",
        "0": "compute",
        "1": "memory",
        "2": "compute",
    }
    share = estimate.bound_share()
    assert math.isclose(share["compute"] + share["memory"], 1.0)
    assert estimate.top_ops(1)[0].seconds == max(t.seconds for t in estimate.ops)


def test_missing_dtype_is_noted() -> None:
    analysis = torchtally.analyze(nn.Linear(64, 64).double(), torch.randn(8, 64).double())
    mine = Hardware("no-fp64", peak_flops={"float32": 1e12}, memory_bandwidth=1e11)
    estimate = analysis.roofline(mine)
    assert estimate.notes == ("no-fp64 has no float64 figure: peak_flops[float32] used",)


def test_to_dict_is_json() -> None:
    analysis = torchtally.analyze(nn.Linear(64, 64), torch.randn(8, 64))
    document = json.loads(json.dumps(analysis.roofline("cpu").to_dict()))
    assert document["hardware"]["name"] == "cpu"
    assert document["by_module"][""]["bound"] == "memory"
    assert document["total_seconds"] == pytest.approx(analysis.roofline("cpu").total())


def test_calibrated_from_a_measured_run() -> None:
    model = nn.Linear(4096, 4096, bias=False).to(torch.bfloat16)
    analysis = torchtally.analyze(model, torch.randn(8, 4096, dtype=torch.bfloat16))
    estimate = analysis.roofline(H100)
    # a run that took twice the estimate of every op: half the bandwidth explains it
    measured = torchtally.Times(
        [replace(t, seconds=2 * t.seconds) for t in estimate.ops], analysis.modules, "owner"
    )
    calibrated = estimate.calibrate(measured)
    assert calibrated.memory_efficiency == pytest.approx(0.5)
    assert calibrated.compute_efficiency == 1.0  # no compute-bound op to fit it to
    assert analysis.roofline(calibrated).total() == pytest.approx(measured.total())
    with pytest.raises(ValueError, match="different number of forward ops"):
        estimate.calibrate(torchtally.Times([], analysis.modules, "owner"))
