"""Procedure validation: files, ids, ``metadata.json``, the entry point, the examples.

:func:`validate_snapshot` checks a whole procedure folder: the id, the files
(modes, sizes, encodings), ``metadata.json`` against the model, the entry
point's form, its parameters against the metadata, and the examples. The code
rules applied to each ``.py`` file (the import policy and the ``ast`` checks)
live in :mod:`registry.core.codecheck`; their public names are re-exported here.

Every rule name is listed, with its fix, in ``docs/validation.md``.
"""

from __future__ import annotations

import ast
import bisect
import contextlib
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from registry.config import ValidationSection
from registry.core.codecheck import (
    ALWAYS_DENIED_IMPORTS,
    CODE_RULES,
    DEFAULT_ALLOWED_IMPORTS,
    DENIED_BUILTINS,
    SAFE_DUNDERS,
    allowed_imports,
    check_source,
    dedupe,
    is_import_allowed,
    parse_source,
    too_complex,
)
from registry.core.model import ID_RE, PYTHON_TYPES, Metadata
from registry.core.problems import Problem
from registry.core.signature import Signature, signature_of
from registry.core.snapshot import (
    MAIN_FILE,
    METADATA_FILE,
    MODE_EXECUTABLE,
    MODE_SUBMODULE,
    MODE_SYMLINK,
    Snapshot,
)

__all__ = [
    "ALLOWED_EXTENSIONS",
    "ALWAYS_DENIED_IMPORTS",
    "DEFAULT_ALLOWED_IMPORTS",
    "DENIED_BUILTINS",
    "RULES",
    "SAFE_DUNDERS",
    "ValidationResult",
    "allowed_imports",
    "check_source",
    "id_problems",
    "is_import_allowed",
    "validate_snapshot",
]

_STDLIB = frozenset(sys.stdlib_module_names)

# Every rule this module reports, the code rules included (documented in docs/validation.md).
RULES: frozenset[str] = CODE_RULES | frozenset(
    {"id-invalid", "id-mismatch", "missing-file", "unexpected-file", "symlink", "submodule",
     "executable-file", "file-too-large", "folder-too-large", "too-many-files", "binary-file",
     "encoding", "shadows-stdlib", "metadata-json", "metadata-schema", "entry-point-missing",
     "entry-point-not-function", "entry-point-async", "entry-point-generator",
     "entry-point-decorated", "entry-point-positional-only", "entry-point-varargs",
     "parameter-not-in-code", "parameter-not-in-metadata", "parameter-required-mismatch",
     "parameter-default-mismatch", "parameter-default-not-literal", "parameter-type-mismatch",
     "example-unknown-parameter", "example-missing-parameter", "example-type-mismatch"}
)  # fmt: skip

# Other files a procedure may carry (documentation, data); anything else is unexpected.
ALLOWED_EXTENSIONS: frozenset[str] = frozenset(
    {".py", ".md", ".txt", ".rst", ".json", ".csv", ".tsv", ".toml", ".yaml", ".yml"}
)


class ValidationResult(BaseModel):
    """The outcome of validating one procedure folder."""

    id: str
    metadata: Metadata | None = None
    signature: Signature | None = None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def id_problems(value: str, path: str) -> list[Problem]:
    """Problems with a procedure id (the folder name): rule ``id-invalid``.

    Says why an id is invalid; :func:`registry.core.tags.check_id` raises instead.
    """
    if ID_RE.match(value):
        return []
    if not value:
        why = "it is empty"
    elif len(value) > 64:
        why = f"it is {len(value)} characters long (at most 64)"
    elif value.lower() != value and ID_RE.match(value.lower()):
        why = "it has uppercase letters"
    elif bad := sorted({c for c in value if not re.match(r"[a-z0-9_-]", c)}):
        why = f"it contains {', '.join(repr(c) for c in bad)}"
    else:
        why = "it must start with a lowercase letter or digit"
    return [
        Problem(
            path=path,
            rule="id-invalid",
            message=f"procedure id {value!r} is invalid: {why}; use lowercase letters, digits, "
            "'_' and '-' (1 to 64 characters, matching ^[a-z0-9][a-z0-9_-]{0,63}$)",
        )
    ]


# ---------------------------------------------------------------- metadata.json


