"""Recorded calls for the transformer plugin's tests: built from torch's schemas, counted as an
analysis counts traced ones."""

from __future__ import annotations

from typing import Any

from torchtally_testing import T, count_calls, recorded

from torchtally.records import OpCall

__all__ = ["T", "count_calls", "recorded", "recorded_higher_order"]


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
