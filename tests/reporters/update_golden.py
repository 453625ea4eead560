"""Regenerate tests/reporters/golden/*.txt: ``python tests/reporters/update_golden.py``.

Review every changed file (``git diff tests/reporters/golden``) before committing: the table and
module tree must stay equal to mmengine's output, and TestNet's to the seed document.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _load_conftest() -> ModuleType:
    path = Path(__file__).with_name("conftest.py")
    spec = importlib.util.spec_from_file_location("reporters_conftest", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    cases = _load_conftest()
    cases.GOLDEN_DIR.mkdir(exist_ok=True)
    for name in cases.CASES:
        _, analysis = cases.analyze_case(name)
        for fmt, text in cases.render_case(analysis).items():
            path = cases.golden_path(name, fmt)
            path.write_text(text + "\n", encoding="utf-8")
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
