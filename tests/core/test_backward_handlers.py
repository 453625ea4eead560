"""Core's handlers for backward-pass ops (ops/backward.py), on calls from real backward runs.

Each case runs ``torchtally.analyze(..., backward=True)`` and compares the backward phase with a
count worked out by hand from docs/conventions.md ("Backward pass"). One multiply-add = 1 flop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchtally_testing import Fn

import torchtally

T = 4  # a transcendental function (exp, tanh, erf) costs 4, as in the element-wise table


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def backward(
    model: nn.Module | Callable[..., Any], *inputs: Any, **options: Any
) -> torchtally.Analysis:
    """The analysis of one forward and backward run (fake tensors where they suffice)."""
    module = model if isinstance(model, nn.Module) else Fn(model)
    options.setdefault("warn_unsupported", False)
    analysis = torchtally.analyze(module, tuple(inputs), backward=True, strict=True, **options)
    assert analysis.phases == ("forward", "backward")
    return analysis


def grad_input(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, requires_grad=True)


# -- convolution ------------------------------------------------------------------------------

CONV_CASES = [
    # (module, input shape, forward multiply-adds written out)
    pytest.param(
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        (2, 4, 9, 9),
        2 * (6 * 4 * 3 * 3) * (5 * 5),  # N * prod(weight) * output pixels
        id="conv2d-strided",
    ),
    pytest.param(
        nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2),
        (2, 4, 9, 9),
        2 * (6 * 2 * 3 * 3) * (4 * 4),  # weight (6, 4 / 2, 3, 3), output 4 x 4
        id="conv2d-grouped-dilated",
    ),
    pytest.param(
        nn.ConvTranspose2d(6, 4, 3, stride=2, groups=2),
        (2, 6, 3, 3),
        2 * (6 * 2 * 3 * 3) * (3 * 3),  # transposed: input pixels
        id="conv-transpose2d-grouped",
    ),
    pytest.param(nn.Conv1d(3, 5, 2), (2, 3, 7), 2 * (5 * 3 * 2) * 6, id="conv1d"),
    pytest.param(nn.Conv3d(2, 3, 2), (1, 2, 3, 3, 3), 1 * (3 * 2 * 8) * 8, id="conv3d"),
]


@pytest.mark.parametrize(("conv", "shape", "macs"), CONV_CASES)
def test_convolution_backward_is_the_forward_per_gradient(
    conv: nn.Module, shape: tuple[int, ...], macs: int
) -> None:
    forward_only = torchtally.analyze(conv, torch.randn(shape))
    assert forward_only.total() == macs  # the forward convention the backward builds on
    # the input needs no gradient: grad_weight only
    weight_only = backward(conv, torch.randn(shape))
    assert weight_only.by_operator(phase="backward") == {"conv": macs}
    # grad_input too: a transposed convolution with the forward's multiply-adds
    both = backward(conv, grad_input(*shape))
    assert both.by_operator(phase="backward") == {"conv": 2 * macs}
    assert both.unsupported_ops(phase="backward") == {}
    assert both.total("activations", phase="backward") == 0


def test_convolution_bias_gradient_is_not_counted_as_the_bias_is_not() -> None:
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    macs = 2 * (6 * 4 * 3 * 3) * (5 * 5)
    analysis = backward(conv, grad_input(2, 4, 9, 9), elementwise=True)
    # grad_bias, a sum of grad_output, is ignored even with element-wise counting on
    assert analysis.by_operator(phase="backward") == {"conv": 2 * macs}


def test_convolution_backward_of_a_frozen_weight_is_grad_input_only() -> None:
    conv = nn.Conv2d(4, 6, 3).requires_grad_(False)
    analysis = backward(conv, grad_input(1, 4, 5, 5))
    assert analysis.total(phase="backward") == 1 * (6 * 4 * 3 * 3) * (3 * 3)


def test_convolution_and_mm_backward_match_flop_counter_mode() -> None:
    """torch's FlopCounterMode counts 2 flops per multiply-add: half of it is ours."""
    model = torchvision.models.resnet18().train()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    counter = FlopCounterMode(display=False)
    with counter:
        out.sum().backward()
    theirs = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    ours = backward(model, x, mode="real").by_operator(phase="backward")
    assert theirs["aten.convolution_backward"] == 2 * ours["conv"]
    assert theirs["aten.mm"] == 2 * ours["linear"]  # fc's gradient matmuls


