"""The index contract: row models, the :class:`IndexBackend` protocol, and pure helpers.

The index is derived from git (procedures, versions, channels, sync state) plus the
append-only execution records, which git does not hold. Two backends implement the
same contract and pass the same tests: :mod:`registry.index.sqlite` (stdlib, the
embedded default) and :mod:`registry.index.postgres` (asyncpg, production).

Everything here is pure: the row models, the semver sort key, the column lists and
the canonical snapshot. Beside it: :mod:`registry.index.sql` (the statements both
backends share), :mod:`registry.index.fulltext` (user text into a query that can
never be a syntax error), :mod:`registry.index.metrics` (the statistics both
backends agree on) and :mod:`registry.index.connect` (which backend a target names).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, Self, TypeVar, runtime_checkable

import semver
from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry.core.network import NetworkDenial
from registry.core.tags import parse_release_tag

Order = Literal["relevance", "name", "health"]
Outcome = Literal["success", "failure"]

SYNC_CHANNEL = "procreg_sync"
"""The PostgreSQL LISTEN/NOTIFY channel a sync announces itself on."""

UNVERSIONED = "unversioned"
"""The key in :attr:`Metrics.versions` for runs that name no version (a working tree)."""

UNKNOWN_ERROR = "unknown"
"""The key in :attr:`Metrics.errors` for failures that name no error type."""


def utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProcedureRecord(_Row):
    """What sync writes for one procedure at the tracked commit."""

    id: str
    name: str
    description: str = ""
    category: str = "general"
    tags: list[str] = Field(default_factory=list)
    status: str = "active"
    entry_point: str = "main"
    parameters: list[dict[str, Any]] = Field(default_factory=list)
    docstring: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    tree_id: str
    commit: str
    valid: bool = True
    errors: list[str] = Field(default_factory=list)


class ProcedureRow(ProcedureRecord):
    """A procedure as the index returns it: the record plus version and health facts."""

    latest_version: str | None = None
    runs: int = 0
    success_rate: float | None = None


SUMMARY_COLUMNS = ("id", "name", "description", "category", "tags", "status", "valid", "errors")
"""The procedure columns a search result list shows (see :meth:`IndexBackend.search_summaries`)."""


M = TypeVar("M", bound=BaseModel)
_FIELD_NAMES: dict[type[BaseModel], frozenset[str]] = {}


def construct_trusted(model: type[M], values: dict[str, Any]) -> M:
    """``model.model_construct(**values)`` for ``values`` holding exactly its fields.

    What ``model_construct`` does, minus its per-field default and alias handling
    (a third of the time of listing 10,000 rows). Only for data this package wrote.
    """
    fields = _FIELD_NAMES.get(model)
    if fields is None:
        fields = _FIELD_NAMES[model] = frozenset(model.model_fields)
    if values.keys() != fields:
        return model.model_construct(**values)
    obj = model.__new__(model)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def trusted_procedure_row(values: dict[str, Any]) -> ProcedureRow:
    """A :class:`ProcedureRow` from a row of our own index, without re-validating it.

    The index only holds what a validated :class:`ProcedureRecord` wrote, so
    validating 10,000 rows again on every list is pure cost (most of a list's time).
    """
    values["valid"] = bool(values["valid"])
    return construct_trusted(ProcedureRow, values)


def trusted_version(values: dict[str, Any]) -> VersionRecord:
    """A :class:`VersionRecord` from a row of our own index (see :func:`trusted_procedure_row`)."""
    tagged_at = values["tagged_at"]
    if isinstance(tagged_at, str):
        tagged_at = datetime.fromisoformat(tagged_at)
    values["tagged_at"] = _utc_or_none(tagged_at)
    if values["breaking"] is not None:
        values["breaking"] = bool(values["breaking"])
    return construct_trusted(VersionRecord, values)


class ProcedureHead(NamedTuple):
    """What ``get`` reads of a procedure's row: where it is, whether it is valid, its metadata.

    The same names as on :class:`ProcedureRow`, without the columns ``get`` never shows
    (so no join for the latest version and the run counts, and no decoding of them).
    """

    tree_id: str
    commit: str
    valid: bool
    errors: list[str]
    metadata: dict[str, Any]


class ReleaseRef(NamedTuple):
    """What ``get`` reads of a release: its version, tag, commit and tree (as on
    :class:`VersionRecord`, without the trailers it never shows)."""

    version: str
    tag: str
    commit: str
    tree_id: str | None


HEAD_COLUMNS = ProcedureHead._fields
RELEASE_REF_COLUMNS = ReleaseRef._fields


SearchHit = ProcedureRow
"""A search result is a :class:`ProcedureRow` (same fields on both backends)."""


class VersionRecord(_Row):
    """One release tag ``procedure-<id>-vX.Y.Z`` with the trailers of its message."""

    id: str
    version: str
    tag: str
    commit: str
    tree_id: str | None = None
    tagger_name: str | None = None
    tagger_email: str | None = None
    tagged_at: datetime | None = None
    bump: str | None = None
    breaking: bool | None = None
    lines_added: int | None = None
    lines_removed: int | None = None
    reasons: list[str] = Field(default_factory=list)
    message: str = ""

    @field_validator("version")
    @classmethod
    def _is_semver(cls, value: str) -> str:
        if not semver.Version.is_valid(value):
            raise ValueError(f"version {value!r} is not semver (X.Y.Z[-pre][+build])")
        return value

    @field_validator("tagged_at")
    @classmethod
    def _tagged_at_utc(cls, value: datetime | None) -> datetime | None:
        return _utc_or_none(value)


class ChannelMoveRecord(_Row):
    """One channel move tag: channel ``channel`` of ``id`` points at ``version`` from ``seq`` on."""

    id: str
    channel: str
    seq: int
    version: str
    tag: str
    commit: str
    moved_by: str | None = None
    moved_at: datetime | None = None
    action: str | None = None
    reason: str | None = None
    out_of_service: bool = False
    """The move took the channel out of service: it names no version from then on
    (``version`` is the one it left)."""

    @field_validator("out_of_service", mode="before")
    @classmethod
    def _null_is_in_service(cls, value: object) -> object:
        return False if value is None else value  # rows indexed before the column existed

    @field_validator("moved_at")
    @classmethod
    def _moved_at_utc(cls, value: datetime | None) -> datetime | None:
        return _utc_or_none(value)


class ExecutionRecord(_Row):
    """One run of a procedure. ``run_id`` is unique: a re-delivered record never counts twice."""

    run_id: str
    id: str
    version: str | None = None
    commit: str | None = None
    tree_id: str | None = None
    python_version: str | None = None
    caller: str | None = None
    started_at: datetime
    duration_ms: float
    outcome: Outcome
    error_type: str | None = None
    error_message: str | None = None
    cpu_ms: float | None = None
    max_rss_kb: int | None = None
    imported: bool = False
    isolation: str | None = None
    """How the run was isolated (e.g. ``bubblewrap`` or ``none``), when the sandbox said."""
    network_denied: list[NetworkDenial] = Field(default_factory=list)
    """The requests the run's network proxy refused (stored as JSON text, NULL for none)."""
    job_id: int | None = None
    """The queued job this run was an attempt of (``Registry.submit``), if any."""
    attempt: int | None = None
    """Which attempt of that job (1 first), if queued."""
    worker: str | None = None
    """The host name of the worker that ran a queued job."""

    @field_validator("started_at")
    @classmethod
    def _started_at_utc(cls, value: datetime) -> datetime:
        return utc(value)

    @field_validator("network_denied", mode="before")
    @classmethod
    def _denials_from_text(cls, value: Any) -> Any:
        if value is None:
            return []
        return json.loads(value) if isinstance(value, str) else value


class SyncState(_Row):
    """Which commit and which tag set were indexed for ``ref``."""

    ref: str
    commit: str | None = None
    tags_digest: str | None = None
    synced_at: datetime

    @field_validator("synced_at")
    @classmethod
    def _synced_at_utc(cls, value: datetime) -> datetime:
        return utc(value)


class CacheUpdate(_Row):
    """What a rebuild leaves in the ``object_cache`` table: only rows of ``fingerprint``,
    without the ``drop`` keys ``(kind, key)``, with the ``put`` rows
    ``(kind, key, fingerprint, value)`` (replacing any row of the same key)."""

    fingerprint: str
    put: list[tuple[str, str, str, str]] = Field(default_factory=list)
    drop: list[tuple[str, str]] = Field(default_factory=list)


class ChangeSet(_Row):
    """The difference one sync applies, in one transaction, with the new sync state.

    ``full`` replaces every derived row (procedures, versions, channels, sync states)
    but never executions. ``invalid`` marks procedures invalid: an existing row keeps
    its last valid content; an id never seen gets a placeholder row. ``delete`` removes
    procedures gone from the tree; their versions stay as history.
    """

    ref: str
    commit: str
    tags_digest: str
    full: bool = False
    upsert: list[ProcedureRecord] = Field(default_factory=list)
    invalid: list[tuple[str, list[str]]] = Field(default_factory=list)
    delete: list[str] = Field(default_factory=list)
    versions_upsert: list[VersionRecord] = Field(default_factory=list)
    versions_delete: list[str] = Field(default_factory=list)
    channels_upsert: list[ChannelMoveRecord] = Field(default_factory=list)
    channels_delete: list[str] = Field(default_factory=list)
    object_cache: CacheUpdate | None = None
    """How a rebuild changes the cache of what git objects proved (see
    :mod:`registry.index.objcache`); ``None`` leaves it as it is."""


@dataclass(frozen=True)
class SearchQuery:
    """What a search asks for: every given filter must hold (see :meth:`IndexBackend.search`).

    ``text`` is full-text over name, id, description, tags, parameters and docstring
    (blank: no text filter); ``tags`` must all be present; ``min_success_rate`` keeps
    procedures whose runs succeed at least that often; ``limit`` rows at most, in
    ``order`` (``relevance`` falls back to ``name`` without text).
    """

    text: str | None = None
    category: str | None = None
    tags: Sequence[str] = ()
    status: str | None = None
    valid: bool | None = None
    limit: int = 50
    order: Order = "relevance"
    min_success_rate: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))


