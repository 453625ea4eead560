"""Ops that only the backward pass runs (``phase="backward"``): gradients of convolutions, norms,
pooling, embeddings, activations and losses.

The backward pass also runs ordinary ops (``mm``, ``bmm``, ``add``, ``sum``, ...): their own
handlers count them, so a linear layer's gradients are counted as the two ``mm`` they run. Counts
follow the forward conventions (one multiply-add is one flop): an op counts always when its
forward op does (convolution, norms, adaptive average pooling), and otherwise, like element-wise
ops, only with ``elementwise=True``. Activations are the outputs of the forward pass's
convolutions and matmuls: gradients are none, so every op here has 0. docs/conventions.md
("Backward pass") gives each formula and its reason.

A backward op is reported under its forward op's operator name, so the phases line up: by the
forward function when one is named (``batch_norm``, ``layer_norm``), else by the name the
forward handler gives (``conv``, ``max_pool2d_with_indices``).
"""

from __future__ import annotations

import math
from typing import Any

from torchtally.handlers import CountOptions, HandlerSet, OpHandler
from torchtally.ops.catalog import POINTWISE_FLOPS
from torchtally.ops.common import first_output, no_activations
from torchtally.ops.elementwise import pointwise_flops
from torchtally.ops.pooling import window_reads
from torchtally.records import OpCall, TensorMeta

_T = POINTWISE_FLOPS["aten::exp"]  # one transcendental function (catalog.py's _T)


# -- convolution ------------------------------------------------------------------------------


def convolution_forward_macs(
    grad_output: TensorMeta, x: TensorMeta, w: TensorMeta, transposed: bool
) -> int:
    """The forward convolution's multiply-adds, core's formula, from the backward's arguments."""
    spatial = (x if transposed else grad_output).shape[2:]
    return x.shape[0] * w.numel * math.prod(spatial)


def forward_name(call: OpCall) -> str:
    """``aten::avg_pool2d_backward`` -> ``avg_pool2d``: the forward op's by_operator key."""
    return call.op.removeprefix("aten::").removesuffix("_backward")


def convolution_backward_flops(call: OpCall) -> dict[str, int]:
    """grad_input and grad_weight each pair every forward multiply-add with one of their own.
    grad_bias (a sum of grad_output) is not counted, as the forward convention ignores the bias."""
    macs = convolution_forward_macs(
        call.arg("grad_output"), call.arg("input"), call.arg("weight"), bool(call.arg("transposed"))
    )
    grad_input, grad_weight, _ = (bool(m) for m in call.arg("output_mask"))
    return {"conv": macs * (grad_input + grad_weight)}


# -- normalisation ----------------------------------------------------------------------------
# Per element: each sum over the statistics' group costs 1 (sum of g, sum of g * x: an add, an
# FMA); grad_input = a * g + b * x + c with coefficients per group costs 2 FMAs when the
# statistics were the batch's own, and 1 multiply (a * g) when they were fixed (eval).


def _output_mask(call: OpCall) -> tuple[bool, bool, bool]:
    mask = call.arguments.get("output_mask")
    if mask is None:  # cudnn / miopen: all three gradients
        return True, True, True
    grad_input, grad_weight, grad_bias = (bool(m) for m in mask)
    return grad_input, grad_weight, grad_bias


def batch_norm_backward_per_element(
    training: bool, grad_input: bool, grad_weight: bool, grad_bias: bool
) -> int:
    """Flops per element of batch norm's (and group norm's) backward pass.

    Every gradient is built from two per-channel sums, sum(g) and sum(g * x): grad_bias is the
    first, grad_weight combines both, and grad_input after batch statistics needs both too.
    """
    sum_g = grad_bias or grad_weight or (training and grad_input)
    sum_gx = grad_weight or (training and grad_input)
    per_element = int(sum_g) + int(sum_gx)
    if grad_input:
        per_element += 2 if training else 1
    return per_element


def _input_elements(call: OpCall) -> int:
    x: TensorMeta = call.arg("input")
    return x.numel


def native_batch_norm_backward_flops(call: OpCall) -> int:
    training = bool(call.arg("train"))
    return _input_elements(call) * batch_norm_backward_per_element(training, *_output_mask(call))