def _json_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """The 1-based line of every key and array element of a valid JSON text, by path."""
    newlines = [i for i, c in enumerate(text) if c == "\n"]
    lines: dict[tuple[str | int, ...], int] = {}
    ws = re.compile(r"[ \t\n\r]*")
    decoder = json.JSONDecoder()

    def line_at(i: int) -> int:
        return bisect.bisect_left(newlines, i) + 1

    def value(i: int, path: tuple[str | int, ...]) -> int:
        i = ws.match(text, i).end()  # type: ignore[union-attr]
        lines.setdefault(path, line_at(i))
        if text[i] in "{[":
            close = "}" if text[i] == "{" else "]"
            i = ws.match(text, i + 1).end()  # type: ignore[union-attr]
            index = 0
            while text[i] != close:
                if close == "}":
                    key, j = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
                    lines[(*path, key)] = line_at(i)
                    i = value(ws.match(text, j).end() + 1, (*path, key))  # type: ignore[union-attr]
                else:
                    i = value(i, (*path, index))
                    index += 1
                i = ws.match(text, i).end()  # type: ignore[union-attr]
                if text[i] == ",":
                    i = ws.match(text, i + 1).end()  # type: ignore[union-attr]
            return i + 1
        return int(decoder.raw_decode(text, i)[1])

    # Line numbers are a courtesy; the JSON itself already parsed.
    with contextlib.suppress(ValueError, IndexError, AttributeError, RecursionError):
        value(0, ())
    return lines


@dataclass
class _MetadataFile:
    path: str
    text: str
    data: Any
    _lines: dict[tuple[str | int, ...], int] | None = None

    def line(self, *loc: str | int) -> int | None:
        if self._lines is None:
            self._lines = _json_lines(self.text)
        for end in range(len(loc), -1, -1):
            if loc[:end] in self._lines:
                return self._lines[loc[:end]]
        return None

    def problem(self, rule: str, message: str, *loc: str | int) -> Problem:
        field = ".".join(str(p) for p in loc) or None
        return Problem(
            path=self.path, line=self.line(*loc), rule=rule, message=message, field=field
        )


def _schema_problems(meta: _MetadataFile, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            msg = f"unknown field {str(loc[-1])!r}; remove it or fix its spelling"
        elif err["type"] == "missing":
            msg = "required field is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        text = f"{field}: {msg}" if field else f"{msg} (metadata.json must hold one JSON object)"
        problems.append(meta.problem("metadata-schema", text, *loc))
    return problems


# ---------------------------------------------------------------- entry point


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


# ---------------------------------------------------------------- metadata vs code

_TYPE_ALIASES = {
    "List": "list", "Tuple": "tuple", "Dict": "dict", "Set": "set", "FrozenSet": "frozenset",
    "Text": "str", "MutableSequence": "Sequence", "MutableMapping": "Mapping",
    "Collection": "Iterable", "PurePath": "Path", "PosixPath": "Path",
}  # fmt: skip
_KNOWN_TYPES = frozenset(
    {"str", "int", "float", "bool", "list", "tuple", "dict", "set", "frozenset", "bytes",
     "bytearray", "complex", "Path", "Sequence", "Mapping", "Iterable", "Any", "object"}
)  # fmt: skip
_JSON_FITS = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "file": lambda v: isinstance(v, str),
    "directory": lambda v: isinstance(v, str),
}


def _type_names(node: ast.expr) -> list[str] | None:
    """The plain type names of an annotation's union members, or ``None`` if unclear."""
    if isinstance(node, ast.Constant):
        if node.value is None:
            return ["None"]
        if isinstance(node.value, str):
            try:
                return _type_names(ast.parse(node.value, mode="eval").body)
            except SyntaxError:
                return None
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _type_names(node.left), _type_names(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Subscript):
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