class VersionMetrics(_Row):
    """Run statistics of one version (or of all runs, in :class:`Metrics`)."""

    runs: int = 0
    success_rate: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    last_run: datetime | None = None
    errors: dict[str, int] = Field(default_factory=dict)
    callers: dict[str, int] = Field(default_factory=dict)
    """Runs per caller (``user@host``, ``mcp:<client>``, ``release``, ...)."""


class Metrics(VersionMetrics):
    """Run statistics of a procedure, overall and per version."""

    versions: dict[str, VersionMetrics] = Field(default_factory=dict)


@runtime_checkable
class IndexBackend(Protocol):
    """The index contract both backends implement (all I/O is async)."""

    applied_migrations: list[int]
    """Migrations this ``connect`` applied (empty when the schema was current)."""

    @classmethod
    async def connect(cls, target: str | Path) -> Self:
        """Open the index at ``target`` and apply pending migrations."""
        ...

    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def schema_migrations(self) -> list[int]:
        """Numbers of the migrations recorded as applied, ascending."""
        ...

    async def apply(self, changes: ChangeSet) -> None:
        """Apply ``changes`` and the new sync state in one transaction (idempotent)."""
        ...

    async def sync_state(self, ref: str) -> SyncState | None:
        """What was last indexed for ``ref``, or ``None``."""
        ...

    def sync_lock(self, wait: bool = True) -> AbstractAsyncContextManager[None]:
        """Hold the one-syncer-at-a-time lock; ``wait=False`` raises ConflictError if taken."""
        ...

    async def search(self, query: SearchQuery) -> list[ProcedureRow]:
        """Procedures matching every filter of ``query``; its text is never a syntax error."""
        ...

    async def search_summaries(self, query: SearchQuery) -> list[dict[str, Any]]:
        """:meth:`search`, each hit only its :data:`SUMMARY_COLUMNS` plus ``latest_version``,
        ``runs`` and ``success_rate`` as a dict (a list of all 10,000 needs no metadata)."""
        ...

    async def summary_rows(self, query: SearchQuery) -> list[tuple[Any, ...]]:
        """:meth:`search_summaries` as tuples, values in that order (no dict per hit)."""
        ...

    async def get_procedure(self, id: str) -> ProcedureRow | None:
        """One procedure, or ``None``."""
        ...

    async def procedure_refs(self, id: str) -> tuple[ProcedureHead | None, list[ReleaseRef]]:
        """What ``get`` needs of ``id``: its row's :class:`ProcedureHead` (or ``None``) and
        its releases in ascending semver order, as :meth:`versions` lists them."""
        ...

    async def list_procedures(self) -> list[ProcedureRow]:
        """Every procedure, by id."""
        ...

    async def procedure_trees(self) -> dict[str, str]:
        """``{id: tree id}`` of every procedure row."""
        ...

    async def versions(self, id: str) -> list[VersionRecord]:
        """Releases of ``id`` in ascending semver order."""
        ...

    async def all_version_tags(self) -> set[str]:
        """Every release tag the index holds."""
        ...

    async def object_cache(self, fingerprint: str) -> dict[tuple[str, str], str]:
        """``{(kind, key): value}`` of the cached rows written under ``fingerprint``."""
        ...

    async def all_channel_tags(self) -> set[str]:
        """Every channel move tag the index holds."""
        ...

    async def channels(self, id: str) -> list[ChannelMoveRecord]:
        """Channel history of ``id``, by channel then seq."""
        ...

    async def current_channels(self, id: str) -> dict[str, ChannelMoveRecord]:
        """Each channel of ``id`` at its highest seq."""
        ...

    async def current_channel_versions(
        self, ids: Sequence[str] | None = None
    ) -> dict[str, dict[str, str | None]]:
        """``{id: {channel: version now, or None while out of service}}`` for ``ids`` (default:
        every procedure with a channel), in one query (the channel column of a search)."""
        ...

    async def record_executions(self, records: Sequence[ExecutionRecord]) -> int:
        """Store runs in one transaction; returns how many were new (by run_id)."""
        ...

    async def executions(
        self, id: str, version: str | None = None, limit: int | None = None
    ) -> list[ExecutionRecord]:
        """Runs of ``id`` (optionally one version), newest first."""
        ...

    async def count_executions(self, id: str | None = None) -> int:
        """How many runs are recorded (of ``id``, or in all)."""
        ...

    async def metrics(self, id: str) -> Metrics:
        """Run statistics of ``id``, overall and per version."""
        ...

    async def recent_outcomes(self, id: str, version: str | None, n: int) -> list[bool]:
        """Success flags of the last ``n`` runs (of ``version``, or any), newest first."""
        ...

    async def snapshot(self) -> dict[str, Any]:
        """A canonical JSON-ready dump of the derived tables, equal on both backends."""
        ...

    async def notify(self, payload: str) -> None:
        """Tell listeners a sync happened (PostgreSQL NOTIFY; a no-op on SQLite)."""
        ...


