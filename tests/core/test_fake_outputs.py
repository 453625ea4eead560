"""fake.FakeOutputs: reused fake outputs must be exactly what FakeTensorMode would have made."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torchvision
import zoo
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torchtally_testing import TINY_LLAMA

import torchtally
import torchtally.tracer as tracer
from torchtally.fake import FakeOutputs, reusable_returns
from torchtally.records import Trace

# Test-only dependencies (requirements-dev.txt): the module is skipped without them.
transformers = pytest.importorskip("transformers")
_transformers = pytest.importorskip("transformers")
LlamaConfig = _transformers.LlamaConfig
LlamaForCausalLM = _transformers.LlamaForCausalLM


def traced_both_ways(
    monkeypatch: pytest.MonkeyPatch,
    model: nn.Module,
    *args: Any,
    backward: bool = False,
    kwargs: dict[str, Any] | None = None,
) -> tuple[Trace, Trace]:
    """The fake-mode trace with reused outputs, and without (every op through FakeTensorMode).

    The recipes are shared across runs: the second run reuses what the first one saw."""
    kwargs = kwargs or {}
    first = tracer.run_traced(model, args, kwargs, mode="fake", backward=backward)
    cached = tracer.run_traced(model, args, kwargs, mode="fake", backward=backward)
    assert cached.ops == first.ops
    with monkeypatch.context() as patch:
        patch.setattr(tracer, "FakeOutputs", lambda fake_mode: tracer._call_op)
        uncached = tracer.run_traced(model, args, kwargs, mode="fake", backward=backward)
    return cached, uncached


class Scalars(nn.Module):
    """Ops whose output depends on a scalar's type, not only its value (True == 1 in Python)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        flags = x > 0
        return flags + True, flags + 1, flags + 1.0, x.sum(dim=1), x.sum(dim=0)


class Constants(nn.Module):
    """A tensor made in forward is a constant fake; ops on it go through FakeTensorMode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor([2.0, 3.0, 4.0])
        return x * scale * scale


class Spectral(nn.Module):
    """Complex tensors and conjugate views (complex ops are left to FakeTensorMode)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            spectrum = torch.fft.rfft(x)
            x = torch.fft.irfft(spectrum * spectrum.conj(), n=x.shape[-1]).relu()
        return x


class InPlaceBlock(nn.Module):
    """A block run twice: in-place ops met again, with autograd watching (backward=True)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            x = self.linear(x).mul_(2.0).add_(1.0).relu_()
        return x


@pytest.mark.parametrize(
    ("name", "make_model", "make_input", "backward"),
    [
        (
            "resnet18",
            lambda: torchvision.models.resnet18(),
            lambda: torch.randn(2, 3, 64, 64),
            True,
        ),
        (
            "resnet18 channels_last",
            lambda: torchvision.models.resnet18().eval(),
            lambda: torch.randn(2, 3, 64, 64).to(memory_format=torch.channels_last),
            False,
        ),
        (
            "mobilenet_v3_small",
            lambda: torchvision.models.mobilenet_v3_small().eval(),
            lambda: torch.randn(1, 3, 64, 64),
            False,
        ),
        (
            "tiny llama",
            lambda: LlamaForCausalLM(LlamaConfig(**TINY_LLAMA, use_cache=False)).eval(),
            lambda: torch.randint(0, 100, (2, 16)),
            True,
        ),
        ("scalars", Scalars, lambda: torch.randn(3, 3), False),
        ("constants", Constants, lambda: torch.randn(2, 3), False),
        ("in place", InPlaceBlock, lambda: torch.randn(2, 4), True),
        ("complex", Spectral, lambda: torch.randn(2, 8), False),
    ],
)
def test_reused_outputs_trace_exactly_as_fake_tensor_mode(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    make_model: Any,
    make_input: Any,
    backward: bool,
) -> None:
    torch.manual_seed(0)
    cached, uncached = traced_both_ways(monkeypatch, make_model(), make_input(), backward=backward)
    assert cached.ops == uncached.ops  # every op, argument and output shape and dtype
    assert cached.module_calls == uncached.module_calls


def test_outputs_are_remade_with_the_same_metadata() -> None:
    fake_mode = FakeTensorMode()
    outputs = FakeOutputs(fake_mode)
    with fake_mode:
        x = torch.empty(2, 3, 8, 8).to(memory_format=torch.channels_last)
        weight = torch.empty(4, 3, 3, 3)
    conv = torch.ops.aten.convolution.default
    arguments = (x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    with fake_mode:
        first = outputs(conv, arguments, {})
        again = outputs(conv, arguments, {})
    assert isinstance(again, FakeTensor) and again.fake_mode is fake_mode
    assert again is not first
    assert (again.shape, again.stride(), again.dtype, again.device) == (
        first.shape,
        first.stride(),
        first.dtype,
        first.device,
    )
    assert again.stride() == (256, 1, 32, 4)  # 4 channels of 8 x 8, channels_last


def test_what_is_reused() -> None:
    aten = torch.ops.aten
    assert reusable_returns(aten.convolution.default) == ()  # new tensors
    assert reusable_returns(aten.native_batch_norm.default) == ()
    assert reusable_returns(aten.cat.default) == ()
    assert reusable_returns(aten.add_.Tensor) == (0,)  # returns self
    assert reusable_returns(aten.add.out) == (3,)  # returns out
    assert reusable_returns(aten.view.default) is None  # a view must share its base
    assert reusable_returns(aten.split.Tensor) is None  # views
    assert reusable_returns(aten.t_.default) is None  # changes self's metadata
    assert reusable_returns(aten.nonzero.default) is None  # output shape depends on the data
    assert reusable_returns(aten._local_scalar_dense.default) is None  # returns a number


class InPlace(nn.Module):
    """In-place and out= ops: the result is the argument written, also when it was reused."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        results = []
        for _ in range(3):
            y = x.clone()
            same = y.relu_()
            out = torch.empty(0)
            written = torch.add(x, x, out=out)  # resizes out: its metadata changes
            z = x.clone()
            z.t_()  # a metadata change in place: never reused
            results += [same, written, z]
            assert same is y and written is out and out.shape == x.shape
            assert z.shape == (x.shape[1], x.shape[0])
        return tuple(results)