def batch_norm_backward_flops(call: OpCall) -> int:
    """``aten::batch_norm_backward``: batch statistics when it updated running ones, or had none."""
    training = bool(call.arg("update")) or call.arguments.get("running_mean") is None
    return _input_elements(call) * batch_norm_backward_per_element(training, *_output_mask(call))


def training_batch_norm_backward_flops(call: OpCall) -> int:
    """cudnn and miopen: training mode only, all three gradients."""
    return _input_elements(call) * batch_norm_backward_per_element(True, True, True, True)


def group_norm_backward_flops(call: OpCall) -> int:
    """Statistics per (sample, group), weight per channel: the per-(sample, channel) sums of g
    and g * x serve every gradient, as in batch norm with batch statistics."""
    return _input_elements(call) * batch_norm_backward_per_element(True, *_output_mask(call))


def layer_norm_backward_per_element(
    affine: bool, grad_input: bool, grad_weight: bool, grad_bias: bool
) -> int:
    """Flops per element of layer norm's backward pass.

    The weight varies along the normalised dims, so grad_input first forms h = weight * g
    (1, with a weight), then sums h and h * x per row (2) and 2 FMAs. grad_weight and grad_bias
    sum over rows instead: weight's needs x_hat (1 FMA) and the product (1), bias's 1.
    """
    per_element = 0
    if grad_input:
        per_element += (1 if affine else 0) + 2 + 2
    if grad_weight:
        per_element += 2
    if grad_bias:
        per_element += 1
    return per_element


def layer_norm_backward_flops(call: OpCall) -> int:
    affine = call.arguments.get("weight") is not None
    per_element = layer_norm_backward_per_element(affine, *_output_mask(call))
    return _input_elements(call) * per_element


# -- pooling ----------------------------------------------------------------------------------


def _grad_output_elements(call: OpCall) -> int:
    grad_output: TensorMeta = call.arg("grad_output")
    return grad_output.numel


AVG_POOL_BACKWARDS = {"aten::avg_pool2d_backward": 2, "aten::avg_pool3d_backward": 3}
MAX_POOL_BACKWARDS = (
    "aten::max_pool2d_with_indices_backward",
    "aten::max_pool3d_with_indices_backward",
    "aten::adaptive_max_pool2d_backward",
    "aten::adaptive_max_pool3d_backward",
)
ADAPTIVE_AVG_POOL_BACKWARDS = (
    "aten::_adaptive_avg_pool2d_backward",
    "aten::_adaptive_avg_pool3d_backward",
)


def max_pool_backward_flops(call: OpCall, options: CountOptions) -> Any:
    """Each output gradient is added to its window's maximum: 1 per grad_output element."""
    if not options.elementwise:
        return NotImplemented
    return {forward_name(call): _grad_output_elements(call)}


def avg_pool_backward_flops(call: OpCall, options: CountOptions) -> Any:
    """Each output gradient, scaled, is added to every element of its window (as the forward)."""
    if not options.elementwise:
        return NotImplemented
    reads = window_reads(call, AVG_POOL_BACKWARDS[call.op], call.arg("grad_output"))
    return {forward_name(call): reads}


def adaptive_avg_pool_backward_flops(call: OpCall) -> int:
    """Each input element receives its window's gradient over the window's size: 1 each."""
    x: TensorMeta = call.arg("self")
    return x.numel


# -- embedding --------------------------------------------------------------------------------


def embedding_backward_flops(call: OpCall, options: CountOptions) -> Any:
    """Rows of grad_output are added into the weight's gradient (a scatter-add, a reduction):
    1 per grad_output element, 1 more to scale by the inverse frequency when asked."""
    if not options.elementwise:
        return NotImplemented
    per_element = 2 if call.arg("scale_grad_by_freq") else 1
    return _grad_output_elements(call) * per_element


# -- element-wise gradients missing from catalog.py -------------------------------------------

# FLOPs per OUTPUT (grad_input) element, as POINTWISE_FLOPS; g is the incoming gradient.
BACKWARD_POINTWISE_FLOPS: dict[str, int] = {
    # e = exp(x), sp = log1p(e), t = tanh(sp), s = e / (1 + e); g * (t + x * (1 - t * t) * s)
    "aten::mish_backward": 3 * _T + 6,
    # training: g * noise; eval: leaky_relu's
    "aten::rrelu_with_noise_backward": 1,
    # grad_input as the forward (x > 0 ? g : w * g), plus grad_weight's x * g accumulated
    "aten::_prelu_kernel_backward": 2,
    # losses: g * 2 (x - y) / n (constant folded): sub, mul
    "aten::mse_loss_backward": 2,
    # g * clamp((x - y) / beta, -1, 1): sub, div, clamp, mul
    "aten::smooth_l1_loss_backward": 4,
    # g * clamp(x - y, -delta, delta): sub, clamp, mul
    "aten::huber_loss_backward": 3,
}

