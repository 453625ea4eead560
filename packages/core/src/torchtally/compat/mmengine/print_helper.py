"""``mmengine.analysis.print_helper``: `get_model_complexity_info` and the two printers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torchtally.compat.jit_analysis import JitModelAnalysis
from torchtally.compat.mmengine.complexity_analysis import ActivationAnalyzer, FlopAnalyzer
from torchtally.compat.printing import (
    check_shape_or_inputs,
    complexity_info,
    stats_str,
    stats_table,
)
from torchtally.inputs import build_inputs


def complexity_stats_table(
    flops: JitModelAnalysis,
    max_depth: int = 3,
    activations: JitModelAnalysis | None = None,
    show_param_shapes: bool = True,
) -> str:
    """mmengine's table: module, ``#parameters or shape``, ``#flops`` (and ``#activations``) in
    a ``+---+`` grid, ending with a newline as mmengine's does."""
    return stats_table(flops, max_depth, activations, show_param_shapes, style="box") + "\n"


def complexity_stats_str(
    flops: JitModelAnalysis, activations: JitModelAnalysis | None = None
) -> str:
    """``print(model)`` with each module's ``#params``, ``#flops`` (and ``#acts``)."""
    return stats_str(flops, activations)


def get_model_complexity_info(
    model: nn.Module,
    input_shape: tuple[Any, ...] | None = None,
    inputs: torch.Tensor | tuple[Any, ...] | None = None,
    show_table: bool = True,
    show_arch: bool = True,
) -> dict[str, Any]:
    """Flops, activations and parameters of `model` (numbers and short strings), with the
    table and the module tree. `input_shape` builds random inputs of batch size 1 (a tuple of
    shapes builds several); `inputs` are the model's arguments. The model runs once."""
    check_shape_or_inputs(input_shape, inputs)
    if inputs is None:
        inputs, _ = build_inputs(model, None, input_shape)
    flop_handler = FlopAnalyzer(model, inputs)
    activation_handler = ActivationAnalyzer(model, inputs)
    activation_handler._traced = flop_handler._ensure_traced(activation_handler._watch())
    flops, activations = flop_handler.total(), activation_handler.total()
    params = flop_handler.analysis.params.get("", 0)
    table = arch = ""
    if show_table:
        table = "\n" + complexity_stats_table(flop_handler, activations=activation_handler)
    if show_arch:
        arch = "\n" + complexity_stats_str(flop_handler, activations=activation_handler)
    return complexity_info(flops, activations, params, table, arch)


__all__ = ["complexity_stats_str", "complexity_stats_table", "get_model_complexity_info"]
