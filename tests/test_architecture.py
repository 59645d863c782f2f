"""Guards on the layout: where git lives, which way imports flow, one home per public name.

These read the source with ``ast`` (nothing is imported but the public package), so a
guard fails on the line that breaks the rule, whether the import is at the top of a
module, inside a function or under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from radon.complexity import cc_visit

import registry

PACKAGE = Path(registry.__file__).parent
ROOT = PACKAGE.parent

# The layers, lowest first. A module may import from its own layer or a lower one only.
LAYERS: list[tuple[str, ...]] = [
    ("registry.errors", "registry.core", "registry.config"),
    ("registry.git",),
    ("registry.sandbox",),
    ("registry.index",),
    ("registry.releases", "registry.runs", "registry.migrate", "registry.workspace"),
    ("registry.api",),
    ("registry.serve", "registry.cli", "registry.__main__"),
]


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported registry module
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # ``from registry.x import y`` imports registry.x.y when y is a module.
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            if target in known and target != name:
                yield Import(name, target, node.lineno)


def all_imports() -> list[Import]:
    found = modules()
    known = set(found)
    return [imp for name, path in found.items() for imp in _imports(name, path, known)]


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def test_pygit2_is_imported_only_in_the_git_package() -> None:
    offenders = []
    for name, path in modules().items():
        if name.startswith("registry.git.") or name == "registry.git":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            if any(n == "pygit2" or n.startswith("pygit2.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], "pygit2 imported outside registry/git/: " + ", ".join(offenders)


def test_every_module_sits_in_a_layer() -> None:
    for name in modules():
        if name != "registry":
            layer_of(name)


def test_imports_flow_down_the_layers() -> None:
    upward = [
        f"{imp.source} -> {imp.target} (line {imp.line})"
        for imp in all_imports()
        if imp.source != "registry" and layer_of(imp.target) > layer_of(imp.source)
    ]
    assert upward == []


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_among_registry_modules() -> None:
    # The package itself only names the public API (lazily); it is the top, not a module.
    graph: dict[str, set[str]] = {}
    for imp in all_imports():
        if "registry" in (imp.source, imp.target):
            continue
        graph.setdefault(imp.source, set()).add(imp.target)
    assert _find_cycle(graph) is None


def test_cycle_finder_sees_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_no_module_getattr_outside_the_public_face() -> None:
    offenders = []
    for name, path in modules().items():
        if name == "registry":
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                offenders.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.If):  # ``if not TYPE_CHECKING: def __getattr__``
                for inner in ast.walk(node):
                    if isinstance(inner, ast.FunctionDef) and inner.name == "__getattr__":
                        offenders.append(f"{name}:{inner.lineno}")
    assert offenders == []


def _public_classes() -> dict[str, list[str]]:
    homes: dict[str, list[str]] = {}
    for name, path in modules().items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                homes.setdefault(node.name, []).append(name)
    return homes


def test_every_public_class_name_has_one_home() -> None:
    twice = {name: homes for name, homes in _public_classes().items() if len(homes) > 1}
    assert twice == {}


def test_every_public_object_is_exported_once_from_its_home() -> None:
    assert len(registry.__all__) == len(set(registry.__all__))
    by_object: dict[int, list[str]] = {}
    for name in registry.__all__:
        obj = getattr(registry, name)
        by_object.setdefault(id(obj), []).append(name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            home = importlib.import_module(obj.__module__)
            assert getattr(home, obj.__name__) is obj, name
            assert obj.__name__ == name, f"{name} is exported under another name"
            assert obj.__module__.startswith("registry."), name
    assert [names for names in by_object.values() if len(names) > 1] == []


def test_the_public_names_are_defined_where_they_are_exported_from() -> None:
    table = registry._EXPORTS
    for name, module in table.items():
        obj = getattr(registry, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            defined = obj.__module__  # the module itself, or one of its private modules
            home = defined == module or defined.startswith(module + "._")
            assert home, f"{name}: exported from {module}, defined in {defined}"


def _complexities() -> Iterator[tuple[str, int]]:
    for name, path in modules().items():
        for block in cc_visit(path.read_text()):
            blocks = [block, *getattr(block, "methods", []), *getattr(block, "closures", [])]
            for item in blocks:
                yield f"{name}:{item.lineno} {item.fullname}", item.complexity


def test_no_function_is_more_complex_than_twenty() -> None:
    """Cyclomatic complexity as radon counts it (boolean operators included): rank C or better."""
    over = sorted({where: score for where, score in _complexities() if score > 20}.items())
    assert over == []


def test_ruff_enforces_the_same_bound() -> None:
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "C901"]
    done = subprocess.run([*command, str(PACKAGE)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_no_module_imports_another_modules_private_names() -> None:
    """A private name (``_x``) is its module's own: another module needing it means the
    concept wants a public home (as ``releases.plan.ReleaseView`` got)."""
    borrowed = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("registry"):
                borrowed += [
                    f"{name}:{node.lineno} {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert borrowed == []
