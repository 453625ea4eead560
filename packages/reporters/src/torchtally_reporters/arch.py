"""The ``arch`` format: the module tree as ``print(model)`` lays it out, with counts per module.

As in mmengine, a module whose counts are all zero gets no counts line, and a module that was never
called shows ``N/A`` for the metrics it could not be given (its work, if any, is in its parent's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchtally.plugin import Analysis, ModuleInfo
from torchtally_reporters.options import PARAMS, Column, Options, parse_options
from torchtally_reporters.stats import arch_label, by_phase_text, format_number, metric_by_module

ARCH_OPTIONS: Mapping[str, Any] = {
    "max_depth": None,
    "metrics": None,
    "units": "human",
    "flop_unit": "mac",
    "split_phases": None,
    "uncalled_note": None,
}
UNCALLED = "N/A"
UNCALLED_NOTE = (
    f"{UNCALLED}: the module's __call__ never ran (it is unused, or was run through .forward() "
    "or another method); whatever it computed is counted in its parent."
)
# The module tree shows two decimals (0.12G), the table three (0.118G), as in mmengine.
ARCH_DIGITS = 2


def render_arch(analysis: Analysis, **options: Any) -> str:
    """``print(model)`` with a ``#params: ..., #flops: ..., #acts: ...`` line in each module."""
    note = options.pop("uncalled_note", None)
    if note is not None and not isinstance(note, str):
        raise TypeError(f"uncalled_note must be a string or None, got {note!r}")
    opts = parse_options("arch", analysis, options, ARCH_OPTIONS)
    lines = stats_lines(analysis, opts)
    tree = module_text("", analysis.modules[""], analysis.modules, lines, opts.max_depth)
    if not _shows_uncalled(analysis, opts):
        return tree
    return f"{UNCALLED_NOTE if note is None else note}\n{tree}"


def _shows_uncalled(analysis: Analysis, options: Options) -> bool:
    return bool(analysis.uncalled_modules) and any(m != PARAMS for m in options.metrics)


def stats_lines(analysis: Analysis, options: Options) -> dict[str, str]:
    """The counts line of every module that gets one, by canonical name.

    With phases split a count reads ``#flops: 0.3K (forward 100, backward 0.2K)``.
    """
    counts = {
        column.key: (
            dict(analysis.params)
            if column.metric == PARAMS
            else metric_by_module(analysis, column.metric, options, column.phase)
        )
        for column in options.columns
    }
    uncalled = analysis.uncalled_modules
    shared: dict[str, list[str]] = {}  # module -> the names its tied weights are counted under
    for alias, counted in analysis.shared_params.items():
        shared.setdefault(alias.rpartition(".")[0], []).append(counted)
    lines = {}
    for name in analysis.modules:
        values = {key: by_module.get(name, 0) for key, by_module in counts.items()}
        if name and name not in uncalled and not any(values.values()):
            continue
        lines[name] = ", ".join(
            f"{arch_label(metric)}: {_shown(metric, values, name in uncalled, options)}"
            + (
                f" (shared: {', '.join(shared[name])})"
                if metric == PARAMS and name in shared
                else ""
            )
            for metric in options.metrics
        )
    return lines


def _shown(metric: str, values: Mapping[str, int], uncalled: bool, options: Options) -> str:
    if uncalled and metric != PARAMS:
        return UNCALLED
    text = format_number(values[metric], options, ARCH_DIGITS)
    if not options.is_split(metric):
        return text
    split = {phase: values[Column(metric, phase).key] for phase in options.phases}
    return f"{text} {by_phase_text(split, options, ARCH_DIGITS)}"


def module_text(
    path: str,
    info: ModuleInfo,
    modules: Mapping[str, ModuleInfo],
    lines: Mapping[str, str],
    max_depth: int | None,
    depth: int = 0,
) -> str:
    """`nn.Module.__repr__` of the module at `path`, with its counts line after its extra repr.

    Counts belong to canonical names: a shared module's second occurrence prints without them.
    """
    extra = info.extra_repr.split("\n") if info.extra_repr else []
    if path == info.name and path in lines:
        extra.append(lines[path])
    children = []
    if max_depth is None or depth < max_depth:
        for attr, child in info.children:
            child_path = f"{path}.{attr}" if path else attr
            text = module_text(child_path, modules[child], modules, lines, max_depth, depth + 1)
            children.append(f"({attr}): {_indent(text)}")
    if len(extra) == 1 and not children:
        return f"{info.type_name}({extra[0]})"
    body = extra + children
    if not body:
        return f"{info.type_name}()"
    return f"{info.type_name}(\n  " + "\n  ".join(body) + "\n)"


def _indent(text: str) -> str:
    """Indent every line but the first by two spaces, as nested module reprs are."""
    return text.replace("\n", "\n  ")
