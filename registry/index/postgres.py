"""The production index: PostgreSQL through an asyncpg pool.

JSON columns are JSONB (decoded by a connection codec), full-text search is a
``tsvector`` column written with each procedure row (config ``simple``, so results
match the SQLite backend word for word) behind a GIN index. Text columns that are
ordered on use ``COLLATE "C"``, so ordering is the same as SQLite's bytewise order.
Run records are ingested with one ``INSERT ... SELECT FROM unnest(...)`` per chunk:
a single round trip per few thousand records, duplicates skipped by ``run_id``.
The sync lock's session is kept between syncs, and pool connections are not
``RESET`` on release (they never change session state), so a query is one round trip.
Every driver error becomes :class:`registry.errors.IndexUnavailable` (or
:class:`registry.index.contract.IndexRejected` for a constraint violation) naming the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import asyncpg

from registry.errors import ConflictError, IndexUnavailable
from registry.index.base import Query, SqlIndex, summary_tuples
from registry.index.contract import (
    CHANNEL_COLUMNS,
    EXECUTION_COLUMNS,
    HEAD_COLUMNS,
    PROCEDURE_COLUMNS,
    RELEASE_REF_COLUMNS,
    SYNC_CHANNEL,
    UNKNOWN_ERROR,
    UNVERSIONED,
    VERSION_ROW_COLUMNS,
    CacheUpdate,
    ChangeSet,
    ExecutionRecord,
    Metrics,
    ProcedureHead,
    ProcedureRecord,
    ReleaseRef,
    VersionMetrics,
    execution_values,
    latest_affected,
    latest_versions,
    placeholder,
    row_values,
    version_values,
)
from registry.index.fulltext import search_document, tsquery
from registry.index.metrics import success_rate
from registry.index.postgres_migrations import (
    CREATE_MIGRATIONS_TABLE,
    INSERT_MIGRATION,
    LOCK_MIGRATIONS,
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    SELECT_MIGRATIONS,
)
from registry.index.sql import (
    COUNTED,
    VERSION_ORDER,
    Dialect,
    column_list,
    dollars,
    statements,
    upsert_sql,
)

POOL_MIN = 1
POOL_MAX = 4


def _seconds(env: str, default: float) -> float:
    try:
        value = float(os.environ.get(env, default))
    except ValueError:
        return default
    return value if value > 0 else default


# A hung server (it accepts connections but never answers) must cost a bounded
# wait and a reason, not a blank error after a long one.
CONNECT_TIMEOUT_S = _seconds("PROCREG_PG_CONNECT_TIMEOUT", 10.0)
"""Seconds to open a connection (``$PROCREG_PG_CONNECT_TIMEOUT``)."""
COMMAND_TIMEOUT_S = _seconds("PROCREG_PG_COMMAND_TIMEOUT", 60.0)
"""Seconds any one statement may take (``$PROCREG_PG_COMMAND_TIMEOUT``)."""
INGEST_CHUNK = 5000
# the pg_advisory_lock key (bigint) of syncing: "procsync" as ASCII
SYNC_LOCK_KEY = 0x70726F6373796E63


DELETE_ALL_DERIVED = (
    "DELETE FROM procedures; DELETE FROM versions; DELETE FROM latest_versions; "
    "DELETE FROM channels; DELETE FROM sync_state"
)
# after a full apply the planner's statistics describe the old tables (or none at all,
# until autovacuum gets round to it), and a bad estimate turns a search into a scan
ANALYZE_DERIVED = "ANALYZE procedures, latest_versions, procedure_health"
DELETE_PROCEDURE = "DELETE FROM procedures WHERE id = $1"
OBJECT_CACHE_COLUMNS = ("kind", "key", "fingerprint", "value")
DELETE_OBJECT_CACHE = """DELETE FROM object_cache
WHERE (kind, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))"""
_SEARCH_VECTOR = """setweight(to_tsvector('simple', {}), 'A')
    || setweight(to_tsvector('simple', {}), 'B')
    || setweight(to_tsvector('simple', {}), 'B')
    || setweight(to_tsvector('simple', {}), 'C')
    || setweight(to_tsvector('simple', {}), 'D')"""
UPSERT_PROCEDURE = upsert_sql(
    "procedures",
    (*PROCEDURE_COLUMNS, "search"),
    "id",
    [*dollars(14), _SEARCH_VECTOR.format(*dollars(19)[14:])],
)
# the placeholder is only inserted when the id is new; a known row keeps its content
UPSERT_INVALID = (
    UPSERT_PROCEDURE.split(" ON CONFLICT ")[0]
    + ' ON CONFLICT ("id") DO UPDATE SET valid = false, errors = excluded.errors'
)

# Bulk upserts: one INSERT ... SELECT FROM unnest(...) per chunk instead of a statement a
# row. Every input is an array parameter; JSON travels as text and is cast in SQL.
_ARRAY_TYPES = {
    "valid": "bool",
    "breaking": "bool",
    "tagged_at": "timestamptz",
    "lines_added": "int4",
    "lines_removed": "int4",
    "major": "int8",
    "minor": "int8",
    "patch": "int8",
    "is_release": "int2",
}
JSONB_COLUMNS = frozenset({"tags", "parameters", "metadata", "errors", "reasons"})
_SEARCH_INPUTS = ("s_name", "s_description", "s_tags", "s_params", "s_docstring")


def _unnest_upsert(
    table: str, inputs: Sequence[str], key: str, targets: Sequence[str], values: Sequence[str]
) -> str:
    """Upsert rows given as one array per column of ``inputs`` (``u."col"`` in ``values``)."""
    arrays = ", ".join(f"${i}::{_ARRAY_TYPES.get(c, 'text')}[]" for i, c in enumerate(inputs, 1))
    conflict = upsert_sql(table, targets, key, ["NULL"] * len(targets)).split(" ON CONFLICT ")
    return (
        f"INSERT INTO {table} ({column_list(targets)}) SELECT {', '.join(values)} "
        f"FROM unnest({arrays}) AS u({column_list(inputs)}) ON CONFLICT {conflict[1]}"
    )


def _unnest_value(column: str) -> str:
    return f'u."{column}"::jsonb' if column in JSONB_COLUMNS else f'u."{column}"'


BULK_UPSERT_PROCEDURES = _unnest_upsert(
    "procedures",
    (*PROCEDURE_COLUMNS, *_SEARCH_INPUTS),
    "id",
    (*PROCEDURE_COLUMNS, "search"),
    [
        *(_unnest_value(c) for c in PROCEDURE_COLUMNS),
        _SEARCH_VECTOR.format(*(f'u."{c}"' for c in _SEARCH_INPUTS)),
    ],
)
BULK_UPSERT_VERSIONS = _unnest_upsert(
    "versions",
    VERSION_ROW_COLUMNS,
    "tag",
    VERSION_ROW_COLUMNS,
    [_unnest_value(c) for c in VERSION_ROW_COLUMNS],
)

POSTGRES = Dialect(
    name="postgresql",
    numbered="${}",
    runs="",
    page_key="id",
    sync_time="now()",
    unlimited=None,
    text_query=tsquery,
    text_source="procedures p",
    text_match="p.search @@ to_tsquery('simple', {})",
    text_rank="ts_rank_cd(p.search, to_tsquery('simple', {}))",
    tags_match="p.tags @> CAST(CAST({} AS TEXT) AS jsonb)",
    json_text="{}::text",
)
SQL = statements(POSTGRES)

# what get reads (see ProcedureHead, ReleaseRef): narrow columns, no latest or health joins
SELECT_PROCEDURE_REFS = POSTGRES.render(f"""SELECT p.id IS NOT NULL AS found,
    {column_list(HEAD_COLUMNS, "p")},
    (SELECT coalesce(json_agg(json_build_array({column_list(RELEASE_REF_COLUMNS, "v")})
        ORDER BY {VERSION_ORDER}), '[]'::json)::text
     FROM versions v WHERE v.id = q.id) AS releases_json
