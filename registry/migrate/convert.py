"""One legacy procedure converted: its id, ``metadata.json``, confidence, commit, run records.

:func:`assign_ids` gives every legacy procedure a stable, collision-free id;
:func:`build_metadata` writes its ``metadata.json`` keeping every legacy row
verbatim (:func:`legacy_object`, read back by :func:`decode_legacy`);
:func:`score` says how confident the conversion is; :func:`run_records` turns
its executions into imported runs of 1.0.0. Pure: the orchestration, git and
the index are :mod:`registry.migrate.migration`'s.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import semver

from registry.core.model import Confidence, Metadata, Source, band_for
from registry.index.contract import ExecutionRecord
from registry.migrate.analysis import Analysis, parse_list, parse_step
from registry.migrate.codegen import GeneratedCode
from registry.migrate.legacy import (
    KNOWN_CATEGORIES,
    LegacyProcedure,
    decode_value,
    encode_value,
)

VERSION = semver.Version(1, 0, 0)
SUBJECT = "feat: Convert procedure {name} to executable code"
_RUN_NAMESPACE = uuid.UUID("6c1f4f0e-2b7a-5d59-9a43-7e0c3f1d8a11")
_MAX_BASE = 55  # 55 + "-" + 8 hex = 64, the longest id


# -- ids ------------------------------------------------------------------------------


def slugify(name: str) -> str:
    """Lowercase ASCII words joined by ``-`` (accents dropped, everything else a separator)."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _hash(identity: str, n: int = 8) -> str:
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:n]


def assign_ids(
    procs: Sequence[LegacyProcedure],
    known: dict[str, str] | None = None,
    occupied: Iterable[str] = (),
) -> dict[str, str]:
    """``{legacy identity: procedure id}``, deterministic and collision-free.

    A name whose slug is unique among all the procedures, fits in 64
    characters and is not ``occupied`` (another folder) keeps the bare slug.
    Otherwise (names that slugify alike, long, empty or non-Latin names) the
    id is the slug cut to 55 characters plus 8 hex digits of the SHA-256 of
    the legacy identity, so it does not depend on row order. ``known`` ids
    (already migrated) are kept as they are.
    """
    result = dict(known or {})
    used = set(result.values()) | set(occupied)
    slugs = {p.identity: slugify(p.name) for p in procs}
    groups: dict[str, int] = {}
    for s in slugs.values():
        groups[s[:64].strip("-")] = groups.get(s[:64].strip("-"), 0) + 1
    for p in sorted(procs, key=lambda p: p.identity):
        if p.identity in result:
            continue
        slug = slugs[p.identity]
        base = slug[:64].strip("-")
        if base and len(slug) <= 64 and groups[base] == 1 and base not in used:
            proc_id = base
        else:
            stem = slug[:_MAX_BASE].strip("-") or "proc"
            n = 8
            proc_id = f"{stem}-{_hash(p.identity, n)}"
            while proc_id in used:  # a 32-bit clash: lengthen the hash, keep the id valid
                n += 1
                proc_id = f"{stem[: 64 - n - 1].strip('-') or 'p'}-{_hash(p.identity, n)}"
        result[p.identity] = proc_id
        used.add(proc_id)
    return result


# -- metadata -----------------------------------------------------------------------------


def _encode_rows(
    rows: list[dict[str, Any]], prefix: str, types: dict[str, str]
) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(rows):
        out.append(_encode_row(row, f"{prefix}.{i}", types))
    return out


