"""What immutable git objects already proved: rows a rebuild need not compute again.

Two kinds: the validation of a folder's tree, and the row of a release tag (a tag
object never changes, so neither does what its message says).

Validating a folder is a function of its tree id (which names every byte of every
file), its id and folder, the ``[validation]`` rules and the validator's own code.
So a rebuild keeps, in the index, the outcome of every tree it validated, under a
*fingerprint* of the rules, the folder and the source of the code that computes it
(:func:`code_fingerprint`); the next rebuild validates only trees it has not seen
under that fingerprint. A change of the rules, of the code, of Python or of pydantic
changes the fingerprint, and every cached row becomes a miss.

The cache is derived data like the rest of the index: a rebuild from an empty or
stale cache gives the same rows, only more slowly, and each rebuild leaves the
cache with exactly the entries it used (so it holds one entry per folder, plus the
older trees an invalid folder's history search read). An exception while
validating is never cached. :func:`registry.index.sync.verify` never reads the
cache: it proves the index from git alone.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pydantic

from registry.config import ValidationSection
from registry.index.contract import (
    PROCEDURE_COLUMNS,
    VERSION_COLUMNS,
    CacheUpdate,
    ProcedureRecord,
    VersionRecord,
    construct_trusted,
)

PROCEDURE = "procedure"
"""The kind of a cached folder validation (key: ``<id> <tree id>``)."""
VERSION = "version"
"""The kind of a cached release tag row (key: ``<tag name> <object id it points at>``)."""

_PACKAGE = Path(__file__).resolve().parent.parent
# The code a procedure row depends on: the model and every rule (core), how git
# objects become snapshots (git), the config model, and the row builders here.
_CODE = ("core", "git", "config.py", "index/contract.py", "index/rows.py", "index/objcache.py")
# What a cached row leaves out: its key, and what the reader of the row supplies.
_OMITTED = ("id", "tree_id", "commit", "valid", "errors")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha1 of the source that computes a procedure row, with the Python and pydantic versions."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"{sys.version}\n{pydantic.VERSION}\n".encode())
    for name in _CODE:
        path = _PACKAGE / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f"{file.relative_to(_PACKAGE)}\n".encode())
            h.update(file.read_bytes())
    return h.hexdigest()


def fingerprint(rules: ValidationSection, folder: str) -> str:
    """What every cached validation depends on besides its tree: rules, folder and code."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"{code_fingerprint()}\n{folder}\n{rules.model_dump_json()}\n".encode())
    return h.hexdigest()


_DECODER = json.JSONDecoder()


def _loads(text: str) -> Any:
    """``json.loads`` of text this module wrote (no surrounding whitespace), a third faster."""
    value, end = _DECODER.raw_decode(text)
    if end != len(text):
        raise ValueError("trailing data")
    return value


def _encode(found: ProcedureRecord | list[str]) -> str:
    if isinstance(found, ProcedureRecord):
        values = {k: v for k, v in found.__dict__.items() if k not in _OMITTED}
        return json.dumps({"record": values}, separators=(",", ":"))
    return json.dumps({"errors": found}, separators=(",", ":"))


def _decode(text: str, proc_id: str, tree_id: str, commit: str) -> ProcedureRecord | list[str]:
    value = _loads(text)
    if "errors" in value:
        return [str(e) for e in value["errors"]]
    values = value["record"]
    values |= {"id": proc_id, "tree_id": tree_id, "commit": commit, "valid": True, "errors": []}
    # our own rows, written from a validated record: no validation again
    return construct_trusted(ProcedureRecord, {c: values[c] for c in PROCEDURE_COLUMNS})


_TAGGED_AT = VERSION_COLUMNS.index("tagged_at")


def _encode_version(record: VersionRecord) -> str:
    values = [getattr(record, c) for c in VERSION_COLUMNS]
    when = values[_TAGGED_AT]
    values[_TAGGED_AT] = when.isoformat() if when is not None else None
    return json.dumps(values, separators=(",", ":"))


def _decode_version(text: str, name: str) -> VersionRecord:
    values = _loads(text)
    if len(values) != len(VERSION_COLUMNS):
        raise ValueError("not a version row")
    when = values[_TAGGED_AT]
    values[_TAGGED_AT] = datetime.fromisoformat(when) if when is not None else None
    record = construct_trusted(VersionRecord, dict(zip(VERSION_COLUMNS, values, strict=True)))
    if record.tag != name:
        raise ValueError("a row of another tag")
    return record


class ObjectCache:
    """The cached validations of one fingerprint, and the entries this rebuild used."""

    def __init__(self, fingerprint: str, known: Mapping[tuple[str, str], str]) -> None:
        self.fingerprint = fingerprint
        self._known = known
        self._used: dict[tuple[str, str], str] = {}
        self.hits = 0
        self.misses = 0

    def procedure(
        self, proc_id: str, tree_id: str, commit: str
    ) -> ProcedureRecord | list[str] | None:
        """The row (at ``commit``) or the errors validating this tree gave, or None if unknown."""
        key = (PROCEDURE, f"{proc_id} {tree_id}")
        text = self._known.get(key)
        if text is None:
            self.misses += 1
            return None
        try:
            found = _decode(text, proc_id, tree_id, commit)
        except (ValueError, KeyError, TypeError):  # not a row this code wrote: validate again
            self.misses += 1
            return None
        self.hits += 1
        self._used[key] = text
        return found

    def put_procedure(self, proc_id: str, tree_id: str, found: ProcedureRecord | list[str]) -> None:
        """Keep what validating this tree gave (a valid row or its errors)."""
        self._used[(PROCEDURE, f"{proc_id} {tree_id}")] = _encode(found)

    def version(self, name: str, target: str) -> VersionRecord | None:
        """The row of release tag ``name`` pointing at ``target``, if read before."""
        key = (VERSION, f"{name} {target}")
        text = self._known.get(key)
        if text is None:
            return None
        try:
            record = _decode_version(text, name)
        except (ValueError, KeyError, TypeError):
            return None
        self._used[key] = text
        return record

    def put_version(self, target: str, record: VersionRecord) -> None:
        """Keep the row of a release tag read from the object ``target``."""
        self._used[(VERSION, f"{record.tag} {target}")] = _encode_version(record)

    def update(self) -> CacheUpdate:
        """How the cache changes so that it holds exactly the entries this rebuild used:
        the new ones put, the unused ones dropped (a warm rebuild writes next to nothing)."""
        known = self._known
        return CacheUpdate(
            fingerprint=self.fingerprint,
            put=[
                (kind, key, self.fingerprint, text)
                for (kind, key), text in self._used.items()
                if known.get((kind, key)) != text
            ],
            drop=[k for k in known if k not in self._used],
        )
