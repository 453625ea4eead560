"""Helpers shared by the test packages (on sys.path through pytest's ``pythonpath``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import torchtally
from torchtally.api import registry_with
from torchtally.handlers import CountOptions
from torchtally.records import ModuleInfo, OpCall, TensorMeta, Trace


class Fn(nn.Module):
    """A module whose forward calls `fn`: torchtally analyses modules, not bare functions."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


# Stand-ins for importlib.metadata objects, to feed the plugin manager fake plugins.


@dataclass
class FakeDist:
    name: str
    version: str
    metadata: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.metadata = {"Name": self.name}


@dataclass
class FakeEntryPoint:
    name: str
    target: Any
    dist: FakeDist

    def load(self) -> Any:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


# A Llama small enough for any test: 2 layers, hidden 64, 4 query heads of 16, 2 KV heads.
TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 100,
}


# Recorded calls built from torch's schemas, counted as an analysis counts traced ones.


def T(*shape: int, dtype: torch.dtype = torch.float32) -> TensorMeta:
    """A tensor as a trace records it."""
    return TensorMeta(tuple(shape), dtype)


def recorded(
    op: torch._ops.OpOverload,
    *args: Any,
    outputs: tuple[Any, ...] = (),
    phase: str = "forward",
    needs_input_grad: tuple[bool, ...] | None = None,
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
        needs_input_grad=needs_input_grad,
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
