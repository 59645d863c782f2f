"""``metadata.json`` as validation reads it: the parsed data, and the line of every field.

:func:`load_metadata` parses the text, checks it against
:class:`~registry.core.model.Metadata` and reports each schema error where it
is (rules ``metadata-json``, ``metadata-schema``, ``id-mismatch``);
:class:`MetadataFile` gives later checks the line of any field they report.
Pure.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from registry.core.ids import ID_RE
from registry.core.model import Metadata
from registry.core.problems import Problem
from registry.core.snapshot import METADATA_FILE, Snapshot

__all__ = ["MetadataFile", "load_metadata"]


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
class MetadataFile:
    """A parsed ``metadata.json``: its path, text and data; :meth:`problem` points at a field."""

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


def _schema_problems(meta: MetadataFile, exc: ValidationError) -> list[Problem]:
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


def load_metadata(
    snapshot: Snapshot, text: str
) -> tuple[Metadata | None, MetadataFile | None, list[Problem]]:
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
    mf = MetadataFile(path, text, data)
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
