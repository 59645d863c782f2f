"""What the API's queries return: search hits, a procedure at a version, releases, history, diffs.

Built from the index's rows (:mod:`registry.index.contract`) and git snapshots.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from registry.core.model import Metadata
from registry.core.snapshot import MAIN_FILE, METADATA_FILE, Snapshot
from registry.index.contract import ProcedureRow, VersionRecord


class ProcedureSummary(BaseModel):
    """One search hit: what a list of procedures shows."""

    id: str
    name: str
    description: str
    category: str
    tags: list[str]
    status: str
    version: str | None = Field(description="The latest release, or None if never released.")
    valid: bool
    errors: list[str] = Field(default_factory=list)
    runs: int = 0
    success_rate: float | None = None
    channels: dict[str, str | None] = Field(
        default_factory=dict,
        description="Each channel and the version it points at now (None: out of service).",
    )


class ProcedureDetail(BaseModel):
    """One procedure at one version: metadata, where it came from, and its code."""

    id: str
    version: str | None = Field(description="The release, or None for an unreleased HEAD.")
    spec: str | None = Field(description="What was asked for (None: the latest release).")
    resolved_from: str = Field(description="'release', 'channel' or 'head'.")
    channel: str | None = None
    tag: str | None = None
    commit: str
    tree_id: str
    metadata: Metadata | None = Field(description="None when metadata.json does not validate.")
    source: str = Field(description=f"The text of {MAIN_FILE}.")
    files: list[str] = Field(default_factory=list)
    valid: bool = True
    errors: list[str] = Field(default_factory=list)


class VersionInfo(BaseModel):
    """One release as the index holds it, with the channels pointing at it now."""

    id: str
    version: str
    tag: str
    commit: str
    tree_id: str | None
    tagged_at: datetime | None
    tagger: str | None
    bump: str | None
    breaking: bool | None
    lines_added: int | None
    lines_removed: int | None
    reasons: list[str]
    channels: list[str] = Field(default_factory=list)


class HistoryEntry(BaseModel):
    """A commit that changed the procedure's folder, with the releases made from it."""

    commit: str
    message: str
    author: str
    date: datetime
    versions: list[str] = Field(default_factory=list)


class ProcedureDiff(BaseModel):
    """A unified diff of a procedure folder between two specs."""

    id: str
    a: str | None
    b: str | None
    a_version: str | None
    b_version: str | None
    a_tree: str
    b_tree: str
    patch: str


def summary(row: ProcedureRow) -> ProcedureSummary:
    """A search hit from a full index row."""
    return ProcedureSummary(
        id=row.id,
        name=row.name,
        description=row.description,
        category=row.category,
        tags=list(row.tags),
        status=row.status,
        version=row.latest_version,
        valid=row.valid,
        errors=list(row.errors),
        runs=row.runs,
        success_rate=row.success_rate,
    )


_SUMMARY_FIELDS = frozenset(ProcedureSummary.model_fields)


def trusted_summaries(
    hits: Sequence[Sequence[Any]], channels: dict[str, dict[str, str | None]]
) -> list[ProcedureSummary]:
    """Search hits from the summary rows of our own index, built without re-validating.

    ``hits`` are :meth:`~registry.index.contract.IndexBackend.summary_rows` tuples;
    ``channels`` is ``{id: {channel: version}}`` of the hits. The values come from our
    own index (written from validated records): building the models without
    re-validating (what :func:`~registry.index.contract.construct_trusted` does, inlined)
    is most of what makes listing 10,000 cheap.
    """
    new = ProcedureSummary.__new__
    put = object.__setattr__
    fields = _SUMMARY_FIELDS
    out = []
    for id_, name, description, category, tags, status, valid, errors, latest, runs, rate in hits:
        obj = new(ProcedureSummary)
        put(
            obj,
            "__dict__",
            {
                "id": id_,
                "name": name,
                "description": description,
                "category": category,
                "tags": tags,
                "status": status,
                "version": latest,
                "valid": valid,
                "errors": errors,
                "runs": runs,
                "success_rate": rate,
                "channels": channels.get(id_, {}),
            },
        )
        put(obj, "__pydantic_fields_set__", set(fields))
        put(obj, "__pydantic_extra__", None)
        put(obj, "__pydantic_private__", None)
        out.append(obj)
    return out


def version_info(v: VersionRecord, channels: Sequence[str]) -> VersionInfo:
    """A release of the index, with the channels pointing at it now."""
    tagger = None
    if v.tagger_name or v.tagger_email:
        tagger = f"{v.tagger_name or ''} <{v.tagger_email or ''}>".strip()
    return VersionInfo(
        id=v.id,
        version=v.version,
        tag=v.tag,
        commit=v.commit,
        tree_id=v.tree_id,
        tagged_at=v.tagged_at,
        tagger=tagger,
        bump=v.bump,
        breaking=v.breaking,
        lines_added=v.lines_added,
        lines_removed=v.lines_removed,
        reasons=list(v.reasons),
        channels=sorted(channels),
    )


def metadata_of(snap: Snapshot) -> Metadata | None:
    """The snapshot's metadata, or None when it is missing or does not validate."""
    return metadata_from(snap.text(METADATA_FILE))


def metadata_from(text: str | None) -> Metadata | None:
    """The text of a ``metadata.json`` as the model, or None when absent or not valid."""
    if text is None:
        return None
    try:
        return Metadata.model_validate_json(text)
    except ValidationError:
        return None
