"""Comparing analyses: two per module and operator (`torchtally.diff(a, b)`), or one per input
size (`Sweep`, the command line's ``--seq-len 128 512 2048``).

In a diff, each side is an `Analysis` or a JSON report (`to_dict()` or the ``json`` format's
text, as a dict or a file), so a report saved last month compares with today's model. Modules
are matched by name; a module that exists on one side only is kept, with nothing on the other
side. Counts are compared in one flop unit (a report written with ``flop_unit="flop"`` is read
back in MACs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchtally.analysis import JSON_SCHEMA_VERSION, Analysis

PARAMS = "params"
Side = Analysis | Mapping[str, Any] | str | os.PathLike[str]
Pair = tuple[int | None, int | None]
# Entries of a metric's section in a report that hold counts (the rest are numbers of runs).
_COUNT_KEYS = ("total", "by_module", "by_operator", "by_module_and_operator")


# Rendering needs the plugin manager, above this module: `torchtally.formats` hands over its
# function when it is imported, as it does for `Analysis.render`. Called with the `Diff` or
# `Sweep`, its kind ("diff" or "sweep"), the format's name and the options.
_render: Callable[..., str] | None = None


def set_comparison_renderer(render: Callable[..., str]) -> None:
    """Called by `torchtally.formats`: what `Diff.render` and `Sweep.render` call."""
    global _render
    _render = render


class ReportError(ValueError):
    """A side of a comparison is not a torchtally JSON report this version can read."""


@dataclass(frozen=True)
class Diff:
    """Two analyses side by side: ``a`` is the baseline, deltas are ``b - a``.

    Queries return ``(a, b)`` pairs; ``None`` on a side means the module (or metric) is not
    there. `render` shows the comparison in the formats that can (table, markdown, csv, json,
    html).
    """

    labels: tuple[str, str]
    documents: tuple[Mapping[str, Any], Mapping[str, Any]]

    @property
    def metrics(self) -> tuple[str, ...]:
        """``params`` (if both sides have parameters), then every metric either side counted."""
        a, b = self.documents
        names = [PARAMS] if "params" in a and "params" in b else []
        names += [m for m in a["metrics"] if m not in names]
        names += [m for m in b["metrics"] if m not in names]
        return tuple(names)

    @property
    def modules(self) -> tuple[str, ...]:
        """Every module name of either side: a's order, b's own modules after their predecessor."""
        merged = list(self.documents[0]["modules"])
        known = set(merged)
        previous = ""
        for name in self.documents[1]["modules"]:
            if name not in known:
                merged.insert(
                    merged.index(previous) + 1 if previous in known else len(merged), name
                )
                known.add(name)
            previous = name
        return tuple(merged)

    def only_in(self, side: int) -> tuple[str, ...]:
        """Modules that exist on `side` (0 for a, 1 for b) and not on the other."""
        other = self.documents[1 - side]["modules"]
        return tuple(name for name in self.documents[side]["modules"] if name not in other)

    def module_types(self, name: str) -> tuple[str | None, str | None]:
        a, b = (doc["modules"].get(name) for doc in self.documents)
        return (a["type"] if a else None, b["type"] if b else None)

    def total(self, metric: str = "flops") -> Pair:
        a, b = (_section(doc, metric) for doc in self.documents)
        return (a["total"] if a else None, b["total"] if b else None)

    def by_module(self, metric: str = "flops") -> dict[str, Pair]:
        """Each module's `metric` on both sides (``None`` where the module is missing)."""
        self._check(metric)
        sides = [_by_module(doc, metric) for doc in self.documents]
        exists = [doc["modules"] for doc in self.documents]
        return {
            name: (
                sides[0].get(name, 0) if sides[0] is not None and name in exists[0] else None,
                sides[1].get(name, 0) if sides[1] is not None and name in exists[1] else None,
            )
            for name in self.modules
        }

    def by_operator(self, metric: str = "flops", module: str = "") -> dict[str, Pair]:
        """`module`'s `metric` per operator on both sides, largest change first."""
        self._check(metric)
        tables: list[Mapping[str, int] | None] = []
        for doc in self.documents:
            section = _section(doc, metric)
            if section is None or module not in doc["modules"]:
                tables.append(None)
            else:
                tables.append(section["by_module_and_operator"].get(module, {}))
        names = sorted({op for table in tables if table for op in table})
        pairs = {
            op: (
                tables[0].get(op, 0) if tables[0] is not None else None,
                tables[1].get(op, 0) if tables[1] is not None else None,
            )
            for op in names
        }
        return dict(sorted(pairs.items(), key=lambda item: -abs(_delta(item[1]) or 0)))

    def to_dict(self) -> dict[str, Any]:
        """The comparison as JSON-ready data (what the ``json`` format writes for a diff)."""
        a, b = self.documents
        by_module = {metric: self.by_module(metric) for metric in self.metrics}
        return {
            "schema_version": JSON_SCHEMA_VERSION,
            "kind": "diff",
            "labels": list(self.labels),
            "metrics": list(self.metrics),
            "sides": [_summary(doc) for doc in self.documents],
            "totals": {metric: _pair_dict(self.total(metric)) for metric in self.metrics},
            "modules": {
                name: {
                    "types": list(self.module_types(name)),
                    **{m: _pair_dict(by_module[m][name]) for m in self.metrics},
                }
                for name in self.modules
            },
            "operators": {
                metric: {op: _pair_dict(pair) for op, pair in self.by_operator(metric).items()}
                for metric in self.metrics
                if metric != PARAMS
            },
            "only_in_a": list(self.only_in(0)),
            "only_in_b": list(self.only_in(1)),
            "unsupported_ops": [
                {m: s["unsupported_ops"] for m, s in doc["metrics"].items()} for doc in (a, b)
            ],
        }

    def render(self, format: str = "table", **options: Any) -> str:
        """The comparison as text in `format` (``table``, ``markdown``, ``csv``, ``json``,
        ``html``: the installed formats that can show a comparison)."""
        assert _render is not None, "import torchtally first"
        return _render(self, "diff", format, **options)

    def _check(self, metric: str) -> None:
        if metric not in self.metrics:
            raise KeyError(
                f"neither side has the metric {metric!r}; they have {', '.join(self.metrics)}"
            )


