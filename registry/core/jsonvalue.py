"""JSON values: which metadata type a value fits, and equality as JSON sees it.

Arguments, example inputs and outputs, defaults and results are JSON values.
:func:`fits` says whether one is of a metadata type (``"integer"``,
``"string"``, ...; ``true`` is not an integer); :func:`json_equal` compares two
the way JSON does (``1 == 1.0``, but ``true != 1``; a tuple equals the same
list). Pure.
"""

from __future__ import annotations

from typing import Any

__all__ = ["JSON_TYPES", "fits", "json_equal"]

JSON_TYPES: dict[str, tuple[type, ...]] = {
    # the Python types a JSON value of each metadata type decodes to
    "string": (str,),
    "file": (str,),
    "directory": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def fits(value: Any, param_type: str) -> bool:
    """True when ``value`` is of metadata type ``param_type`` (``any`` and unknown types fit)."""
    if param_type == "any":
        return True
    if isinstance(value, bool) and param_type != "boolean":
        return False
    return isinstance(value, JSON_TYPES.get(param_type, (object,)))


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: 1 == 1.0, but True != 1 and "1" != 1; lists in order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
