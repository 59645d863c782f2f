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
transaction; user text becomes quoted words (:func:`registry.index.contract.fts5_query`).
Times are stored as fixed-width ISO 8601 UTC text, so they sort as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import BaseModel

from registry.errors import ConflictError, IndexCorrupt, IndexRejected, IndexUnavailable
from registry.index.base import Query, SqlIndex
from registry.index.contract import (
    CHANNEL_COLUMNS,
    EXECUTION_COLUMNS,
    PROCEDURE_COLUMNS,
    SUMMARY_COLUMNS,
    VERSION_COLUMNS,
    VERSION_SORT_COLUMNS,
    ChangeSet,
    ExecutionRecord,
    Metrics,
    ProcedureRecord,
    RunFact,
    column_list,
    compute_metrics,
    fts5_query,
    placeholder,
    row_values,
    search_document,
    semver_key,
    upsert_sql,
    utc,
    version_values,
)
from registry.index.sql import Dialect, statements

BUSY_TIMEOUT_MS = 5000
LOCK_POLL_S = 0.05
PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode = WAL",
    "PRAGMA foreign_keys = ON",
)

RUNS_SCHEMA = "runs"


def runs_path(index_path: Path) -> Path:
    """The run-history file that goes with the index file ``index_path``."""
    if index_path.name == "index.sqlite3":
        return index_path.with_name("runs.sqlite3")
    return index_path.with_name(f"{index_path.stem}-runs{index_path.suffix or '.sqlite3'}")


M = TypeVar("M", bound=BaseModel)
JSON_COLUMNS = frozenset({"tags", "parameters", "metadata", "errors", "reasons"})


def _ts(value: datetime | None) -> str | None:
    # fixed width, so text order is time order
    return None if value is None else utc(value).isoformat(timespec="microseconds")


