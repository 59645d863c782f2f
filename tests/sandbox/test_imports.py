"""The sandbox and runs packages import one way: no cycle, no re-export shim."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "registry"


def _imports(path: Path) -> set[str]:
    """Every registry module ``path`` imports, at any level (TYPE_CHECKING blocks included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name.startswith("registry")}


@pytest.mark.parametrize(
    "path", sorted(p for p in (ROOT / "sandbox").glob("*.py") if p.name != "__init__.py")
)
def test_sandbox_submodules_never_import_the_package(path: Path) -> None:
    # `from registry.sandbox import x` runs the package's __init__, which imports the runner.
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert not [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "registry.sandbox"
    ]


def test_the_layer_probe_builds_on_no_runner() -> None:
    assert "registry.sandbox.runner" not in _imports(ROOT / "sandbox" / "layers.py")


def test_examples_build_on_execution_never_the_reverse() -> None:
    assert "registry.runs.execution" in _imports(ROOT / "runs" / "examples.py")
    assert not {name for name in _imports(ROOT / "runs" / "execution.py") if "examples" in name}


@pytest.mark.parametrize("package", ["core", "runs", "sandbox", "migrate"])
def test_no_module_getattr_shims(package: str) -> None:
    for path in (ROOT / package).glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # Module level, or in a module-level `if` (such as `if not TYPE_CHECKING:`).
        top = [*tree.body, *(s for n in tree.body if isinstance(n, ast.If) for s in n.body)]
        names = {n.name for n in top if isinstance(n, ast.FunctionDef)}
        assert "__getattr__" not in names, path
