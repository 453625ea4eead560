"""The house's rules, read from the source: imports run one way, plugins use the declared surface.

Every module of core belongs to one layer (below); a module may import from its own layer and the
layers below it, never from a layer above, at module level or inside a function. A new module
must be given a layer here, which is where its place in docs/architecture.md is decided.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "packages" / "core" / "src" / "torchtally"

# Lowest first. A module is named by its dotted path under torchtally ("ops.matmul").
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("records", frozenset({"version", "units", "records", "params", "devices"})),
    ("handlers", frozenset({"handlers"})),
    (
        "tracing",
        frozenset(
            {"inputs", "process", "state", "fake", "memory", "tracer", "timing", "artefacts"}
        ),
    ),
    ("counting", frozenset({"counting"})),
    ("analysis", frozenset({"analysis", "compare", "roofline"})),
    ("reporting types", frozenset({"reporting"})),
    ("hook specs", frozenset({"hookspecs"})),
    ("core ops", frozenset({"ops", "ops.*"})),
    ("plugin surface", frozenset({"plugin"})),
    ("plugin manager", frozenset({"plugins"})),
    ("api", frozenset({"api", "formats", "llm"})),
    ("compat", frozenset({"compat", "compat.*"})),
    ("package", frozenset({"__init__"})),
)
# Entry points, not layers: `python -m torchtally` hands over to the torchtally-cli package.
ENTRY_POINTS = frozenset({"__main__"})

PLUGIN_PACKAGES = ("ops-vision", "ops-transformer", "reporters", "openmmlab")
SURFACE = "torchtally.plugin"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def core_modules() -> dict[str, Path]:
    return {module_name(path, CORE): path for path in sorted(CORE.rglob("*.py"))}


def layer_of(name: str) -> int:
    for index, (_, members) in enumerate(LAYERS):
        if name in members or any(m.endswith(".*") and name.startswith(m[:-1]) for m in members):
            return index
    raise LookupError(name)


def imported(path: Path, package: str) -> Iterator[tuple[str, int]]:
    """Every module of `package` that the file imports, with the line, wherever the import is."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == package:  # `from torchtally import x`: x may be a module
                for alias in node.names:
                    yield f"{package}.{alias.name}", node.lineno
            elif node.module.startswith(package + "."):
                yield node.module, node.lineno


def _is_type_checking(path: Path, line: int) -> bool:
    """Imports under ``if TYPE_CHECKING:`` are for annotations only and run nothing."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        guarded = (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        )
        if guarded and any(getattr(child, "lineno", None) == line for child in ast.walk(node)):
            return True
    return False


def core_imports() -> dict[str, set[str]]:
    """For each core module, the core modules it imports (TYPE_CHECKING imports left out)."""
    modules = core_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for target, line in imported(path, "torchtally"):
            relative = target.removeprefix("torchtally").lstrip(".") or "__init__"
            while relative not in modules and "." in relative:
                relative = relative.rsplit(".", 1)[0]  # `from torchtally.ops import catalog`
            if relative not in modules:
                relative = "__init__"  # a name re-exported by the package
            if relative != name and not _is_type_checking(path, line):
                targets.add(relative)
        graph[name] = targets
    return graph


def test_every_core_module_has_a_layer() -> None:
    missing = []
    for name in core_modules():
        if name in ENTRY_POINTS:
            continue
        try:
            layer_of(name)
        except LookupError:
            missing.append(name)
    assert not missing, (
        f"give these modules a layer in LAYERS (and docs/architecture.md): {missing}"
    )


def test_imports_point_down() -> None:
    upward = []
    for name, targets in core_imports().items():
        if name in ENTRY_POINTS:
            continue
        for target in targets:
            if layer_of(target) > layer_of(name):
                upward.append(
                    f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} "
                    f"({LAYERS[layer_of(target)][0]})"
                )
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles() -> None:
    graph = core_imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("package", PLUGIN_PACKAGES)
def test_plugin_packages_use_only_the_declared_surface(package: str) -> None:
    src = ROOT / "packages" / package / "src"
    outside = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in sorted(src.rglob("*.py"))
        for target, line in imported(path, "torchtally")
        if target != SURFACE and not target.startswith(SURFACE + ".")
    ]
    assert not outside, f"import only from {SURFACE}:\n" + "\n".join(outside)


def test_the_surface_declares_what_it_offers() -> None:
    import torchtally.plugin as surface

    offered = {name for name in vars(surface) if not name.startswith("_")} - {"annotations"}
    assert set(surface.__all__) - {"__version__"} == offered
    for name in surface.__all__:
        assert hasattr(surface, name), name


def test_the_layer_rules_catch_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an import from a higher layer inside a function is found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from torchtally.plugins import reporters\n")
    assert [target for target, _ in imported(module, "torchtally")] == ["torchtally.plugins"]
    assert layer_of("plugins") > layer_of("analysis")