FROM (SELECT $1::text AS id) q LEFT JOIN procedures p ON p.id = q.id""")

_UNNEST_TYPES = {
    "started_at": "timestamptz",
    "duration_ms": "float8",
    "cpu_ms": "float8",
    "max_rss_kb": "int8",
    "imported": "bool",
    "job_id": "int8",
    "attempt": "int4",
}
INSERT_EXECUTIONS = (
    f"INSERT INTO executions ({column_list(EXECUTION_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(
        f"${i}::{_UNNEST_TYPES.get(c, 'text')}[]" for i, c in enumerate(EXECUTION_COLUMNS, 1)
    )
    + ") ON CONFLICT (run_id) DO NOTHING"
)
SELECT_METRICS = f"""SELECT GROUPING(version) = 1 AS overall, version, count(*) AS runs,
    count(*) FILTER (WHERE outcome = 'success') AS successes,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95,
    max(started_at) AS last_run
FROM executions WHERE id = $1 AND {COUNTED}
GROUP BY GROUPING SETS ((), (version))"""
SELECT_ERROR_COUNTS = f"""SELECT version, error_type, count(*) AS n FROM executions
WHERE id = $1 AND outcome = 'failure' AND {COUNTED} GROUP BY version, error_type"""
SELECT_CALLER_COUNTS = f"""SELECT version, caller, count(*) AS n FROM executions
WHERE id = $1 AND {COUNTED} GROUP BY version, caller"""
NOTIFY = "SELECT pg_notify($1, $2)"
ADVISORY_LOCK = "SELECT pg_advisory_lock($1)"
ADVISORY_TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
ADVISORY_UNLOCK = "SELECT pg_advisory_unlock($1)"


INSERT_LATEST_ROWS = (
    "INSERT INTO latest_versions (id, version) SELECT * FROM unnest($1::text[], $2::text[])"
)


async def _put_latest(conn: asyncpg.Connection, changes: ChangeSet) -> None:
    """Keep ``latest_versions`` in step with the versions ``changes`` just wrote."""
    if changes.full:  # the table was emptied with the rest
        latest = latest_versions(changes.versions_upsert)
        await conn.execute(INSERT_LATEST_ROWS, list(latest), list(latest.values()))
        return
    ids = [(i,) for i in latest_affected(changes)]
    if ids:
        await conn.executemany(SQL.delete_latest, ids)
        await conn.executemany(SQL.insert_latest_of, ids)


def _reason(exc: BaseException) -> str:
    """Why a driver call failed, never blank (a timeout's own message is empty)."""
    if isinstance(exc, TimeoutError):
        return (
            f"no answer within the timeout (connect {CONNECT_TIMEOUT_S:g} s, statement "
            f"{COMMAND_TIMEOUT_S:g} s): the server is hung or overloaded"
        )
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_url(url: str) -> str:
    """``host:port/dbname`` of a PostgreSQL URL, without credentials."""
    parts = urlsplit(url)
    host = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing beyond asyncpg's own (rollback, listeners dropped).

    The default reset sends ``RESET ALL; UNLISTEN *; CLOSE ALL; SELECT
    pg_advisory_unlock_all()`` on every release, a second round trip for every
    query. Pool connections here never change session state: the sync lock has its
    own connection, migrations take a transaction-scoped lock, nothing LISTENs.
    """


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _update_cache(conn: asyncpg.Connection, cache: CacheUpdate) -> None:
    """Apply a rebuild's :class:`CacheUpdate` (inside its transaction)."""
    await conn.execute(SQL.delete_other_fingerprints, cache.fingerprint)
    gone = [*cache.drop, *((kind, key) for kind, key, _, _ in cache.put)]
    if gone:
        await conn.execute(DELETE_OBJECT_CACHE, [k for k, _ in gone], [k for _, k in gone])
    if cache.put:
        await conn.copy_records_to_table(
            "object_cache", records=cache.put, columns=OBJECT_CACHE_COLUMNS
        )


def _procedure_params(r: ProcedureRecord) -> list[Any]:
    doc = search_document(r)
    return row_values(r, PROCEDURE_COLUMNS) + [
        doc[k] for k in ("name", "description", "tags", "params", "docstring")
    ]


def _execution_columns(records: Sequence[ExecutionRecord]) -> list[list[Any]]:
    rows = [execution_values(e) for e in records]
    return (
        [list(column) for column in zip(*rows, strict=True)]
        if rows
        else [[] for _ in EXECUTION_COLUMNS]
    )


def _last_by(rows: Sequence[Any], key: str) -> list[Any]:
    """``rows`` without earlier duplicates of ``key``: one statement may not upsert a key twice,
    and the last one is what a row-by-row upsert would have kept."""
    return list({getattr(r, key): r for r in rows}.values())


def _columns(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> list[list[Any]]:
    """Rows as one list per column, JSON columns dumped to text."""
    return [
        [json.dumps(r[i]) for r in rows] if name in JSONB_COLUMNS else [r[i] for r in rows]
        for i, name in enumerate(names)
    ]


def _chunks(rows: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), INGEST_CHUNK):
        yield rows[start : start + INGEST_CHUNK]


class PostgresIndex(SqlIndex):
    """The index in a PostgreSQL database; see the module docstring for the design."""

    dialect = POSTGRES
    _rejected = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)
    _failed = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
    _advice = ". Check that the server is up and reachable, then retry"

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self.url = url
        self.where = describe_url(url)
        self.label = f"the PostgreSQL index at {self.where}"
        self._pool = pool
        self.applied_migrations: list[int] = []
        # the sync lock's session, kept between syncs: a new connection costs ~7 ms
        # (TLS negotiation, authentication) where the lock itself is one round trip
        self._lock_conn: asyncpg.Connection | None = None
        self._lock_guard = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    async def connect(cls, target: str | Path) -> Self:
        """Create the pool for the database at URL ``target`` and migrate it."""
        url = str(target)
        where = describe_url(url)
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=POOL_MIN,
                max_size=POOL_MAX,
                init=_init_connection,
                reset=_keep_session,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise IndexUnavailable(
                f"cannot reach the PostgreSQL index at {where}: {_reason(exc)}. Check that the "
                "server is running and the database URL (PROCREG_DATABASE_URL) is right, or "
                "use the embedded SQLite index"
            ) from exc
        index = cls(url, pool)
        try:
            index.applied_migrations = await index._migrate()
        except BaseException:
            await pool.close()
            raise
        return index

    async def _migrate(self) -> list[int]:
        applied: list[int] = []
        newest = max(n for n, _, _ in MIGRATIONS)
        with self._errors():
            async with self._pool.acquire() as conn, conn.transaction():
                # several processes may connect at once: one migrates, the others wait
                await conn.execute(LOCK_MIGRATIONS, MIGRATION_LOCK_KEY)
                await conn.execute(CREATE_MIGRATIONS_TABLE)
                done = {r[0] for r in await conn.fetch(SELECT_MIGRATIONS)}
                if done and max(done) > newest:
                    raise IndexUnavailable(
                        f"the PostgreSQL index at {self.where} has schema migration "
                        f"{max(done)}, newer than this procreg knows ({newest}); upgrade "
                        "procreg or point it at another database"
                    )
                for number, name, script in MIGRATIONS:
                    if number in done:
                        continue
                    if isinstance(script, str):
                        await conn.execute(script)
                    else:
                        await script(conn)
                    await conn.execute(INSERT_MIGRATION, number, name)
                    applied.append(number)
        return applied

    async def close(self) -> None:
        """Close the pool and the sync lock's connection."""
        conn, self._lock_conn = self._lock_conn, None
        try:
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.close(timeout=CONNECT_TIMEOUT_S))
        finally:
            await self._pool.close()

    def _reason(self, exc: BaseException) -> str:
        return _reason(exc)

    async def schema_migrations(self) -> list[int]:
        """Numbers of the applied migrations, ascending."""
        with self._errors():
            return [r[0] for r in await self._pool.fetch(SELECT_MIGRATIONS)]

    # -- sync --------------------------------------------------------------

    async def apply(self, changes: ChangeSet) -> None:
        """Apply ``changes`` and record the new sync state, all in one transaction."""
        with self._errors():
            async with self._pool.acquire() as conn, conn.transaction():
                if changes.full:
                    await conn.execute(DELETE_ALL_DERIVED)
                if changes.delete:
                    await conn.executemany(DELETE_PROCEDURE, [(i,) for i in changes.delete])
                for chunk in _chunks(_last_by(changes.upsert, "id")):
                    await conn.execute(
                        BULK_UPSERT_PROCEDURES,
                        *_columns(
                            [_procedure_params(r) for r in chunk],
                            (*PROCEDURE_COLUMNS, *_SEARCH_INPUTS),
                        ),
                    )
                if changes.invalid:
                    await conn.executemany(
                        UPSERT_INVALID,
                        [
                            _procedure_params(placeholder(i, errs, changes.commit))
                            for i, errs in changes.invalid
                        ],
                    )
                if changes.versions_delete:
                    await conn.executemany(
                        SQL.delete_version, [(t,) for t in changes.versions_delete]
                    )
                for chunk in _chunks(_last_by(changes.versions_upsert, "tag")):
                    await conn.execute(
                        BULK_UPSERT_VERSIONS,
                        *_columns([version_values(v) for v in chunk], VERSION_ROW_COLUMNS),
                    )
                await _put_latest(conn, changes)
                if changes.channels_delete:
                    await conn.executemany(
                        SQL.delete_channel, [(t,) for t in changes.channels_delete]
                    )
                if changes.channels_upsert:
                    await conn.executemany(
                        SQL.upsert_channel,
                        [row_values(c, CHANNEL_COLUMNS) for c in changes.channels_upsert],
                    )
                await conn.execute(
                    SQL.upsert_sync_state, changes.ref, changes.commit, changes.tags_digest
                )
                if changes.object_cache is not None:
                    await _update_cache(conn, changes.object_cache)
                if changes.full:
                    await conn.execute(ANALYZE_DERIVED)

    @contextlib.asynccontextmanager
    async def sync_lock(self, wait: bool = True) -> AsyncIterator[None]:
        """``pg_advisory_lock`` on a dedicated connection: one syncer at a time, database-wide.

        ``wait=False`` raises ConflictError at once if another session (or another
        task on this object) holds it. The connection is kept for the next sync; one
        whose lock state is in doubt (an error or a cancellation mid-call) is
        terminated, which releases the lock on the server.
        """
        if not wait and self._lock_guard.locked():
            raise ConflictError(
                f"another sync holds the lock on the PostgreSQL index at {self.where}; "
                "wait for it to finish"
            )
        async with self._lock_guard:
            conn = await self._lock_connection()
            try:
                with self._errors():
                    if wait:
                        await conn.execute(ADVISORY_LOCK, SYNC_LOCK_KEY)
                    elif not await conn.fetchval(ADVISORY_TRY_LOCK, SYNC_LOCK_KEY):
                        raise ConflictError(
                            f"another sync holds the lock on the PostgreSQL index at "
                            f"{self.where}; wait for it to finish"
                        )
            except ConflictError:
                raise
            except BaseException:
                self._drop_lock_conn()
                raise
            try:
                yield
            finally:
                try:
                    released = await conn.fetchval(ADVISORY_UNLOCK, SYNC_LOCK_KEY)
                except BaseException:
                    self._drop_lock_conn()
                    raise
                if not released:  # never expected: start the next sync on a clean session
                    self._drop_lock_conn()

    async def _lock_connection(self) -> asyncpg.Connection:
        conn = self._lock_conn
        if conn is None or conn.is_closed():
            with self._errors():
                # no command timeout here: waiting for the lock may rightly take long
                conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
            self._lock_conn = conn
        return conn

    def _drop_lock_conn(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            conn.terminate()  # closing the session releases any lock it holds

    async def notify(self, payload: str) -> None:
        """Send ``payload`` on the ``procreg_sync`` channel (LISTEN to be told about syncs)."""
        with self._errors():
            await self._pool.execute(NOTIFY, SYNC_CHANNEL, payload)

    # -- reads (the queries are shared: see registry.index.base) -------------

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any]:
        with self._errors():
            return await self._pool.fetch(sql, *params)

    async def _fetch_together(self, queries: Sequence[Query]) -> list[Sequence[Any]]:
        with self._errors():
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                return [await conn.fetch(sql, *params) for sql, params in queries]

    def _decode(self, row: asyncpg.Record) -> dict[str, Any]:
        return dict(row)

    async def _summaries(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return summary_tuples(await self._fetch(sql, params))

    async def procedure_refs(self, id: str) -> tuple[ProcedureHead | None, list[ReleaseRef]]:
        """What ``get`` needs of ``id`` (see :meth:`SqlIndex.procedure_refs`), one round trip."""
        with self._errors():
            row = await self._pool.fetchrow(SELECT_PROCEDURE_REFS, id)
        assert row is not None  # the FROM is one literal row
        found, tree_id, commit, valid, errors, metadata, releases_json = row.values()
        releases = [ReleaseRef(*r) for r in json.loads(releases_json)]
        head = ProcedureHead(tree_id, commit, valid, errors, metadata) if found else None
        return head, releases

    # -- executions --------------------------------------------------------

    async def record_executions(self, records: Sequence[ExecutionRecord]) -> int:
        """Store runs in one transaction; duplicates by run_id are ignored. Returns new count."""
        if not records:
            return 0
        new = 0
        with self._errors():
            async with self._pool.acquire() as conn, conn.transaction():
                for start in range(0, len(records), INGEST_CHUNK):
                    chunk = records[start : start + INGEST_CHUNK]
                    status = await conn.execute(INSERT_EXECUTIONS, *_execution_columns(chunk))
                    new += int(status.rsplit(" ", 1)[-1])
        return new

    async def metrics(self, id: str) -> Metrics:
        """Run statistics of ``id``: percentile_cont in SQL, grouped overall and per version."""
        with self._errors():
            rows = await self._pool.fetch(SELECT_METRICS, id)
            error_rows = await self._pool.fetch(SELECT_ERROR_COUNTS, id)
            caller_rows = await self._pool.fetch(SELECT_CALLER_COUNTS, id)
        errors = _counts_by_group(error_rows, "error_type", UNKNOWN_ERROR)
        callers = _counts_by_group(caller_rows, "caller", "")
        overall = VersionMetrics()
        versions: dict[str, VersionMetrics] = {}
        for r in rows:
            group = None if r["overall"] else r["version"] or UNVERSIONED
            stats = VersionMetrics(
                runs=r["runs"],
                success_rate=success_rate(r["runs"], r["successes"]),
                p50_ms=r["p50"],
                p95_ms=r["p95"],
                last_run=r["last_run"],
                errors=dict(sorted(errors.get(group, {}).items())),
                callers=dict(sorted(callers.get(group, {}).items())),
            )
            if group is None:
                overall = stats
            else:
                versions[group] = stats
        if not overall.runs:
            return Metrics()
        return Metrics(**overall.model_dump(), versions=dict(sorted(versions.items())))


def _counts_by_group(
    rows: Sequence[asyncpg.Record], column: str, missing: str
) -> dict[str | None, dict[str, int]]:
    """``{version or None (overall): {value: count}}`` from ``(version, column, n)`` rows."""
    counts: dict[str | None, dict[str, int]] = {}
    for r in rows:
        key = r[column] or missing
        for group in (None, r["version"] or UNVERSIONED):
            bucket = counts.setdefault(group, {})
            bucket[key] = bucket.get(key, 0) + r["n"]
    return counts
