"""`Analysis`: the immutable result of one analysis, with fvcore's query surface per metric."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torchtally.counting import (
    HandlerFailure,
    check_ancestor_mode,
    count_trace,
    uncalled_modules,
    warn_unused_handlers,
)
from torchtally.devices import Hardware
from torchtally.handlers import CountOptions, HandlerRegistry, HandlerSet
from torchtally.memory import memory_summary
from torchtally.params import count_by_prefix
from torchtally.records import ModuleInfo, TensorMeta, Trace
from torchtally.roofline import Measured, Roofline, measured, roofline
from torchtally.version import __version__

JSON_SCHEMA_VERSION = 1

# Rendering needs the plugin manager, which sits above this module: `torchtally.formats` hands
# its functions over here when it is imported (importing torchtally imports it).
_render: Callable[..., str] | None = None
_save: Callable[..., Path] | None = None


# Devices by name come from core's table and the plugins (a layer above): `torchtally.api`
# hands its lookup over here when it is imported.
_find_hardware: Callable[[str], Hardware] | None = None


def set_hardware_finder(find: Callable[[str], Hardware]) -> None:
    """Called by `torchtally.api`: what `Analysis.roofline` looks device names up with."""
    global _find_hardware
    _find_hardware = find


def set_renderer(render: Callable[..., str], save: Callable[..., Path]) -> None:
    """Called by `torchtally.formats`: what `Analysis.render` and `Analysis.save` call."""
    global _render, _save
    _render, _save = render, save


@dataclass(frozen=True)
class Analysis:
    """Counts of one traced run: per metric, per module, per operator; parameters; what was missed.

    Query methods take ``metric`` (``"flops"`` by default) and return fresh dicts, so changing a
    result never changes the analysis. Module names are canonical: a shared module is reported
    under its first name; its other names are accepted as aliases wherever a name is asked for.
    """

    trace: Trace = field(repr=False)
    registry: HandlerRegistry = field(repr=False)
    options: CountOptions
    ancestor_mode: str
    metrics: tuple[str, ...]
    strict: bool = False
    params: Mapping[str, int] = field(init=False, repr=False)  # from trace.param_shapes
    param_shapes: Mapping[str, tuple[int, ...]] = field(init=False, repr=False)
    _counts: Mapping[str | None, Tables] = field(init=False, repr=False)
    _unsupported: Mapping[str | None, Tables] = field(init=False, repr=False)
    handler_failures: tuple[HandlerFailure, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_ancestor_mode(self.ancestor_mode)
        counts = count_trace(
            self.trace, self.registry, self.options, self.metrics, self.ancestor_mode, self.strict
        )
        object.__setattr__(self, "_counts", _by_phase(counts.counts))
        object.__setattr__(self, "_unsupported", _by_phase(counts.unsupported))
        object.__setattr__(self, "handler_failures", tuple(counts.failures))
        shapes = dict(self.trace.param_shapes)
        object.__setattr__(self, "params", MappingProxyType(dict(count_by_prefix(shapes))))
        object.__setattr__(self, "param_shapes", MappingProxyType(shapes))

    # --- queries -------------------------------------------------------------------------------

    # Every query takes `phase`: "forward", "backward" (when analysed with backward=True), or
    # None for the sum of the phases that ran.

    def total(self, metric: str = "flops", module: str = "", phase: str | None = None) -> int:
        """The count of `metric` for `module` (the whole model by default)."""
        table = self._table(self._counts, metric, phase)
        return sum(table[self.canonical_module_name(module)].values())

    def by_module(self, metric: str = "flops", phase: str | None = None) -> dict[str, int]:
        """Every module's count, in module order (modules without any count give 0)."""
        table = self._table(self._counts, metric, phase)
        return {name: sum(ops.values()) for name, ops in table.items()}

    def by_operator(
        self, metric: str = "flops", module: str = "", phase: str | None = None
    ) -> dict[str, int]:
        """The counts of `module` per operator name (fvcore's names: conv, linear, matmul, ...)."""
        table = self._table(self._counts, metric, phase)
        return dict(table[self.canonical_module_name(module)])

    def by_module_and_operator(
        self, metric: str = "flops", phase: str | None = None
    ) -> dict[str, dict[str, int]]:
        return {name: dict(ops) for name, ops in self._table(self._counts, metric, phase).items()}

    def unsupported_ops(
        self, metric: str = "flops", module: str = "", phase: str | None = None
    ) -> dict[str, int]:
        """Ops that did arithmetic but had no handler for `metric`, with how often they ran."""
        table = self._table(self._unsupported, metric, phase)
        return dict(table[self.canonical_module_name(module)])

    def memory(self) -> dict[str, Any]:
        """The memory footprint of the run, in bytes (a fresh dict):

        - ``params_bytes``, ``buffers_bytes``: per dtype name (``{"float32": 102228128}``);
        - ``trainable_params``, ``frozen_params``: parameter counts (``requires_grad`` or not);
        - ``input_bytes``: the tensors passed in;
        - ``peak_activation_bytes``: the peak of the storage the run allocated itself (results,
          saved tensors, gradients), beyond parameters, buffers and inputs, from the storage
          lifetimes of the trace; ``peak_activation_bytes_by_phase`` per phase and
          ``peak_activation_bytes_by_module`` while each top-level module's forward ran;
        - ``peak_bytes``: parameters, buffers, inputs and the activation peak together.

        Kernels' internal scratch memory is not seen (see docs/conventions.md, "Memory").
        """
        return memory_summary(self.trace)

    def roofline(self, hardware: str | Hardware, *, tf32: bool = False) -> Roofline:
        """Estimated seconds per op and per module on `hardware` (a name such as ``"h100-sxm"``,
        or a `Hardware`): per op ``max(2 * MACs / FLOP/s, bytes / bandwidth)``, and whether it
        is compute- or memory-bound. A pass over the trace; the model does not run again.

        Matmuls, convolutions and attention take the device's matrix-unit rate for their dtype
        (float32 matmuls the plain FP32 rate, or the TF32 rate with `tf32`), other ops its
        vector rate; an op no flop handler counts (element-wise ops unless
        ``elementwise=True``) is timed by its bytes alone. See docs/conventions.md, "Roofline".
        """
        if not isinstance(hardware, Hardware):
            assert _find_hardware is not None, "import torchtally first"
            hardware = _find_hardware(hardware)
        return roofline(self, hardware, tf32=tf32)

    def measured(self) -> Measured:
        """The forward pass's measured seconds per op and per module (``measure=True``), with
        a plain forward pass's time, achieved FLOP/s and, given a device, MFU. Raises
        ValueError for an analysis that was not timed."""
        return measured(self)

    @property
    def phases(self) -> tuple[str, ...]:
        """``("forward",)``, or ``("forward", "backward")`` when the backward pass was analysed."""
        return tuple(phase for phase in self._counts if phase is not None)

    @property
    def mode(self) -> str:
        """How the model ran: ``"real"``, ``"fake"`` or ``"meta"``."""
        return self.trace.mode

    @property
    def uncalled_modules(self) -> frozenset[str]:
        """Modules whose ``__call__`` never ran (unused, or called through ``.forward()``)."""
        return uncalled_modules(self.trace, self.ancestor_mode)

    @property
    def modules(self) -> Mapping[str, ModuleInfo]:
        """Every module under its canonical name, in ``named_modules()`` order."""
        return self.trace.modules

    @property
    def shared_params(self) -> Mapping[str, str]:
        """Parameters registered under a second name (tied weights, such as GPT-2's
        ``lm_head.weight``) -> the name they are counted under (``transformer.wte.weight``)."""
        return self.trace.shared_params

    @property
    def input_shapes(self) -> Any:
        return self.trace.input_shapes

    def canonical_module_name(self, name: str) -> str:
        """The name results use for module `name` (differs when the module is shared)."""
        if not isinstance(name, str):
            raise TypeError(f"module names are strings such as 'layer1.0', got {name!r}")
        if name in self.trace.modules:
            return name
        for info in self.trace.modules.values():
            if name in info.aliases:
                return info.name
        raise KeyError(
            f"{name!r} is not a module of the analysed model; "
            f"module names look like {', '.join(repr(n) for n in list(self.modules)[1:4])}"
        )

    # --- recounting --------------------------------------------------------------------------

    def recount(
        self,
        handlers: HandlerSet | Mapping[str, Any] | None = None,
        *,
        elementwise: bool | None = None,
        options: Mapping[str, Any] | None = None,
        ancestor_mode: str | None = None,
        metrics: tuple[str, ...] | None = None,
    ) -> Analysis:
        """A new Analysis from the same trace (the model does not run again).

        `handlers` is layered over this analysis' handlers: ``{"op": handler or None}`` (flops)
        or a `HandlerSet`.
        """
        registry = self.registry
        if handlers is not None:
            if not isinstance(handlers, HandlerSet):
                handlers = HandlerSet.from_mapping(handlers)
            warn_unused_handlers(handlers, self.trace)
            registry = registry.with_layer("call", handlers)
        count_options = CountOptions(
            elementwise=self.options.elementwise if elementwise is None else elementwise,
            extra={**self.options.extra, **(options or {})},
        )
        return replace(
            self,
            registry=registry,
            options=count_options,
            ancestor_mode=self.ancestor_mode if ancestor_mode is None else ancestor_mode,
            metrics=self.metrics if metrics is None else metrics,
        )

    # --- output --------------------------------------------------------------------------------

    def render(self, format: str = "table", **options: Any) -> str:
        """Text in an output format from an installed reporter plugin (table, arch, json, ...);
        the same as ``torchtally.render(analysis, format, **options)``."""
        assert _render is not None, "import torchtally first"
        return _render(self, format, **options)

    def save(self, path: str | os.PathLike[str], format: str | None = None, **options: Any) -> Path:
        """Write `render(format, **options)` to `path`, atomically; the format defaults from the
        suffix (``.json`` json, ``.md`` markdown, anything else table)."""
        assert _save is not None, "import torchtally first"
        return _save(self, path, format, **options)

    def to_dict(self) -> dict[str, Any]:
        """Every number this analysis holds, as JSON-ready plain data with a stable key order."""
        return {
            "schema_version": JSON_SCHEMA_VERSION,
            "torchtally_version": __version__,
            "inputs": _jsonable(self.trace.input_shapes),
            "mode": self.trace.mode,
            "conventions": {
                "flop": "one fused multiply-add counts as one flop",
                "ancestor_mode": self.ancestor_mode,
                "elementwise": self.options.elementwise,
                "options": {k: _jsonable(v) for k, v in sorted(self.options.extra.items())},
            },
            "metrics": {
                metric: {
                    "total": self.total(metric),
                    "by_module": self.by_module(metric),
                    "by_operator": _sorted(self.by_operator(metric)),
                    "by_module_and_operator": {
                        name: _sorted(ops)
                        for name, ops in self.by_module_and_operator(metric).items()
                    },
                    "unsupported_ops": _sorted(self.unsupported_ops(metric)),
                    "unsupported_ops_by_module": {
                        name: _sorted(ops)
                        for name, ops in self._table(self._unsupported, metric, None).items()
                        if ops
                    },
                }
                for metric in self.metrics
            },
            "params": {
                "total": self.params.get("", 0),
                "by_module": {name: self.params.get(name, 0) for name in self.modules},
                "shapes": {name: list(shape) for name, shape in self.param_shapes.items()},
                "shared": dict(self.shared_params),
            },
            "modules": {
                name: {"type": info.type_name, "aliases": list(info.aliases)}
                for name, info in self.modules.items()
            },
            "uncalled_modules": sorted(self.uncalled_modules),
            "memory": self.memory(),
            **({"measured": self.measured().to_dict()} if self.trace.measurement else {}),
            **({"phases": self._phases_dict()} if len(self.phases) > 1 else {}),
            "handler_failures": [str(f) for f in self.handler_failures],
        }

    def _phases_dict(self) -> dict[str, Any]:
        """Per phase and metric: total, by_module and by_operator (only with a backward pass)."""
        return {
            phase: {
                metric: {
                    "total": self.total(metric, phase=phase),
                    "by_module": self.by_module(metric, phase=phase),
                    "by_operator": _sorted(self.by_operator(metric, phase=phase)),
                    "unsupported_ops": _sorted(self.unsupported_ops(metric, phase=phase)),
                }
                for metric in self.metrics
            }
            for phase in self.phases
        }

    def _table(
        self, tables: Mapping[str | None, Tables], metric: str, phase: str | None
    ) -> Mapping[str, Counter[str]]:
        if phase not in tables:
            raise KeyError(
                f"this analysis has no phase {phase!r}; it ran {', '.join(self.phases)} "
                "(analyse with backward=True to count the backward pass)"
            )
        try:
            return tables[phase][metric]
        except KeyError:
            raise KeyError(
                f"this analysis has no metric {metric!r}; it counted {', '.join(self.metrics)}"
            ) from None


Tables = Mapping[str, Mapping[str, Counter[str]]]  # metric -> module -> operator -> count


def _by_phase(tables: dict[str, dict[str, dict[str, Counter[str]]]]) -> Mapping[str | None, Tables]:
    """Freeze per-phase tables and add their sum under the phase None."""
    frozen: dict[str | None, Tables] = {
        phase: MappingProxyType({m: MappingProxyType(t) for m, t in metrics.items()})
        for phase, metrics in tables.items()
    }
    if len(tables) == 1:
        frozen[None] = next(iter(frozen.values()))
        return MappingProxyType(frozen)
    summed: dict[str, dict[str, Counter[str]]] = {}
    for metrics in tables.values():
        for metric, table in metrics.items():
            target = summed.setdefault(metric, {})
            for module, ops in table.items():
                target.setdefault(module, Counter()).update(ops)
    frozen[None] = MappingProxyType({m: MappingProxyType(t) for m, t in summed.items()})
    return MappingProxyType(frozen)


def _sorted(counts: Mapping[str, Any]) -> dict[str, Any]:
    return dict(sorted(counts.items()))


def _jsonable(value: Any) -> Any:
    if isinstance(value, TensorMeta):
        return {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
