"""Flatten a nested JSON object into one level of dotted keys."""

from typing import Any


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


def main(data: dict[str, Any], separator: str = ".", flatten_lists: bool = True) -> dict[str, Any]:
    """Return ``data`` flattened: ``{"a": {"b": 1}}`` becomes ``{"a.b": 1}``.

    Array items get their index as key ("tags.0") unless ``flatten_lists`` is
    false, in which case arrays are kept whole. Empty objects and arrays stay as
    values so nothing is lost. Two paths that flatten to the same key (such as
    ``{"a.b": 1, "a": {"b": 2}}``) are an error rather than a silent overwrite.
    """
    if not isinstance(data, dict):
        raise ValueError(f"data must be a JSON object, got {_json_type(data)}")
    if not separator:
        raise ValueError("separator must not be empty")
    flat: dict[str, Any] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict) and value:
            for name, item in value.items():
                walk(item, f"{key}{separator}{name}")
        elif isinstance(value, list) and value and flatten_lists:
            for index, item in enumerate(value):
                walk(item, f"{key}{separator}{index}")
        elif key in flat:
            raise ValueError(f"two paths flatten to the key {key!r}; choose another separator")
        else:
            flat[key] = value

    for name, value in data.items():
        walk(value, str(name))
    return flat
