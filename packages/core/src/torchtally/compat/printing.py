"""fvcore's and mmengine's printouts of analyzers: tables, the annotated module tree, parameters;
and the results that hold them or counts per operator (``get_model_complexity_info``,
``flop_count``, ``activation_count``), for the drop-ins and torchtally's own flavour alike.

The layouts are the reporters' (``table``, ``arch``, ``parameters`` formats of
``torchtally-reporters``), given one `Analysis` that holds the flops and, when given, the
activations analyzer's counts, both from one run of the model.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Protocol

from torch import nn

from torchtally.analysis import Analysis
from torchtally.compat.jit_analysis import CompatTable, compat_analysis
from torchtally.handlers import CountOptions, HandlerRegistry
from torchtally.params import parameter_shapes
from torchtally.records import Trace
from torchtally.tracer import module_tree
from torchtally.units import format_count

if TYPE_CHECKING:
    from torchtally.compat.jit_analysis import JitModelAnalysis

# The line fvcore and mmengine print above a module tree that has uncalled modules.
UNCALLED_NOTE = (
    "N/A indicates a possibly missing statistic due to how the module was called. "
    "Missing values are still included in the parent's total."
)


def statistics(flops: JitModelAnalysis, activations: JitModelAnalysis | None = None) -> Analysis:
    """One `Analysis` with metric ``flops`` counted as `flops` counts and ``activations`` as
    `activations` counts, from one run of the model. As the peers' printers do, both analyzers'
    warnings are switched off."""
    analyzers = {"flops": flops}
    if activations is not None:
        _check_same_run(flops, activations)
        analyzers["activations"] = activations
    tables: dict[str, CompatTable] = {}
    watch: frozenset[str] = frozenset()
    for key, analyzer in analyzers.items():
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        analyzer.tracer_warnings("none")
        tables[key] = analyzer._table()
        watch |= analyzer._watch()
    traced = flops._ensure_traced(watch)
    return compat_analysis(traced.units, tables, flops._elementwise, flops._ancestor_mode)


def _check_same_run(flops: JitModelAnalysis, activations: JitModelAnalysis) -> None:
    if activations._model is not flops._model:
        raise ValueError(
            "the activations analyzer analyses another model than the flops analyzer; "
            "a table shows one model: build both on the same model and inputs"
        )
    if activations._ancestor_mode != flops._ancestor_mode:
        raise ValueError(
            f"the flops analyzer attributes ops in ancestor mode {flops._ancestor_mode!r} and "
            f"the activations analyzer in {activations._ancestor_mode!r}; a table shows one: "
            "set the same ancestor_mode() on both"
        )
    theirs, ours = activations._traced, flops._traced
    if theirs and ours and theirs.trace.input_shapes != ours.trace.input_shapes:
        raise ValueError(
            "the activations analyzer ran the model on other inputs than the flops analyzer; "
            "build both on the same inputs"
        )


def _metrics(activations: JitModelAnalysis | None) -> tuple[str, ...]:
    return ("params", "flops") if activations is None else ("params", "flops", "activations")


def stats_table(
    flops: JitModelAnalysis,
    max_depth: int,
    activations: JitModelAnalysis | None,
    show_param_shapes: bool,
    style: str,
) -> str:
    """The module table: fvcore's (``style="pipe"``) or mmengine's (``"box"``)."""
    return statistics(flops, activations).render(
        "table",
        max_depth=max_depth,
        metrics=_metrics(activations),
        show_param_shapes=show_param_shapes,
        style=style,
    )


def stats_str(flops: JitModelAnalysis, activations: JitModelAnalysis | None = None) -> str:
    """``print(model)`` with each module's ``#params``, ``#flops`` (and ``#acts``): fvcore's
    ``flop_count_str``, mmengine's ``complexity_stats_str``."""
    analysis = statistics(flops, activations)
    return analysis.render("arch", metrics=_metrics(activations), uncalled_note=UNCALLED_NOTE)


def parameters_analysis(model: nn.Module) -> Analysis:
    """An `Analysis` of the model's parameters alone (the model does not run)."""
    _, infos = module_tree(model)
    empty = Trace(
        ops=(),
        module_calls=(),
        modules=infos,
        called_modules=frozenset(),
        input_shapes=(),
        param_shapes=parameter_shapes(model),
    )
    return Analysis(
        trace=empty,
        registry=HandlerRegistry([]),
        options=CountOptions(),
        ancestor_mode="owner",
        metrics=(),
    )


def parameter_table(model: nn.Module, max_depth: int = 3, style: str = "pipe") -> str:
    """fvcore's ``parameter_count_table`` (``style="pipe"``), or mmengine's (``"box"``, under
    the title ``parameter count of <class>``)."""
    analysis = parameters_analysis(model)
    if style == "box":
        title = f"parameter count of {type(model).__name__}"
        return analysis.render("parameters", max_depth=max_depth, style="box", title=title)
    return analysis.render("parameters", max_depth=max_depth)


class _Counting(Protocol):
    """An analyzer of either flavour: the drop-ins' or torchtally's own."""

    def set_op_handle(self, *args: Any, **kwargs: Any) -> Any: ...
    def by_operator(self, module_name: str = "") -> Counter[str]: ...
    def unsupported_ops(self, module_name: str = "") -> Counter[str]: ...


def scaled_by_operator(
    analyzer: _Counting, supported_ops: dict[str, Any] | None, scale: float
) -> tuple[defaultdict[str, float], Counter[str]]:
    """What the peers' ``flop_count`` and ``activation_count`` return: with `supported_ops`
    added to the analyzer's handles, its counts per operator divided by `scale` (GFLOPs,
    mega-activations), and the unsupported ops."""
    analyzer.set_op_handle(**(supported_ops or {}))
    scaled: defaultdict[str, float] = defaultdict(float)
    for op, count in analyzer.by_operator().items():
        scaled[op] = count / scale
    return scaled, analyzer.unsupported_ops()


def check_shape_or_inputs(input_shape: object, inputs: object) -> None:
    """mmengine's rule for ``get_model_complexity_info``: exactly one of the two is given."""
    if input_shape is None and inputs is None:
        raise ValueError('One of "input_shape" and "inputs" should be set.')
    if input_shape is not None and inputs is not None:
        raise ValueError('"input_shape" and "inputs" cannot be both set.')


def complexity_info(
    flops: int, activations: int, params: int, table: str, arch: str
) -> dict[str, Any]:
    """mmengine's ``get_model_complexity_info`` result: the totals, their short forms
    (``4.112G``), the table and the module tree."""
    return {
        "flops": flops,
        "flops_str": format_count(flops),
        "activations": activations,
        "activations_str": format_count(activations),
        "params": params,
        "params_str": format_count(params),
        "out_table": table,
        "out_arch": arch,
    }
