"""The README's Python examples run, top to bottom, and give the values their comments show.

A statement that is an expression followed by a comment (on its line, or on the comment lines
right after it) that starts with a Python literal, ``analysis.total()  # 4111512576 flops``, is
checked against that literal. Blocks that only sketch a plugin (``mylib::``) are compiled, not run.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SKETCH = "mylib::"  # custom-op examples: there is no such op to run


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def expected(comment: str) -> tuple[bool, Any]:
    """The literal a comment starts with: ``4111512576 flops (...)`` gives 4111512576."""
    text = comment.strip()
    for candidate in (text, *(text.split(sep, 1)[0] for sep in (" (", ": ", " "))):
        try:
            return True, ast.literal_eval(candidate)
        except (ValueError, SyntaxError):
            continue
    return False, None


def comment_after(lines: list[str], node: ast.stmt) -> str:
    """The comment that ends the statement's last line, and the comment-only lines after it."""
    assert node.end_lineno is not None
    last = lines[node.end_lineno - 1]
    parts = [last.split("  # ", 1)[1]] if "  # " in last else []
    for line in lines[node.end_lineno :]:
        if not line.startswith("#"):
            break
        parts.append(line.lstrip("#"))
    return " ".join(parts)


def checks(block: str) -> list[tuple[int, str, Any]]:
    """(line, expression, expected value) for every expression with a literal comment."""
    lines = block.splitlines()
    found = []
    for node in ast.parse(block).body:
        if not isinstance(node, ast.Expr):
            continue
        call = node.value
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "print":
            continue
        ok, value = expected(comment_after(lines, node))
        if ok:
            found.append((node.lineno, ast.get_source_segment(block, node) or "", value))
    return found


def test_the_readme_has_checked_examples() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 8
    assert sum(len(checks(block)) for block in blocks) >= 25


@pytest.mark.slow
def test_readme_examples_give_what_they_say(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {}
    exec("import torch\nfrom torch import nn", namespace)
    failures = []
    for number, block in enumerate(python_blocks(), start=1):
        code = compile(block, f"README.md python block {number}", "exec")
        if SKETCH in block:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(code, namespace)
            for line, expression, value in checks(block):
                got = eval(expression, namespace)
                if got != value:
                    failures.append(
                        f"block {number} line {line}: {expression} = {got!r}, not {value!r}"
                    )
    capsys.readouterr()  # the examples print tables
    assert not failures, "\n".join(failures)
