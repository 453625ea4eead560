"""Modes (real, fake, meta, auto) give the same counts; backward=True counts the backward pass."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision
from torch import nn
from torchtally_testing import TINY_LLAMA

import torchtally

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
_transformers = pytest.importorskip("transformers")
LlamaConfig = _transformers.LlamaConfig
LlamaForCausalLM = _transformers.LlamaForCausalLM

MODES = ("real", "fake", "auto")


def counts(analysis: torchtally.Analysis) -> tuple[object, ...]:
    return tuple(
        (analysis.by_module_and_operator(m), analysis.unsupported_ops(m)) for m in analysis.metrics
    )


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("train", [False, True])
def test_every_mode_counts_the_same(train: bool) -> None:
    model = torchvision.models.resnet18().train(train)
    x = torch.randn(2, 3, 64, 64)
    results = {mode: torchtally.analyze(model, x, mode=mode, elementwise=True) for mode in MODES}
    assert results["fake"].mode == results["auto"].mode == "fake"
    assert results["real"].mode == "real"
    assert counts(results["real"]) == counts(results["fake"]) == counts(results["auto"])
    with torch.device("meta"):
        meta_model = torchvision.models.resnet18().train(train)
    meta = torchtally.analyze(meta_model, x, elementwise=True)
    assert meta.mode == "meta"
    assert counts(meta) == counts(results["real"])
    assert meta.params == results["real"].params


def tiny_llama() -> LlamaConfig:
    return LlamaConfig(**{k: v for k, v in TINY_LLAMA.items() if k != "model_type"})


def test_a_transformer_built_on_meta_counts_like_the_real_one() -> None:
    torch.manual_seed(0)
    real_model = LlamaForCausalLM(tiny_llama()).eval()
    with torch.device("meta"):
        meta_model = LlamaForCausalLM(tiny_llama()).eval()
    ids = {"input_ids": torch.randint(0, 100, (1, 16))}
    real = torchtally.analyze(real_model, ids, mode="real", warn_unsupported=False)
    meta = torchtally.analyze(meta_model, ids, warn_unsupported=False)
    assert meta.mode == "meta"
    assert real.total() > 0
    assert counts(meta) == counts(real)
    with pytest.raises(ValueError, match="mode='real' cannot run a model whose weights are on"):
        torchtally.analyze(meta_model, ids, mode="real")


class Nonzero(nn.Module):
    """Needs real data: the number of nonzero elements decides the next shape."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        picked = self.fc(x)[x[:, 0] > 0]
        return self.fc(picked)


def test_auto_falls_back_to_real_when_an_op_needs_data(caplog: pytest.LogCaptureFixture) -> None:
    x = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [2.0, 0, 0, 0]])  # 2 rows picked
    with caplog.at_level(logging.WARNING, logger="torchtally"):
        analysis = torchtally.analyze(Nonzero(), x, warn_unsupported=False)
    assert analysis.mode == "real"
    assert analysis.total() == 3 * 4 * 4 + 2 * 4 * 4
    assert "running it for real instead" in caplog.text
    assert "aten::nonzero" in caplog.text or "aten::index" in caplog.text
    with pytest.raises(torchtally.TraceError) as raised:
        torchtally.analyze(Nonzero(), x, mode="fake")
    assert raised.value.failed_op is not None


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of 'auto', 'real', 'fake', 'meta'"):
        torchtally.analyze(MLP(), torch.randn(2, 4), mode="fast")


@pytest.mark.parametrize("mode", MODES)
def test_backward_counts_each_gradient_matmul(mode: str) -> None:
    analysis = torchtally.analyze(MLP(), torch.randn(2, 4), mode=mode, backward=True)
    assert analysis.phases == ("forward", "backward")
    # forward: fc1 2*4*8 = 64, fc2 2*8*3 = 48
    assert analysis.total(phase="forward") == 64 + 48
    # backward: fc2 grad_weight 3*2*8 = 48 and grad_input 2*3*8 = 48; fc1 grad_weight 8*2*4 = 64
    # (the input does not require grad, so fc1 computes no grad_input)
    assert analysis.total(phase="backward") == 48 + 48 + 64
    assert analysis.by_module(phase="backward") == {"": 160, "fc1": 64, "act": 0, "fc2": 96}
    # a backward op is named after the forward function that made its autograd node
    assert analysis.by_operator(phase="backward") == {"linear": 160}
    assert analysis.total() == 112 + 160
    assert analysis.to_dict()["phases"]["backward"]["flops"]["total"] == 160


def test_backward_reaches_inputs_that_require_grad_and_uses_loss_fn() -> None:
    x = torch.randn(2, 4, requires_grad=True)
    analysis = torchtally.analyze(MLP(), x, backward=True, loss_fn=lambda out: out[:, 0].sum())
    # fc1 now also computes grad_input: 2*8*4 = 64
    assert analysis.total(phase="backward") == 48 + 48 + 64 + 64
    assert x.grad is None


def test_forward_only_has_one_phase_and_refuses_backward_queries() -> None:
    analysis = torchtally.analyze(MLP(), torch.randn(2, 4))
    assert analysis.phases == ("forward",)
    assert "phases" not in analysis.to_dict()
    with pytest.raises(KeyError, match="analyse with backward=True"):
        analysis.total(phase="backward")


def test_backward_of_a_frozen_model_says_what_to_do() -> None:
    model = MLP().requires_grad_(False)
    with pytest.raises(ValueError, match="found nothing to differentiate"):
        torchtally.analyze(model, torch.randn(2, 4), backward=True, mode="real")
    assert not any(p.requires_grad for p in model.parameters())


def test_backward_counts_the_same_in_every_mode() -> None:
    model = torchvision.models.resnet18()
    x = torch.randn(2, 3, 64, 64)
    results = [
        counts(torchtally.analyze(model, x, mode=mode, backward=True, warn_unsupported=False))
        for mode in ("real", "fake")
    ]
    assert results[0] == results[1]


def test_flex_attention_is_recorded_as_one_higher_order_op() -> None:
    from torch.nn.attention import flex_attention as flex

    class Flex(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return flex.flex_attention(q, q, q)

    q = torch.randn(1, 2, 16, 8)
    for mode in ("real", "fake"):
        ops = [op for op in torchtally.trace(Flex(), q, mode=mode).ops]
        assert ops[-1].op == "higher_order::flex_attention"
        assert ops[-1].arg("query").shape == (1, 2, 16, 8)
    assert flex._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG is False
