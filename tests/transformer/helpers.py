"""Recorded calls for the transformer plugin's tests: built from torch's schemas, counted as an
analysis counts traced ones."""

from __future__ import annotations

from typing import Any

import torch

import torchtally
from torchtally.api import registry_with
from torchtally.handlers import CountOptions
from torchtally.records import ModuleInfo, OpCall, TensorMeta, Trace


def T(*shape: int, dtype: torch.dtype = torch.float32) -> TensorMeta:
    """A tensor as a trace records it."""
    return TensorMeta(tuple(shape), dtype)


def recorded(
    op: torch._ops.OpOverload,
    *args: Any,
    outputs: tuple[Any, ...] = (),
    phase: str = "forward",
    **kwargs: Any,
) -> OpCall:
    """An `OpCall` as the tracer records one, its arguments bound by torch's own schema of `op`.

    Tensors are given as `TensorMeta`. A keyword that is not one of the schema's argument names
    raises, so a handler tested with these calls reads the names the dispatcher really uses.
    """
    arguments = list(op._schema.arguments)
    names = [a.name for a in arguments]
    unknown = set(kwargs) - set(names)
    if unknown:
        raise TypeError(f"{op} has no argument(s) {sorted(unknown)}; its arguments are {names}")
    bound: dict[str, Any] = {}
    for i, argument in enumerate(arguments):
        if i < len(args):
            bound[argument.name] = args[i]
        elif argument.name in kwargs:
            bound[argument.name] = kwargs[argument.name]
        elif argument.has_default_value():
            bound[argument.name] = argument.default_value
        else:
            raise TypeError(f"{op} needs its argument {argument.name!r}")
    return OpCall(
        op=op._schema.name,
        overload=op._overloadname,
        arguments=bound,
        outputs=outputs,
        function=None,
        scope=(),
        phase=phase,
    )


def count_calls(
    *calls: OpCall, elementwise: bool = False, options: dict[str, Any] | None = None
) -> torchtally.Analysis:
    """Count hand-built calls exactly as an analysis counts traced ones."""
    trace = Trace(
        ops=calls,
        module_calls=(),
        modules={"": ModuleInfo(name="", type_name="Recorded", extra_repr="", children=())},
        called_modules=frozenset({""}),
        input_shapes=(),
    )
    return torchtally.Analysis(
        trace=trace,
        registry=registry_with(),
        options=CountOptions(elementwise=elementwise, extra=dict(options or {})),
        ancestor_mode="owner",
        metrics=("flops", "activations"),
        strict=True,
    )


def recorded_higher_order(op: Any, *args: Any, phase: str = "forward", **kwargs: Any) -> OpCall:
    """A higher-order op's call as the tracer records it: named by ``type(op).__call__``."""
    import inspect

    parameters = list(inspect.signature(type(op).__call__).parameters.values())[1:]
    names = [p.name for p in parameters]
    unknown = set(kwargs) - set(names)
    if unknown:
        raise TypeError(f"{op.name()} has no argument(s) {sorted(unknown)}; it takes {names}")
    bound = dict(zip(names, args, strict=False))  # the rest are keywords or defaults
    for p in parameters[len(args) :]:
        bound[p.name] = kwargs.get(p.name, None if p.default is p.empty else p.default)
    return OpCall(
        op=f"higher_order::{op.name()}",
        overload="default",
        arguments=bound,
        outputs=(),
        function=None,
        scope=(),
        phase=phase,
    )