def _encode_row(row: dict[str, Any], prefix: str, types: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column, value in row.items():
        encoded, tag = encode_value(value)
        out[column] = encoded
        if tag is not None:
            types[f"{prefix}.{column}"] = tag
    return out


def legacy_object(proc: LegacyProcedure, parameter_map: dict[str, str]) -> dict[str, Any]:
    """The ``legacy`` object of ``metadata.json``: every legacy row, verbatim.

    ``row`` is the procedure row, ``params`` and ``executions`` its parameter
    and execution rows, each keyed by the legacy column names; ``types`` names
    the values JSON could not hold as they were (see :func:`registry.migrate.legacy.encode_value`).
    """
    types: dict[str, str] = {}
    return {
        "system": proc.system,
        "key": proc.key,
        "row": _encode_row(proc.row, "row", types),
        "params": _encode_rows(proc.params, "params", types),
        "executions": _encode_rows(proc.executions, "executions", types),
        "types": types,
        "parameter_map": parameter_map,
    }


def decode_legacy(
    legacy: dict[str, Any],
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """``(row, params, executions)`` back from a ``legacy`` object, with exact types."""
    types: dict[str, str] = legacy.get("types") or {}

    def row(data: dict[str, Any], prefix: str) -> dict[str, Any]:
        return {k: decode_value(v, types.get(f"{prefix}.{k}")) for k, v in data.items()}

    return (
        row(legacy.get("row") or {}, "row"),
        [row(r, f"params.{i}") for i, r in enumerate(legacy.get("params") or [])],
        [row(r, f"executions.{i}") for i, r in enumerate(legacy.get("executions") or [])],
    )


def normalize_category(value: str | None) -> str:
    """``Code Review`` -> ``code_review``; NULL or blank -> ``general``."""
    text = re.sub(r"[\s\-/]+", "_", (value or "").strip().lower()).strip("_")
    return text[:100] or "general"


def _context_lines(proc: LegacyProcedure) -> list[str]:
    out = []
    items, _ = parse_list(proc.text("applicable_contexts"))
    for item in items:
        text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        if text.strip():
            out.append(f"Applies when: {text.strip()}")
    trigger = proc.text("trigger_pattern")
    if trigger and trigger.strip():
        out.append(f"Triggered by: {trigger.strip()}")
    return out


def score(proc: LegacyProcedure, a: Analysis, code: GeneratedCode, valid: bool) -> Confidence:
    """Confidence from what could be mapped; five equal parts of 0.2.

    Parameters typed, template variables bound to declared parameters, steps
    parsed (JSON counts fully, line or comma lists 0.75 and 0.6, free text
    0.5, none 0.8), legacy examples usable as contract tests (none given:
    0.5), and validation clean.
    """
    notes = list(code.notes)
    typed = a.params_typed / a.params_total if a.params_total else 1.0
    bound = a.variables_bound / a.variables_total if a.variables_total else 1.0
    n_steps = len(a.steps) or 1
    steps = {
        "json": a.steps_understood / n_steps,
        "lines": 0.75,
        "comma": 0.6,
        "text": 0.5,
        "empty": 0.8,
    }[a.steps_format]
    if a.legacy_examples:
        examples = len(code.examples) / len(a.legacy_examples)
        if len(code.examples) < len(a.legacy_examples):
            notes.append(
                f"{len(a.legacy_examples) - len(code.examples)} of {len(a.legacy_examples)} "
                "legacy example(s) could not become contract tests"
            )
    else:
        examples = 0.5
        notes.append("no legacy examples to check the code against")
    value = round(0.2 * (typed + bound + steps + examples + (1.0 if valid else 0.0)), 2)
    if (proc.category or "").strip().lower() not in KNOWN_CATEGORIES:
        notes.append(f"legacy category {proc.category!r} is not a standard one")
    return Confidence(score=value, band=band_for(value), notes=notes)


def build_metadata(
    proc: LegacyProcedure, proc_id: str, code: GeneratedCode, confidence: Confidence
) -> Metadata:
    """The ``metadata.json`` model of a migrated procedure."""
    name = " ".join(proc.name.split())[:200] or proc_id
    category = normalize_category(proc.category)
    outputs = proc.row.get("outputs")
    post = [f"Produces: {o}" for o in outputs if o] if isinstance(outputs, list) else []
    steps, _ = parse_list(proc.text("steps"))
    return Metadata(
        id=proc_id,
        name=name,
        description=proc.description,
        category=category,
        tags=["migrated", category]
        if len(category) <= 50 and category != "migrated"
        else ["migrated"],
        parameters=code.parameters,
        returns=code.returns,
        examples=code.examples,
        preconditions=_context_lines(proc),
        postconditions=post,
        steps=[parse_step(s)[0] for s in steps],
        author=proc.text("created_by"),
        confidence=confidence,
        source=Source(
            kind="migrated", system=proc.system, legacy_id=proc.key, generator=code.generator
        ),
        legacy=legacy_object(proc, code.parameter_map),
    )


def commit_message(proc: LegacyProcedure, meta: Metadata) -> str:
    """``feat: Convert procedure <name> to executable code`` and the trailers."""
    assert meta.confidence is not None
    return (
        SUBJECT.format(name=meta.name)
        + "\n\n"
        + f"Extracted-From: {proc.identity}\n"
        + f"Confidence: {meta.confidence.score:.2f}\n"
        + f"Confidence-Band: {meta.confidence.band}\n"
        + f"Category: {meta.category}\n"
    )


# -- run records ------------------------------------------------------------------


def _started_at(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return datetime.fromtimestamp(0, UTC)


def run_records(
    proc: LegacyProcedure, proc_id: str, commit: str | None, tree_id: str | None
) -> list[ExecutionRecord]:
    """Legacy executions as imported runs of 1.0.0 (``partial`` counts as a failure).

    ``run_id`` is a UUID5 of the legacy identity and execution id, so importing
    twice never counts a run twice.
    """
    out = []
    for i, e in enumerate(proc.executions):
        raw = e.get("outcome")
        outcome = str(raw).strip().lower() if raw is not None else ""
        error_type = error_message = None
        if outcome != "success":
            error_type = "Partial" if outcome == "partial" else "LegacyFailure"
            if outcome not in ("failure", "partial"):
                error_type = "LegacyOutcome"
            error_message = f"legacy outcome: {raw!r}"
        key = e.get("id", i)
        duration = e.get("duration_ms")
        project = e.get("project_id")
        out.append(
            ExecutionRecord(
                run_id=str(uuid.uuid5(_RUN_NAMESPACE, f"{proc.identity}/executions/{key}")),
                id=proc_id,
                version=str(VERSION),
                commit=commit,
                tree_id=tree_id,
                caller=f"legacy:{project}" if project is not None else "legacy",
                started_at=_started_at(e.get("timestamp")),
                duration_ms=float(duration) if isinstance(duration, int | float) else 0.0,
                outcome="success" if outcome == "success" else "failure",
                error_type=error_type,
                error_message=error_message,
                imported=True,
            )
        )
    return out
