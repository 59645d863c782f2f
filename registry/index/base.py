"""What both SQL backends do alike: every read of the index, over a small driver interface.

:class:`SqlIndex` runs the shared statements of :mod:`registry.index.sql` through
four hooks a backend implements: run one query (:meth:`SqlIndex._fetch`), run
several as one consistent read (:meth:`SqlIndex._fetch_together`), turn a
driver row into model values (:meth:`SqlIndex._decode`) and return the lean rows
of a summary list (:meth:`SqlIndex._summaries`). It also turns driver errors
into :class:`~registry.errors.IndexRejected` (a constraint refused the data) or
:class:`~registry.errors.IndexUnavailable` (the index failed), given which driver
errors mean which. The backends keep what truly differs: connections and
transactions, migrations, writes, full-text storage, metrics.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, ClassVar, Self

from registry.errors import IndexRejected, IndexUnavailable
from registry.index.contract import (
    SUMMARY_COLUMNS,
    ChannelMoveRecord,
    ExecutionRecord,
    ProcedureHead,
    ProcedureRow,
    ReleaseRef,
    SearchQuery,
    SyncState,
    VersionRecord,
    canonical_snapshot,
    trusted_procedure_row,
    trusted_version,
)
from registry.index.sql import (
    Dialect,
    Statements,
    all_procedures,
    current_channels_of,
    procedure_by_id,
    procedure_query,
    statements,
)

Query = tuple[str, Sequence[Any]]
"""A statement and its parameters."""

SUMMARY_KEYS = (*SUMMARY_COLUMNS, "latest_version", "runs", "success_rate")
"""The values of a summary row, in the order a summary query selects them."""


@lru_cache(maxsize=16_384)
def _json_items(text: str) -> tuple[Any, ...]:
    return tuple(json.loads(text))


def _json_list(text: str) -> list[Any]:
    # tags and errors lists repeat across rows and lists, so a list of 10,000 decodes each
    # distinct text once (each row still gets its own list)
    return [] if text == "[]" else list(_json_items(text))


def summary_tuples(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """The rows of a summary query (:data:`SUMMARY_KEYS`, JSON columns as text), decoded."""
    # positional unpacking of plain tuples: a list of 10,000 is mostly this loop
    assert SUMMARY_KEYS[4] == "tags" and SUMMARY_KEYS[6:8] == ("valid", "errors")
    decode = _json_list
    return [
        (id_, name, description, category, decode(tags), status, bool(valid), decode(errors),
         latest, runs, rate)
        for (id_, name, description, category, tags, status, valid, errors, latest, runs, rate)
        in rows
    ]  # fmt: skip


class SqlIndex(ABC):
    """The reads of :class:`registry.index.contract.IndexBackend`, shared by both backends."""

    dialect: ClassVar[Dialect]
    _rejected: ClassVar[tuple[type[Exception], ...]]
    """Driver errors that mean the data broke a constraint (:class:`IndexRejected`)."""
    _failed: ClassVar[tuple[type[Exception], ...]]
    """Driver errors that mean the index failed (:class:`IndexUnavailable`)."""
    _advice: ClassVar[str]
    """What to do when the index failed, after its reason."""
    label: str
    """``the SQLite index <path>``: the index, for messages."""

    sql: ClassVar[Statements]
    """The shared statements in this backend's dialect (set from ``dialect``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.sql = statements(cls.dialect)

    # -- what a backend implements ---------------------------------------------

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""

    def _reason(self, exc: BaseException) -> str:
        """Why a driver call failed, in words."""
        return str(exc)

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any]:
        """The rows of one query (indexable by position and by column name)."""

    @abstractmethod
    async def _fetch_together(self, queries: Sequence[Query]) -> list[Sequence[Any]]:
        """The rows of each query, all read from one consistent state of the index."""

    @abstractmethod
    def _decode(self, row: Any) -> dict[str, Any]:
        """A driver row as the values of its model (JSON columns decoded)."""

    @abstractmethod
    async def _summaries(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of a summary query as :func:`summary_tuples` (a list of 10,000 is mostly
        this)."""

    # -- lifecycle and errors ----------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Driver errors inside become :class:`IndexRejected` or :class:`IndexUnavailable`."""
        try:
            yield
        except self._rejected as exc:
            raise IndexRejected(
                f"{self.label} refused the change ({exc}); nothing was written. "
                "The data breaks an index constraint: fix its source and sync again"
            ) from exc
        except self._failed as exc:
            raise IndexUnavailable(
                f"{self.label} failed: {self._reason(exc)}{self._advice}"
            ) from exc

    # -- reads -------------------------------------------------------------------

    def _procedure_row(self, row: Any) -> ProcedureRow:
        return trusted_procedure_row(self._decode(row))

    async def sync_state(self, ref: str) -> SyncState | None:
        """What was last indexed for ``ref``."""
        rows = await self._fetch(self.sql.select_sync_state, (ref,))
        return SyncState.model_validate(self._decode(rows[0])) if rows else None

    async def search(self, query: SearchQuery) -> list[ProcedureRow]:
        """Procedures matching every filter; blank text means no text filter."""
        built = procedure_query(self.dialect, query)
        if built is None:
            return []
        return [self._procedure_row(r) for r in await self._fetch(*built)]

    async def search_summaries(self, query: SearchQuery) -> list[dict[str, Any]]:
        """:meth:`search` with only the summary columns (a list of 10,000 stays fast)."""
        return [dict(zip(SUMMARY_KEYS, row, strict=True)) for row in await self.summary_rows(query)]

    async def summary_rows(self, query: SearchQuery) -> list[tuple[Any, ...]]:
        """:meth:`search_summaries` as tuples in :data:`SUMMARY_KEYS` order (no dict per hit)."""
        built = procedure_query(self.dialect, query, summary=True)
        return [] if built is None else await self._summaries(*built)

    async def get_procedure(self, id: str) -> ProcedureRow | None:
        """One procedure, or None."""
        rows = await self._fetch(*procedure_by_id(self.dialect, id))
        return self._procedure_row(rows[0]) if rows else None

    async def procedure_refs(self, id: str) -> tuple[ProcedureHead | None, list[ReleaseRef]]:
        """What ``get`` needs of ``id``: narrow columns, no joins (a get is mostly its reads)."""
        heads = await self._fetch(self.sql.select_procedure_head, (id,))
        releases = await self._fetch(self.sql.select_release_refs, (id,))
        head = None
        if heads:
            tree_id, commit, valid, errors, metadata = self._decode(heads[0]).values()
            head = ProcedureHead(tree_id, commit, bool(valid), errors, metadata)
        return head, [ReleaseRef(*r) for r in releases]

    async def list_procedures(self) -> list[ProcedureRow]:
        """Every procedure, by id."""
        return [self._procedure_row(r) for r in await self._fetch(*all_procedures(self.dialect))]

    async def procedure_trees(self) -> dict[str, str]:
        """``{id: tree id}`` of every procedure (what a rebuild compares, without the rows)."""
        return {r[0]: r[1] for r in await self._fetch(self.sql.select_procedure_trees)}

    async def versions(self, id: str) -> list[VersionRecord]:
        """Releases of ``id``, ascending semver."""
        rows = await self._fetch(self.sql.select_versions, (id,))
        return [trusted_version(self._decode(r)) for r in rows]

    async def object_cache(self, fingerprint: str) -> dict[tuple[str, str], str]:
        """The cached rows of ``fingerprint`` (see :mod:`registry.index.objcache`)."""
        rows = await self._fetch(self.sql.select_object_cache, (fingerprint,))
        return {(r[0], r[1]): r[2] for r in rows}

    async def all_version_tags(self) -> set[str]:
        """Every release tag held."""
        return {r[0] for r in await self._fetch(self.sql.select_version_tags)}

    async def all_channel_tags(self) -> set[str]:
        """Every channel move tag held."""
        return {r[0] for r in await self._fetch(self.sql.select_channel_tags)}

    async def channels(self, id: str) -> list[ChannelMoveRecord]:
        """Channel history of ``id``."""
        rows = await self._fetch(self.sql.select_channels, (id,))
        return [ChannelMoveRecord.model_validate(self._decode(r)) for r in rows]

    async def current_channels(self, id: str) -> dict[str, ChannelMoveRecord]:
        """Each channel of ``id`` at its highest seq."""
        rows = await self._fetch(self.sql.select_current_channels, (id,))
        return {r["channel"]: ChannelMoveRecord.model_validate(self._decode(r)) for r in rows}

    async def current_channel_versions(
        self, ids: Sequence[str] | None = None
    ) -> dict[str, dict[str, str | None]]:
        """``{id: {channel: version now, or None while out of service}}`` in one query.

        Of ``ids`` (default: every procedure with a channel).
        """
        out: dict[str, dict[str, str | None]] = {}
        for id_, channel, version, closed in await self._fetch(
            *current_channels_of(self.dialect, ids)
        ):
            out.setdefault(id_, {})[channel] = None if closed else version
        return out

    async def executions(
        self, id: str, version: str | None = None, limit: int | None = None
    ) -> list[ExecutionRecord]:
        """Runs of ``id``, newest first (``limit`` None: all)."""
        if limit is not None and limit <= 0:
            return []
        limit = self.dialect.unlimited if limit is None else limit
        rows = await self._fetch(self.sql.select_executions, (id, version, limit))
        return [ExecutionRecord.model_validate(self._decode(r)) for r in rows]

    async def count_executions(self, id: str | None = None) -> int:
        """How many runs are recorded."""
        rows = await self._fetch(self.sql.count_executions, (id,))
        return int(rows[0][0])

    async def recent_outcomes(self, id: str, version: str | None, n: int) -> list[bool]:
        """Success flags of the last ``n`` runs, newest first."""
        if n <= 0:
            return []
        rows = await self._fetch(self.sql.select_recent_outcomes, (id, version, n))
        return [bool(r[0]) for r in rows]

    async def snapshot(self) -> dict[str, Any]:
        """Canonical dump of the derived tables (see ``contract.canonical_snapshot``)."""
        sql = self.sql
        procedures, versions, channels, states = await self._fetch_together(
            [
                all_procedures(self.dialect),
                (sql.select_all_versions, ()),
                (sql.select_all_channels, ()),
                (sql.select_all_sync_states, ()),
            ]
        )
        return canonical_snapshot(
            [self._procedure_row(r) for r in procedures],
            [trusted_version(self._decode(r)) for r in versions],
            [ChannelMoveRecord.model_validate(self._decode(r)) for r in channels],
            [SyncState.model_validate(self._decode(r)) for r in states],
        )
