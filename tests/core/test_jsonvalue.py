"""JSON values: which metadata type a value fits, and JSON equality (one home for both)."""

from __future__ import annotations

from typing import Any

import pytest

from registry.core.jsonvalue import fits, json_equal


@pytest.mark.parametrize(
    ("value", "param_type", "expected"),
    [
        ("a", "string", True),
        ("a", "file", True),
        ("a", "directory", True),
        (1, "string", False),
        (1, "integer", True),
        (1.0, "integer", False),
        (True, "integer", False),
        (True, "number", False),
        (True, "boolean", True),
        (1, "boolean", False),
        (1, "number", True),
        (1.5, "number", True),
        ([1], "array", True),
        ((1,), "array", False),
        ({"a": 1}, "object", True),
        ([], "object", False),
        (None, "string", False),
        (None, "any", True),
        (object(), "any", True),
        ("x", "unknown-type", True),
    ],
)
def test_fits(value: Any, param_type: str, expected: bool) -> None:
    assert fits(value, param_type) is expected


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (1, True, False),
        (False, False, True),
        ("1", 1, False),
        ([1, 2], (1, 2), True),
        ([1, 2], [2, 1], False),
        ([1], [1, 1], False),
        ({"a": [1, 2.0]}, {"a": [1.0, 2]}, True),
        ({"a": 1}, {"b": 1}, False),
        ({"a": True}, {"a": 1}, False),
        (None, None, True),
        (None, 0, False),
    ],
)
def test_json_equal(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal
