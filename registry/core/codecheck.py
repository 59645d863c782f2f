"""Code rules for procedure source: the import policy and the ``ast`` checks.

The code is parsed, never imported. The checks here are defence in depth: they
reject the well-known ways out of a Python namespace (``eval``, ``__import__``,
``__subclasses__``, frame objects, ``os`` hiding behind another module's
attribute, ...), so that mistakes and casual abuse fail early with a clear
message. The sandbox's process isolation remains the security boundary.

:mod:`registry.core.validation` applies :func:`check_source` to every ``.py`` file
of a procedure folder. Every rule name is listed, with its fix, in
``docs/validation.md``.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from registry.config import ValidationSection
from registry.core.problems import Problem

# Pure, side-effect-free stdlib modules. An entry allows its submodules too.
# `pathlib` is allowed because `file`/`directory` parameters are annotated
# `Path` and file access is no more than the `open` builtin already gives; the
# sandbox confines the file system. `os.path` is NOT allowed on its own:
# `import os.path` binds `os`, and `posixpath.os` is the whole `os` module.
DEFAULT_ALLOWED_IMPORTS: frozenset[str] = frozenset(
    {
        "__future__", "abc", "array", "base64", "binascii", "bisect", "calendar", "cmath",
        "collections", "colorsys", "contextlib", "copy", "csv", "dataclasses", "datetime",
        "decimal", "difflib", "email.utils", "enum", "fnmatch", "fractions", "functools",
        "graphlib", "gzip", "hashlib", "heapq", "hmac", "html", "io", "ipaddress", "itertools",
        "json", "keyword", "math", "numbers", "operator", "pathlib", "pprint", "random", "re",
        "reprlib", "secrets", "shlex", "statistics", "string", "struct", "textwrap", "time",
        "typing", "unicodedata", "urllib.parse", "uuid", "zlib", "zoneinfo",
    }
)  # fmt: skip

# What a procedure whose metadata declares ``network`` may import besides: the standard
# library's HTTP clients. Its requests go through procreg's proxy, to the allowlist only.
NETWORK_IMPORTS: frozenset[str] = frozenset(
    {"urllib.request", "urllib.error", "urllib.response", "http.client", "ssl"}
)

# Modules that load native code, import or execute arbitrary code, or reach
# the interpreter's internals. No config can allow them.
ALWAYS_DENIED_IMPORTS: frozenset[str] = frozenset(
    {
        "__builtin__", "__main__", "_ctypes", "_imp", "_interpreters", "_pickle",
        "_posixsubprocess", "_testcapi", "_testinternalcapi", "_thread",
        "_xxsubinterpreters", "builtins", "cffi", "cloudpickle", "code", "codeop", "ctypes",
        "dill", "gc", "imp", "importlib", "inspect", "marshal", "pickle", "pkgutil", "pty",
        "runpy", "shelve", "site", "zipimport",
    }
)  # fmt: skip

# Builtins that run or compile code, reach namespaces, or start a debugger or
# pager. Any use of the name is denied, not only calls (`run = eval`).
DENIED_BUILTINS: frozenset[str] = frozenset(
    {"eval", "exec", "compile", "__import__", "breakpoint", "globals", "locals", "vars", "help"}
)

# Dunders that are harmless to name or read; every other `__x__` is denied.
SAFE_DUNDERS: frozenset[str] = frozenset(
    {"__name__", "__qualname__", "__doc__", "__module__", "__init__", "__post_init__",
     "__version__", "__author__", "__all__", "__slots__", "__file__", "__debug__",
     "__main__"}
)  # fmt: skip

# Module names that, read as another module's attribute (`random._os`,
# `typing.sys`), hand out a denied module. Denied unless config allows them.
_SENSITIVE_MODULES = frozenset(
    {"os", "sys", "subprocess", "socket", "shutil", "signal", "posix", "nt"}
    | {m for m in ALWAYS_DENIED_IMPORTS if "." not in m}
)
# Attributes of frames, generators, coroutines, tracebacks and code objects
# (each leads to globals or builtins without a single dunder), and the allowed
# stdlib's back doors to `eval` (typing evaluates string annotations) or to
# objects by string path (`Formatter.get_field`).
_ESCAPE_ATTRIBUTES = frozenset(
    {"gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "cr_origin",
     "ag_frame", "ag_code", "ag_await", "f_globals", "f_locals", "f_builtins", "f_back",
     "f_code", "f_trace", "tb_frame", "tb_next", "co_code", "co_consts", "func_globals",
     "func_code", "CodeType", "get_type_hints", "ForwardRef", "_eval_type", "_evaluate",
     "get_field"}
)  # fmt: skip
_ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "delattr"})
_ATTRIBUTE_FACTORIES = frozenset({"attrgetter", "methodcaller"})
_ATTRIBUTE_NAMES = _ATTRIBUTE_FUNCTIONS | _ATTRIBUTE_FACTORIES
_DUNDER_IN_TEXT = re.compile(r"(?<![A-Za-z0-9])__[a-z][a-z0-9_]*?__(?![A-Za-z0-9])")
_CODING_COOKIE = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")

# Every rule this module reports (documented in docs/validation.md).
CODE_RULES: frozenset[str] = frozenset(
    {"syntax", "too-complex", "encoding-declaration", "denied-import", "relative-import",
     "star-import", "denied-builtin", "dunder-name", "dunder-attribute", "denied-attribute",
     "dynamic-attribute", "dunder-string"}
)  # fmt: skip


# ---------------------------------------------------------------- imports


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _prefixes(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass(frozen=True)
class _Policy:
    allowed: frozenset[str]
    denied: frozenset[str]
    local: frozenset[str]

    @classmethod
    def of(cls, config: ValidationSection | None, local: Iterable[str] = ()) -> _Policy:
        config = config or ValidationSection()
        return cls(
            allowed=DEFAULT_ALLOWED_IMPORTS | frozenset(config.allow_imports),
            denied=frozenset(config.deny_imports),
            local=frozenset(local),
        )

    def denial(self, module: str) -> str | None:
        """Why ``module`` may not be imported, or ``None`` if it may."""
        if module in self.local:
            return None
        prefixes = _prefixes(module)
        for p in prefixes:
            if p in ALWAYS_DENIED_IMPORTS:
                return (
                    f"`{module}` is never allowed in a procedure (it can load native code or "
                    "run arbitrary code), not even through allow_imports"
                )
        for p in prefixes:
            if p in self.denied:
                return f"`{module}` is denied by [validation] deny_imports in procreg.toml"
        if any(p in self.allowed for p in prefixes):
            return None
        # A submodule of `os` and the like comes with its parent; name the parent.
        top = prefixes[0] if prefixes[0] in _SENSITIVE_MODULES else module
        return (
            f"`{module}` is not on the import allowlist; use an allowed module, or add "
            f"{top!r} to [validation] allow_imports in procreg.toml"
        )


def allowed_imports(config: ValidationSection | None = None) -> frozenset[str]:
    """The effective allowlist: defaults plus ``allow_imports``, minus every denial."""
    policy = _Policy.of(config)
    return frozenset(m for m in policy.allowed if policy.denial(m) is None)


def is_import_allowed(
    module: str, config: ValidationSection | None = None, local_modules: Iterable[str] = ()
) -> bool:
    """Whether ``import module`` passes validation under ``config``."""
    return _Policy.of(config, local_modules).denial(module) is None


# ---------------------------------------------------------------- code rules


def walk_nodes(tree: ast.AST) -> list[ast.AST]:
    """``list(ast.walk(tree))``: the same nodes in the same breadth-first order, read in one
    loop (``ast.walk``'s nested generators are most of a validation's time)."""
    out: list[ast.AST] = []
    todo = deque([tree])
    pop, push, many, ast_type = todo.popleft, todo.append, todo.extend, ast.AST
    while todo:
        node = pop()
        out.append(node)
        for name in node._fields:
            try:
                value = getattr(node, name)
            except AttributeError:
                continue
            if isinstance(value, ast_type):
                push(value)
            elif isinstance(value, list):
                many([item for item in value if isinstance(item, ast_type)])
    return out


def _skip_docstrings(nodes: list[ast.AST]) -> set[int]:
    ids: set[int] = set()
    for node in nodes:
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


class _CodeChecker:
    def __init__(self, path: str, policy: _Policy) -> None:
        self.path = path
        self.policy = policy
        self.problems: list[Problem] = []
        self.consumed: set[int] = set()
        self.called: set[int] = set()

    def add(self, node: ast.AST | None, rule: str, message: str) -> None:
        line = getattr(node, "lineno", None) if node is not None else None
        self.problems.append(Problem(path=self.path, line=line, rule=rule, message=message))

    def run(self, tree: ast.Module) -> list[Problem]:
        nodes = walk_nodes(tree)
        self.consumed |= _skip_docstrings(nodes)
        self.walk(tree, nodes)
        return self.problems

    def walk(self, tree: ast.AST, nodes: list[ast.AST] | None = None) -> None:
        for node in nodes if nodes is not None else walk_nodes(tree):
            # breadth first: a call is seen before its arguments
            if isinstance(node, ast.Import):
                self.check_import(node)
            elif isinstance(node, ast.ImportFrom):
                self.check_import_from(node)
            elif isinstance(node, ast.Name):
                self.check_name(node)
            elif isinstance(node, ast.Attribute):
                self.check_attribute(node, node.attr, via="attribute")
            elif isinstance(node, ast.Call):
                self.check_call(node)
            elif isinstance(node, ast.MatchClass):
                for attr in node.kwd_attrs:
                    self.check_attribute(node, attr, via="class pattern")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                self.check_text(node)
            if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
                self.check_annotation(node.annotation)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
                self.check_annotation(node.returns)

    def check_annotation(self, annotation: ast.expr) -> None:
        # typing.get_type_hints and functools.singledispatch eval() string
        # annotations, so a string annotation is code and is checked as code.
        for node in ast.walk(annotation):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                try:
                    code = ast.parse(node.value.strip(), mode="eval")
                except SyntaxError:
                    continue
                self.consumed.add(id(node))
                for sub in ast.walk(code):
                    if hasattr(sub, "lineno"):
                        sub.lineno = node.lineno
                self.walk(code)

    def check_import(self, node: ast.Import) -> None:
        for alias in node.names:
            why = self.policy.denial(alias.name)
            top = alias.name.split(".")[0]
            if why is None and alias.asname is None and "." in alias.name:
                # `import os.path` binds `os` itself.
                top_why = self.policy.denial(top)
                if top_why is not None and top in _SENSITIVE_MODULES:
                    why = f"`import {alias.name}` binds `{top}`: {top_why}"
            if why is not None:
                self.add(node, "denied-import", why)

    def check_import_from(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.add(
                node,
                "relative-import",
                f"relative import `from {'.' * node.level}{module} import ...`: the procedure "
                "folder is on the import path, so import a helper as `import helpers` or "
                "`from helpers import name`",
            )
            return
        why = self.policy.denial(module)
        if why is not None:
            # A package only some of whose submodules are allowed (urllib) is
            # judged name by name: `from urllib import parse` is fine.
            if any(a.startswith(f"{module}.") for a in self.policy.allowed):
                for alias in node.names:
                    sub_why = self.policy.denial(f"{module}.{alias.name}")
                    if sub_why is not None:
                        self.add(node, "denied-import", sub_why)
            else:
                self.add(node, "denied-import", why)
            return
        for alias in node.names:
            if alias.name == "*":
                self.add(
                    node,
                    "star-import",
                    f"`from {module} import *` hides what the code uses; import the names you need",
                )
            elif module not in self.policy.local:
                self.check_attribute(node, alias.name, via=f"import from {module}")
                if alias.name in _ATTRIBUTE_FACTORIES and alias.asname not in (None, alias.name):
                    self.add(
                        node,
                        "dynamic-attribute",
                        f"import `{alias.name}` under its own name so its uses can be checked",
                    )

    def check_name(self, node: ast.Name) -> None:
        if node.id in _ATTRIBUTE_NAMES and id(node) not in self.called:
            self.add(
                node,
                "dynamic-attribute",
                f"`{node.id}` used other than in a direct call takes attribute names that "
                "cannot be checked; call it directly with a string constant",
            )
        elif node.id in DENIED_BUILTINS and isinstance(node.ctx, ast.Load):
            self.add(
                node,
                "denied-builtin",
                f"`{node.id}` is not allowed in a procedure (it runs code or exposes "
                "namespaces); rename your own function or variable if that is what it is",
            )
        elif _is_dunder(node.id) and node.id not in SAFE_DUNDERS:
            self.add(
                node,
                "dunder-name",
                f"`{node.id}` reaches the interpreter's internals and is not allowed",
            )

    def check_attribute(self, node: ast.AST, attr: str, via: str) -> None:
        if _is_dunder(attr):
            if attr not in SAFE_DUNDERS:
                self.add(
                    node,
                    "dunder-attribute",
                    f"{via} `{attr}` is not allowed: dunder attributes lead out of the "
                    "procedure's namespace",
                )
        elif attr in _ESCAPE_ATTRIBUTES:
            self.add(
                node,
                "denied-attribute",
                f"{via} `{attr}` is not allowed: it evaluates code or exposes frames, code "
                "or globals",
            )
        elif (bare := attr.lstrip("_")) in _SENSITIVE_MODULES and self.policy.denial(bare):
            self.add(
                node,
                "denied-attribute",
                f"{via} `{attr}` is not allowed: it is how a module hands out `{bare}`, which "
                "procedures may not use; rename it if it is your own attribute",
            )

    def check_call(self, node: ast.Call) -> None:
        func = node.func
        name = (
            func.id
            if isinstance(func, ast.Name)
            else func.attr
            if isinstance(func, ast.Attribute)
            else None
        )
        self.called.add(id(func))
        if isinstance(func, ast.Name) and name in _ATTRIBUTE_FUNCTIONS:
            args = node.args[1:2]
        elif name in _ATTRIBUTE_FACTORIES:
            args = list(node.args)
        else:
            return
        for arg in args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self.consumed.add(id(arg))
                for part in arg.value.split(".") if name == "attrgetter" else [arg.value]:
                    self.check_attribute(node, part, via=f"{name}()")
            else:
                self.add(
                    node,
                    "dynamic-attribute",
                    f"{name}() with a computed attribute name cannot be checked; use a "
                    "string constant or plain attribute access",
                )

    def check_text(self, node: ast.Constant) -> None:
        if id(node) in self.consumed or not isinstance(node.value, str):
            return
        for match in _DUNDER_IN_TEXT.finditer(node.value):
            if match.group() not in SAFE_DUNDERS:
                self.add(
                    node,
                    "dunder-string",
                    f"string mentions `{match.group()}`; attribute paths in strings "
                    "(format fields, attrgetter) can reach the interpreter's internals",
                )
                return


def too_complex(path: str) -> Problem:
    """The ``too-complex`` problem: code nested too deeply for ``ast`` to analyse."""
    return Problem(
        path=path,
        rule="too-complex",
        message="an expression is nested too deeply to analyse; split it into simpler steps",
    )


# The last parse: validation reads one main.py twice in a row (the code rules, then the
# entry point), and neither changes the tree, so the second read reuses the first's.
_LAST_PARSE: tuple[str, str, ast.Module] | None = None


def parse_source(source: str, path: str) -> tuple[ast.Module | None, list[Problem]]:
    """The module's tree, or ``None`` and the ``syntax`` or ``too-complex`` problem.

    The tree is shared with the previous caller of the same source: read it, never change it.
    """
    global _LAST_PARSE
    last = _LAST_PARSE
    if last is not None and last[0] == path and last[1] == source:
        return last[2], []
    try:
        tree = ast.parse(source, filename=path)
        _LAST_PARSE = (path, source, tree)
        return tree, []
    except SyntaxError as exc:
        return None, [
            Problem(path=path, line=exc.lineno, rule="syntax", message=f"{exc.msg}; fix the code")
        ]
    except (RecursionError, MemoryError):
        return None, [too_complex(path)]
    except ValueError as exc:  # null bytes, on Pythons that raise ValueError for them
        return None, [Problem(path=path, rule="syntax", message=f"{exc}; fix the code")]


def _coding_problems(source: str, path: str) -> list[Problem]:
    for lineno, line in enumerate(source.splitlines()[:2], start=1):
        m = _CODING_COOKIE.match(line)
        if m and m.group(1).lower().replace("_", "-") not in ("utf-8", "utf8"):
            return [
                Problem(
                    path=path,
                    line=lineno,
                    rule="encoding-declaration",
                    message=f"declares coding {m.group(1)!r}; Python would read other code "
                    "than was validated. Remove the declaration (files are UTF-8)",
                )
            ]
    return []


def dedupe(problems: Iterable[Problem]) -> list[Problem]:
    """The problems without repeats, in their first order."""
    return list(dict.fromkeys(problems))


def check_source(
    source: str,
    path: str,
    config: ValidationSection | None = None,
    *,
    local_modules: Iterable[str] = (),
) -> list[Problem]:
    """The code rules for one ``.py`` file: syntax, imports, denied builtins and attributes.

    ``path`` is only used to label problems. ``local_modules`` are the dotted
    names of the procedure's own helper modules (``helpers``, ``pkg.text``),
    which may be imported freely.
    """
    problems = _coding_problems(source, path)
    tree, syntax = parse_source(source, path)
    if tree is None:
        return problems + syntax
    try:
        problems += _CodeChecker(path, _Policy.of(config, local_modules)).run(tree)
    except RecursionError:
        problems.append(too_complex(path))
    return dedupe(sorted(problems, key=lambda p: p.line or 0))
