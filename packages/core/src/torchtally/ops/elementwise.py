"""Element-wise ops and reductions, counted only when element-wise counting is on.

Off by default so totals stay fvcore-compatible; off, these ops are listed as unsupported (never
silently dropped). On, a pointwise op costs `POINTWISE_FLOPS[op]` per output element and a
reduction `REDUCTION_FLOPS[op]` per input element (see catalog.py for the cost table). Their
activations are 0 either way: activations are the outputs of convolutions and matmuls.
"""

from __future__ import annotations

from typing import Any

from torchtally.handlers import CountOptions, HandlerSet
from torchtally.ops._shapes import first_input, first_output
from torchtally.ops.catalog import NO_ARITHMETIC_OPS, POINTWISE_FLOPS, REDUCTION_FLOPS
from torchtally.records import OpCall


def pointwise_flops(call: OpCall, options: CountOptions) -> Any:
    if not options.elementwise:
        return NotImplemented
    return POINTWISE_FLOPS[call.op] * first_output(call).numel


def reduction_flops(call: OpCall, options: CountOptions) -> Any:
    if not options.elementwise:
        return NotImplemented
    return REDUCTION_FLOPS[call.op] * first_input(call).numel


def _no_activations(call: OpCall) -> int:
    return 0


def register(handlers: HandlerSet) -> None:
    handlers.ignore(*NO_ARITHMETIC_OPS)
    for op in POINTWISE_FLOPS:
        handlers.add("flops", op, pointwise_flops)
        handlers.add("activations", op, _no_activations)
    for op in REDUCTION_FLOPS:
        handlers.add("flops", op, reduction_flops)
        handlers.add("activations", op, _no_activations)
