"""torchtally-core on its own, and with one op package: what works, and what says what to install.

These tests run in every environment. ``scripts/test.sh`` also runs them in an environment with
torchtally-core alone (then with torchtally-transformer added), where the branches for missing
packages are the ones taken; they use no torchvision, transformers or peer library.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import torchtally


def installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


REPORTERS = installed("torchtally-reporters")
TRANSFORMER = installed("torchtally-transformer")
CLI = installed("torchtally-cli")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


# conv: 4 * 3*3*3 * 8*8 = 6912 multiply-adds; fc: 256 * 10 = 2560.
FLOPS = 4 * 27 * 64 + 256 * 10
PARAMS = 4 * 27 + 256 * 10 + 10


@pytest.mark.parametrize("mode", ["real", "fake", "auto"])
def test_core_counts_and_answers_every_query(mode: str) -> None:
    analysis = torchtally.analyze(Net(), torch.ones(1, 3, 8, 8), mode=mode)
    assert analysis.total() == FLOPS
    assert analysis.by_module() == {"": FLOPS, "conv": 4 * 27 * 64, "fc": 2560}
    assert analysis.by_operator() == {"conv": 4 * 27 * 64, "linear": 2560}
    assert analysis.params[""] == PARAMS
    assert analysis.to_dict()["metrics"]["flops"]["total"] == FLOPS


def test_the_fvcore_api_counts_in_core() -> None:
    flops = torchtally.FlopCountAnalysis(Net(), torch.ones(1, 3, 8, 8))
    assert flops.total() == FLOPS
    info = torchtally.get_model_complexity_info(Net(), (3, 8, 8), show_table=False, show_arch=False)
    assert info["flops"] == FLOPS and info["params"] == PARAMS


def test_rendering_needs_the_reporters_and_says_so() -> None:
    analysis = torchtally.analyze(Net(), torch.ones(1, 3, 8, 8))
    if REPORTERS:
        assert "| model" in analysis.render("table")
        return
    for render in (
        lambda: analysis.render("table"),
        lambda: torchtally.render(analysis, "json"),
        lambda: torchtally.parameter_count_table(Net()),
        lambda: torchtally.get_model_complexity_info(Net(), (3, 8, 8)),
    ):
        with pytest.raises(torchtally.UnknownFormatError, match="pip install torchtally-reporters"):
            render()


def test_python_m_torchtally_names_the_command_line_package() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "torchtally", "--version"], capture_output=True, text=True
    )
    if CLI:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 5
    assert "pip install torchtally-cli" in result.stderr


def test_attention_needs_the_transformer_package() -> None:
    """Core lists SDPA's CPU kernel as unsupported; torchtally-transformer counts it."""

    class Attention(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q, q, q)

    analysis = torchtally.analyze(Attention(), torch.ones(1, 2, 16, 8), warn_unsupported=False)
    plugins = {info.name for info in torchtally.list_plugins()}
    if TRANSFORMER:
        assert "transformer" in plugins
        # QK^T and AV: 2 * 2 heads * 16 * 16 * 8 multiply-adds
        assert analysis.total() == 2 * 2 * 16 * 16 * 8
        assert not analysis.unsupported_ops()
    else:
        assert "transformer" not in plugins
        assert analysis.total() == 0
        assert analysis.unsupported_ops()  # listed, never silently zero