# ---------------------------------------------------------------------------
# semver ordering stored as columns


class SemverKey(BaseModel):
    """Columns that sort a version in semver precedence with plain ORDER BY.

    Order by ``major, minor, patch, is_release, pre_key`` (``pre_key`` compared
    bytewise: ``COLLATE "C"`` on PostgreSQL, SQLite's default BINARY). Build
    metadata, which semver leaves out of precedence, follows the prerelease in
    ``pre_key`` so that "latest" is the same as :func:`registry.core.tags.version_key`.
    Frozen: :func:`semver_key` hands out one cached key per version text.
    """

    model_config = ConfigDict(frozen=True)

    major: int
    minor: int
    patch: int
    is_release: int
    pre_key: str


@lru_cache(maxsize=4096)
def semver_key(version: str) -> SemverKey:
    """The sort columns of ``version``: semver precedence, then build metadata."""
    parsed = semver.Version.parse(version)
    # a space sorts below every identifier character, so "alpha" < "alpha.1" < "alpha-x";
    # \x01 below the space, so a build ("alpha+b") sorts after its version ("alpha")
    # and before anything longer ("alpha.1"), as tags.version_key orders them
    pre_key = " ".join(_identifier_keys(parsed.prerelease))
    if parsed.build:
        pre_key += "\x01" + " ".join(_identifier_keys(parsed.build))
    return SemverKey(
        major=parsed.major,
        minor=parsed.minor,
        patch=parsed.patch,
        is_release=0 if parsed.prerelease else 1,
        pre_key=pre_key,
    )


