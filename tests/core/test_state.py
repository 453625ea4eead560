"""Analysing a model leaves it, and torch's global state, exactly as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

import torchtally


class Mutating(nn.Module):
    """Batch norm and dropout in training mode, plus a forward that misbehaves on purpose."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 2)
        self.register_buffer("steps", torch.zeros(()))
        self.fail = fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1  # an in-place write to a buffer
        with torch.no_grad():
            self.head.bias.add_(1.0)  # an in-place write to a parameter
        self.cache = nn.Parameter(torch.ones(1))  # registers a new parameter
        self.head.register_forward_hook(lambda *args: None)  # leaves a hook behind
        x = self.drop(self.bn(self.conv(x)))
        if self.fail:
            x = x.view(5, -1, 7)  # raises: wrong shape
        return self.head(x.mean((2, 3)))


def snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "keys": list(model.state_dict()),
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()],
        "global_hooks": (
            len(nn.modules.module._global_forward_hooks),
            len(nn.modules.module._global_forward_pre_hooks),
        ),
        "grad": torch.is_grad_enabled(),
        "dtype": torch.get_default_dtype(),
        "rng": torch.get_rng_state(),
    }


def assert_unchanged(before: dict[str, object], model: nn.Module) -> None:
    after = snapshot(model)
    assert after["keys"] == before["keys"]
    state_before = before["state"]
    assert isinstance(state_before, dict)
    for name, value in model.state_dict().items():
        assert value.dtype == state_before[name].dtype
        assert torch.equal(value, state_before[name]), name
    for key in ("training", "requires_grad", "hooks", "global_hooks", "grad", "dtype"):
        assert after[key] == before[key], key
    assert torch.equal(after["rng"], before["rng"])  # type: ignore[arg-type]
    assert _get_current_dispatch_mode() is None


@pytest.mark.parametrize("grad", [True, False])
def test_training_model_is_left_bitwise_identical(grad: bool) -> None:
    model = Mutating().train()
    model.head.eval()  # a mix of flags
    model.conv.weight.requires_grad_(False)
    x = torch.randn(2, 3, 8, 8)
    with torch.set_grad_enabled(grad):
        before = snapshot(model)
        analysis = torchtally.analyze(model, x, warn_unsupported=False)
        assert_unchanged(before, model)
    assert analysis.total("flops", "conv") == 2 * (4 * 3 * 3 * 3) * (6 * 6)
    # the parameter the forward registered (and the guard removed) is not counted
    assert analysis.params == torchtally.parameter_count(model)
    assert "cache" not in analysis.param_shapes


class OutWriter(nn.Module):
    """Writes a buffer and a parameter through out= (a keyword-only argument in the schema)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3))
        self.register_buffer("total", torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            torch.sum(x, dim=0, out=self.total)
            torch.mul(self.weight, 2.0, out=self.weight)
        return x * self.total * self.weight


@pytest.mark.parametrize("mode", ["real", "fake", "auto"])
def test_writes_through_out_are_undone(mode: str) -> None:
    model, x = OutWriter(), torch.randn(2, 3)
    before = snapshot(model)
    torchtally.analyze(model, x, mode=mode, warn_unsupported=False)
    assert_unchanged(before, model)


def test_failed_analysis_restores_everything_and_names_the_place() -> None:
    model = Mutating(fail=True).train()
    x = torch.randn(2, 3, 8, 8)
    before = snapshot(model)
    with pytest.raises(torchtally.TraceError) as raised:
        torchtally.analyze(model, x)
    message = str(raised.value)
    assert "module '<root>' (Mutating)" in message
    assert "aten::view" in message
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert_unchanged(before, model)


def test_failure_inside_a_submodule_names_it() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Linear(5, 2)))
    with pytest.raises(torchtally.TraceError, match=r"module '1\.1' \(Linear\) at op aten::"):
        torchtally.analyze(model, torch.randn(1, 4))


def test_keyboard_interrupt_exits_modes_and_hooks() -> None:
    class Interrupted(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise KeyboardInterrupt

    model = Interrupted()
    x = torch.randn(1)
    before = snapshot(model)
    with pytest.raises(KeyboardInterrupt):
        torchtally.analyze(model, x)
    assert_unchanged(before, model)


def test_rejects_what_is_not_a_module() -> None:
    with pytest.raises(TypeError, match=r"expected a torch\.nn\.Module"):
        torchtally.analyze(lambda x: x, torch.randn(1))  # type: ignore[arg-type]