def _sql(value: Any) -> Any:
    """A model value as SQLite stores it: JSON text, ISO UTC text, 0/1."""
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, datetime):
        return _ts(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _params(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_sql(v) for v in values)


def _fts_params(r: ProcedureRecord) -> tuple[str, ...]:
    doc = search_document(r)
    return (doc["name"], doc["description"], doc["tags"], doc["params"], doc["docstring"])


def _model(model: type[M], row: sqlite3.Row | dict[str, Any]) -> M:
    """A row as ``model``; pydantic parses the ISO times and 0/1 booleans back."""
    values = {k: json.loads(v) if k in JSON_COLUMNS else v for k, v in dict(row).items()}
    return model.model_validate(values)


def _json(text: str) -> Any:
    return [] if text == "[]" else json.loads(text)  # most tags and errors lists are empty


def _decoded(row: sqlite3.Row) -> dict[str, Any]:
    return {k: _json(v) if k in JSON_COLUMNS else v for k, v in zip(row.keys(), row, strict=True)}


_SUMMARY_KEYS = (*SUMMARY_COLUMNS, "latest_version", "runs", "success_rate")


def _summaries(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    # plain tuples and positional unpacking: a list of 10,000 is mostly this loop
    assert _SUMMARY_KEYS[4] == "tags" and _SUMMARY_KEYS[6:8] == ("valid", "errors")
    out = []
    for id_, name, description, category, tags, status, valid, errors, latest, runs, rate in rows:
        out.append(
            {
                "id": id_,
                "name": name,
                "description": description,
                "category": category,
                "tags": _json(tags),
                "status": status,
                "valid": bool(valid),
                "errors": _json(errors),
                "latest_version": latest,
                "runs": runs,
                "success_rate": rate,
            }
        )
    return out


def _put_procedure(c: sqlite3.Connection, record: ProcedureRecord) -> None:
    """Upsert ``record`` and replace its FTS row (found by rowid: a lookup, not a scan)."""
    ((rowid,),) = c.execute(
        UPSERT_PROCEDURE, _params(row_values(record, PROCEDURE_COLUMNS))
    ).fetchall()
    c.execute(DELETE_PROCEDURE_FTS, (rowid,))
    c.execute(INSERT_PROCEDURE_FTS, (rowid, *_fts_params(record)))


def _fill_fts(conn: sqlite3.Connection) -> None:
    """Migration step: write every procedure's FTS row under its ``fts_rowid``."""
    columns = column_list(PROCEDURE_COLUMNS)
    rows = []
    for row in conn.execute(f"SELECT fts_rowid, {columns} FROM procedures"):
        values = dict(row)
        rowid = values.pop("fts_rowid")
        rows.append((rowid, *_fts_params(_model(ProcedureRecord, values))))
    conn.executemany(INSERT_PROCEDURE_FTS, rows)


# Migrations 1 and 2 ran before the run file existed; they run with it detached.
ATTACHED_FROM = 3
_OLD_RUN_COLUMNS = tuple(c for c in EXECUTION_COLUMNS if c != "isolation")
_COPY_OLD_RUNS = (
    f"INSERT OR IGNORE INTO runs.executions ({column_list(_OLD_RUN_COLUMNS)}) "
    f"SELECT {column_list(_OLD_RUN_COLUMNS)} FROM main.executions"
)


def _copy_old_runs(conn: sqlite3.Connection) -> None:
    """Migration step: the runs an older index held go to the run file (health follows)."""
    conn.execute(_COPY_OLD_RUNS)


def _rekey_versions(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT tag, version FROM versions").fetchall()
    conn.executemany(
        "UPDATE versions SET pre_key = ? WHERE tag = ?",
        [(semver_key(version).pre_key, tag) for tag, version in rows],
    )


# (number, name, steps): applied in order, each in one transaction with its record;
# a step is SQL, or a function of the connection where SQL cannot say it (FTS text)
MigrationStep = str | Callable[[sqlite3.Connection], None]
MIGRATIONS: tuple[tuple[int, str, tuple[MigrationStep, ...]], ...] = (
    (
        1,
        "initial schema",
        (
            """CREATE TABLE procedures (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                description TEXT NOT NULL,
                category TEXT NOT NULL,
                tags TEXT NOT NULL,
                status TEXT NOT NULL,
                entry_point TEXT NOT NULL,
                parameters TEXT NOT NULL,
                docstring TEXT,
                metadata TEXT NOT NULL,
                tree_id TEXT NOT NULL,
                "commit" TEXT NOT NULL,
                valid INTEGER NOT NULL CHECK (valid IN (0, 1)),
                errors TEXT NOT NULL
            )""",
            "CREATE INDEX procedures_category ON procedures (category)",
            """CREATE VIRTUAL TABLE procedures_fts USING fts5 (
                id UNINDEXED, name, description, tags, params, docstring,
                tokenize = 'unicode61 remove_diacritics 0'
            )""",
            """CREATE TABLE versions (
                tag TEXT PRIMARY KEY,
                id TEXT NOT NULL,
                version TEXT NOT NULL,
                "commit" TEXT NOT NULL,
                tree_id TEXT,
                tagger_name TEXT,
                tagger_email TEXT,
                tagged_at TEXT,
                bump TEXT,
                breaking INTEGER,
                lines_added INTEGER CHECK (lines_added >= 0),
                lines_removed INTEGER CHECK (lines_removed >= 0),
                reasons TEXT NOT NULL,
                message TEXT NOT NULL,
                major INTEGER NOT NULL,
                minor INTEGER NOT NULL,
                patch INTEGER NOT NULL,
                is_release INTEGER NOT NULL,
                pre_key TEXT NOT NULL,
                UNIQUE (id, version)
            )""",
            "CREATE INDEX versions_order ON versions"
            " (id, major, minor, patch, is_release, pre_key)",
            """CREATE TABLE channels (
                tag TEXT PRIMARY KEY,
                id TEXT NOT NULL,
                channel TEXT NOT NULL,
                seq INTEGER NOT NULL CHECK (seq >= 0),
                version TEXT NOT NULL,
                "commit" TEXT NOT NULL,
                moved_by TEXT,
                moved_at TEXT,
                action TEXT,
                reason TEXT,
                UNIQUE (id, channel, seq)
            )""",
            """CREATE TABLE executions (
                run_id TEXT PRIMARY KEY,
                id TEXT NOT NULL,
                version TEXT,
                "commit" TEXT,
                tree_id TEXT,
                python_version TEXT,
                caller TEXT,
                started_at TEXT NOT NULL,
                duration_ms REAL NOT NULL CHECK (duration_ms >= 0),
                outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
                error_type TEXT,
                error_message TEXT,
                cpu_ms REAL,
                max_rss_kb INTEGER,
                imported INTEGER NOT NULL
            )""",
            "CREATE INDEX executions_by_id ON executions (id, started_at)",
            "CREATE INDEX executions_by_version ON executions (id, version, started_at)",
            """CREATE TABLE sync_state (
                ref TEXT PRIMARY KEY,
                "commit" TEXT,
                tags_digest TEXT,
                synced_at TEXT NOT NULL
            )""",
        ),
    ),
    (
        2,
        "procedures keyed by an integer rowid shared with their FTS row; health per procedure",
        (
            # an FTS5 delete by an UNINDEXED id scans the whole table; by rowid it is a lookup.
            # The key is an explicit INTEGER PRIMARY KEY so VACUUM cannot renumber it.
            """CREATE TABLE procedures_keyed (
                fts_rowid INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                description TEXT NOT NULL,
                category TEXT NOT NULL,
                tags TEXT NOT NULL,
                status TEXT NOT NULL,
                entry_point TEXT NOT NULL,
                parameters TEXT NOT NULL,
                docstring TEXT,
                metadata TEXT NOT NULL,
                tree_id TEXT NOT NULL,
                "commit" TEXT NOT NULL,
                valid INTEGER NOT NULL CHECK (valid IN (0, 1)),
                errors TEXT NOT NULL
            )""",
            """INSERT INTO procedures_keyed (id, name, description, category, tags, status,
                entry_point, parameters, docstring, metadata, tree_id, "commit", valid, errors)
            SELECT id, name, description, category, tags, status, entry_point, parameters,
                docstring, metadata, tree_id, "commit", valid, errors
            FROM procedures ORDER BY id""",
            "DROP TABLE procedures",
            "ALTER TABLE procedures_keyed RENAME TO procedures",
            # ORDER BY lower(name), id LIMIT n reads the first n entries instead of sorting
            "CREATE INDEX procedures_category ON procedures (category, lower(name), id)",
            "CREATE INDEX procedures_name ON procedures (lower(name), id)",
            "DROP TABLE procedures_fts",
            """CREATE VIRTUAL TABLE procedures_fts USING fts5 (
                name, description, tags, params, docstring,
                tokenize = 'unicode61 remove_diacritics 0'
            )""",
            _fill_fts,
            # runs and successes per procedure, kept by a trigger so every insert path counts
            # (INSERT OR IGNORE fires it only for rows really inserted)
            """CREATE TABLE procedure_health (
                id TEXT PRIMARY KEY,
                runs INTEGER NOT NULL CHECK (runs >= 0),
                successes INTEGER NOT NULL CHECK (successes >= 0)
            )""",
            """INSERT INTO procedure_health (id, runs, successes)
            SELECT id, count(*), sum(outcome = 'success') FROM executions GROUP BY id""",
            # two plain statements rather than an UPSERT: a trigger's statements take the
            # firing statement's conflict policy (OR IGNORE), which would skip the update
            """CREATE TRIGGER executions_count_runs AFTER INSERT ON executions BEGIN
                INSERT OR IGNORE INTO procedure_health (id, runs, successes)
                    VALUES (new.id, 0, 0);
                UPDATE procedure_health
                    SET runs = runs + 1, successes = successes + (new.outcome = 'success')
                    WHERE id = new.id;
            END""",
        ),
    ),
    (
        3,
        "run history moves to its own file (runs.sqlite3), which reindex never touches",
        (
            _copy_old_runs,
            "DROP TRIGGER main.executions_count_runs",
            "DROP TABLE main.procedure_health",
            "DROP TABLE main.executions",
        ),
    ),
    (
        4,
        "versions order their build metadata (pre_key recomputed)",
        (_rekey_versions,),
    ),
)

# The run file's own migrations (recorded in runs.schema_migrations).
RUNS_MIGRATIONS: tuple[tuple[int, str, tuple[MigrationStep, ...]], ...] = (
    (
        1,
        "run history: executions (with the isolation a run had) and health per procedure",
        (
            """CREATE TABLE runs.executions (
                run_id TEXT PRIMARY KEY,
                id TEXT NOT NULL,
                version TEXT,
                "commit" TEXT,
                tree_id TEXT,
                python_version TEXT,
                caller TEXT,
                started_at TEXT NOT NULL,
                duration_ms REAL NOT NULL CHECK (duration_ms >= 0),
                outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
                error_type TEXT,
                error_message TEXT,
                cpu_ms REAL,
                max_rss_kb INTEGER,
                imported INTEGER NOT NULL,
                isolation TEXT
            )""",
            "CREATE INDEX runs.executions_by_id ON executions (id, started_at)",
            "CREATE INDEX runs.executions_by_version ON executions (id, version, started_at)",
            """CREATE TABLE runs.procedure_health (
                id TEXT PRIMARY KEY,
                runs INTEGER NOT NULL CHECK (runs >= 0),
                successes INTEGER NOT NULL CHECK (successes >= 0)
            )""",
            """CREATE TRIGGER runs.executions_count_runs AFTER INSERT ON executions BEGIN
                INSERT OR IGNORE INTO procedure_health (id, runs, successes)
                    VALUES (new.id, 0, 0);
                UPDATE procedure_health
                    SET runs = runs + 1, successes = successes + (new.outcome = 'success')
                    WHERE id = new.id;
            END""",
        ),
    ),
)

# The bookkeeping table itself is the one thing created before migrations can be read.
CREATE_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"""
SELECT_MIGRATIONS = "SELECT version FROM {schema}.schema_migrations ORDER BY version"
INSERT_MIGRATION = (
    "INSERT INTO {schema}.schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
)
ATTACH_RUNS = f"ATTACH DATABASE ? AS {RUNS_SCHEMA}"
CHECK_READABLE = "SELECT count(*) FROM {schema}.sqlite_master"

DELETE_ALL_DERIVED = (
    "DELETE FROM procedures",
    "DELETE FROM procedures_fts",
    "DELETE FROM versions",
    "DELETE FROM channels",
    "DELETE FROM sync_state",
)
DELETE_PROCEDURE = "DELETE FROM procedures WHERE id = ? RETURNING fts_rowid"
DELETE_PROCEDURE_FTS = "DELETE FROM procedures_fts WHERE rowid = ?"
UPSERT_PROCEDURE = (
    upsert_sql("procedures", PROCEDURE_COLUMNS, "id", ["?"] * len(PROCEDURE_COLUMNS))
    + " RETURNING fts_rowid"
)
INSERT_PROCEDURE_FTS = """INSERT INTO procedures_fts
    (rowid, name, description, tags, params, docstring)
VALUES (?, ?, ?, ?, ?, ?)"""
PROCEDURE_EXISTS = "SELECT 1 FROM procedures WHERE id = ?"
MARK_INVALID = "UPDATE procedures SET valid = 0, errors = ? WHERE id = ?"
_VERSION_ALL = VERSION_COLUMNS + VERSION_SORT_COLUMNS
UPSERT_VERSION = upsert_sql("versions", _VERSION_ALL, "tag", ["?"] * len(_VERSION_ALL))
INSERT_EXECUTION = f"""INSERT OR IGNORE INTO runs.executions ({column_list(EXECUTION_COLUMNS)})
VALUES ({", ".join(["?"] * len(EXECUTION_COLUMNS))})"""
SELECT_RUN_FACTS = """SELECT version, duration_ms, outcome, error_type, started_at, caller
FROM runs.executions WHERE id = ?"""

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
    tags_match="""NOT EXISTS (SELECT 1 FROM json_each({}) t
    WHERE t.value NOT IN (SELECT j.value FROM json_each(p.tags) j))""",
)
SQL = statements(SQLITE)


class SqliteIndex(SqlIndex):
    """The index in one SQLite file; see the module docstring for the design."""

    dialect = SQLITE

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise IndexRejected(
                f"the SQLite index {self.path} refused the change ({exc}); nothing was "
                "written. The data breaks an index constraint: fix its source and sync again"
            ) from exc
        except sqlite3.Error as exc:
            raise IndexUnavailable(
                f"the SQLite index {self.path} failed: {exc}; if another process holds it, "
                "retry; if the disk is full, free some space; if it is corrupt, run "
                "`procreg reindex` (run records are kept apart)"
            ) from exc

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
            for record in changes.upsert:
                _put_procedure(c, record)
            for id, errors in changes.invalid:
                if c.execute(PROCEDURE_EXISTS, (id,)).fetchone():
                    c.execute(MARK_INVALID, (json.dumps(errors), id))
                else:
                    _put_procedure(c, placeholder(id, errors, changes.commit))
            c.executemany(SQL.delete_version, [(t,) for t in changes.versions_delete])
            c.executemany(
                UPSERT_VERSION, [_params(version_values(v)) for v in changes.versions_upsert]
            )
            c.executemany(SQL.delete_channel, [(t,) for t in changes.channels_delete])
            c.executemany(
                SQL.upsert_channel,
                [_params(row_values(m, CHANNEL_COLUMNS)) for m in changes.channels_upsert],
            )
            c.execute(
                SQL.upsert_sync_state,
                (changes.ref, changes.commit, changes.tags_digest, _ts(datetime.now(UTC))),
            )

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

    async def _summaries(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        with self._errors():
            cursor = self._conn.cursor()
            cursor.row_factory = None
            return _summaries(cursor.execute(sql, tuple(params)))

    # -- executions --------------------------------------------------------

    async def record_executions(self, records: Sequence[ExecutionRecord]) -> int:
        """Store runs in one transaction; duplicates by run_id are ignored. Returns new count."""
        if not records:
            return 0
        with self._errors(), self._tx() as c:
            # rowcount, not total_changes: the health trigger's writes must not count
            cursor = c.executemany(
                INSERT_EXECUTION, [_params(row_values(e, EXECUTION_COLUMNS)) for e in records]
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
