"""The ``json`` format: every number of the analysis as raw integers, described by a JSON Schema.

It is `Analysis.to_dict()` with the flop unit among the conventions. ``json.loads`` of the text
gives back the same numbers. With a backward pass, ``metrics`` holds the sums of both phases and
the optional ``phases`` section each phase's counts (schema version 1 still: readers that do not
know ``phases`` read the sums).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from torchtally.plugin import Analysis
from torchtally_reporters.options import PARAMS, Options, available_metrics, parse_options
from torchtally_reporters.timing import roofline_of

JSON_OPTIONS: Mapping[str, Any] = {"metrics": None, "flop_unit": "mac", "hardware": None}
SCHEMA_RESOURCE = ("schema", "analysis.schema.json")
# The entries of a metric's section that are counts (unsupported ops are numbers of runs).
COUNT_KEYS = frozenset({"total", "by_module", "by_operator", "by_module_and_operator"})
FLOP_DEFINITIONS = {
    "mac": "one fused multiply-add counts as one flop",
    "flop": "one fused multiply-add counts as two flops",
}


def render_json(analysis: Analysis, **options: Any) -> str:
    """The analysis as indented JSON with a stable key order."""
    opts = parse_options("json", analysis, every_metric(analysis, options), JSON_OPTIONS)
    return json.dumps(analysis_document(analysis, opts), indent=2)


def every_metric(analysis: Analysis, options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` with every metric when it names none: a document holds every number, those
    the table shows only on request (``bytes``) too."""
    if options.get("metrics") is None:
        return {**options, "metrics": available_metrics(analysis)}
    return dict(options)


def analysis_document(analysis: Analysis, options: Options) -> dict[str, Any]:
    """`Analysis.to_dict()` restricted to the chosen metrics, in the chosen flop unit."""
    document = analysis.to_dict()
    document["conventions"] = _conventions(document["conventions"], options)
    document["metrics"] = {
        metric: _metric_section(analysis, metric, document["metrics"][metric], options)
        for metric in options.metrics
        if metric != PARAMS
    }
    if "phases" in document:  # only with a backward pass: the counts of each phase
        document["phases"] = {
            phase: {
                metric: _metric_section(analysis, metric, sections[metric], options)
                for metric in options.metrics
                if metric != PARAMS
            }
            for phase, sections in document["phases"].items()
        }
    if PARAMS not in options.metrics:
        del document["params"]
    roofline = roofline_of(analysis, options.hardware)
    if roofline is not None:
        document["roofline"] = roofline.to_dict()
    return document


def _conventions(conventions: Mapping[str, Any], options: Options) -> dict[str, Any]:
    updated: dict[str, Any] = {}
    for key, value in conventions.items():
        updated[key] = FLOP_DEFINITIONS[options.flop_unit] if key == "flop" else value
        if key == "flop":
            updated["flop_unit"] = options.flop_unit
    return updated


def _metric_section(
    analysis: Analysis, metric: str, section: Mapping[str, Any], options: Options
) -> dict[str, Any]:
    scale = options.scale(metric)
    return {
        key: _scaled(value, scale) if key in COUNT_KEYS else value for key, value in section.items()
    }


def _scaled(value: Any, scale: int) -> Any:
    """Counts (ints, nested in dicts) times `scale`."""
    if isinstance(value, Mapping):
        return {key: _scaled(v, scale) for key, v in value.items()}
    return value * scale


def load_schema() -> dict[str, Any]:
    """The JSON Schema the ``json`` format's output follows."""
    resource = resources.files("torchtally_reporters").joinpath(*SCHEMA_RESOURCE)
    schema: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return schema
