"""A fake (meta) kernel that rejects what the real kernel accepts is named as such: fake mode's
error says so, and auto mode asks the real kernel (on zeros of the same shapes) and runs the
model for real when it accepts; inputs the real kernel rejects too are raised at once."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import torchtally

_LIBRARY = torch.library.Library("tt_test_gap", "DEF")
_LIBRARY.define("double_it(Tensor x) -> Tensor")
_LIBRARY.impl("double_it", lambda x: x * 2, "CPU")


def _bfloat16_only(x: torch.Tensor) -> torch.Tensor:
    torch._check(x.dtype == torch.bfloat16, lambda: f"Expected BF16 inputs but got {x.dtype}")
    return torch.empty_like(x)


torch.library.register_fake("tt_test_gap::double_it", _bfloat16_only, lib=_LIBRARY)


class Doubling(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.tt_test_gap.double_it(self.linear(x))


def test_fake_mode_says_the_fake_kernel_may_be_the_one_refusing() -> None:
    with pytest.raises(torchtally.TraceError) as raised:
        torchtally.analyze(Doubling(), torch.randn(2, 4), mode="fake")
    message = str(raised.value)
    assert "Expected BF16 inputs" in message
    assert "the fake kernel of tt_test_gap::double_it.default rejects what its real kernel" in (
        message
    )


def test_auto_mode_runs_for_real_when_the_real_kernel_accepts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="torchtally"):
        analysis = torchtally.analyze(Doubling(), torch.randn(2, 4), warn_unsupported=False)
    assert analysis.mode == "real"
    assert analysis.total() == 2 * 4 * 4
    assert "the fake kernel of tt_test_gap::double_it.default rejects what its real kernel" in (
        caplog.text
    )
    assert "running it for real" in caplog.text


def test_auto_mode_raises_inputs_the_real_kernel_rejects_too() -> None:
    with pytest.raises(torchtally.TraceError) as raised:
        torchtally.analyze(Doubling(), torch.randn(2, 5))
    message = str(raised.value)
    assert "Its real kernel rejects these arguments too" in message
    assert "aten::addmm" in message


def test_a_meta_model_cannot_run_for_real_and_is_told_so() -> None:
    with torch.device("meta"):
        model = Doubling()
    with pytest.raises(torchtally.TraceError) as raised:
        torchtally.analyze(model, torch.randn(2, 4))
    assert "a model on the meta device cannot run for real" in str(raised.value)