def test_grouped_convolution_weight_gradient_against_flop_counter_mode() -> None:
    """FlopCounterMode in torch 2.13 forgets to divide grad_weight by groups (fixed upstream in
    pytorch/pytorch#183405); grad_input agrees, and so does everything once that fix is in."""
    groups = 2
    conv = nn.Conv2d(4, 6, 3, groups=groups)
    macs = 1 * (6 * 2 * 3 * 3) * (3 * 3)
    x = grad_input(1, 4, 5, 5)
    counter = FlopCounterMode(display=False)
    with counter:
        conv(x).sum().backward()
    theirs = counter.get_flop_counts()["Global"][torch.ops.aten.convolution_backward] // 2
    assert backward(conv, grad_input(1, 4, 5, 5)).total(phase="backward") == 2 * macs
    assert theirs in (2 * macs, macs + groups * macs)


# -- linear: the matmul handlers count its gradients ------------------------------------------


def test_linear_backward_is_two_mm_per_layer_and_the_bias_a_sum() -> None:
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(2, 5, 4)  # 10 rows: linear flattens (2, 5, 4) to (10, 4) for mm
    analysis = backward(mlp, x)
    # forward: 10*4*8 = 320 and 10*8*3 = 240
    # backward: layer 2 grad_input (10,3)@(3,8) = 240 and grad_weight (3,10)@(10,8) = 240;
    # layer 1 grad_weight (8,10)@(10,4) = 320 (x needs no gradient, so no grad_input)
    assert analysis.by_operator(phase="forward") == {"linear": 320 + 240}
    assert analysis.by_operator(phase="backward") == {"linear": 240 + 240 + 320}
    # the bias gradients (grad_output summed over rows) belong to linear, whose convention
    # leaves the bias out; ReLU's gradient is an element-wise op
    assert analysis.unsupported_ops(phase="backward") == {"aten::threshold_backward": 1}
    assert analysis.recount(elementwise=True).by_operator(phase="backward") == {
        "linear": 240 + 240 + 320,
        "threshold_backward": 10 * 8,  # one compare-and-select per element
    }


# -- normalisation ----------------------------------------------------------------------------

# Per element: sum(g) 1, sum(g * x) 1, grad_input with batch statistics 2 FMAs, with running
# statistics (eval) 1 multiply.
NORM_CASES = [
    # (module, eval?, input requires grad?, flops per element)
    pytest.param(nn.BatchNorm2d(3), False, True, 1 + 1 + 2, id="bn-train"),
    pytest.param(nn.BatchNorm2d(3, affine=False), False, True, 1 + 1 + 2, id="bn-train-no-affine"),
    pytest.param(nn.BatchNorm2d(3), False, False, 1 + 1, id="bn-train-params-only"),
    pytest.param(nn.BatchNorm2d(3), True, True, 1 + 1 + 1, id="bn-eval"),
    pytest.param(nn.BatchNorm2d(3).requires_grad_(False), True, True, 1, id="bn-eval-frozen"),
    pytest.param(nn.BatchNorm2d(3), True, False, 1 + 1, id="bn-eval-params-only"),
    pytest.param(nn.InstanceNorm2d(3), False, True, 1 + 1 + 2, id="instance-norm"),
    pytest.param(nn.GroupNorm(3, 3), False, True, 1 + 1 + 2, id="gn"),
    pytest.param(nn.GroupNorm(3, 3, affine=False), False, True, 1 + 1 + 2, id="gn-no-affine"),
    pytest.param(nn.GroupNorm(3, 3), False, False, 1 + 1, id="gn-params-only"),
]


