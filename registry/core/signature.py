"""The entry point's signature, read with ``ast`` (the code is never imported).

Validation checks it against ``metadata.json``; versioning compares two of
them to compute a semver bump. Both ask this module, so they agree.
"""

from __future__ import annotations

import ast
from typing import Literal

from pydantic import BaseModel, ConfigDict

ParamKind = Literal[
    "positional_only", "positional_or_keyword", "var_positional", "keyword_only", "var_keyword"
]


class ParamSig(BaseModel):
    """One parameter as written in the source."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: ParamKind
    annotation: str | None = None  # ast.unparse of the annotation
    default: str | None = None  # ast.unparse of the default expression
    line: int

    @property
    def has_default(self) -> bool:
        return self.default is not None


class Signature(BaseModel):
    """An entry point: its parameters, return annotation and form."""

    model_config = ConfigDict(frozen=True)

    name: str
    params: tuple[ParamSig, ...]
    returns: str | None = None
    is_async: bool = False
    line: int
    docstring: str | None = None

    def param(self, name: str) -> ParamSig | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def var_keyword(self) -> ParamSig | None:
        return next((p for p in self.params if p.kind == "var_keyword"), None)

    @property
    def named(self) -> tuple[ParamSig, ...]:
        """Parameters callable by keyword (what the registry passes)."""
        return tuple(p for p in self.params if p.kind in ("positional_or_keyword", "keyword_only"))


def find_entry_point(tree: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The last top-level ``def`` of that name (the one Python would bind)."""
    found: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            found = node
    return found


def signature_of(func: ast.FunctionDef | ast.AsyncFunctionDef) -> Signature:
    """The :class:`Signature` of a parsed function definition."""
    a = func.args
    params: list[ParamSig] = []

    def unparse(node: ast.expr | None) -> str | None:
        return ast.unparse(node) if node is not None else None

    positional = [*a.posonlyargs, *a.args]
    # Defaults align with the *last* positional parameters.
    pad: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults))
    defaults = [*pad, *a.defaults]
    for i, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        kind: ParamKind = "positional_only" if i < len(a.posonlyargs) else "positional_or_keyword"
        params.append(
            ParamSig(
                name=arg.arg,
                kind=kind,
                annotation=unparse(arg.annotation),
                default=unparse(default),
                line=arg.lineno,
            )
        )
    if a.vararg is not None:
        params.append(
            ParamSig(
                name=a.vararg.arg,
                kind="var_positional",
                annotation=unparse(a.vararg.annotation),
                line=a.vararg.lineno,
            )
        )
    for arg, kw_default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        params.append(
            ParamSig(
                name=arg.arg,
                kind="keyword_only",
                annotation=unparse(arg.annotation),
                default=unparse(kw_default),
                line=arg.lineno,
            )
        )
    if a.kwarg is not None:
        params.append(
            ParamSig(
                name=a.kwarg.arg,
                kind="var_keyword",
                annotation=unparse(a.kwarg.annotation),
                line=a.kwarg.lineno,
            )
        )
    return Signature(
        name=func.name,
        params=tuple(params),
        returns=unparse(func.returns),
        is_async=isinstance(func, ast.AsyncFunctionDef),
        line=func.lineno,
        docstring=ast.get_docstring(func),
    )


def read_signature(source: str, entry_point: str = "main") -> Signature | None:
    """Parse ``source`` and return the entry point's signature, or ``None``.

    Returns ``None`` when the source does not parse or has no such top-level
    function; validation reports those cases with their own rules.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    func = find_entry_point(tree, entry_point)
    return signature_of(func) if func is not None else None
