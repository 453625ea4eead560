"""The plugin: found through its entry point, light to import, usable without torchvision."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import importlib_metadata
import pytest

import torchtally
import torchtally_vision
from torchtally.handlers import _is_composite


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_entry_point_names_the_module() -> None:
    entry_points = importlib_metadata.entry_points(group="torchtally", name="vision")
    if not entry_points:
        pytest.skip("torchtally-vision is not installed (pip install -e packages/ops-vision)")
    (entry_point,) = entry_points
    assert entry_point.value == "torchtally_vision"
    assert entry_point.load() is torchtally_vision


def test_list_plugins_shows_what_it_registers() -> None:
    (info,) = [p for p in torchtally.list_plugins() if p.name == "vision"]
    flops = info.registers["flops handlers"]
    assert {"torchvision::roi_align", "torchvision::nms", "aten::grid_sampler_2d"} <= set(flops)
    assert set(flops) == set(info.registers["activations handlers"])


def test_no_handler_is_for_a_composite_op() -> None:
    import torchvision  # noqa: F401  (loads the torchvision:: ops, so the check sees them)

    for ops in (
        torchtally_vision.handlers.op_handlers(m) for m in torchtally_vision.handlers.metrics()
    ):
        for op in ops:
            assert not _is_composite(op), op


@pytest.mark.slow
def test_the_plugin_imports_no_torchvision_and_works_without_it() -> None:
    # One interpreter for both checks: starting one costs seconds.
    out = run_python(
        """
        import sys
        import torch, torchtally, torchtally_vision
        torchtally.list_plugins()
        print(sorted(m for m in sys.modules if m.split(".")[0] == "torchvision"))
        sys.modules["torchvision"] = None  # from now on, import torchvision raises ImportError
        manager = torchtally.get_plugin_manager()
        if manager.get_plugin("vision") is None:
            manager.register(torchtally_vision, name="vision")
        assert not [f for f in torchtally.plugin_failures() if f.name == "vision"]
        up = torch.nn.Upsample(scale_factor=2, mode="bilinear")
        analysis = torchtally.analyze(up, torch.randn(1, 2, 4, 4))
        print(analysis.by_operator())
        """
    )
    assert out.splitlines() == ["[]", str({"upsample_bilinear2d": 4 * (1 * 2 * 8 * 8)})]
