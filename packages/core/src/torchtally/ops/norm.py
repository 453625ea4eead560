"""Normalisation layers, with fvcore's per-element costs.

Batch norm in eval mode applies a precomputed scale and shift: 1 per element, 2 with affine.
In training mode (and instance norm, which runs batch norm on statistics of its own input), it
computes statistics first: 4 per element, 5 with affine. Layer and group norm: 4, 5 with affine.
"""

from __future__ import annotations

from typing import Any

from torchtally.handlers import CountOptions, HandlerSet
from torchtally.ops.common import no_activations
from torchtally.records import OpCall, TensorMeta

TRAINING_BATCH_NORMS = (
    "aten::native_batch_norm",
    "aten::_native_batch_norm_legit",
    "aten::_native_batch_norm_legit_functional",
    "aten::cudnn_batch_norm",
    "aten::miopen_batch_norm",
)  # these take a `training` argument
EVAL_BATCH_NORMS = ("aten::_native_batch_norm_legit_no_training",)
NO_UPDATE_BATCH_NORMS = ("aten::_batch_norm_no_update",)  # batch statistics without running ones
UPDATING_BATCH_NORMS = ("aten::_batch_norm_with_update", "aten::_batch_norm_with_update_functional")
STATISTIC_NORMS = ("aten::native_layer_norm", "aten::native_group_norm")


def _norm(call: OpCall, training: bool) -> int:
    x: TensorMeta = call.arg("input")
    affine = call.arguments.get("weight") is not None
    if training:
        return affine_norm_flops(x, affine)
    return x.numel * (2 if affine else 1)


def affine_norm_flops(x: TensorMeta, affine: bool) -> int:
    """A norm on statistics of its own input: 4 per element, 5 with a weight."""
    return x.numel * (5 if affine else 4)


def _batch_norm(call: OpCall) -> int:
    return _norm(call, training=bool(call.arguments.get("training")))


def _no_update_batch_norm(call: OpCall) -> int:
    return _norm(call, training=call.arguments.get("running_mean") is None)


def weight_norm_flops(call: OpCall, options: CountOptions) -> Any:
    """``_weight_norm_interface`` (``weight_norm``): w = g * v / ||v||, the norm per slice along
    `dim`. Per element of v: its square accumulated (1) and the scale (1); per slice, g / norm
    (1): what the unfused path (``norm``, ``div``, ``mul``) costs. It normalises weights, not
    activations, so it counts with element-wise counting, as fvcore leaves it."""
    if not options.elementwise:
        return NotImplemented
    v: TensorMeta = call.arg("v")
    g: TensorMeta = call.arg("g")
    return 2 * v.numel + g.numel


def weight_norm_backward_flops(call: OpCall, options: CountOptions) -> Any:
    """grad_g = sum(grad_w * v) / ||v|| (1 per element), grad_v = (g / ||v||) * (grad_w - v *
    grad_g / ||v||) (2 per element)."""
    if not options.elementwise:
        return NotImplemented
    v: TensorMeta = call.arg("saved_v")
    return 3 * v.numel


# The pieces of batch norm that SyncBatchNorm and CUDA's batch norm run as ops of their own,
# per input element; together they cost what native_batch_norm does (statistics 2 + normalising
# 3 = 5 with a weight), and its gradient (2 sums + 2 = 4).
BATCH_NORM_PIECES = {
    "aten::batch_norm_stats": 2,  # mean and variance: x and x * x accumulated
    "aten::batch_norm_update_stats": 2,
    "aten::batch_norm_backward_reduce": 2,  # sum(g) and sum(g * (x - mean))
    "aten::batch_norm_backward_elemt": 2,  # a * g + b * x + c
}


def batch_norm_piece_flops(call: OpCall) -> int:
    x: TensorMeta = (
        call.input_tensors[0]
        if call.op != "aten::batch_norm_backward_reduce"
        else (call.arg("input"))
    )
    return BATCH_NORM_PIECES[call.op] * x.numel


def batch_norm_elemt_flops(call: OpCall) -> int:
    """(x - mean) * invstd (* weight + bias): 3 per element with a weight, 2 without."""
    x: TensorMeta = call.arg("input")
    return x.numel * (3 if call.arguments.get("weight") is not None else 2)


def batch_norm_gather_stats_flops(call: OpCall) -> int:
    """The devices' means and variances combined: 3 per element of the gathered means."""
    mean: TensorMeta = call.arg("mean")
    return 3 * mean.numel


def register(handlers: HandlerSet) -> None:
    handlers.add_ops(tuple(BATCH_NORM_PIECES), flops=batch_norm_piece_flops)
    handlers.add_ops("aten::batch_norm_elemt", flops=batch_norm_elemt_flops)
    gather = ("aten::batch_norm_gather_stats", "aten::batch_norm_gather_stats_with_counts")
    handlers.add_ops(gather, flops=batch_norm_gather_stats_flops)
    handlers.add_ops(
        (*BATCH_NORM_PIECES, "aten::batch_norm_elemt", *gather), activations=no_activations
    )
    handlers.add_ops(TRAINING_BATCH_NORMS, flops=_batch_norm)
    handlers.add_ops(EVAL_BATCH_NORMS, flops=lambda call: _norm(call, training=False))
    handlers.add_ops(NO_UPDATE_BATCH_NORMS, flops=_no_update_batch_norm)
    handlers.add_ops(
        UPDATING_BATCH_NORMS + STATISTIC_NORMS, flops=lambda call: _norm(call, training=True)
    )
    every_norm = (
        TRAINING_BATCH_NORMS
        + EVAL_BATCH_NORMS
        + NO_UPDATE_BATCH_NORMS
        + UPDATING_BATCH_NORMS
        + STATISTIC_NORMS
    )
    handlers.add_ops(every_norm, activations=no_activations)
    handlers.add_ops(
        "aten::_weight_norm_interface", flops=weight_norm_flops, activations=no_activations
    )
    handlers.add_ops(
        "aten::_weight_norm_interface_backward",
        flops=weight_norm_backward_flops,
        activations=no_activations,
    )
    handlers.name_functions(
        {
            "batch_norm": "batch_norm",
            "layer_norm": "layer_norm",
            "group_norm": "group_norm",
            "instance_norm": "instance_norm",
        }
    )
