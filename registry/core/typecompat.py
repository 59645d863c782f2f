"""Type-annotation compatibility: whether one annotation accepts every value another does.

Annotations are compared as text parsed by ``ast``, never evaluated: a union
(``A | B``, ``Optional[A]``, ``Union[A, B]``) is a set of members, ``Any``,
``object`` and a missing annotation accept anything, ``typing`` spellings are
normalised (``typing.List`` is ``list``), and the numeric tower
bool < int < float < complex widens. :mod:`registry.core.versioning` uses
:func:`accepts` to tell a widened parameter from a narrowed one.
"""

from __future__ import annotations

import ast

# Each type is a subtype of the next: bool < int < float < complex.
_TOWER = {"bool": "int", "int": "float", "float": "complex"}
_TOP_NAMES = {"Any", "object"}
_TYPING_ALIASES = {
    "List": "list",
    "Dict": "dict",
    "Tuple": "tuple",
    "Set": "set",
    "FrozenSet": "frozenset",
    "Type": "type",
    "NoneType": "None",
}
_TYPING_MODULES = {"typing", "typing_extensions", "t"}


class _Normalise(ast.NodeTransformer):
    """``typing.List`` -> ``list``, ``t.Optional`` -> ``Optional``, so spellings agree."""

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if isinstance(node.value, ast.Name) and node.value.id in _TYPING_MODULES:
            return ast.copy_location(ast.Name(id=_TYPING_ALIASES.get(node.attr, node.attr)), node)
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(id=_TYPING_ALIASES.get(node.id, node.id)), node)


def _collect(node: ast.expr, out: set[str]) -> bool:
    """Add the union members of ``node`` to ``out``; True if it accepts anything."""
    if isinstance(node, ast.Constant):
        if node.value is None:
            out.add("None")
            return False
        if isinstance(node.value, str):  # a forward reference: "int | None"
            try:
                inner = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                out.add(node.value.strip())
                return False
            return _collect(_Normalise().visit(inner), out)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _collect(node.left, out) | _collect(node.right, out)
    if isinstance(node, ast.Name) and node.id in _TOP_NAMES:
        return True
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if node.value.id == "Optional" and len(args) == 1:
            out.add("None")
            return _collect(args[0], out)
        if node.value.id == "Union":
            found_top = False
            for arg in args:
                found_top |= _collect(arg, out)
            return found_top
        if node.value.id == "Annotated" and args:
            return _collect(args[0], out)
    out.add(ast.unparse(node))
    return False


def _type_set(annotation: str | None) -> frozenset[str] | None:
    """The members of an annotation's union; ``None`` means any value (no annotation, Any)."""
    if annotation is None:
        return None
    try:
        node = ast.parse(annotation, mode="eval").body
    except SyntaxError:
        return frozenset({annotation.strip()})
    out: set[str] = set()
    if _collect(_Normalise().visit(node), out):
        return None
    return frozenset(out)


def _atom_within(narrow: str, wide: str) -> bool:
    current: str | None = narrow
    while current is not None:
        if current == wide:
            return True
        current = _TOWER.get(current)
    return False


def accepts(wide: str | None, narrow: str | None) -> bool:
    """True if annotation ``wide`` accepts every value annotation ``narrow`` does.

    Handles ``A | B``, ``Optional[A]``, ``Union[A, B]``, ``None``, ``Any``, no
    annotation (any value) and the numeric tower bool < int < float < complex;
    other types compare by their normalised text.
    """
    wide_set, narrow_set = _type_set(wide), _type_set(narrow)
    if wide_set is None:
        return True
    if narrow_set is None:
        return False
    return all(any(_atom_within(n, w) for w in wide_set) for n in narrow_set)