def _same_value(a: object, b: object) -> bool:
    """JSON equality: ``True`` is not ``1``, a tuple equals the same list."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _compare(sig: Signature, meta: Metadata, mf: _MetadataFile, path: str) -> list[Problem]:
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
        if mp.required and cp.has_default:
            at(
                cp.line,
                "parameter-required-mismatch",
                f"parameter {mp.name!r} is required in metadata.json but has a default in "
                f'{fn}; remove the default or set "required": false in metadata.json',
            )
        elif not mp.required and not cp.has_default:
            at(
                cp.line,
                "parameter-required-mismatch",
                f'parameter {mp.name!r} is optional in metadata.json ("required": false) but '
                f'has no default in {fn}; give it a default or set "required": true',
            )
        elif cp.default is not None and i < len(raw) and "default" in raw[i]:
            try:
                code_default = ast.literal_eval(cp.default)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                at(
                    cp.line,
                    "parameter-default-not-literal",
                    f"the default of {mp.name!r} in {fn} is `{cp.default}`, not a literal, so it "
                    "cannot be checked against metadata.json; write the value itself",
                )
            else:
                if not _same_value(code_default, mp.default):
                    at(
                        cp.line,
                        "parameter-default-mismatch",
                        f"parameter {mp.name!r} defaults to {cp.default} in {fn} but to "
                        f"{json.dumps(mp.default)} in metadata.json; make them equal",
                    )
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


def _example_problems(meta: Metadata, mf: _MetadataFile) -> list[Problem]:
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
            elif (
                value is not None and param.type in _JSON_FITS and not _JSON_FITS[param.type](value)
            ):
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


# ---------------------------------------------------------------- files and the folder


def _local_modules(names: Iterable[str]) -> dict[str, str]:
    """Importable module names of the folder's ``.py`` files, mapped to their file."""
    modules: dict[str, str] = {}
    for name in names:
        if not name.endswith(".py"):
            continue
        parts = name[:-3].split("/")
        if parts[-1] == "__init__":
            parts.pop()
        if parts and all(p.isidentifier() for p in parts):
            for end in range(1, len(parts) + 1):
                modules.setdefault(".".join(parts[:end]), name)
    return modules


def _file_problem(
    name: str, data: bytes, mode: int, path: str, config: ValidationSection
) -> Problem | None:
    """The first problem that makes a file unusable, if any (content is then not read)."""

    def problem(rule: str, message: str, line: int | None = None) -> Problem:
        return Problem(path=path, line=line, rule=rule, message=message)

    if mode == MODE_SUBMODULE:
        return problem("submodule", "git submodules are not allowed; copy the code in")
    if mode == MODE_SYMLINK:
        return problem("symlink", "symbolic links are not allowed; commit a regular file")
    if mode not in (MODE_EXECUTABLE, 0o100644):
        return problem("unexpected-file", f"unexpected git mode {mode:o}; commit a regular file")
    parts = name.split("/")
    suffix = "." + name.rsplit(".", 1)[-1] if "." in parts[-1] else ""
    if any(p.startswith(".") or p == "__pycache__" for p in parts) or (
        suffix not in ALLOWED_EXTENSIONS
    ):
        return problem(
            "unexpected-file",
            f"{name} is not part of a procedure; allowed are "
            f"{', '.join(sorted(ALLOWED_EXTENSIONS))} files (no hidden files or caches)",
        )
    if len(data) > config.max_file_bytes:
        return problem(
            "file-too-large",
            f"{len(data)} bytes, more than max_file_bytes ({config.max_file_bytes}); "
            "shrink it or raise [validation] max_file_bytes",
        )
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        return problem("binary-file", "contains NUL bytes; only text files are allowed", line)
    if data.startswith(b"\xef\xbb\xbf"):
        return problem("encoding", "starts with a UTF-8 byte order mark; save without BOM", 1)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return problem(
            "encoding",
            f"not valid UTF-8 at byte {exc.start} ({exc.reason}); save the file as UTF-8",
            line,
        )
    return None