@pytest.mark.parametrize(("norm", "eval_mode", "input_grad", "per_element"), NORM_CASES)
def test_batch_and_group_norm_backward(
    norm: nn.Module, eval_mode: bool, input_grad: bool, per_element: int
) -> None:
    norm.train(not eval_mode)
    x = torch.randn(2, 3, 4, 4, requires_grad=input_grad)
    analysis = backward(norm, x)
    assert analysis.total(phase="backward") == 2 * 3 * 4 * 4 * per_element
    assert analysis.total("activations", phase="backward") == 0


# Layer norm per element: grad_input = weight * g (1, with a weight), sums of it and of it times
# x per row (2), 2 FMAs; grad_weight: x_hat (1) times g, summed over rows (1); grad_bias: 1.
LAYER_NORM_CASES = [
    pytest.param(nn.LayerNorm(6), True, 1 + 2 + 2 + 2 + 1, id="affine"),
    pytest.param(nn.LayerNorm(6, bias=False), True, 1 + 2 + 2 + 2, id="weight-only"),
    pytest.param(nn.LayerNorm(6, elementwise_affine=False), True, 2 + 2, id="no-affine"),
    pytest.param(nn.LayerNorm(6), False, 2 + 1, id="params-only"),
    pytest.param(nn.LayerNorm(6).requires_grad_(False), True, 1 + 2 + 2, id="frozen"),
]


@pytest.mark.parametrize(("norm", "input_grad", "per_element"), LAYER_NORM_CASES)
def test_layer_norm_backward(norm: nn.Module, input_grad: bool, per_element: int) -> None:
    x = torch.randn(2, 5, 6, requires_grad=input_grad)
    analysis = backward(norm, x)
    assert analysis.by_operator(phase="backward") == {"layer_norm": 2 * 5 * 6 * per_element}


# -- pooling ----------------------------------------------------------------------------------

POOL_CASES = [
    # (module, input shape, forward op: the backward's operator name, flops written out)
    pytest.param(
        nn.MaxPool2d(2),
        (1, 2, 6, 6),
        "max_pool2d_with_indices",
        1 * 2 * 3 * 3,  # 1 add per grad_output element
        id="max2d",
    ),
    pytest.param(nn.MaxPool1d(2), (1, 2, 6), "max_pool2d_with_indices", 1 * 2 * 3, id="max1d"),
    pytest.param(nn.MaxPool3d(2), (1, 2, 4, 4, 4), "max_pool3d_with_indices", 2 * 8, id="max3d"),
    pytest.param(nn.AdaptiveMaxPool2d(2), (1, 2, 5, 5), "adaptive_max_pool2d", 2 * 4, id="amax2d"),
    pytest.param(
        nn.AvgPool2d(3, stride=1),
        (1, 2, 5, 5),
        "avg_pool2d",
        (1 * 2 * 3 * 3) * (3 * 3),  # grad_output elements x window
        id="avg2d",
    ),
    pytest.param(
        nn.AvgPool3d((1, 2, 2)),
        (1, 2, 2, 4, 4),
        "avg_pool3d",
        (1 * 2 * 2 * 2 * 2) * (1 * 2 * 2),
        id="avg3d",
    ),
]


@pytest.mark.parametrize(("pool", "shape", "name", "flops"), POOL_CASES)
def test_window_pooling_backward_counts_with_elementwise_only(
    pool: nn.Module, shape: tuple[int, ...], name: str, flops: int
) -> None:
    on = backward(pool, grad_input(*shape), elementwise=True)
    assert on.by_operator(phase="backward") == {name: flops}
    off = backward(pool, grad_input(*shape))
    assert off.total(phase="backward") == 0
    assert off.unsupported_ops(phase="backward") == {f"aten::{name}_backward": 1}


