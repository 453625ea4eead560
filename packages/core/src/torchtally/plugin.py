"""Everything a torchtally plugin may use, declared in one place.

A plugin package (op handlers, output formats, hardware, model sources) imports from this module
only; everything else in torchtally is internal and may change. What is here changes only by
additions, as the hook specs do.

- Hooks: `hookimpl` marks a plugin's implementations of the specs in `torchtally.hookspecs`.
- Op handlers: `HandlerSet` collects them; a handler gets an `OpCall` (tensors recorded as
  `TensorMeta`) and, if it asks, the `CountOptions`, and returns a `Count` or `NotImplemented`.
  Module handlers get a `ModuleCall`.
- Helpers for handlers: `first_input`, `first_output`, `output_numel`, `no_activations`,
  `pointwise_flops`, `reduction_flops`, `bytes_moved` (core's default ``bytes`` rule), and the
  cost tables of core's catalog (`POINTWISE_FLOPS`, `REDUCTION_FLOPS`, `NO_ARITHMETIC_OPS`).
- Output formats: a `Reporter` renders an `Analysis` (with its `ModuleInfo` per module) as
  text, and through its optional `render_diff` a `Diff` of two; `format_count` writes numbers
  as the built-in formats do. Declare the options a format takes
  (`Reporter(..., options={name: default})`) and torchtally checks the names for it.
- Devices: `Hardware` objects returned by a ``torchtally_hardware`` hook.
"""

from __future__ import annotations

from torchtally.analysis import JSON_SCHEMA_VERSION, Analysis
from torchtally.compare import Diff, Sweep
from torchtally.devices import Hardware
from torchtally.handlers import (
    ALL_METRICS,
    METRICS,
    ON_REQUEST_METRICS,
    Count,
    CountOptions,
    HandlerSet,
    ModuleHandler,
    OpHandler,
)
from torchtally.hookspecs import hookimpl
from torchtally.ops.catalog import NO_ARITHMETIC_OPS, POINTWISE_FLOPS, REDUCTION_FLOPS
from torchtally.ops.common import first_input, first_output, no_activations, output_numel
from torchtally.ops.elementwise import pointwise_flops, reduction_flops
from torchtally.ops.traffic import bytes_moved
from torchtally.records import ModuleCall, ModuleInfo, OpCall, TensorMeta, Trace
from torchtally.reporting import Reporter
from torchtally.units import format_count
from torchtally.version import __version__

__all__ = [
    "ALL_METRICS",
    "JSON_SCHEMA_VERSION",
    "METRICS",
    "NO_ARITHMETIC_OPS",
    "ON_REQUEST_METRICS",
    "POINTWISE_FLOPS",
    "REDUCTION_FLOPS",
    "Analysis",
    "Count",
    "CountOptions",
    "Diff",
    "HandlerSet",
    "Hardware",
    "ModuleCall",
    "ModuleHandler",
    "ModuleInfo",
    "OpCall",
    "OpHandler",
    "Reporter",
    "Sweep",
    "TensorMeta",
    "Trace",
    "__version__",
    "bytes_moved",
    "first_input",
    "first_output",
    "format_count",
    "hookimpl",
    "no_activations",
    "output_numel",
    "pointwise_flops",
    "reduction_flops",
]
