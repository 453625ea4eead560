"""CTC loss (``F.ctc_loss``, speech recognition): a dynamic programme over a lattice of time steps
x extended target positions (the target with a blank around every label: ``2 * S + 1``).

Each lattice cell of the forward (alpha) recursion takes the log-sum-exp of up to three
predecessors and adds the log-probability: two ``logaddexp`` and an add from the element-wise
table (23). The backward pass runs the beta recursion (23 per cell), combines alpha and beta into
the label's gradient (a ``logaddexp``, 11 per cell), then forms each log-probability's gradient
(``exp(lp) - exp(...)``, times the incoming gradient: 11 per element). A loss, so it counts with
element-wise counting on, as the other losses do.

The lattice's size comes from the lengths: exact when they were lists; when they were tensors
(their values are data) from the shapes: every sample the full T steps, and with padded (N, S)
targets the full S labels (an upper bound); with concatenated 1-d targets their total is exact.
"""

from __future__ import annotations

from typing import Any

from torchtally.handlers import CountOptions, HandlerSet
from torchtally.ops.catalog import POINTWISE_FLOPS
from torchtally.ops.common import no_activations
from torchtally.records import OpCall, TensorMeta

_P = POINTWISE_FLOPS
CELL_FLOPS = 2 * _P["aten::logaddexp"] + _P["aten::add"]
CELL_BACKWARD_FLOPS = CELL_FLOPS + _P["aten::logaddexp"]
# grad * (exp(lp) - exp(log_alpha_beta + nll - lp)): 2 exps, an add and a subtract, a multiply
LOG_PROB_BACKWARD_FLOPS = 2 * _P["aten::exp"] + 3 * _P["aten::add"]


def lattice_cells(call: OpCall) -> int:
    """Cells of every sample's lattice: input length x (2 x target length + 1), summed."""
    log_probs: TensorMeta = call.arg("log_probs")
    targets: TensorMeta = call.arg("targets")
    input_lengths, target_lengths = call.arg("input_lengths"), call.arg("target_lengths")
    if isinstance(input_lengths, list) and isinstance(target_lengths, list):
        return sum(
            int(t) * (2 * int(s) + 1) for t, s in zip(input_lengths, target_lengths, strict=True)
        )
    steps = log_probs.shape[0]
    batch = log_probs.shape[1] if log_probs.ndim == 3 else 1
    if targets.ndim == 1:  # concatenated: the labels' total is the targets' size
        return steps * (2 * targets.numel + batch)
    return batch * steps * (2 * targets.shape[-1] + 1)


def ctc_loss_flops(call: OpCall, options: CountOptions) -> Any:
    if not options.elementwise:
        return NotImplemented
    return lattice_cells(call) * CELL_FLOPS


def ctc_loss_backward_flops(call: OpCall, options: CountOptions) -> Any:
    if not options.elementwise:
        return NotImplemented
    log_probs: TensorMeta = call.arg("log_probs")
    return lattice_cells(call) * CELL_BACKWARD_FLOPS + log_probs.numel * LOG_PROB_BACKWARD_FLOPS


def register(handlers: HandlerSet) -> None:
    losses = ("aten::_ctc_loss", "aten::_cudnn_ctc_loss", "aten::miopen_ctc_loss")
    handlers.add_ops(losses, flops=ctc_loss_flops, activations=no_activations)
    handlers.add_ops(
        "aten::_ctc_loss_backward", flops=ctc_loss_backward_flops, activations=no_activations
    )