def test_in_place_ops_return_their_target(monkeypatch: pytest.MonkeyPatch) -> None:
    cached, uncached = traced_both_ways(monkeypatch, InPlace(), torch.randn(2, 3))
    assert cached.ops == uncached.ops


# Families with views, concatenation, shuffles, windows, resampling and 3d convolutions.
ZOO = (
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "inception_v3",
    "shufflenet_v2_x0_5",
    "swin_t",
    "deeplabv3_mobilenet_v3_large",
    "r3d_18",
    "raft_small",
)


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_trace_exactly_as_with_fake_tensor_mode(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    case = zoo.case(name)
    cached, uncached = traced_both_ways(
        monkeypatch, case.build(), *case.inputs(), kwargs=case.kwargs
    )
    assert cached.ops == uncached.ops


HF_MODELS = {
    "bert": lambda: transformers.BertModel(
        transformers.BertConfig(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128
        )
    ),
    "gpt2": lambda: transformers.GPT2Model(
        transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, use_cache=False)
    ),
    "t5": lambda: transformers.T5Model(
        transformers.T5Config(
            num_layers=2, d_model=64, d_kv=16, num_heads=4, d_ff=128, use_cache=False
        )
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", HF_MODELS)
def test_transformers_trace_exactly_as_with_fake_tensor_mode(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    torch.manual_seed(0)
    model = HF_MODELS[name]().eval()
    ids = torch.randint(0, 100, (2, 12))
    kwargs = {"input_ids": ids, **({"decoder_input_ids": ids} if name == "t5" else {})}
    cached, uncached = traced_both_ways(monkeypatch, model, kwargs=kwargs, backward=True)
    assert cached.ops == uncached.ops


def test_recipes_are_typed_and_counted() -> None:
    """Hits, misses and bypasses (with their reason) are counted as the recipes are used."""
    from torchtally.fake import Bypass, NewOutputs, RecipeStats

    saved = FakeOutputs.stats
    FakeOutputs.stats = RecipeStats()
    try:
        # Shapes no other test uses, so that the shared recipes start empty for them.
        repeated = torch.nn.Sequential(torch.nn.Linear(37, 37), torch.nn.Linear(37, 37))
        torchtally.analyze(repeated, torch.ones(13, 37), mode="fake", warn_unsupported=False)
        assert FakeOutputs.stats.misses >= 1
        assert FakeOutputs.stats.hits >= 1  # the second Linear repeats the first's ops

        class Spectral(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.fft.fft(x).real

        for _ in range(2):
            torchtally.analyze(Spectral(), torch.ones(11, 29), mode="fake", warn_unsupported=False)
        assert any("complex" in reason for reason in FakeOutputs.stats.bypasses)
        kinds = {type(recipe) for recipe in FakeOutputs._recipes.values()}
        assert NewOutputs in kinds and Bypass in kinds
    finally:
        FakeOutputs.stats = saved
