"""A run's keyword arguments: checked against the metadata, parsed from the command line.

Arguments are JSON values. A run whose arguments do not fit the metadata's
parameters (unknown, missing, mistyped) is refused before any process starts,
as an ``ArgumentError``, and is not recorded: it is the caller's mistake, not
the version's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from registry.core.jsonvalue import fits
from registry.core.model import Metadata, Parameter
from registry.errors import UsageError

ARGUMENT_ERROR = "ArgumentError"


def argument_problems(meta: Metadata, kwargs: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``kwargs`` for ``meta``'s parameters: unknown, missing, mistyped."""
    by_name = {p.name: p for p in meta.parameters}
    problems: list[str] = []
    takes = ", ".join(by_name) or "no arguments"
    for name in kwargs:
        if name not in by_name:
            problems.append(f"unknown argument {name!r}; {meta.id} takes {takes}")
    for p in meta.parameters:
        if p.required and p.name not in kwargs:
            problems.append(f"missing required argument {p.name!r} ({p.type})")
        elif p.name in kwargs and not fits(kwargs[p.name], p.type):
            got = type(kwargs[p.name]).__name__
            problems.append(f"argument {p.name!r} must be {p.type}, got {got}")
    return problems


def coerce_cli_value(raw: str, param: Parameter | None) -> Any:
    """A ``--arg KEY=VALUE`` value: JSON when it parses, else the text, but typed by metadata.

    A ``string`` (or file, directory) parameter always gets the text itself (``"42"``,
    not ``42``); ``any`` and unknown parameters get JSON when the text parses as JSON.
    """
    if param is not None and param.type in ("string", "file", "directory"):
        return raw
    if param is not None and param.type == "boolean":
        lowered = raw.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_cli_arguments(
    meta: Metadata | None, pairs: Sequence[str], args_json: str | None = None
) -> dict[str, Any]:
    """Merge ``--args-json`` (an object) and ``--arg KEY=VALUE`` pairs (which win)."""
    kwargs: dict[str, Any] = {}
    if args_json:
        try:
            loaded = json.loads(args_json)
        except ValueError as exc:
            raise UsageError(f"--args-json is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"--args-json must be a JSON object, got {type(loaded).__name__}")
        kwargs.update(loaded)
    params = {p.name: p for p in meta.parameters} if meta is not None else {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--arg {pair!r}: expected KEY=VALUE (e.g. --arg text=hello)")
        kwargs[key] = coerce_cli_value(raw, params.get(key))
    return kwargs
