"""The entry point of ``main.py`` checked: its form, its parameters against the metadata.

:func:`check_entry` finds the top-level function ``metadata.json`` names
(rules ``entry-point-*``), reads its signature and compares each parameter
with the declared one: required or not, the default, the annotation against
the type (rules ``parameter-*``). :func:`example_problems` checks the
examples' inputs against the declared parameters (rules ``example-*``). Pure.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator

from registry.core.codecheck import parse_source, too_complex
from registry.core.jsonvalue import fits, json_equal
from registry.core.metadatafile import MetadataFile
from registry.core.model import PYTHON_TYPES, Metadata, Parameter
from registry.core.problems import Problem
from registry.core.signature import ParamSig, Signature, signature_of

__all__ = ["check_entry", "example_problems"]


def _binds(node: ast.stmt, name: str) -> bool:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name == name
    if isinstance(node, ast.Import | ast.ImportFrom):
        return any((a.asname or a.name.split(".")[0]) == name for a in node.names)
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    return any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t))


def _own_nodes(func: ast.AST) -> Iterator[ast.AST]:
    """Nodes of a function body, not descending into nested scopes."""
    todo = list(ast.iter_child_nodes(func))
    while todo:
        node = todo.pop()
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            yield node
            todo.extend(ast.iter_child_nodes(node))


def _entry_point(
    tree: ast.Module, name: str, path: str
) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef | None, list[Problem]]:
    binding = None
    for node in tree.body:
        if _binds(node, name):
            binding = node
    if binding is None:
        nested = any(_binds(n, name) for n in ast.walk(tree) if isinstance(n, ast.stmt))
        where = " (it is defined only inside a block; move it to the top level)" if nested else ""
        return None, [
            Problem(
                path=path,
                rule="entry-point-missing",
                message=f"no top-level function `{name}`{where}; define `def {name}(...)` "
                "or set entry_point in metadata.json",
            )
        ]

    def problem(rule: str, message: str) -> Problem:
        return Problem(path=path, line=binding.lineno, rule=rule, message=message)

    if not isinstance(binding, ast.FunctionDef | ast.AsyncFunctionDef):
        kind = (
            "a lambda"
            if isinstance(getattr(binding, "value", None), ast.Lambda)
            else "a class"
            if isinstance(binding, ast.ClassDef)
            else "an import"
            if isinstance(binding, ast.Import | ast.ImportFrom)
            else "an assignment"
        )
        return None, [
            problem(
                "entry-point-not-function",
                f"`{name}` is bound by {kind}, not a plain `def {name}(...)`; "
                "the registry only calls top-level functions",
            )
        ]
    problems = []
    if isinstance(binding, ast.AsyncFunctionDef):
        problems.append(
            problem("entry-point-async", f"`{name}` is `async def`; make it a plain `def`")
        )
    if binding.decorator_list:
        problems.append(
            Problem(
                path=path,
                line=binding.decorator_list[0].lineno,
                rule="entry-point-decorated",
                message=f"`{name}` is decorated, so its real signature cannot be read; "
                "remove the decorator (wrap the logic in another function instead)",
            )
        )
    yields = [n for n in _own_nodes(binding) if isinstance(n, ast.Yield | ast.YieldFrom)]
    if yields:
        problems.append(
            Problem(
                path=path,
                line=min(n.lineno for n in yields),
                rule="entry-point-generator",
                message=f"`{name}` is a generator (it yields); return a JSON value instead, "
                "e.g. a list",
            )
        )
    return binding, problems


# ---------------------------------------------------------------- parameters vs metadata

_TYPE_ALIASES = {
    "List": "list", "Tuple": "tuple", "Dict": "dict", "Set": "set", "FrozenSet": "frozenset",
    "Text": "str", "MutableSequence": "Sequence", "MutableMapping": "Mapping",
    "Collection": "Iterable", "PurePath": "Path", "PosixPath": "Path",
}  # fmt: skip
_KNOWN_TYPES = frozenset(
    {"str", "int", "float", "bool", "list", "tuple", "dict", "set", "frozenset", "bytes",
     "bytearray", "complex", "Path", "Sequence", "Mapping", "Iterable", "Any", "object"}
)  # fmt: skip


def _constant_type_names(node: ast.Constant) -> list[str] | None:
    """``None``, or a string annotation (``"int | None"``) read as the annotation it spells."""
    if node.value is None:
        return ["None"]
    if not isinstance(node.value, str):
        return None
    try:
        return _type_names(ast.parse(node.value, mode="eval").body)
    except SyntaxError:
        return None


def _subscript_type_names(node: ast.Subscript) -> list[str] | None:
    """``Optional[X]`` and ``Union[X, Y]`` give their members, ``Annotated[X, ...]`` gives X's."""
    base = _type_names(node.value)
    if base is None or len(base) != 1:
        return None
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if base[0] in ("Optional", "Union"):
        names = [_type_names(e) for e in elts]
        return None if any(n is None for n in names) else [x for n in names if n for x in n]
    if base[0] == "Annotated":
        return _type_names(elts[0])
    return base


