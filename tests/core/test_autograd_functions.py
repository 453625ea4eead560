"""A custom torch.autograd.Function counted as one unit by its class (as module handlers count
modules), or by fvcore's name for it, ``prim::PythonOp.<class name>``: each ``apply`` is given
to the handler as a `FunctionCall`, and the ops it runs are not counted again."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import torchtally
from torchtally.handlers import HandlerSet
from torchtally.records import FunctionCall, TensorMeta


class Product(torch.autograd.Function):
    """x @ w, with a hand-written backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, w = ctx.saved_tensors
        return grad @ w.t(), x.t() @ grad


class OpaqueProduct(torch.autograd.Function):
    """x @ w computed outside PyTorch (numpy): what a Triton or C-extension kernel looks like to
    the dispatcher, which sees no arithmetic."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.matmul(x.detach().numpy(), w.detach().numpy()))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None]:
        return None, None


class Model(nn.Module):
    def __init__(self, function: type[torch.autograd.Function]) -> None:
        super().__init__()
        self.function = function
        self.w = nn.Parameter(torch.randn(4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function.apply(x, self.w).relu()


X = torch.randn(3, 4)
MACS = 3 * 4 * 5


def product_macs(call: FunctionCall) -> int:
    x, w = call.args
    assert isinstance(x, TensorMeta) and isinstance(w, TensorMeta)
    return x.numel * w.shape[-1]


def analyse(model: nn.Module, mode: str = "fake", **kwargs: Any) -> torchtally.Analysis:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchtally.analyze(model, X, mode=mode, warn_unsupported=False, **kwargs)


def test_a_function_whose_kernel_the_dispatcher_cannot_see_counts_by_its_handler() -> None:
    assert analyse(Model(OpaqueProduct), "real").total() == 0  # nothing to see
    handlers = HandlerSet()
    handlers.function(OpaqueProduct)(product_macs)
    counted = analyse(Model(OpaqueProduct), "real", handlers=handlers)
    assert counted.by_operator() == {"OpaqueProduct": MACS}


@pytest.mark.parametrize("mode", ["real", "fake", "auto"])
def test_the_function_is_one_unit_and_its_ops_are_not_counted_again(mode: str) -> None:
    handlers = HandlerSet()
    handlers.function(Product)(lambda call: 1000)
    analysis = analyse(Model(Product), mode, handlers=handlers, backward=True)
    assert analysis.by_operator(phase="forward") == {"Product": 1000}  # its mm: not again
    # its backward's two matmuls are counted as ops, as for module handlers
    assert analysis.by_operator(phase="backward") == {"mm": 2 * MACS}
    plain = analyse(Model(Product), mode)
    assert plain.by_operator() == {"matmul": MACS}


def test_fvcores_spelling_per_call_and_registered() -> None:
    per_call = analyse(Model(Product), handlers={"prim::PythonOp.Product": product_macs})
    assert per_call.by_operator() == {"Product": MACS}
    torchtally.register_handler("prim::PythonOp.Product")(lambda call: 7)
    try:
        assert analyse(Model(Product)).by_operator() == {"Product": 7}
    finally:
        torchtally.unregister_handler("prim::PythonOp.Product")


def test_the_outermost_handled_function_counts_and_a_module_handler_wins() -> None:
    class Twice(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return Product.apply(Product.apply(x, w), w.t())

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None]:
            return None, None

    handlers = HandlerSet()
    handlers.function(Twice)(lambda call: 5)
    handlers.function(Product)(lambda call: 1000)
    assert analyse(Model(Twice), handlers=handlers).by_operator() == {"Twice": 5}
    handlers.module(Model)(lambda call: 3)
    assert analyse(Model(Twice), handlers=handlers).by_operator() == {"Model": 3}


def test_functions_are_recorded_only_for_their_handlers() -> None:
    assert torchtally.trace(Model(Product), X).functions == ()
    traced = torchtally.trace(Model(Product), X, autograd_functions=True)
    (call,) = traced.functions
    assert call.name == "prim::PythonOp.Product"
    analysis = torchtally.analyze(Model(Product), X, warn_unsupported=False)
    with pytest.warns(torchtally.UnusedHandlerWarning, match="recorded when analyze"):
        analysis.recount(handlers={"prim::PythonOp.Product": product_macs})


def test_only_autograd_functions_are_accepted_as_classes() -> None:
    with pytest.raises(TypeError, match=r"torch\.autograd\.Function subclass"):
        HandlerSet().function(nn.Linear)
