"""Read the value a JSON Pointer (RFC 6901) points at in a JSON document."""

import re
from typing import Any

_INDEX = re.compile(r"0|[1-9][0-9]*")


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class _Missing(Exception):
    """Nothing at the pointer (an error unless ``missing_ok``)."""


def _unescape(token: str, pointer: str) -> str:
    if re.search(r"~(?![01])", token):
        raise ValueError(
            f"pointer {pointer!r} has an invalid escape in {token!r}: "
            "'~' must be written '~0' and '/' inside a key '~1'"
        )
    return token.replace("~1", "/").replace("~0", "~")


def _resolve(document: Any, pointer: str) -> Any:
    current = document
    walked = ""
    for raw in pointer.split("/")[1:]:
        key = _unescape(raw, pointer)
        if isinstance(current, dict):
            if key not in current:
                raise _Missing(f"key {key!r} not found in the object at {walked or '(root)'!r}")
            current = current[key]
        elif isinstance(current, list):
            if key == "-":
                raise _Missing(f"'-' is past the end of the array at {walked or '(root)'!r}")
            if not _INDEX.fullmatch(key):
                raise ValueError(
                    f"pointer {pointer!r}: {key!r} is not an array index "
                    f"(the value at {walked or '(root)'!r} is an array)"
                )
            if int(key) >= len(current):
                raise _Missing(
                    f"index {key} is out of range for the array of {len(current)} "
                    f"at {walked or '(root)'!r}"
                )
            current = current[int(key)]
        else:
            raise _Missing(
                f"the value at {walked or '(root)'!r} is a {_json_type(current)}, "
                f"which has no member {key!r}"
            )
        walked += "/" + raw
    return current


def main(document: Any, pointer: str, missing_ok: bool = False) -> Any:
    """Return the value of ``document`` at ``pointer`` ("" is the whole document).

    Tokens are separated by "/", with "~1" standing for "/" and "~0" for "~"
    inside a key; array indexes are decimal without leading zeros. When nothing
    is there, raise ValueError naming where the walk stopped, or return null if
    ``missing_ok`` is true. A malformed pointer is always an error.
    """
    if pointer and not pointer.startswith("/"):
        raise ValueError(f"pointer {pointer!r} must be empty or start with '/', e.g. '/items/0'")
    try:
        return _resolve(document, pointer)
    except _Missing as exc:
        if missing_ok:
            return None
        raise ValueError(f"nothing at {pointer!r}: {exc}") from None
