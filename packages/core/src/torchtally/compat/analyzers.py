"""torchtally's flavour of the fvcore / mmengine API: same names and numbers, torchtally's handlers.

Differences from fvcore: handlers take one recorded `OpCall` (not jit values) and are keyed by the
ops the dispatcher sees (``aten::addmm``, not ``aten::linear``); the model is traced once for
every metric and handler change. For code written against fvcore (handles on JIT values, keyed by
fvcore's op names) use the drop-in, `torchtally.compat.fvcore`.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections import Counter, defaultdict
from typing import Any, ClassVar, TypeVar

from torch import nn

from torchtally.analysis import Analysis
from torchtally.api import log_unsupported, registry_with
from torchtally.artefacts import as_program
from torchtally.compat.printing import (
    check_shape_or_inputs,
    complexity_info,
    parameter_table,
    scaled_by_operator,
)
from torchtally.handlers import (
    CompositeOpError,
    CountOptions,
    HandlerRegistry,
    HandlerSet,
    OpHandler,
    ignoring_only,
)
from torchtally.inputs import build_inputs
from torchtally.records import Trace
from torchtally.tracer import run_traced

logger = logging.getLogger("torchtally")

A = TypeVar("A", bound="ModelAnalyzer")


class ModelAnalyzer:
    """fvcore's ``JitModelAnalysis`` surface for one metric; results computed once and cached."""

    metric: ClassVar[str] = ""

    def __init__(self, model: nn.Module, inputs: Any, *, elementwise: bool = False) -> None:
        self._model = model
        self._inputs = inputs
        self._elementwise = elementwise
        self._handlers = HandlerSet()
        self._cleared = False
        self._ancestor_mode = "owner"
        self._warn_unsupported = True
        self._warn_uncalled = True
        self._tracer_warnings = "no_tracer_warning"
        self._trace: Trace | None = None
        self._analysis: Analysis | None = None

    # --- results ----------------------------------------------------------------------------

    def total(self, module_name: str = "") -> int:
        return self._analyze().total(self.metric, module_name)

    def by_operator(self, module_name: str = "") -> Counter[str]:
        return Counter(self._analyze().by_operator(self.metric, module_name))

    def by_module(self) -> Counter[str]:
        return Counter(self._analyze().by_module(self.metric))

    def by_module_and_operator(self) -> dict[str, Counter[str]]:
        return {
            name: Counter(ops)
            for name, ops in self._analyze().by_module_and_operator(self.metric).items()
        }

    def unsupported_ops(self, module_name: str = "") -> Counter[str]:
        return Counter(self._analyze().unsupported_ops(self.metric, module_name))

    def uncalled_modules(self) -> set[str]:
        return set(self._analyze().uncalled_modules)

    def canonical_module_name(self, name: str) -> str:
        return self._analyze().canonical_module_name(name)

    @property
    def analysis(self) -> Analysis:
        """The underlying torchtally `Analysis` (all metrics share one trace)."""
        return self._analyze()

    # --- settings (each returns self, for chaining) ---------------------------------------------

    def set_op_handle(self: A, *args: Any, **kwargs: OpHandler | None) -> A:
        """Add or replace handlers: ``set_op_handle("aten::mm", fn, "aten::bmm", None)``.

        None ignores the op. A handler takes the recorded `OpCall` (and optionally the options).
        """
        if len(args) % 2:
            raise TypeError("set_op_handle takes pairs of op names and handlers")
        pairs = {**dict(zip(args[::2], args[1::2], strict=False)), **kwargs}
        for op, handler in pairs.items():
            _check_not_fvcore_style(op, handler)
            try:
                self._handlers.add(self.metric, op, handler)
            except CompositeOpError as error:
                raise CompositeOpError(f"{error} {_DROP_IN}") from None
        self._analysis = None
        return self

    def clear_op_handles(self: A) -> A:
        """Drop every handler, the built-in ones too; only ops without arithmetic stay ignored."""
        self._handlers = HandlerSet()
        self._cleared = True
        self._analysis = None
        return self

    def ancestor_mode(self: A, mode: str) -> A:
        if mode not in ("owner", "caller"):
            raise ValueError(f"Unrecognized ancestor mode: {mode!r}; use 'owner' or 'caller'")
        self._ancestor_mode = mode
        self._analysis = None
        return self

    def unsupported_ops_warnings(self: A, enabled: bool) -> A:
        self._warn_unsupported = enabled
        return self

    def uncalled_modules_warnings(self: A, enabled: bool) -> A:
        self._warn_uncalled = enabled
        return self

    def tracer_warnings(self: A, mode: str) -> A:
        """``"all"``, ``"no_tracer_warning"`` or ``"none"`` (silence warnings while tracing)."""
        if mode not in ("all", "no_tracer_warning", "none"):
            raise ValueError(f"Unrecognized tracer warning mode {mode!r}")
        self._tracer_warnings = mode
        return self

    def copy(self: A, new_model: nn.Module | None = None, new_inputs: Any = None) -> A:
        """The same settings and handlers on another model or other inputs."""
        other = type(self)(
            self._model if new_model is None else new_model,
            self._inputs if new_inputs is None else new_inputs,
            elementwise=self._elementwise,
        )
        other._handlers = self._handlers.copy()
        other._cleared = self._cleared
        other._ancestor_mode = self._ancestor_mode
        other._warn_unsupported = self._warn_unsupported
        other._warn_uncalled = self._warn_uncalled
        other._tracer_warnings = self._tracer_warnings
        return other

    # --- internals -----------------------------------------------------------------------------

    def _registry(self) -> HandlerRegistry:
        base = registry_with(None)
        if self._cleared:
            base = ignoring_only(base)
        return base.with_layer("analyzer", self._handlers)

    def _analyze(self) -> Analysis:
        if self._analysis is not None:
            return self._analysis
        if self._trace is None:
            module, runner, *_ = as_program(self._model)
            args, kwargs = build_inputs(module, self._inputs)
            with warnings.catch_warnings():
                if self._tracer_warnings == "none":
                    warnings.simplefilter("ignore")
                self._trace = run_traced(module, args, kwargs, runner=runner)
        analysis = Analysis(
            trace=self._trace,
            registry=self._registry(),
            options=CountOptions(elementwise=self._elementwise),
            ancestor_mode=self._ancestor_mode,
            metrics=(self.metric,),
        )
        if self._warn_unsupported:
            log_unsupported(analysis, (self.metric,))
        if self._warn_uncalled:
            _log_uncalled(analysis)
        self._analysis = analysis
        return analysis


