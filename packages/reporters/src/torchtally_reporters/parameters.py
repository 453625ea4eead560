"""The ``parameters`` format: fvcore's ``parameter_count_table`` (name, #elements or shape).

``style="box"`` gives mmengine's: the same rows in a ``+---+`` grid, under a `title` centred (and
word-wrapped) over the table's width, as rich lays it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tabulate

from torchtally.plugin import Analysis
from torchtally_reporters.options import Options, check_choice, parse_options
from torchtally_reporters.table import grid

PARAMETERS_OPTIONS: Mapping[str, Any] = {
    "max_depth": 3,
    "units": "human",
    "style": "pipe",
    "title": None,
}
PARAMETERS_STYLES = ("pipe", "box")
HEADERS = ("name", "#elements or shape")
# fvcore's units: one decimal, kept even when zero (0.1M, 23.5M, 1.0K).
_UNITS = ((1e8, 1e9, "G"), (1e5, 1e6, "M"), (1e2, 1e3, "K"))


def render_parameters(analysis: Analysis, **options: Any) -> str:
    """Parameters of the model, its modules down to ``max_depth`` name levels, and their shapes."""
    style = check_choice("style", options.pop("style", "pipe"), PARAMETERS_STYLES)
    title = options.pop("title", None)
    if title is not None and (style != "box" or not isinstance(title, str)):
        raise ValueError(f"title is a string for style='box' only, got {title!r} ({style})")
    opts = parse_options("parameters", analysis, options, PARAMETERS_OPTIONS)
    tree = analysis.params
    rows = [("model", _size(tree.get("", 0), opts))]
    rows += _rows(tree, analysis.param_shapes, opts)
    if style == "box":
        table = grid([list(row) for row in rows], list(HEADERS), "box")
        if title is None:
            return table
        width = len(table.splitlines()[0])
        return f"{centred(title, width)}\n{table}"
    # fvcore lets tabulate parse numbers, so an all-numeric column aligns as numbers there too.
    text: str = tabulate.tabulate(rows, headers=HEADERS, tablefmt="pipe", preserve_whitespace=True)
    return text


def centred(title: str, width: int) -> str:
    """`title` word-wrapped to `width` (a word too long for a line is cut), each line centred
    and padded to `width`, as rich prints a table's title."""
    lines: list[str] = []
    line = ""
    for word in title.split():
        candidate = f"{line} {word}" if line else word
        if len(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while len(word) > width:
            lines.append(word[:width])
            word = word[width:]
        line = word
    lines.append(line)
    return "\n".join(_centre(text, width) for text in lines)


def _centre(text: str, width: int) -> str:
    left = max(width - len(text), 0) // 2
    return " " * left + text + " " * max(width - len(text) - left, 0)


def _rows(
    tree: Mapping[str, int], shapes: Mapping[str, tuple[int, ...]], options: Options
) -> list[tuple[str, str]]:
    """Depth-first rows below the model; a parameter shows its shape, a module its size."""
    children: dict[str, list[str]] = {}
    for name in tree:
        if name:
            children.setdefault(name.rpartition(".")[0], []).append(name)
    rows: list[tuple[str, str]] = []

    def visit(name: str, level: int) -> None:
        if options.max_depth is not None and level >= options.max_depth:
            return
        indent = " " * (level + 1)
        for child in children.get(name, ()):
            if child in shapes:
                rows.append((indent + child, indent + str(shapes[child])))
            else:
                rows.append((indent + child, indent + _size(tree[child], options)))
                visit(child, level + 1)

    visit("", 0)
    return rows


def _size(count: int, options: Options) -> str:
    if options.units == "raw":
        return str(count)
    for threshold, divisor, suffix in _UNITS:
        if count > threshold:
            return f"{count / divisor:.1f}{suffix}"
    return str(count)