def _identifier_keys(dotted: str | None) -> list[str]:
    """Numeric identifiers sort below alphanumeric ones, and by value."""
    keys = []
    for ident in dotted.split(".") if dotted else ():
        if ident.isdigit():
            value = str(int(ident))
            keys.append(f"0{len(value):04d}{value}")
        else:
            keys.append(f"1{ident}")
    return keys


# ---------------------------------------------------------------------------
# columns: INSERT and SELECT lists come from the row models, so they cannot drift apart
# (registry.index.sql writes them; the CREATE TABLE statements in the migrations stay
# literal: a migration never changes)

PROCEDURE_COLUMNS = tuple(ProcedureRecord.model_fields)
VERSION_COLUMNS = tuple(VersionRecord.model_fields)
VERSION_SORT_COLUMNS = tuple(SemverKey.model_fields)
CHANNEL_COLUMNS = tuple(ChannelMoveRecord.model_fields)
EXECUTION_COLUMNS = tuple(ExecutionRecord.model_fields)
_DENIED_AT = EXECUTION_COLUMNS.index("network_denied")
SYNC_STATE_COLUMNS = tuple(SyncState.model_fields)
VERSION_ROW_COLUMNS = VERSION_COLUMNS + VERSION_SORT_COLUMNS
"""The columns of a version row as stored: :func:`version_values` gives them in this order."""