_DROP_IN = (
    "For fvcore-style handles (inputs, outputs) keyed by fvcore's op names (aten::linear, "
    "aten::_convolution), use torchtally.compat.fvcore.FlopCountAnalysis, fvcore's drop-in."
)


def _check_not_fvcore_style(op: str, handler: Any) -> None:
    """Refuse a handle written for fvcore (``handle(inputs, outputs)``), which would fail on
    every call here, naming the drop-in that runs it."""
    try:
        names = list(inspect.signature(handler).parameters)
    except (TypeError, ValueError):
        return
    if names[:2] == ["inputs", "outputs"]:
        raise TypeError(
            f"the handler for {op} looks like an fvcore-style handle(inputs, outputs) on JIT "
            f"values; this analyzer's handlers take one recorded OpCall. {_DROP_IN}"
        )


def _log_uncalled(analysis: Analysis) -> None:
    names = sorted(n for n in analysis.uncalled_modules if analysis.modules[n].has_forward)
    if names:
        logger.warning(
            "these submodules were never called: they are unused, or were run through "
            ".forward() or another method, in which case their counts go to the module that "
            "called them: %s",
            ", ".join(names),
        )


class FlopAnalyzer(ModelAnalyzer):
    """fvcore's ``FlopCountAnalysis`` / mmengine's ``FlopAnalyzer``: one multiply-add = 1 flop."""

    metric = "flops"


class ActivationAnalyzer(ModelAnalyzer):
    """fvcore's ``ActivationCountAnalysis``: output elements of convolutions and matmuls."""

    metric = "activations"


FlopCountAnalysis = FlopAnalyzer
ActivationCountAnalysis = ActivationAnalyzer


def flop_count(
    model: nn.Module, inputs: Any, supported_ops: dict[str, OpHandler | None] | None = None
) -> tuple[defaultdict[str, float], Counter[str]]:
    """fvcore's ``flop_count``: GFLOPs per operator, and the unsupported ops."""
    return scaled_by_operator(FlopAnalyzer(model, inputs), supported_ops, 1e9)


def activation_count(
    model: nn.Module, inputs: Any, supported_ops: dict[str, OpHandler | None] | None = None
) -> tuple[defaultdict[str, float], Counter[str]]:
    """fvcore's ``activation_count``: mega-activations per operator, and the unsupported ops."""
    return scaled_by_operator(ActivationAnalyzer(model, inputs), supported_ops, 1e6)


def parameter_count_table(model: nn.Module, max_depth: int = 3) -> str:
    """fvcore's parameter table (name, #elements or shape), rendered by the reporters plugin."""
    return parameter_table(model, max_depth)


def get_model_complexity_info(
    model: nn.Module,
    input_shape: tuple[Any, ...] | None = None,
    inputs: Any = None,
    show_table: bool = True,
    show_arch: bool = True,
) -> dict[str, Any]:
    """mmengine's ``get_model_complexity_info``: totals, their short forms, table and module tree.

    `input_shape` gets batch size 1 prepended; a tuple of tuples builds several inputs.
    """
    check_shape_or_inputs(input_shape, inputs)
    module, runner, *_ = as_program(model)
    args, kwargs = build_inputs(module, inputs, input_shape)
    trace = run_traced(module, args, kwargs, runner=runner)
    analysis = Analysis(
        trace=trace,
        registry=registry_with(None),
        options=CountOptions(),
        ancestor_mode="owner",
        metrics=("flops", "activations"),
    )
    log_unsupported(analysis)
    flops, activations = analysis.total("flops"), analysis.total("activations")
    params = analysis.params.get("", 0)
    # mmengine's table ends with a newline (its rich console adds one); so does ours.
    table = "\n" + analysis.render("table", show_param_shapes=True) + "\n" if show_table else ""
    arch = "\n" + analysis.render("arch") if show_arch else ""
    return complexity_info(flops, activations, params, table, arch)