# gelu_backward with approximate="tanh": u = x (k + k c x^2) (mul, FMA, mul), t = tanh(u),
# 1 - t^2 (FMA), k (1 + 3 c x^2) (FMA), x * (1 - t^2) * that (2 mul), 0.5 (1 + t) + 0.5 * that
# (2 FMA), * g (mul). The erf form is catalog.py's aten::gelu_backward.
GELU_TANH_BACKWARD_FLOPS = _T + 10


def pointwise_backward_flops(call: OpCall, options: CountOptions) -> Any:
    if not options.elementwise:
        return NotImplemented
    return BACKWARD_POINTWISE_FLOPS[call.op] * first_output(call).numel


def binary_cross_entropy_backward_flops(call: OpCall, options: CountOptions) -> Any:
    """g * (x - y) / max(x * (1 - x), eps): sub, FMA, max, div, mul; 1 more to apply a weight."""
    if not options.elementwise:
        return NotImplemented
    per_element = 6 if call.arguments.get("weight") is not None else 5
    return per_element * first_output(call).numel


def gelu_backward_flops(call: OpCall, options: CountOptions) -> Any:
    if options.elementwise and call.arguments.get("approximate") == "tanh":
        return GELU_TANH_BACKWARD_FLOPS * first_output(call).numel
    return pointwise_flops(call, options)


def glu_backward_flops(call: OpCall, options: CountOptions) -> Any:
    """Per grad_output element (one pair a, b of the input): s = sigmoid(b) (_T + 2),
    grad_a = g * s (1), grad_b = g * a * s * (1 - s) (FMA, 2 mul)."""
    if not options.elementwise:
        return NotImplemented
    return (_T + 6) * _grad_output_elements(call)


def nll_loss_backward_flops(call: OpCall, options: CountOptions) -> Any:
    """One gradient per target, -g * weight[t] / total_weight: 1 multiply per target element
    (the rest of grad_input is zeros)."""
    if not options.elementwise:
        return NotImplemented
    target: TensorMeta = call.arg("target")
    return target.numel


CONVOLUTION_BACKWARDS = ("aten::convolution_backward", "aten::convolution_backward_overrideable")


def register(handlers: HandlerSet) -> None:
    flops: dict[str, OpHandler] = {
        **dict.fromkeys(CONVOLUTION_BACKWARDS, convolution_backward_flops),
        "aten::native_batch_norm_backward": native_batch_norm_backward_flops,
        "aten::batch_norm_backward": batch_norm_backward_flops,
        "aten::cudnn_batch_norm_backward": training_batch_norm_backward_flops,
        "aten::miopen_batch_norm_backward": training_batch_norm_backward_flops,
        "aten::native_group_norm_backward": group_norm_backward_flops,
        "aten::native_layer_norm_backward": layer_norm_backward_flops,
        **dict.fromkeys(MAX_POOL_BACKWARDS, max_pool_backward_flops),
        **dict.fromkeys(AVG_POOL_BACKWARDS, avg_pool_backward_flops),
        **dict.fromkeys(ADAPTIVE_AVG_POOL_BACKWARDS, adaptive_avg_pool_backward_flops),
        "aten::embedding_dense_backward": embedding_backward_flops,
        **dict.fromkeys(BACKWARD_POINTWISE_FLOPS, pointwise_backward_flops),
        "aten::binary_cross_entropy_backward": binary_cross_entropy_backward_flops,
        "aten::glu_backward": glu_backward_flops,
        "aten::nll_loss_backward": nll_loss_backward_flops,
        "aten::nll_loss2d_backward": nll_loss_backward_flops,
    }
    for op, handler in flops.items():
        handlers.add_ops(op, flops=handler, activations=no_activations)
    # Refines catalog.py's aten::gelu_backward (the erf form) for approximate="tanh".
    handlers.add_ops("aten::gelu_backward", flops=gelu_backward_flops)