@pytest.mark.parametrize(
    ("pool", "shape", "name"),
    [
        (nn.AdaptiveAvgPool2d(3), (1, 2, 6, 6), "adaptive_avg_pool2d"),
        (nn.AdaptiveAvgPool1d(3), (1, 2, 36), "adaptive_avg_pool1d"),  # runs the 2d ops
        (nn.AdaptiveAvgPool3d((1, 3, 3)), (1, 2, 1, 6, 6), "adaptive_avg_pool3d"),
    ],
)
def test_adaptive_avg_pool_backward_counts_always(
    pool: nn.Module, shape: tuple[int, ...], name: str
) -> None:
    analysis = backward(pool, grad_input(*shape))
    # like its forward: 1 per input element (1 * 2 * 36 = 72 in each case)
    assert analysis.by_operator(phase="backward") == {name: 72}
    assert analysis.by_operator(phase="forward") == {name: 72}


def test_global_average_pool_backward_is_an_elementwise_divide() -> None:
    # A 1x1 output runs mean; its gradient is grad_output broadcast to the input's shape (a
    # view, no arithmetic) divided by 36: 1 per input element, as the forward, but element-wise.
    pool = nn.AdaptiveAvgPool2d(1)
    assert backward(pool, grad_input(1, 2, 6, 6)).total(phase="backward") == 0
    on = backward(pool, grad_input(1, 2, 6, 6), elementwise=True)
    assert on.by_operator(phase="backward") == {"adaptive_avg_pool2d": 1 * 2 * 6 * 6}


# -- embedding --------------------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "per_element"), [(False, 1), (True, 2)])
def test_embedding_backward_scatter_adds_grad_output(scale: bool, per_element: int) -> None:
    embedding = nn.Embedding(10, 4, scale_grad_by_freq=scale)
    indices = torch.tensor([[1, 2, 3], [3, 4, 1]])
    on = backward(embedding, indices, elementwise=True, mode="real")
    # grad_output (2, 3, 4): each row added into the weight's gradient
    assert on.by_operator(phase="backward") == {"embedding_dense_backward": 2 * 3 * 4 * per_element}
    off = backward(embedding, indices, mode="real")
    assert off.unsupported_ops(phase="backward") == {"aten::embedding_dense_backward": 1}


# -- element-wise gradients -------------------------------------------------------------------

X = (2, 3, 4)  # 24 elements
ELEMENTWISE_CASES = [
    # (function, backward op, flops written out); the input is X and requires grad
    pytest.param(F.relu, "threshold_backward", 24 * 1, id="relu"),
    pytest.param(F.gelu, "gelu_backward", 24 * (2 * T + 7), id="gelu-erf"),
    pytest.param(
        lambda x: F.gelu(x, approximate="tanh"), "gelu_backward", 24 * (T + 10), id="gelu-tanh"
    ),
    pytest.param(F.mish, "mish_backward", 24 * (3 * T + 6), id="mish"),
    pytest.param(
        lambda x: F.rrelu(x, training=True), "rrelu_with_noise_backward", 24 * 1, id="rrelu"
    ),
    pytest.param(
        lambda x: F.glu(x, dim=-1),
        "glu_backward",
        (2 * 3 * 2) * (T + 6),  # per grad_output element: (2, 3, 2)
        id="glu",
    ),
    pytest.param(lambda x: F.mse_loss(x, torch.zeros(X)), "mse_loss_backward", 24 * 2, id="mse"),
    pytest.param(
        lambda x: F.smooth_l1_loss(x, torch.zeros(X)),
        "smooth_l1_loss_backward",
        24 * 4,
        id="smooth-l1",
    ),
    pytest.param(
        lambda x: F.huber_loss(x, torch.zeros(X)), "huber_loss_backward", 24 * 3, id="huber"
    ),
]


