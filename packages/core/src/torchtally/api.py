"""The native API: `analyze` a model, `trace` it, `register_handler` for a custom op."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from torchtally.analysis import Analysis
from torchtally.handlers import METRICS, CountOptions, HandlerRegistry, HandlerSet, OpHandler
from torchtally.inputs import build_inputs
from torchtally.params import parameter_count, parameter_shapes
from torchtally.plugins import handler_registry
from torchtally.records import Trace
from torchtally.tracer import run_traced

logger = logging.getLogger("torchtally")

F = TypeVar("F", bound=Callable[..., Any])

_user_handlers = HandlerSet()

Handlers = Mapping[str, OpHandler | None] | HandlerSet | None


def register_handler(*ops: str, metric: str = "flops") -> Callable[[F], F]:
    """Decorator: count `ops` with the decorated function in every later analysis.

    >>> @torchtally.register_handler("mylib::fused_gelu")
    ... def fused_gelu(call):
    ...     return 8 * call.output_tensors[0].numel
    """
    return _user_handlers.handler(*ops, metric=metric)


def unregister_handler(*ops: str, metric: str = "flops") -> None:
    """Forget handlers added with `register_handler`."""
    for op in ops:
        _user_handlers.ops.get(metric, {}).pop(op, None)


def trace(
    model: nn.Module,
    inputs: Any = None,
    *,
    input_shape: tuple[Any, ...] | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> Trace:
    """Run the model once and return every op it ran (``.ops``) with its module scope."""
    args, keyword = build_inputs(model, inputs, input_shape, kwargs)
    return run_traced(model, args, keyword)


def registry_with(handlers: Handlers = None) -> HandlerRegistry:
    """Core and plugin handlers, then `register_handler` ones, then `handlers` for this call."""
    registry = handler_registry().with_layer("user", _user_handlers)
    if handlers is None:
        return registry
    if not isinstance(handlers, HandlerSet):
        handlers = HandlerSet.from_mapping(handlers)
    return registry.with_layer("call", handlers)


def analyze(
    model: nn.Module,
    inputs: Any = None,
    *,
    input_shape: tuple[Any, ...] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    handlers: Handlers = None,
    elementwise: bool = False,
    options: Mapping[str, Any] | None = None,
    metrics: tuple[str, ...] = METRICS,
    ancestor_mode: str = "owner",
    strict: bool = False,
    warn_unsupported: bool = True,
) -> Analysis:
    """Analyse `model` on `inputs`: parameters, and flops and activations per module and operator.

    The model runs once, under ``torch.no_grad()``, and is left exactly as it was.

    :param inputs: a tensor, a tuple of positional arguments, or a dict of keyword arguments.
    :param input_shape: instead of inputs, mmengine-style shapes without the batch dimension.
    :param handlers: ``{"op": handler or None}`` for this call only (flops); or a `HandlerSet`.
    :param elementwise: also count element-wise ops and reductions (off: fvcore-compatible totals).
    :param options: extra settings for plugin handlers, e.g. ``{"causal": "half"}``.
    :param ancestor_mode: ``"owner"`` or ``"caller"``, as in fvcore.
    :param strict: raise when a handler fails instead of reporting the op as unsupported.
    """
    args, keyword = build_inputs(model, inputs, input_shape, kwargs)
    analysis = Analysis(
        trace=run_traced(model, args, keyword),
        registry=registry_with(handlers),
        options=CountOptions(elementwise=elementwise, extra=dict(options or {})),
        ancestor_mode=ancestor_mode,
        metrics=tuple(metrics),
        params=parameter_count(model),
        param_shapes=parameter_shapes(model),
        strict=strict,
    )
    if warn_unsupported:
        log_unsupported(analysis)
    return analysis


def log_unsupported(analysis: Analysis, metrics: tuple[str, ...] = ("flops",)) -> None:
    """One warning line per op that no handler counted (for flops, unless told otherwise)."""
    reported: set[str] = set()
    for metric in metrics:
        if metric not in analysis.metrics:
            continue
        for op, times in sorted(analysis.unsupported_ops(metric).items()):
            if op in reported:
                continue
            reported.add(op)
            logger.warning(
                "unsupported operator %s ran %d time(s) and is not counted in %s "
                "(register a handler, or pass elementwise=True for element-wise ops)",
                op,
                times,
                metric,
            )