def validate_snapshot(
    snapshot: Snapshot, config: ValidationSection | None = None
) -> ValidationResult:
    """Validate a procedure folder; gathers every problem instead of stopping at the first.

    Checks the id, the files (modes, sizes, encodings), ``metadata.json``
    against :class:`~registry.core.model.Metadata`, every ``.py`` file with
    :func:`check_source`, the entry point's form, and the entry point's
    parameters against the metadata and its examples.
    """
    config = config or ValidationSection()
    base = snapshot.path
    problems = id_problems(snapshot.id, base)
    texts: dict[str, str] = {}
    for name in sorted(snapshot.files):
        data, mode = snapshot.files[name]
        path = f"{base}/{name}"
        bad = _file_problem(name, data, mode, path, config)
        if bad is not None:
            problems.append(bad)
            continue
        if mode == MODE_EXECUTABLE:
            problems.append(
                Problem(
                    path=path,
                    rule="executable-file",
                    message="the file is executable; procedures are called, not run "
                    "(git update-index --chmod=-x or chmod -x)",
                )
            )
        texts[name] = data.decode("utf-8")
    if len(snapshot.files) > config.max_files:
        problems.append(
            Problem(
                path=base,
                rule="too-many-files",
                message=f"{len(snapshot.files)} files, more than max_files ({config.max_files})",
            )
        )
    size = sum(len(e.data) for e in snapshot.files.values())
    if size > config.max_folder_bytes:
        problems.append(
            Problem(
                path=base,
                rule="folder-too-large",
                message=f"{size} bytes in all, more than max_folder_bytes "
                f"({config.max_folder_bytes})",
            )
        )
    for required in (METADATA_FILE, MAIN_FILE):
        if required not in snapshot.files:
            problems.append(
                Problem(
                    path=f"{base}/{required}",
                    rule="missing-file",
                    message=f"every procedure needs {required}; add it",
                )
            )

    local = _local_modules(snapshot.files)
    for module, name in sorted(local.items()):
        if "." not in module and (module in _STDLIB or module in ALWAYS_DENIED_IMPORTS):
            problems.append(
                Problem(
                    path=f"{base}/{name}",
                    rule="shadows-stdlib",
                    message=f"module `{module}` would shadow the standard library's; "
                    "rename the file",
                )
            )
    local = {
        m: n
        for m, n in local.items()
        if m.split(".")[0] not in _STDLIB and m.split(".")[0] not in ALWAYS_DENIED_IMPORTS
    }

    meta, mf = None, None
    if METADATA_FILE in texts:
        meta, mf, meta_problems = _load_metadata(snapshot, texts[METADATA_FILE])
        problems += meta_problems
    for name, text in texts.items():
        if name.endswith(".py"):
            problems += check_source(text, f"{base}/{name}", config, local_modules=local)

    entry = "main"
    if meta is not None:
        entry = meta.entry_point
    elif mf is not None and isinstance(mf.data, dict):
        named = mf.data.get("entry_point")
        entry = named if isinstance(named, str) and named.isidentifier() else entry
    sig = None
    if MAIN_FILE in texts:
        main_path = f"{base}/{MAIN_FILE}"
        tree, _ = parse_source(texts[MAIN_FILE], main_path)
        try:
            if tree is not None:
                func, entry_problems = _entry_point(tree, entry, main_path)
                problems += entry_problems
                if func is not None:
                    sig = signature_of(func)
                    problems += _signature_form(sig, main_path)
                    if meta is not None and mf is not None:
                        problems += _compare(sig, meta, mf, main_path)
        except RecursionError:
            problems.append(too_complex(main_path))
    if meta is not None and mf is not None:
        problems += _example_problems(meta, mf)
    return ValidationResult(id=snapshot.id, metadata=meta, signature=sig, problems=dedupe(problems))


def _load_metadata(
    snapshot: Snapshot, text: str
) -> tuple[Metadata | None, _MetadataFile | None, list[Problem]]:
    path = f"{snapshot.path}/{METADATA_FILE}"
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        line, msg = 1, "invalid JSON: nested too deeply"
        if isinstance(exc, json.JSONDecodeError):
            line, msg = (
                exc.lineno,
                f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            )
        return None, None, [Problem(path=path, line=line, rule="metadata-json", message=msg)]
    mf = _MetadataFile(path, text, data)
    problems: list[Problem] = []
    declared = data.get("id") if isinstance(data, dict) else None
    if (
        isinstance(declared, str)
        and ID_RE.match(declared)
        and ID_RE.match(snapshot.id)
        and declared != snapshot.id
    ):
        problems.append(
            mf.problem(
                "id-mismatch",
                f"metadata.json says id {declared!r} but the folder is {snapshot.id!r}; "
                "they must agree (rename the folder or fix the id)",
                "id",
            )
        )
    try:
        meta = Metadata.model_validate(data)
    except ValidationError as exc:
        return None, mf, problems + _schema_problems(mf, exc)
    return meta, mf, problems
