"""Devices as data: the built-in table, `Hardware`, lookup by name, plugins' devices."""

from __future__ import annotations

import json
import warnings
from importlib import resources

import pytest
import torch
from torchtally_testing import FakeDist, FakeEntryPoint

import torchtally
from torchtally import Hardware, UnknownHardwareError, plugins
from torchtally.devices import DTYPES, dtype_key

REQUIRED = ("h100-sxm", "h100-pcie", "h200", "a100-80gb", "l4", "rtx-4090", "mi300x", "m2-ultra")


def test_the_table_has_the_devices_the_issue_names_each_figure_with_its_source() -> None:
    table = {device.name: device for device in torchtally.hardware_table()}
    assert set(REQUIRED) | {"cpu"} <= set(table)
    for device in table.values():
        assert device.title and device.memory_bandwidth > 0 and device.memory
        assert set(device.peak_flops) <= set(DTYPES)
        assert set(device.vector_flops) <= set(DTYPES)
        for figure in ("peak_flops", "memory_bandwidth", "memory"):
            assert device.sources.get(figure), (device.name, figure)
        if device.vector_flops:
            assert device.sources.get("vector_flops"), device.name
    # the estimates say so
    assert "ESTIMATE" in table["cpu"].sources["peak_flops"]
    assert "ESTIMATE" in table["m2-ultra"].sources["peak_flops"]


def test_vendor_figures_dense_two_flop_per_multiply_add() -> None:
    h100 = torchtally.hardware("h100-sxm")
    assert h100.peak_flops["bfloat16"] == 989.4e12  # 1,979 TFLOPS with sparsity, halved
    assert h100.peak_flops["float32"] == 66.9e12  # FP32, not TF32
    assert h100.vector_flops["bfloat16"] == 133.8e12
    assert h100.memory_bandwidth == 3.35e12 and h100.memory == 80e9
    assert torchtally.hardware("a100-80gb").memory_bandwidth == 2.039e12
    assert torchtally.hardware("mi300x").peak_flops["bfloat16"] == 1307.4e12
    assert torchtally.hardware("h200").memory_bandwidth == 4.8e12


def test_the_data_file_is_package_data() -> None:
    text = resources.files("torchtally").joinpath("data", "hardware.json").read_text("utf-8")
    assert len(json.loads(text)["devices"]) == len(torchtally.hardware_table())


def test_lookup_by_name_alias_and_spelling() -> None:
    h100 = torchtally.hardware("h100-sxm")
    assert torchtally.hardware("H100 SXM") is h100
    assert torchtally.hardware("h100_sxm5") is h100
    assert torchtally.hardware("h100") is h100
    assert torchtally.hardware(h100) is h100


def test_a_typo_names_the_close_matches() -> None:
    with pytest.raises(UnknownHardwareError, match=r"did you mean 'h100-sxm'.*known: a100-80gb"):
        torchtally.hardware("h100-sxn")
    with pytest.raises(TypeError, match="named by a string"):
        torchtally.hardware(3)  # type: ignore[arg-type]


def test_rates_per_dtype_matrix_and_vector_with_fallback_notes() -> None:
    h100 = torchtally.hardware("h100-sxm")
    assert h100.rate(torch.bfloat16).flops == 989.4e12
    assert h100.rate("bf16", matrix=False).flops == 133.8e12
    rate = h100.rate(torch.int64, matrix=False)
    assert (rate.flops, rate.dtype, rate.table) == (66.9e12, "float32", "vector_flops")
    assert "no int64 figure" in (rate.note or "")
    pcie = torchtally.hardware("h100-pcie").rate("float16", matrix=False)
    assert pcie.flops == 756e12 and "no vector float16 figure" in (pcie.note or "")
    a100 = torchtally.hardware("a100").rate(torch.float8_e4m3fn)
    assert a100.flops == 19.5e12 and "no float8 figure" in (a100.note or "")
    assert dtype_key(torch.float8_e5m2) == "float8" and dtype_key("torch.half") == "float16"


def test_users_pass_their_own_device_and_calibrate_it() -> None:
    mine = Hardware("my-gpu", peak_flops={torch.bfloat16: 400e12}, memory_bandwidth=1.5e12)
    assert mine.peak_flops == {"bfloat16": 400e12}
    assert mine.rate("float32").note == "my-gpu has no float32 figure: peak_flops[bfloat16] used"
    slower = mine.calibrated(compute=0.5, memory=0.8)
    assert slower.rate("bf16").flops == 200e12 and slower.bandwidth == 1.2e12
    assert slower.calibrated(compute=0.5).compute_efficiency == 0.25
    assert mine.bandwidth == 1.5e12  # unchanged
    assert "x0.5 compute" in repr(slower)
    assert Hardware.from_dict(slower.to_dict()) == slower
    with pytest.raises(ValueError, match="positive factor"):
        mine.calibrated(compute=0)
    with pytest.raises(ValueError, match="peak_flops\\['bf16'\\] must be positive"):
        Hardware("bad", peak_flops={"bf16": -1.0}, memory_bandwidth=1.0)
    with pytest.raises(TypeError, match="peak_flops maps dtypes"):
        Hardware("bad", peak_flops={}, memory_bandwidth=1.0)
    with pytest.raises(ValueError, match="unknown Hardware fields \\['bandwidth'\\]"):
        Hardware.from_dict({"name": "x", "peak_flops": {"float32": 1.0}, "bandwidth": 1.0})


def hardware_plugin(*devices: object) -> object:
    class Plugin:
        @torchtally.hookimpl
        def torchtally_hardware(self) -> list[object]:
            return list(devices)

    return Plugin()


def test_plugins_add_devices(entry_points: list[FakeEntryPoint]) -> None:
    tpu = Hardware("tpu-x", peak_flops={"bfloat16": 100e12}, memory_bandwidth=1e12)
    entry_points.append(FakeEntryPoint("tpus", hardware_plugin(tpu), FakeDist("tpus", "1.0")))
    assert torchtally.hardware("tpu-x") is tpu
    assert [d.name for d in torchtally.hardware_table()][-1] == "tpu-x"
    (info,) = [i for i in plugins.list_plugins() if i.name == "tpus"]
    assert info.registers["hardware"] == ["tpu-x"]


def test_a_plugin_device_of_a_taken_name_or_not_hardware_is_refused(
    entry_points: list[FakeEntryPoint],
) -> None:
    clash = Hardware("h100-sxm", peak_flops={"bfloat16": 1.0}, memory_bandwidth=1.0)
    plugin = hardware_plugin(clash, "not a device")
    entry_points.append(FakeEntryPoint("odd", plugin, FakeDist("odd", "1.0")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torchtally.hardware("h100-sxm").peak_flops["bfloat16"] == 989.4e12
    messages = [str(w.message) for w in caught]
    assert any("both provide the device 'h100-sxm'" in m for m in messages)
    assert any("torchtally_hardware() gave str" in m for m in messages)
