"""Odd models: each is counted right (a hand count, written out), in every mode, and left as it
was. tests/core/test_fvcore_behaviours.py covers shared, repeated and `.forward()`-called
modules in real mode; here they run in every mode and with the backward pass."""

from __future__ import annotations

import json
import warnings
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from reliability.helpers import MODES, Snapshot
from torch import nn
from torch.utils.checkpoint import checkpoint

import torchtally

N = 3  # batch size used throughout
X = torch.randn(N, 4, generator=torch.Generator().manual_seed(0))


def tally(model: nn.Module, inputs: Any = X, **kwargs: Any) -> torchtally.Analysis:
    """Analyse and check that the model was left exactly as it was."""
    before = Snapshot.take(model, inputs)
    kwargs.setdefault("warn_unsupported", False)
    analysis = torchtally.analyze(model, inputs, **kwargs)
    before.assert_unchanged()
    return analysis


# --- recursion and direct .forward() calls ---------------------------------------------------


class Recursive(nn.Module):
    """Calls itself through __call__ until depth 0: fc runs depth + 1 times."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, depth: int = 2) -> torch.Tensor:
        y = self.fc(x)
        return y if depth == 0 else self(y, depth - 1)


@pytest.mark.parametrize("ancestor_mode", ["owner", "caller"])
@pytest.mark.parametrize("mode", MODES)
def test_recursion_through_the_same_module_counts_each_call_once(
    mode: str, ancestor_mode: str
) -> None:
    analysis = tally(Recursive(), X, kwargs={"depth": 2}, mode=mode, ancestor_mode=ancestor_mode)
    fc = N * 4 * 4
    assert analysis.by_module() == {"": 3 * fc, "fc": 3 * fc}  # 3 calls, none counted twice
    assert analysis.total("activations") == 3 * N * 4


class Direct(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.forward(x)  # not through __call__: no hooks fire for inner


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_forward_called_directly_goes_to_the_caller(mode: str, backward: bool) -> None:
    analysis = tally(Direct(), mode=mode, backward=backward)
    assert analysis.by_module(phase="forward") == {"": N * 4 * 6, "inner": 0}
    assert analysis.uncalled_modules == {"inner"}
    if backward:  # only the weight's gradient: the input does not require grad
        assert analysis.by_module(phase="backward") == {"": 6 * N * 4, "inner": 0}


# --- wrappers: DataParallel, torch.compile, TorchScript --------------------------------------


class Net(nn.Module):
    """Linear(4, 8) then a wrapped Sequential(Linear(8, 8), ReLU, Linear(8, 2))."""

    def __init__(self, wrap: Any = lambda m: m) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = wrap(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


A, B0, B2 = N * 4 * 8, N * 8 * 8, N * 8 * 2  # forward flops of a, b's first and last linear
# backward: a needs only its weight's gradient; b's linears need input and weight gradients
A_BACK, B_BACK = N * 4 * 8, 2 * (N * 8 * 8) + 2 * (N * 8 * 2)


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_data_parallel_wrapper_counts_like_the_model(mode: str, backward: bool) -> None:
    analysis = tally(Net(nn.DataParallel), mode=mode, backward=backward)
    forward = analysis.by_module(phase="forward")
    assert forward[""] == A + B0 + B2
    assert forward["b"] == forward["b.module"] == forward["b.module.0"] + forward["b.module.2"]
    assert (forward["b.module.0"], forward["b.module.2"]) == (B0, B2)
    assert analysis.params[""] == (4 * 8 + 8) + (8 * 8 + 8) + (8 * 2 + 2)
    if backward:
        assert analysis.total(phase="backward") == A_BACK + B_BACK


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_a_compiled_submodule_is_counted_like_the_eager_one(mode: str) -> None:
    torch._dynamo.reset()
    model = Net(torch.compile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dynamo's notes about running under a dispatch mode
        analysis = tally(model, mode=mode, backward=True)
    assert analysis.by_module(phase="forward")["b._orig_mod"] == B0 + B2
    assert analysis.total(phase="forward") == A + B0 + B2
    assert analysis.total(phase="backward") == A_BACK + B_BACK
    eager = Net()
    eager.load_state_dict({k.replace("_orig_mod.", ""): v for k, v in model.state_dict().items()})
    assert torch.allclose(model(X), eager(X))  # still works, with the same weights


@pytest.mark.parametrize("mode", MODES)
def test_a_scripted_submodule_is_counted(mode: str) -> None:
    analysis = tally(Net(torch.jit.script), mode=mode, backward=True)
    # TorchScript runs b's ops without Python: they count towards b (named addmm, not linear),
    # and b's own submodules are never called.
    assert analysis.by_module(phase="forward")["b"] == B0 + B2
    assert analysis.total(phase="forward") == A + B0 + B2
    assert analysis.total(phase="backward") == A_BACK + B_BACK
    assert analysis.uncalled_modules == {"b.0", "b.1", "b.2"}


# --- checkpointing ---------------------------------------------------------------------------


class Checkpointed(nn.Module):
    """a, then b = Sequential(Linear(8, 8), ReLU, Linear(8, 8)) under torch.utils.checkpoint."""

    def __init__(self, use_reentrant: bool) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        self.use_reentrant = use_reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(self.b, self.a(x), use_reentrant=self.use_reentrant)


LIN8 = N * 8 * 8
CKPT_FORWARD = A + 2 * LIN8
CKPT_GRADIENTS = A_BACK + 4 * LIN8  # each of b's linears: input and weight gradients


@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_checkpoint_forward_runs_once(mode: str, use_reentrant: bool) -> None:
    analysis = tally(Checkpointed(use_reentrant), mode=mode)
    expected = {"": CKPT_FORWARD, "a": A, "b": 2 * LIN8, "b.0": LIN8, "b.1": 0, "b.2": LIN8}
    assert analysis.by_module() == expected
    assert analysis.total() == CKPT_FORWARD


@pytest.mark.parametrize("mode", MODES)
def test_non_reentrant_checkpoint_counts_the_recomputation_that_ran(mode: str) -> None:
    analysis = tally(Checkpointed(use_reentrant=False), mode=mode, backward=True)
    assert analysis.total(phase="forward") == CKPT_FORWARD
    # The recomputation stops early, once it has the tensors backward needs: b.0's addmm and the
    # ReLU run again (b.2's input), b.2's addmm does not (its output is not needed).
    assert analysis.total(phase="backward") == CKPT_GRADIENTS + LIN8
    # gradients and recomputation alike are named after the forward function: linear
    assert analysis.by_operator(phase="backward") == {"linear": CKPT_GRADIENTS + LIN8}


def test_checkpoint_recomputation_belongs_to_the_recomputed_module() -> None:
    analysis = tally(Checkpointed(use_reentrant=False), mode="real", backward=True)
    backward = analysis.by_module(phase="backward")
    assert backward["b.0"] == 2 * LIN8 + LIN8  # its gradients and its recomputation
    assert backward["b.2"] == 2 * LIN8


@pytest.mark.parametrize("mode", MODES)
def test_reentrant_checkpoint_counts_the_whole_recomputation(mode: str) -> None:
    analysis = tally(Checkpointed(use_reentrant=True), mode=mode, backward=True)
    assert analysis.total(phase="backward") == CKPT_GRADIENTS + 2 * LIN8  # all of b runs again


# --- custom autograd functions, in-place ops -------------------------------------------------


class MatMul(torch.autograd.Function):
    """x @ w with a hand-written backward: two matmuls and a scaling of the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, w = ctx.saved_tensors
        grad = grad * 2
        return grad @ w.t(), x.t() @ grad


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return MatMul.apply(x, self.w)