def _type_names(node: ast.expr) -> list[str] | None:
    """The plain type names of an annotation's union members, or ``None`` if unclear."""
    if isinstance(node, ast.Constant):
        return _constant_type_names(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _type_names(node.left), _type_names(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Subscript):
        return _subscript_type_names(node)
    if isinstance(node, ast.Name):
        return [_TYPE_ALIASES.get(node.id, node.id)]
    if isinstance(node, ast.Attribute):
        return [_TYPE_ALIASES.get(node.attr, node.attr)]
    return None


def _type_contradicts(param_type: str, annotation: str) -> bool:
    """True only for a clear contradiction; unknown or complex annotations pass."""
    if param_type == "any":
        return False
    try:
        names = _type_names(ast.parse(annotation, mode="eval").body)
    except SyntaxError:
        return False
    members = [n for n in names or [] if n != "None"]
    if not members or any(n not in _KNOWN_TYPES for n in members):
        return False
    accepted = {t.strip() for spelled in PYTHON_TYPES[param_type] for t in spelled.split("|")} | {
        "Any",
        "object",
    }
    return not any(n in accepted for n in members)


def _required_or_default(
    mp: Parameter, cp: ParamSig, fn: str, default_declared: bool
) -> tuple[str, str] | None:
    """A parameter's required-ness and default in code vs metadata: (rule, message), if wrong."""
    if mp.required and cp.has_default:
        return (
            "parameter-required-mismatch",
            f"parameter {mp.name!r} is required in metadata.json but has a default in "
            f'{fn}; remove the default or set "required": false in metadata.json',
        )
    if not mp.required and not cp.has_default:
        return (
            "parameter-required-mismatch",
            f'parameter {mp.name!r} is optional in metadata.json ("required": false) but '
            f'has no default in {fn}; give it a default or set "required": true',
        )
    if cp.default is None or not default_declared:
        return None
    try:
        code_default = ast.literal_eval(cp.default)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return (
            "parameter-default-not-literal",
            f"the default of {mp.name!r} in {fn} is `{cp.default}`, not a literal, so it "
            "cannot be checked against metadata.json; write the value itself",
        )
    if json_equal(code_default, mp.default):
        return None
    return (
        "parameter-default-mismatch",
        f"parameter {mp.name!r} defaults to {cp.default} in {fn} but to "
        f"{json.dumps(mp.default)} in metadata.json; make them equal",
    )


def _parameter_problems(
    sig: Signature, meta: Metadata, mf: MetadataFile, path: str
) -> list[Problem]:
    problems: list[Problem] = []
    code = {p.name: p for p in sig.params if p.kind not in ("var_positional", "var_keyword")}
    fn = f"`{sig.name}()` in main.py"
    raw = mf.data["parameters"] if isinstance(mf.data.get("parameters"), list) else []

    def at(line: int, rule: str, message: str) -> None:
        problems.append(Problem(path=path, line=line, rule=rule, message=message))

    for i, mp in enumerate(meta.parameters):
        cp = code.get(mp.name)
        if cp is None:
            problems.append(
                mf.problem(
                    "parameter-not-in-code",
                    f"parameter {mp.name!r} is declared in metadata.json but {fn} has no such "
                    "parameter; add it to the function or remove it from metadata.json",
                    "parameters",
                    i,
                )
            )
            continue
        problem = _required_or_default(mp, cp, fn, i < len(raw) and "default" in raw[i])
        if problem is not None:
            at(cp.line, *problem)
        if cp.annotation is not None and _type_contradicts(mp.type, cp.annotation):
            at(
                cp.line,
                "parameter-type-mismatch",
                f"parameter {mp.name!r} is annotated `{cp.annotation}` in {fn} but has type "
                f"{mp.type!r} in metadata.json; expected one of "
                f"{', '.join(PYTHON_TYPES[mp.type])}",
            )
    declared = {p.name for p in meta.parameters}
    for cp in code.values():
        if cp.name not in declared:
            at(
                cp.line,
                "parameter-not-in-metadata",
                f"parameter {cp.name!r} of {fn} is not declared in metadata.json; add it to "
                '"parameters" there or remove it from the function',
            )
    return problems


def _signature_form(sig: Signature, path: str) -> list[Problem]:
    problems = []
    for p in sig.params:
        if p.kind == "positional_only":
            problems.append(
                Problem(
                    path=path,
                    line=p.line,
                    rule="entry-point-positional-only",
                    message=f"parameter {p.name!r} of `{sig.name}()` is positional-only; the "
                    "registry passes arguments by keyword, so remove the `/`",
                )
            )
        elif p.kind == "var_positional":
            problems.append(
                Problem(
                    path=path,
                    line=p.line,
                    rule="entry-point-varargs",
                    message=f"`*{p.name}` in `{sig.name}()` can never receive anything: the "
                    "registry passes arguments by keyword; declare named parameters",
                )
            )
    return problems


def example_problems(meta: Metadata, mf: MetadataFile) -> list[Problem]:
    problems = []
    declared = {p.name: p for p in meta.parameters}
    for i, example in enumerate(meta.examples):
        for key, value in example.input.items():
            param = declared.get(key)
            if param is None:
                problems.append(
                    mf.problem(
                        "example-unknown-parameter",
                        f"example {i} passes {key!r}, which is not a declared parameter; "
                        'remove it or declare it in "parameters"',
                        "examples",
                        i,
                        "input",
                        key,
                    )
                )
            elif value is not None and not fits(value, param.type):
                problems.append(
                    mf.problem(
                        "example-type-mismatch",
                        f"example {i} passes {json.dumps(value)} for {key!r}, which has type "
                        f"{param.type!r}",
                        "examples",
                        i,
                        "input",
                        key,
                    )
                )
        missing = [p.name for p in meta.parameters if p.required and p.name not in example.input]
        if missing:
            problems.append(
                mf.problem(
                    "example-missing-parameter",
                    f"example {i} lacks the required parameter(s) {', '.join(map(repr, missing))}",
                    "examples",
                    i,
                    "input",
                )
            )
    return problems


def check_entry(
    text: str, path: str, entry: str, meta: Metadata | None, mf: MetadataFile | None
) -> tuple[Signature | None, list[Problem]]:
    """The entry point's signature, and its problems: its form, its parameters vs metadata."""
    tree, _ = parse_source(text, path)
    if tree is None:
        return None, []
    problems: list[Problem] = []
    sig = None
    try:
        func, problems = _entry_point(tree, entry, path)
        if func is not None:
            sig = signature_of(func)
            problems += _signature_form(sig, path)
            if meta is not None and mf is not None:
                problems += _parameter_problems(sig, meta, mf, path)
    except RecursionError:
        problems.append(too_complex(path))
    return sig, problems