def diff(a: Side, b: Side, labels: Sequence[str] | None = None) -> Diff:
    """Compare `a` (the baseline) with `b`: each an `Analysis`, a JSON report as a dict, or the
    path of a JSON report file. `labels` name the sides (default: the model class, or the file
    name)."""
    documents = (report_document(a), report_document(b))
    names = tuple(labels) if labels is not None else (_label(a), _label(b))
    if len(names) != 2 or not all(isinstance(n, str) for n in names):
        raise TypeError(f"labels must be two strings, got {labels!r}")
    if names[0] == names[1]:
        names = (f"{names[0]} (A)", f"{names[1]} (B)")
    return Diff((names[0], names[1]), documents)


def report_document(side: Side) -> dict[str, Any]:
    """The JSON report of `side`, in MACs whatever flop unit it was written in."""
    if isinstance(side, Analysis):
        return side.to_dict()
    if isinstance(side, (str, os.PathLike)):
        path = Path(side)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ReportError(f"no such report file: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ReportError(
                f"{path} is not a JSON report: {error} (write one with --format json)"
            ) from None
        return _checked(document, str(path))
    if isinstance(side, Mapping):
        return _checked(dict(side), "the report")
    raise TypeError(
        f"diff compares Analysis objects or JSON reports (dicts or file paths), got "
        f"{type(side).__name__}"
    )


def _checked(document: Any, where: str) -> dict[str, Any]:
    if not isinstance(document, dict) or not {"metrics", "modules"} <= document.keys():
        raise ReportError(
            f"{where} is not a torchtally JSON report (it has no 'metrics' and 'modules'); "
            "write one with analysis.render('json') or torchtally MODEL --format json"
        )
    version = document.get("schema_version")
    if version != JSON_SCHEMA_VERSION:
        raise ReportError(
            f"{where} has schema_version {version!r}; this torchtally reads {JSON_SCHEMA_VERSION}"
        )
    if document.get("conventions", {}).get("flop_unit") == "flop":
        document = _in_macs(document)
    checked: dict[str, Any] = document
    return checked


