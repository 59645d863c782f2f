"""Add, replace or remove query parameters of a URL."""

from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit


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


def _values(name: str, value: Any) -> list[str]:
    """The strings a parameter value stands for: none removes it, several repeat it."""
    if value is None:
        return []
    strings = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, bool):
            strings.append("true" if item else "false")
        elif isinstance(item, str | int | float):
            strings.append(str(item))
        else:
            raise ValueError(
                f"params[{name!r}]: {_json_type(item)} is not allowed here; use a string, "
                "number, boolean, null (to remove) or a list of strings, numbers and booleans"
            )
    return strings


def _encode(text: str) -> str:
    return quote(text, safe="/:@!$'()*,")


def main(url: str, params: dict[str, Any]) -> str:
    """Return ``url`` with the query parameters in ``params`` set.

    A name that is already present is replaced where it first appears (every
    repeat of it goes); a new name is appended. A list value repeats the name
    (``tag=a&tag=b``), ``true``/``false`` become "true"/"false", and null
    removes the name. Parameters not named in ``params`` are kept byte for
    byte, and so are the path and fragment.
    """
    if not url.strip():
        raise ValueError("url is empty; pass a URL such as 'https://example.com/?page=2'")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise ValueError(f"cannot parse url {url!r}: {exc}") from None
    replacements = {name: _values(name, value) for name, value in params.items()}

    segments: list[str] = []
    placed: set[str] = set()
    for segment in parts.query.split("&") if parts.query else []:
        name = unquote_plus(segment.split("=", 1)[0])
        if name not in replacements:
            segments.append(segment)
        elif name not in placed:
            placed.add(name)
            segments.extend(f"{_encode(name)}={_encode(v)}" for v in replacements[name])
    for name, values in replacements.items():
        if name not in placed:
            segments.extend(f"{_encode(name)}={_encode(v)}" for v in values)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(segments), parts.fragment))
