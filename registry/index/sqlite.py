"""The embedded index: SQLite files (stdlib ``sqlite3``), usually in ``.git/procreg/``.

Two files, because only one of them is derived data. ``index.sqlite3`` holds what
can be rebuilt from git (procedures, versions, channels, sync state); the run
history (executions and the per-procedure health counts) lives in
``runs.sqlite3`` beside it, attached to the same connection as schema ``runs``.
So a corrupt index can be set aside and rebuilt by ``procreg reindex``
(:func:`set_aside_corrupt`) and deleting it loses no run. Each file has its own
numbered migrations; migration 3 of the index moved the runs of older indexes
into the runs file.

Why the async methods call sqlite3 directly instead of offloading to a thread: the
file is local, statements take microseconds to milliseconds, and running every
transaction synchronously inside one method means no ``await`` ever falls inside a
transaction, so two index objects on one event loop can never deadlock each other.
The cost is that a write blocked by another *process* holds the loop for up to
``BUSY_TIMEOUT_MS``; the sync lock keeps that rare.

Full-text search is an FTS5 table kept in step with ``procedures`` in the same
transaction; user text becomes quoted words (:func:`registry.index.fulltext.fts5_query`).
Times are stored as fixed-width ISO 8601 UTC text, so they sort as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sqlite3
import typing
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel

from registry.errors import ConflictError, IndexCorrupt, IndexUnavailable
from registry.index.base import Query, SqlIndex, summary_tuples
from registry.index.contract import (
    CHANNEL_COLUMNS,
    EXECUTION_COLUMNS,
    PROCEDURE_COLUMNS,
    VERSION_ROW_COLUMNS,
    ChangeSet,
    ChannelMoveRecord,
    ExecutionRecord,
    Metrics,
    ProcedureRecord,
    SemverKey,
    VersionRecord,
    execution_values,
    latest_affected,
    latest_versions,
    placeholder,
    row_values,
    utc,
    version_values,
)
from registry.index.fulltext import fts5_query
from registry.index.metrics import RunFact, compute_metrics
from registry.index.sql import COUNTED, Dialect, column_list, statements, upsert_sql
from registry.index.sqlite_migrations import (
    ATTACH_RUNS,
    ATTACHED_FROM,
    CHECK_READABLE,
    CREATE_MIGRATIONS_TABLE,
    INSERT_MIGRATION,
    INSERT_PROCEDURE_FTS,
    JSON_COLUMNS,
    MIGRATIONS,
    RUNS_MIGRATIONS,
    RUNS_SCHEMA,
    SELECT_MIGRATIONS,
    MigrationStep,
    fts_params,
)

BUSY_TIMEOUT_MS = 5000
LOCK_POLL_S = 0.05
PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode = WAL",
    "PRAGMA foreign_keys = ON",
)


def runs_path(index_path: Path) -> Path:
    """The run-history file that goes with the index file ``index_path``."""
    if index_path.name == "index.sqlite3":
        return index_path.with_name("runs.sqlite3")
    return index_path.with_name(f"{index_path.stem}-runs{index_path.suffix or '.sqlite3'}")


def _ts(value: datetime | None) -> str | None:
    # fixed width, so text order is time order
    return None if value is None else utc(value).isoformat(timespec="microseconds")


# json.dumps(value, sort_keys=True), without building an encoder at each of 70,000 calls
_to_json = json.JSONEncoder(sort_keys=True).encode


def _sql(value: Any) -> Any:
    """A model value as SQLite stores it: JSON text, ISO UTC text, 0/1."""
    if isinstance(value, list | dict):
        return _to_json(value)
    if isinstance(value, datetime):
        return _ts(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _params(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_sql(v) for v in values)


def _kinds(annotation: Any) -> set[Any]:
    """Every type an annotation names, its parameters and union members included."""
    found = {annotation, typing.get_origin(annotation)}
    for arg in typing.get_args(annotation):
        found |= _kinds(arg)
    return found


def _encoded_at(models: Sequence[type[BaseModel]], columns: Sequence[str]) -> tuple[int, ...]:
    """The positions in ``columns`` whose values :func:`_sql` may change (lists, dicts,
    datetimes, bools, by the models' field types); a column no model names is included."""
    changed = {list, dict, datetime, bool}
    at = []
    for i, column in enumerate(columns):
        fields = [m.model_fields[column] for m in models if column in m.model_fields]
        if not fields or any(_kinds(f.annotation) & changed for f in fields):
            at.append(i)
    return tuple(at)


def _row_params(values: list[Any], at: tuple[int, ...]) -> list[Any]:
    """:func:`_params` for a row whose other positions need no change (see :func:`_encoded_at`).

    A rebuild writes 40,000 rows of 14 to 19 values; converting only the few
    that can need it is most of the write's Python time saved.
    """
    for i in at:
        values[i] = _sql(values[i])
    return values


def _json(text: str) -> Any:
    return [] if text == "[]" else json.loads(text)  # most tags and errors lists are empty


def _decoded(row: sqlite3.Row) -> dict[str, Any]:
    return {k: _json(v) if k in JSON_COLUMNS else v for k, v in zip(row.keys(), row, strict=True)}


def _put_procedure(c: sqlite3.Connection, record: ProcedureRecord) -> None:
    """Upsert ``record`` and replace its FTS row (found by rowid: a lookup, not a scan)."""
    ((rowid,),) = c.execute(
        UPSERT_PROCEDURE, _params(row_values(record, PROCEDURE_COLUMNS))
    ).fetchall()
    c.execute(DELETE_PROCEDURE_FTS, (rowid,))
    c.execute(INSERT_PROCEDURE_FTS, (rowid, *fts_params(record)))


def _put_all_procedures(c: sqlite3.Connection, changes: ChangeSet) -> None:
    """A rebuild's procedures into the emptied tables, one ``executemany`` per table.

    The same rows as :func:`_put_procedure` and ``MARK_INVALID`` row by row would leave,
    with the same ``fts_rowid`` of each (rows are written in the same order).
    """
    final: dict[str, ProcedureRecord] = {}  # id -> the record its FTS row is built from
    rows: list[ProcedureRecord] = []
    for record in changes.upsert:
        final[record.id] = record
        rows.append(record)
    marked = []
    for id, errors in changes.invalid:
        if id in final:
            marked.append((json.dumps(errors), id))
        else:
            final[id] = placeholder(id, errors, changes.commit)
            rows.append(final[id])
    c.executemany(
        UPSERT_PROCEDURE_ROW,
        [_row_params(row_values(r, PROCEDURE_COLUMNS), _PROCEDURE_AT) for r in rows],
    )
    rowids = dict(c.execute(SELECT_FTS_ROWIDS).fetchall())
    c.executemany(INSERT_PROCEDURE_FTS, [(rowids[i], *fts_params(r)) for i, r in final.items()])
    c.executemany(MARK_INVALID, marked)


_PROCEDURE_AT = _encoded_at([ProcedureRecord], PROCEDURE_COLUMNS)
_VERSION_AT = _encoded_at([VersionRecord, SemverKey], VERSION_ROW_COLUMNS)
_CHANNEL_AT = _encoded_at([ChannelMoveRecord], CHANNEL_COLUMNS)


def _put_latest(c: sqlite3.Connection, changes: ChangeSet) -> None:
    """Keep ``latest_versions`` in step with the versions ``changes`` just wrote."""
    if changes.full:  # the table was emptied with the rest
        c.executemany(SQL.insert_latest, latest_versions(changes.versions_upsert).items())
        return
    ids = [(i,) for i in latest_affected(changes)]
    c.executemany(SQL.delete_latest, ids)
    c.executemany(SQL.insert_latest_of, ids)


DELETE_ALL_DERIVED = (
    "DELETE FROM procedures",
    "DELETE FROM procedures_fts",
    "DELETE FROM versions",
    "DELETE FROM latest_versions",
    "DELETE FROM channels",
    "DELETE FROM sync_state",
)
DELETE_PROCEDURE = "DELETE FROM procedures WHERE id = ? RETURNING fts_rowid"
DELETE_PROCEDURE_FTS = "DELETE FROM procedures_fts WHERE rowid = ?"
UPSERT_PROCEDURE_ROW = upsert_sql(
    "procedures", PROCEDURE_COLUMNS, "id", ["?"] * len(PROCEDURE_COLUMNS)
)
UPSERT_PROCEDURE = UPSERT_PROCEDURE_ROW + " RETURNING fts_rowid"
SELECT_FTS_ROWIDS = "SELECT id, fts_rowid FROM procedures"
PUT_OBJECT_CACHE = (
    "INSERT OR REPLACE INTO object_cache (kind, key, fingerprint, value) VALUES (?, ?, ?, ?)"
)
DELETE_OBJECT_CACHE = "DELETE FROM object_cache WHERE kind = ? AND key = ?"
PROCEDURE_EXISTS = "SELECT 1 FROM procedures WHERE id = ?"
MARK_INVALID = "UPDATE procedures SET valid = 0, errors = ? WHERE id = ?"
UPSERT_VERSION = upsert_sql(
    "versions", VERSION_ROW_COLUMNS, "tag", ["?"] * len(VERSION_ROW_COLUMNS)
)
INSERT_EXECUTION = f"""INSERT OR IGNORE INTO runs.executions ({column_list(EXECUTION_COLUMNS)})
VALUES ({", ".join(["?"] * len(EXECUTION_COLUMNS))})"""
SELECT_RUN_FACTS = f"""SELECT version, duration_ms, outcome, error_type, started_at, caller
FROM runs.executions WHERE id = ? AND {COUNTED}"""

SQLITE = Dialect(
    name="sqlite",
    numbered="?{}",
    runs=f"{RUNS_SCHEMA}.",
    # procedures are keyed by the integer rowid they share with their FTS row
    page_key="fts_rowid",
    sync_time="$4",
    unlimited=-1,
    text_query=fts5_query,
    text_source="procedures_fts JOIN procedures p ON p.fts_rowid = procedures_fts.rowid",
    text_match="procedures_fts MATCH {}",
    # bm25 is lower for a better match
    text_rank="-bm25(procedures_fts, 10.0, 4.0, 4.0, 2.0, 1.0)",
    text_alone="procedures_fts",
    tags_match="""NOT EXISTS (SELECT 1 FROM json_each({}) t
    WHERE t.value NOT IN (SELECT j.value FROM json_each(p.tags) j))""",
)
SQL = statements(SQLITE)


class SqliteIndex(SqlIndex):
    """The index in one SQLite file; see the module docstring for the design."""

    dialect = SQLITE
    _rejected = (sqlite3.IntegrityError,)
    _failed = (sqlite3.Error,)
    _advice = (
        "; if another process holds it, retry; if the disk is full, free some space; "
        "if it is corrupt, run `procreg reindex` (run records are kept apart)"
    )

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.label = f"the SQLite index {path}"
        self._conn = conn
        self.applied_migrations: list[int] = []

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    async def connect(cls, target: str | Path) -> Self:
        """Open (creating if needed) the index file at ``target`` and its run file; migrate both.

        A corrupt index file is :class:`IndexCorrupt` (``procreg reindex`` sets it
        aside and rebuilds it); the run file is never set aside.
        """
        path = Path(target)
        runs = runs_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: transactions are explicit BEGIN IMMEDIATE / COMMIT
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise IndexUnavailable(
                f"cannot open the SQLite index {path}: {exc}; check that the folder is "
                "writable and has free space"
            ) from exc
        conn.row_factory = sqlite3.Row
        index = cls(path, conn)
        try:
            index._check_readable("main", path)
            with index._errors():
                for pragma in PRAGMAS:
                    conn.execute(pragma)
                index.applied_migrations = index._migrate(runs)
        except BaseException:
            conn.close()
            raise
        return index

    def _check_readable(self, schema: str, path: Path) -> None:
        try:
            self._conn.execute(CHECK_READABLE.format(schema=schema)).fetchone()
        except sqlite3.DatabaseError as exc:
            if schema == "main":
                raise IndexCorrupt(
                    f"the SQLite index {path} is corrupt ({exc}); run `procreg reindex` to "
                    f"rebuild it from git (run records are kept apart, in {runs_path(path)})",
                    path,
                ) from exc
            raise IndexUnavailable(
                f"the run history {path} is unreadable ({exc}); it is not derived data and "
                "cannot be rebuilt from git: restore it from a backup (do not delete it)"
            ) from exc

    def _migrate(self, runs: Path) -> list[int]:
        main = self._apply_migrations("main", [m for m in MIGRATIONS if m[0] < ATTACHED_FROM])
        try:
            self._conn.execute(ATTACH_RUNS, (str(runs),))
        except sqlite3.Error as exc:
            raise IndexUnavailable(
                f"cannot open the run history {runs}: {exc}; check that the folder is writable"
            ) from exc
        self._check_readable(RUNS_SCHEMA, runs)
        self._conn.execute(f"PRAGMA {RUNS_SCHEMA}.journal_mode = WAL")
        self._apply_migrations(RUNS_SCHEMA, list(RUNS_MIGRATIONS))
        main += self._apply_migrations("main", [m for m in MIGRATIONS if m[0] >= ATTACHED_FROM])
        return main

    def _apply_migrations(
        self, schema: str, migrations: Sequence[tuple[int, str, tuple[MigrationStep, ...]]]
    ) -> list[int]:
        known = MIGRATIONS if schema == "main" else RUNS_MIGRATIONS
        where = self.path if schema == "main" else runs_path(self.path)
        self._conn.execute(CREATE_MIGRATIONS_TABLE.format(schema=schema))
        applied: list[int] = []
        with self._tx():
            done = {r[0] for r in self._conn.execute(SELECT_MIGRATIONS.format(schema=schema))}
            newest = max(n for n, _, _ in known)
            if done and max(done) > newest:
                raise IndexUnavailable(
                    f"the SQLite file {where} has schema migration {max(done)}, newer "
                    f"than this procreg knows ({newest}); upgrade procreg"
                )
            for number, name, steps in migrations:
                if number in done:
                    continue
                for step in steps:
                    if callable(step):
                        step(self._conn)
                    else:
                        self._conn.execute(step)
                self._conn.execute(
                    INSERT_MIGRATION.format(schema=schema), (number, name, _ts(datetime.now(UTC)))
                )
                applied.append(number)
        return applied

    async def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextlib.contextmanager
    def _tx(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        self._conn.execute(f"BEGIN {mode}")
        try:
            yield self._conn
        except BaseException:
            # some errors (disk full, I/O) make SQLite roll back on its own
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    async def schema_migrations(self) -> list[int]:
        """Numbers of the applied migrations of the index file, ascending."""
        with self._errors():
            return [r[0] for r in self._conn.execute(SELECT_MIGRATIONS.format(schema="main"))]

    async def runs_migrations(self) -> list[int]:
        """Numbers of the applied migrations of the run file, ascending."""
        sql = SELECT_MIGRATIONS.format(schema=RUNS_SCHEMA)
        with self._errors():
            return [r[0] for r in self._conn.execute(sql)]

    # -- sync --------------------------------------------------------------

    async def apply(self, changes: ChangeSet) -> None:
        """Apply ``changes`` and record the new sync state, all in one transaction."""
        with self._errors(), self._tx() as c:
            if changes.full:
                for statement in DELETE_ALL_DERIVED:
                    c.execute(statement)
            for id in changes.delete:
                for (rowid,) in c.execute(DELETE_PROCEDURE, (id,)).fetchall():
                    c.execute(DELETE_PROCEDURE_FTS, (rowid,))
            if changes.full:
                _put_all_procedures(c, changes)
            else:
                for record in changes.upsert:
                    _put_procedure(c, record)
                for id, errors in changes.invalid:
                    if c.execute(PROCEDURE_EXISTS, (id,)).fetchone():
                        c.execute(MARK_INVALID, (json.dumps(errors), id))
                    else:
                        _put_procedure(c, placeholder(id, errors, changes.commit))
            c.executemany(SQL.delete_version, [(t,) for t in changes.versions_delete])
            c.executemany(
                UPSERT_VERSION,
                [_row_params(version_values(v), _VERSION_AT) for v in changes.versions_upsert],
            )
            _put_latest(c, changes)
            c.executemany(SQL.delete_channel, [(t,) for t in changes.channels_delete])
            c.executemany(
                SQL.upsert_channel,
                [
                    _row_params(row_values(m, CHANNEL_COLUMNS), _CHANNEL_AT)
                    for m in changes.channels_upsert
                ],
            )
            c.execute(
                SQL.upsert_sync_state,
                (changes.ref, changes.commit, changes.tags_digest, _ts(datetime.now(UTC))),
            )
            cache = changes.object_cache
            if cache is not None:
                c.execute(SQL.delete_other_fingerprints, (cache.fingerprint,))
                c.executemany(DELETE_OBJECT_CACHE, cache.drop)
                c.executemany(PUT_OBJECT_CACHE, cache.put)

    @contextlib.asynccontextmanager
    async def sync_lock(self, wait: bool = True) -> AsyncIterator[None]:
        """An exclusive ``flock`` on ``<db>.sync-lock``: one syncer at a time, across processes.

        Polls without blocking the event loop; ``wait=False`` raises ConflictError at once.
        """
        lock_path = self.path.with_name(self.path.name + ".sync-lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        raise ConflictError(
                            f"another sync holds {lock_path}; wait for it to finish, then retry"
                        ) from None
                    await asyncio.sleep(LOCK_POLL_S)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    async def notify(self, payload: str) -> None:
        """No listeners on an embedded file: a no-op."""

    # -- reads (the queries are shared: see registry.index.base) -------------

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any]:
        with self._errors():
            return self._conn.execute(sql, tuple(params)).fetchall()

    async def _fetch_together(self, queries: Sequence[Query]) -> list[Sequence[Any]]:
        with self._errors(), self._tx("DEFERRED") as c:
            return [c.execute(sql, tuple(params)).fetchall() for sql, params in queries]

    def _decode(self, row: sqlite3.Row) -> dict[str, Any]:
        return _decoded(row)

    async def _summaries(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._errors():
            cursor = self._conn.cursor()
            cursor.row_factory = None
            return summary_tuples(cursor.execute(sql, tuple(params)))

    # -- executions --------------------------------------------------------

    async def record_executions(self, records: Sequence[ExecutionRecord]) -> int:
        """Store runs in one transaction; duplicates by run_id are ignored. Returns new count."""
        if not records:
            return 0
        with self._errors(), self._tx() as c:
            # rowcount, not total_changes: the health trigger's writes must not count
            cursor = c.executemany(
                INSERT_EXECUTION, [_params(execution_values(e)) for e in records]
            )
            return cursor.rowcount

    async def metrics(self, id: str) -> Metrics:
        """Run statistics of ``id`` (percentiles as PostgreSQL's percentile_cont)."""
        with self._errors():
            rows = self._conn.execute(SELECT_RUN_FACTS, (id,)).fetchall()
        return compute_metrics(
            RunFact(
                version=r["version"],
                duration_ms=r["duration_ms"],
                outcome=r["outcome"],
                error_type=r["error_type"],
                started_at=r["started_at"],
                caller=r["caller"],
            )
            for r in rows
        )


def set_aside_corrupt(path: Path) -> Path:
    """Move a corrupt index file (and its WAL files) aside so it can be rebuilt; the new name.

    Only the derived index: the run file beside it is never moved.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        path.replace(aside)
        for suffix in ("-wal", "-shm"):
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                extra.replace(aside.with_name(aside.name + suffix))
    except OSError as exc:
        raise IndexUnavailable(f"cannot move the corrupt index {path} aside: {exc}") from exc
    return aside