@pytest.mark.parametrize("mode", MODES)
def test_autograd_function_with_a_custom_backward(mode: str) -> None:
    analysis = tally(Custom(), mode=mode, backward=True, elementwise=True)
    assert analysis.by_operator(phase="forward") == {"matmul": N * 4 * 5}
    # backward: grad (N, 5) * 2, then (N, 5) @ (5, 4) and (4, N) @ (N, 5)
    assert analysis.by_operator(phase="backward") == {"mul": N * 5, "mm": 2 * (N * 5 * 4)}


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        y.add_(1.0)
        y.mul_(y)
        y += 2
        y = self.act(y)
        return torch.sigmoid_(y)


@pytest.mark.parametrize("mode", MODES)
def test_in_place_ops_count_like_their_out_of_place_forms(mode: str) -> None:
    analysis = tally(InPlace(), mode=mode, elementwise=True)
    elements = N * 6
    expected = {"linear": N * 4 * 6, "add_": 2 * elements, "mul_": elements}
    expected |= {"relu_": elements, "sigmoid_": 6 * elements}  # sigmoid: exp, add, divide
    assert analysis.by_operator() == expected
    assert analysis.unsupported_ops() == {}


@pytest.mark.parametrize("mode", ["fake", "meta", "auto"])
def test_shape_only_modes_never_touch_the_inputs(mode: str) -> None:
    class Scales(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mul_(2)

    x = X.clone()
    tally(Scales(), x, mode=mode, elementwise=True)
    assert torch.equal(x, X)


# --- outputs ---------------------------------------------------------------------------------

Pair = namedtuple("Pair", ["left", "right"])


@dataclass
class Output:
    logits: torch.Tensor


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 2)
        self.b = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> Any:
        a, b = self.a(x), self.b(x)
        return {"all": [Pair(a, (b, None)), "text", 7], "none": None}