def _in_macs(document: dict[str, Any]) -> dict[str, Any]:
    """A report written with two flops per multiply-add, read back with one."""
    document = json.loads(json.dumps(document))
    sections = [document["metrics"]] + [p for p in document.get("phases", {}).values()]
    for metrics in sections:
        if "flops" in metrics:
            for key in _COUNT_KEYS:
                if key in metrics["flops"]:
                    metrics["flops"][key] = _halved(metrics["flops"][key])
    document["conventions"]["flop_unit"] = "mac"
    return document


def _halved(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _halved(v) for key, v in value.items()}
    return value // 2


def _label(side: Side) -> str:
    if isinstance(side, Analysis):
        return side.modules[""].type_name
    if isinstance(side, (str, os.PathLike)):
        return Path(side).name
    return str(side.get("modules", {}).get("", {}).get("type", "report"))


def _section(document: Mapping[str, Any], metric: str) -> Mapping[str, Any] | None:
    if metric == PARAMS:
        params = document.get("params")
        return {"total": params["total"], "by_module": params["by_module"]} if params else None
    section: Mapping[str, Any] | None = document["metrics"].get(metric)
    return section


def _by_module(document: Mapping[str, Any], metric: str) -> Mapping[str, int] | None:
    section = _section(document, metric)
    return section["by_module"] if section is not None else None


def _delta(pair: Pair) -> int | None:
    a, b = pair
    return None if a is None or b is None else b - a


def _pair_dict(pair: Pair) -> dict[str, int | None]:
    return {"a": pair[0], "b": pair[1], "delta": _delta(pair)}


def _summary(document: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("torchtally_version", "inputs", "mode", "conventions")
    return {key: document.get(key) for key in keys}


@dataclass(frozen=True)
class Sweep:
    """One analysis per input size: how each metric grows with ``--seq-len``, ``--batch`` or
    ``--shape``. `parameters` names what varies; each point gives its values, in that order."""

    parameters: tuple[str, ...]
    points: tuple[tuple[Any, ...], ...]
    analyses: tuple[Analysis, ...]

    def __post_init__(self) -> None:
        if not self.analyses or len(self.points) != len(self.analyses):
            raise ValueError("a sweep needs one analysis per point, and at least one")
        if any(len(point) != len(self.parameters) for point in self.points):
            raise ValueError(f"every point of the sweep must give {', '.join(self.parameters)}")

    @property
    def metrics(self) -> tuple[str, ...]:
        """``params``, then the metrics every analysis counted."""
        common = [m for m in self.analyses[0].metrics if all(m in a.metrics for a in self.analyses)]
        return (PARAMS, *common)

    def labels(self) -> list[str]:
        """Each point as text: ``128``, or ``batch=2, seq_len=128`` when several things vary."""
        if len(self.parameters) == 1:
            return [_value_text(point[0]) for point in self.points]
        return [
            ", ".join(f"{n}={_value_text(v)}" for n, v in zip(self.parameters, p, strict=True))
            for p in self.points
        ]

    def totals(self, metric: str = "flops") -> list[int]:
        """The whole model's `metric` at each point."""
        if metric == PARAMS:
            return [a.params.get("", 0) for a in self.analyses]
        return [a.total(metric) for a in self.analyses]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": JSON_SCHEMA_VERSION,
            "kind": "sweep",
            "parameters": list(self.parameters),
            "metrics": list(self.metrics),
            "points": [
                {
                    "label": label,
                    "values": {n: _jsonable(v) for n, v in zip(self.parameters, p, strict=True)},
                    "inputs": analysis.to_dict()["inputs"],
                    "totals": {m: self.totals(m)[i] for m in self.metrics},
                    "by_operator": {m: analysis.by_operator(m) for m in self.metrics[1:]},
                }
                for i, (label, p, analysis) in enumerate(
                    zip(self.labels(), self.points, self.analyses, strict=True)
                )
            ],
            "mode": self.analyses[0].mode,
            "model": self.analyses[0].modules[""].type_name,
        }

    def render(self, format: str = "table", **options: Any) -> str:
        """One row per point in `format` (``table``, ``markdown``, ``csv``, ``json``, ``html``:
        the installed formats that can show a sweep)."""
        assert _render is not None, "import torchtally first"
        return _render(self, "sweep", format, **options)


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value))
    return str(value)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