@pytest.mark.parametrize(("fn", "op", "flops"), ELEMENTWISE_CASES)
def test_elementwise_gradients(fn: Callable[..., Any], op: str, flops: int) -> None:
    on = backward(fn, grad_input(*X), elementwise=True)
    assert on.by_operator(phase="backward") == {op: flops}
    assert on.unsupported_ops(phase="backward") == {}
    off = backward(fn, grad_input(*X))
    assert off.total(phase="backward") == 0
    assert off.unsupported_ops(phase="backward") == {f"aten::{op}": 1}


def test_prelu_backward_counts_both_gradients() -> None:
    prelu = nn.PReLU(3)
    x = grad_input(2, 3, 4)
    analysis = backward(prelu, x, elementwise=True, mode="real")
    # grad_input (1) and grad_weight's x * g accumulated (1) per element; the weight's gradient
    # is then summed to its shape by core's reduction handler (24 elements in)
    assert analysis.by_operator(phase="backward") == {"_prelu_kernel_backward": 24 * 2, "sum": 24}


@pytest.mark.parametrize(("weight", "per_element"), [(None, 5), (torch.rand(X), 6)])
def test_binary_cross_entropy_backward(weight: torch.Tensor | None, per_element: int) -> None:
    target = torch.rand(X)
    analysis = backward(
        lambda p: F.binary_cross_entropy(p, target, weight),
        torch.rand(X, requires_grad=True),
        elementwise=True,
    )
    assert analysis.by_operator(phase="backward") == {
        "binary_cross_entropy_backward": 24 * per_element
    }


@pytest.mark.parametrize(
    ("shape", "target", "op"),
    [
        ((4, 5), torch.tensor([1, 0, 4, 2]), "nll_loss_backward"),
        ((1, 5, 2, 2), torch.tensor([[[1, 0], [4, 2]]]), "nll_loss2d_backward"),
    ],
)
def test_cross_entropy_backward(shape: tuple[int, ...], target: torch.Tensor, op: str) -> None:
    analysis = backward(lambda x: F.cross_entropy(x, target), grad_input(*shape), elementwise=True)
    # nll_loss: one multiply per target (4); log_softmax: g - exp(y) * sum(g), T + 2 per element
    assert analysis.by_operator(phase="backward") == {
        op: 4,
        "_log_softmax_backward_data": 20 * (T + 2),
    }


# -- whole models -----------------------------------------------------------------------------


def test_resnet18_backward_is_twice_the_forward_but_for_what_it_skips() -> None:
    model = torchvision.models.resnet18().train()
    analysis = backward(model, torch.randn(2, 3, 64, 64))
    forward = analysis.by_operator(phase="forward")
    # The image needs no gradient, so conv1 computes grad_weight only: 2 * (64*3*7*7) * (32*32)
    conv1 = 2 * (64 * 3 * 7 * 7) * (32 * 32)
    assert forward["conv"] == 296_091_648  # the forward, checked by core's own tests
    assert analysis.by_operator(phase="backward") == {
        "conv": 2 * forward["conv"] - conv1,
        # training batch norm: 5 per element forward (affine), 4 backward
        "batch_norm": forward["batch_norm"] // 5 * 4,
        # fc: grad_input and grad_weight, each the forward's multiply-adds
        "linear": 2 * forward["linear"],
        # the global average pool's gradient is a broadcast and a divide: element-wise only
    }
    backward_total = analysis.total(phase="backward")
    assert backward_total == (
        2 * forward["conv"] - conv1 + forward["batch_norm"] // 5 * 4 + 2 * forward["linear"]
    )
    ratio = backward_total / analysis.total(phase="forward")
    assert 1.9 < ratio < 2.0  # "about 2x": conv1's missing grad_input and cheaper norms


def test_resnet18_backward_is_fully_supported_with_elementwise_counting() -> None:
    model = torchvision.models.resnet18().train()
    analysis = backward(model, torch.randn(1, 3, 64, 64), elementwise=True)
    assert analysis.unsupported_ops(phase="backward") == {}


def test_backward_matmuls_produce_no_activations() -> None:
    mlp = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    analysis = backward(mlp, torch.randn(2, 4))
    assert analysis.total("activations", phase="backward") == 0
