"""Element-wise ops and reductions, counted only when element-wise counting is on.

Off by default so totals stay fvcore-compatible; off, these ops are listed as unsupported (never
silently dropped). On, a pointwise op costs `POINTWISE_FLOPS[op]` per output element and a
reduction `REDUCTION_FLOPS[op]` per input element (see catalog.py for the cost table). Their
activations are 0 either way: activations are the outputs of convolutions and matmuls.
"""

from __future__ import annotations

from typing import Any

from torchtally.handlers import CountOptions, HandlerSet
from torchtally.ops.catalog import (
    GELU_TANH_FLOPS,
    NO_ARITHMETIC_OPS,
    POINTWISE_FLOPS,
    REDUCTION_FLOPS,
)
from torchtally.ops.common import first_input, first_output, no_activations
from torchtally.records import OpCall

# Pointwise ops and reductions these functions issue belong to them: nn.Linear adds its bias
# separately when ATen cannot fuse it into addmm, and sums its gradient in the backward pass; the
# linear convention ignores the bias either way.
PART_OF_FUNCTION = frozenset({"linear"})


def pointwise_flops(call: OpCall, options: CountOptions) -> Any:
    if call.function in PART_OF_FUNCTION:
        return 0
    if not options.elementwise:
        return NotImplemented
    return POINTWISE_FLOPS[call.op] * first_output(call).stored


def gelu_flops(call: OpCall, options: CountOptions) -> Any:
    if options.elementwise and call.arguments.get("approximate") == "tanh":
        return GELU_TANH_FLOPS * first_output(call).numel
    return pointwise_flops(call, options)


def reduction_flops(call: OpCall, options: CountOptions) -> Any:
    if call.function in PART_OF_FUNCTION:
        return 0  # linear's bias gradient: a sum, uncounted like the bias
    if not options.elementwise:
        return NotImplemented
    return REDUCTION_FLOPS[call.op] * first_input(call).stored


def register(handlers: HandlerSet) -> None:
    handlers.ignore(*NO_ARITHMETIC_OPS)
    handlers.add_ops(POINTWISE_FLOPS, flops=pointwise_flops, activations=no_activations)
    handlers.add_ops(("aten::gelu", "aten::gelu_"), flops=gelu_flops)
    handlers.add_ops(REDUCTION_FLOPS, flops=reduction_flops, activations=no_activations)
