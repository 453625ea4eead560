"""Nothing changes: in every mode, train or eval, forward or forward + backward, whether the
analysis succeeds, raises or is interrupted, the model and torch's global state are left exactly
as they were (tests/core/test_state.py covers the real-mode forward basics)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from reliability.helpers import MODES, Snapshot
from torch import nn

import torchtally


class Explode(torch.autograd.Function):
    """Identity forward; its backward raises `error` (to fail or interrupt the backward pass)."""

    error: BaseException = RuntimeError("backward exploded")

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        raise Explode.error


class Hostile(nn.Module):
    """A model whose forward changes everything it can: buffers, a parameter, attributes,
    submodules, hooks, the default dtype and the RNG; and fails where it is told to."""

    def __init__(self, fail: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 2)
        self.register_buffer("steps", torch.zeros(()))
        self.fail = fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps += 1  # in-place write to a buffer
        with torch.no_grad():
            self.head.bias.add_(1.0)  # in-place write to a parameter
        self.cache = x.detach()  # a plain attribute (a cache), holding a fake in fake modes
        self.extra = nn.Linear(1, 1)  # a submodule registered during forward
        self.head.register_forward_hook(lambda *args: None)  # a hook left behind
        self.conv.weight.requires_grad_(True)  # flips a frozen parameter
        torch.set_default_dtype(torch.float64)
        try:
            torch.rand(3)  # draws from the global RNG
        finally:
            torch.set_default_dtype(torch.float32)
        if self.fail == "interrupt":
            raise KeyboardInterrupt
        x = self.drop(self.bn(self.conv(x)))
        if self.fail == "forward":
            x = x.view(5, -1, 7)  # RuntimeError: wrong shape
        if self.fail in ("backward", "backward-interrupt"):
            x = Explode.apply(x)
        out = self.head(x.mean((2, 3)))
        torch.use_deterministic_algorithms(True, warn_only=True)  # global switches left flipped
        torch.set_default_dtype(torch.float64)
        return out


def make(fail: str | None, training: bool) -> tuple[Hostile, Snapshot]:
    torch.manual_seed(0)
    model = Hostile(fail).train(training)
    model.head.train(not training)  # a mix of flags
    model.conv.weight.requires_grad_(False)  # a frozen parameter
    model.head.weight.grad = torch.full_like(model.head.weight, 0.5)  # a gradient from before
    model.bn.running_mean.add_(0.25)
    return model, Snapshot.take(model, X)  # X: what every test analyses it on


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
CONV_FLOPS = 2 * (4 * 3 * 3 * 3) * (6 * 6)  # batch x weight elements x output pixels
HEAD_FLOPS = 2 * 4 * 2
BN_ELEMENTS = 2 * 4 * 6 * 6  # affine batch norm: 5 flops per element in training, 2 in eval


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("mode", MODES)
def test_successful_analysis_changes_nothing(mode: str, training: bool, backward: bool) -> None:
    model, before = make(None, training)
    analysis = torchtally.analyze(model, X, mode=mode, backward=backward, warn_unsupported=False)
    before.assert_unchanged()
    bn_flops = (5 if training else 2) * BN_ELEMENTS
    assert analysis.total("flops", phase="forward") == CONV_FLOPS + bn_flops + HEAD_FLOPS
    assert analysis.phases == (("forward", "backward") if backward else ("forward",))
    assert torch._C._len_torch_dispatch_stack() == 0
    assert torch._C._len_torch_function_stack() == 0


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("mode", MODES)
def test_failed_forward_changes_nothing(mode: str, training: bool, backward: bool) -> None:
    model, before = make("forward", training)
    with pytest.raises(torchtally.TraceError) as raised:
        torchtally.analyze(model, X, mode=mode, backward=backward)
    assert "aten::view" in str(raised.value)
    assert isinstance(raised.value.__cause__, RuntimeError)
    before.assert_unchanged()


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("mode", MODES)
def test_failed_backward_changes_nothing(mode: str, training: bool) -> None:
    model, before = make("backward", training)
    Explode.error = RuntimeError("backward exploded")
    with pytest.raises(torchtally.TraceError, match="backward exploded") as raised:
        torchtally.analyze(model, X, mode=mode, backward=True)
    assert isinstance(raised.value.__cause__, RuntimeError)
    before.assert_unchanged()


@pytest.mark.parametrize("where", ["interrupt", "backward-interrupt"])
@pytest.mark.parametrize("mode", MODES)
def test_keyboard_interrupt_changes_nothing(mode: str, where: str) -> None:
    model, before = make(where, training=True)
    Explode.error = KeyboardInterrupt()
    try:
        with pytest.raises(KeyboardInterrupt):
            torchtally.analyze(model, X, mode=mode, backward=True)
    finally:
        Explode.error = RuntimeError("backward exploded")
    before.assert_unchanged()
    assert torch._C._len_torch_dispatch_stack() == 0
    assert torch._C._len_torch_function_stack() == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_loss_fn_changes_nothing(mode: str) -> None:
    model, before = make(None, training=True)

    def loss_fn(outputs: torch.Tensor) -> torch.Tensor:
        raise ValueError("loss exploded")

    with pytest.raises(Exception, match="loss exploded"):
        torchtally.analyze(model, X, mode=mode, backward=True, loss_fn=loss_fn)
    before.assert_unchanged()


@pytest.mark.parametrize("mode", MODES)
def test_inputs_are_left_as_they_were(mode: str) -> None:
    """Gradients are computed with torch.autograd.grad: no .grad appears on inputs either."""
    model, _ = make(None, training=False)
    x = X.clone().requires_grad_(True)
    x_bits = x.detach().clone()
    torchtally.analyze(model, x, mode=mode, backward=True, warn_unsupported=False)
    assert x.grad is None and x.requires_grad
    assert torch.equal(x.detach(), x_bits)


def test_the_model_still_trains_normally_afterwards() -> None:
    """After a fake and a backward analysis the real forward and backward give the same
    gradients as on an untouched copy."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 2))
    twin = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 2))
    twin.load_state_dict(model.state_dict())
    for mode in MODES:
        torchtally.analyze(model, X, mode=mode, backward=True, warn_unsupported=False)
    for m in (model, twin):
        m(X).sum().backward()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        assert torch.equal(p.grad, q.grad)
