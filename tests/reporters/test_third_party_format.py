"""A third party adds an output format with one entry point, in a package of its own.

The test builds and installs a tiny plugin package into a directory under tmp_path (never into
the shared virtual environment) and renders with its format in a fresh interpreter that has that
directory on its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a package and runs a fresh interpreter

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "torchtally-shout"
version = "0.0.1"
dependencies = ["torchtally-core"]

[project.entry-points.torchtally]
shout = "torchtally_shout"

[tool.hatch.build.targets.wheel]
packages = ["src/torchtally_shout"]
"""

PLUGIN = '''\
"""The whole plugin: one format that shouts the totals."""

from torchtally.plugin import Reporter, hookimpl


def render(analysis, prefix):
    return prefix + f"{analysis.params['']} PARAMETERS, {analysis.total('flops')} FLOPS!"


@hookimpl
def torchtally_reporters():
    return [Reporter("shout", render, "totals, loudly", options={"prefix": ""})]
'''

SCRIPT = """\
import torch
import torchtally

analysis = torchtally.analyze(torch.nn.Linear(10, 10), input_shape=(10,))
print(analysis.render("shout", prefix=">> "))
print(analysis.render("table").splitlines()[3])
print(dict((info.name, info.registers.get("formats")) for info in torchtally.list_plugins()))
print(analysis.render("shout"))
try:
    analysis.render("shout", colour=1)
except TypeError as error:
    print(error)
"""


def write_plugin(root: Path) -> Path:
    package = root / "torchtally-shout"
    (package / "src" / "torchtally_shout").mkdir(parents=True)
    (package / "pyproject.toml").write_text(PYPROJECT)
    (package / "src" / "torchtally_shout" / "__init__.py").write_text(PLUGIN)
    return package


def test_a_plugin_package_adds_a_format(tmp_path: Path) -> None:
    package = write_plugin(tmp_path)
    site = tmp_path / "site"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"),
            *("--no-build-isolation", "--target", str(site), str(package)),
        ],
        check=True,
        capture_output=True,
    )
    assert (site / "torchtally_shout-0.0.1.dist-info" / "entry_points.txt").exists()
    path = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    env.pop("TORCHTALLY_DISABLE_PLUGIN_AUTOLOAD", None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    assert lines[0] == ">> 110 PARAMETERS, 100 FLOPS!"
    # the built-in formats keep working next to the new one
    assert lines[1] == "| model   | 0.11K                | 100    | 10           |"
    assert "'shout': ['shout']" in lines[2] and "'reporters': ['arch'" in lines[2]
    # core fills the declared defaults and checks names, as for a built-in format
    assert lines[3] == "110 PARAMETERS, 100 FLOPS!"
    assert lines[4] == ("the 'shout' format got unexpected option(s) colour; valid options: prefix")