def row_values(record: BaseModel, columns: Sequence[str]) -> list[Any]:
    """The attribute values of ``record`` in ``columns`` order."""
    return [getattr(record, c) for c in columns]


def execution_values(record: ExecutionRecord) -> list[Any]:
    """A run row's values in ``EXECUTION_COLUMNS`` order, its denials as JSON text (or None)."""
    values = row_values(record, EXECUTION_COLUMNS)
    denied = record.network_denied
    values[_DENIED_AT] = (
        json.dumps([d.model_dump(mode="json") for d in denied], separators=(",", ":"))
        if denied
        else None
    )
    return values


@lru_cache(maxsize=4096)
def _sort_values(version: str) -> tuple[Any, ...]:
    # a rebuild writes 30,000 versions that name a few hundred distinct version strings
    return tuple(row_values(semver_key(version), VERSION_SORT_COLUMNS))


def version_values(record: VersionRecord) -> list[Any]:
    """A version row's values followed by its semver sort columns."""
    return [*row_values(record, VERSION_COLUMNS), *_sort_values(record.version)]


def _order(key: SemverKey) -> tuple[int, int, int, int, str]:
    return (key.major, key.minor, key.patch, key.is_release, key.pre_key)


def latest_versions(versions: Iterable[VersionRecord]) -> dict[str, str]:
    """``{id: its highest version}``: what ``latest_versions`` holds (``LATEST_ORDER``)."""
    best: dict[str, tuple[tuple[int, int, int, int, str], str]] = {}
    for v in versions:
        key = _order(semver_key(v.version))
        held = best.get(v.id)
        if held is None or key > held[0]:
            best[v.id] = (key, v.version)
    return {id: version for id, (_, version) in best.items()}


def latest_affected(changes: ChangeSet) -> list[str]:
    """The ids whose latest version an incremental ``changes`` may move, sorted."""
    ids = {v.id for v in changes.versions_upsert}
    for tag in changes.versions_delete:
        parsed = parse_release_tag(tag)
        if parsed is not None:
            ids.add(parsed[0])
    return sorted(ids)


def placeholder(id: str, errors: list[str], commit: str) -> ProcedureRecord:
    """The row for an invalid procedure the index has never seen valid."""
    return ProcedureRecord(
        id=id, name=id, tree_id="", commit=commit, valid=False, errors=list(errors)
    )


_RECORD_FIELDS = set(ProcedureRecord.model_fields)


def canonical_snapshot(
    procedures: Iterable[ProcedureRecord],
    versions: Iterable[VersionRecord],
    channels: Iterable[ChannelMoveRecord],
    states: Iterable[SyncState],
) -> dict[str, Any]:
    """The snapshot both backends return: sorted, JSON-ready, without sync times."""
    return {
        "procedures": [
            p.model_dump(mode="json", include=_RECORD_FIELDS)
            for p in sorted(procedures, key=lambda p: p.id)
        ],
        "versions": [v.model_dump(mode="json") for v in sorted(versions, key=lambda v: v.tag)],
        "channels": [c.model_dump(mode="json") for c in sorted(channels, key=lambda c: c.tag)],
        # synced_at says when, not what: git cannot confirm it and a re-apply changes it
        "sync_state": [
            s.model_dump(mode="json", exclude={"synced_at"})
            for s in sorted(states, key=lambda s: s.ref)
        ],
    }