@pytest.mark.parametrize("mode", MODES)
def test_nested_outputs_are_differentiated_through(mode: str) -> None:
    analysis = tally(Nested(), mode=mode, backward=True)
    assert analysis.total(phase="forward") == N * 4 * 2 + N * 4 * 3
    # weight gradients only (the input does not require grad): (2, N) @ (N, 4) and (3, N) @ (N, 4)
    assert analysis.total(phase="backward") == 2 * N * 4 + 3 * N * 4


@pytest.mark.parametrize("mode", MODES)
def test_a_model_returning_none_is_counted_and_backward_says_why_not(mode: str) -> None:
    class ReturnsNone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> None:
            self.fc(x)

    model = ReturnsNone()
    assert tally(model, mode=mode).total() == N * 4 * 2
    with pytest.raises(ValueError, match="backward=True found nothing to differentiate"):
        tally(model, mode=mode, backward=True)


@pytest.mark.parametrize("mode", MODES)
def test_dataclass_outputs_are_differentiated_through(mode: str) -> None:
    class Returns(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> Output:
            return Output(self.fc(x))

    analysis = tally(Returns(), mode=mode, backward=True)
    assert analysis.total(phase="backward") == 2 * N * 4


# --- sizes: empty intermediates, counts beyond 2**63 -----------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_empty_intermediate_tensors_count_zero(mode: str) -> None:
    class Empties(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 5)
            self.conv = nn.Conv2d(2, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            none_kept = x[x.shape[0] :]  # (0, 4): nothing selected
            images = x.new_zeros(0, 2, 4, 4)  # an empty batch
            return self.fc(none_kept), self.conv(images), x[:, :0] @ x.new_ones(0, 7)

    analysis = tally(Empties(), mode=mode, elementwise=True)
    assert analysis.total() == 0
    # the (3, 0) @ (0, 7) product does no multiply-add but still writes its (3, 7) output
    assert analysis.total("activations") == N * 7


@pytest.mark.parametrize("mode", ["meta", "auto", "fake"])
def test_counts_beyond_2_to_the_63_stay_exact(mode: str) -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(2**20, 2**20, bias=False), nn.Linear(2**20, 3))
    x = torch.empty(2**24, 2**20, device="meta")
    analysis = torchtally.analyze(model, x, mode=mode)
    first = 2**24 * 2**20 * 2**20  # 2**64: one past the largest uint64
    second = 2**24 * 2**20 * 3
    assert analysis.total() == first + second
    assert analysis.by_module()["0"] == 2**64
    assert analysis.total("activations") == 2**24 * 2**20 + 2**24 * 3
    assert analysis.params[""] == 2**40 + 2**20 * 3 + 3
    data = json.loads(json.dumps(analysis.to_dict()))
    assert data["metrics"]["flops"]["total"] == first + second


@pytest.mark.parametrize("mode", ["meta", "fake"])
def test_huge_convolution_is_exact(mode: str) -> None:
    with torch.device("meta"):
        model = nn.Conv3d(1024, 1024, 3, padding=1, bias=False)
    x = torch.empty(64, 1024, 256, 256, 256, device="meta")
    analysis = torchtally.analyze(model, x, mode=mode)
    # batch x weight elements x output voxels = 2**6 * (2**20 * 27) * 2**24
    assert analysis.total() == 27 * 2**50
    assert analysis.total() > 2**54  # past float64's exact integers, still exact


# --- lazy modules ----------------------------------------------------------------------------


def assert_still_lazy(model: nn.Module, printed: str, x: torch.Tensor) -> None:
    """Every lazy module is as the user left it (`printed`: its repr before the analysis), and a
    real forward still initialises it."""
    assert repr(model) == printed  # in_features=0 again, class LazyLinear ...
    lazy = [m for m in model.modules() if isinstance(m, nn.modules.lazy.LazyModuleMixin)]
    params = {id(m): dict(m._parameters) for m in lazy}
    for module in lazy:
        infer = module._forward_pre_hooks[module._initialize_hook.id]
        assert infer == module._infer_parameters  # the hook itself, not torchtally's wrapper
        assert all(isinstance(p, nn.UninitializedParameter) for p in module._parameters.values())
    model(x)
    for module in lazy:
        assert not isinstance(module, nn.modules.lazy.LazyModuleMixin)  # now Linear, Conv2d ...
        assert not hasattr(module, "_initialize_hook")
        for name, param in module._parameters.items():
            assert param is params[id(module)][name]  # the user's objects, materialised in place
            assert type(param) is nn.Parameter and param.numel() > 0


@pytest.mark.parametrize("mode", MODES)
def test_lazy_modules_are_counted_and_stay_lazy(mode: str) -> None:
    model = nn.Sequential(nn.LazyLinear(6), nn.LazyBatchNorm1d())
    printed = repr(model)
    analysis = tally(model, mode=mode)
    assert analysis.trace.mode == ("fake" if mode == "auto" else mode)  # lazy is not meta
    bn = 5 * N * 6  # training batch norm with affine: 5 per element
    assert analysis.by_module() == {"": N * 4 * 6 + bn, "0": N * 4 * 6, "1": bn}
    assert analysis.params[""] == (4 * 6 + 6) + (6 + 6)  # as materialised by the forward
    shapes = {"0.weight": (6, 4), "0.bias": (6,), "1.weight": (6,), "1.bias": (6,)}
    assert analysis.param_shapes == shapes
    # the initialisation's ops (empty, uniform_) are not recorded: those of an nn.Linear are
    linear_ops = [op.op for op in analysis.trace.ops if op.scope == ("", "0")]
    assert linear_ops == ["aten::t", "aten::addmm"]
    # reports show what the modules became
    assert analysis.modules["0"].type_name == "Linear"
    assert analysis.modules["0"].extra_repr == "in_features=4, out_features=6, bias=True"
    assert analysis.modules["1"].type_name == "BatchNorm1d"
    assert isinstance(model[0], nn.LazyLinear)  # still lazy: its shapes come from the next input
    assert_still_lazy(model, printed, X)


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_lazy_conv_net_is_counted_as_materialised(mode: str, backward: bool) -> None:
    model = nn.Sequential(
        nn.LazyConv2d(8, 3, padding=1), nn.LazyBatchNorm2d(), nn.Flatten(), nn.LazyLinear(5)
    )
    x = torch.randn(N, 3, 6, 6)
    printed = repr(model)
    analysis = tally(model, x, mode=mode, backward=backward)
    conv, bn, fc = N * 8 * 6 * 6 * (3 * 3 * 3), 5 * N * 8 * 6 * 6, N * (8 * 6 * 6) * 5
    by_module = {"": conv + bn + fc, "0": conv, "1": bn, "2": 0, "3": fc}
    assert analysis.by_module(phase="forward") == by_module
    assert analysis.total("activations", phase="forward") == N * 8 * 6 * 6 + N * 5
    assert analysis.params == {
        "": 224 + 16 + 1445,
        "0": 224, "0.weight": 8 * 3 * 3 * 3, "0.bias": 8,
        "1": 16, "1.weight": 8, "1.bias": 8,
        "3": 1445, "3.weight": 5 * 8 * 6 * 6, "3.bias": 5,
    }  # fmt: skip
    if backward:  # the materialised weights get gradients: the linear's input and weight
        assert analysis.total(module="3", phase="backward") == 2 * fc
    assert_still_lazy(model, printed, x)


@pytest.mark.parametrize("mode", ["fake", "meta", "auto"])
def test_huge_lazy_model_allocates_nothing_real(mode: str) -> None:
    # materialised for real, the weight would take 2**48 * 4 bytes: 1 PiB
    model = nn.Sequential(nn.LazyLinear(2**24), nn.LazyBatchNorm1d())
    x = torch.empty(2, 2**24, device="meta")
    analysis = tally(model, x, mode=mode)
    assert analysis.total() == 2 * 2**48 + 5 * 2 * 2**24
    assert analysis.params[""] == 2**48 + 3 * 2**24
    assert isinstance(model[0].weight, nn.UninitializedParameter)
