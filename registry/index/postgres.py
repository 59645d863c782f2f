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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import asyncpg

from registry.errors import ConflictError, IndexRejected, IndexUnavailable
from registry.index.contract import (
    CHANNEL_COLUMNS,
    EXECUTION_COLUMNS,
    PROCEDURE_COLUMNS,
    SUMMARY_COLUMNS,
    SYNC_CHANNEL,
    SYNC_STATE_COLUMNS,
    UNKNOWN_ERROR,
    UNVERSIONED,
    VERSION_COLUMNS,
    VERSION_SORT_COLUMNS,
    ChangeSet,
    ChannelMove,
    ExecutionRecord,
    Metrics,
    Order,
    ProcedureRecord,
    ProcedureRow,
    SyncState,
    VersionMetrics,
    VersionRecord,
    canonical_snapshot,
    column_list,
    placeholder,
    row_values,
    search_document,
    semver_key,
    success_rate,
    trusted_procedure_row,
    trusted_version,
    tsquery,
    upsert_sql,
    version_values,
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
# pg_advisory_lock keys (bigint): "procsync" and "procmigr" as ASCII
SYNC_LOCK_KEY = 0x70726F6373796E63
MIGRATION_LOCK_KEY = 0x70726F636D696772


async def _rekey_versions(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch("SELECT tag, version FROM versions")
    await conn.executemany(
        "UPDATE versions SET pre_key = $2 WHERE tag = $1",
        [(r["tag"], semver_key(r["version"]).pre_key) for r in rows],
    )


# (number, name, step): a step is SQL, or an async function of the connection where
# SQL cannot say it (sort keys computed in Python)
MIGRATIONS: tuple[tuple[int, str, str | Callable[[asyncpg.Connection], Awaitable[None]]], ...] = (
    (
        1,
        "initial schema",
        """
        CREATE TABLE procedures (
            id text COLLATE "C" PRIMARY KEY,
            name text COLLATE "C" NOT NULL,
            description text NOT NULL,
            category text NOT NULL,
            tags jsonb NOT NULL,
            status text NOT NULL,
            entry_point text NOT NULL,
            parameters jsonb NOT NULL,
            docstring text,
            metadata jsonb NOT NULL,
            tree_id text NOT NULL,
            "commit" text NOT NULL,
            valid boolean NOT NULL,
            errors jsonb NOT NULL,
            search tsvector NOT NULL
        );
        CREATE INDEX procedures_search ON procedures USING gin (search);
        CREATE INDEX procedures_tags ON procedures USING gin (tags jsonb_path_ops);
        CREATE INDEX procedures_category ON procedures (category);
        CREATE TABLE versions (
            tag text COLLATE "C" PRIMARY KEY,
            id text COLLATE "C" NOT NULL,
            version text COLLATE "C" NOT NULL,
            "commit" text NOT NULL,
            tree_id text,
            tagger_name text,
            tagger_email text,
            tagged_at timestamptz,
            bump text,
            breaking boolean,
            lines_added integer CHECK (lines_added >= 0),
            lines_removed integer CHECK (lines_removed >= 0),
            reasons jsonb NOT NULL,
            message text NOT NULL,
            major bigint NOT NULL,
            minor bigint NOT NULL,
            patch bigint NOT NULL,
            is_release smallint NOT NULL,
            pre_key text COLLATE "C" NOT NULL,
            UNIQUE (id, version)
        );
        CREATE INDEX versions_order ON versions (id, major, minor, patch, is_release, pre_key);
        CREATE TABLE channels (
            tag text COLLATE "C" PRIMARY KEY,
            id text COLLATE "C" NOT NULL,
            channel text COLLATE "C" NOT NULL,
            seq integer NOT NULL CHECK (seq >= 0),
            version text NOT NULL,
            "commit" text NOT NULL,
            moved_by text,
            moved_at timestamptz,
            action text,
            reason text,
            UNIQUE (id, channel, seq)
        );
        CREATE TABLE executions (
            run_id text COLLATE "C" PRIMARY KEY,
            id text COLLATE "C" NOT NULL,
            version text,
            "commit" text,
            tree_id text,
            python_version text,
            caller text,
            started_at timestamptz NOT NULL,
            duration_ms double precision NOT NULL CHECK (duration_ms >= 0),
            outcome text NOT NULL CHECK (outcome IN ('success', 'failure')),
            error_type text,
            error_message text,
            cpu_ms double precision,
            max_rss_kb bigint,
            imported boolean NOT NULL
        );
        CREATE INDEX executions_by_id ON executions (id, started_at);
        CREATE INDEX executions_by_version ON executions (id, version, started_at);
        CREATE TABLE sync_state (
            ref text COLLATE "C" PRIMARY KEY,
            "commit" text,
            tags_digest text,
            synced_at timestamptz NOT NULL
        );
        """,
    ),
    (
        2,
        "name-ordered indexes; health per procedure",
        # A GIN pending list is scanned linearly by every search until vacuum merges it:
        # after a reindex that is 10,000 rows, so entries go straight into the index.
        # ORDER BY lower(name), id LIMIT n reads the first n index entries instead of sorting.
        # Health is kept by a statement trigger so every insert path counts; its transition
        # table holds only rows really inserted (ON CONFLICT DO NOTHING skips duplicates),
        # and ids are upserted in order so concurrent ingests lock rows in the same order.
        """
        ALTER INDEX procedures_search SET (fastupdate = off);
        SELECT gin_clean_pending_list('procedures_search');
        DROP INDEX procedures_category;
        CREATE INDEX procedures_category ON procedures (category, lower(name), id);
        CREATE INDEX procedures_name ON procedures (lower(name), id);
        CREATE TABLE procedure_health (
            id text COLLATE "C" PRIMARY KEY,
            runs bigint NOT NULL CHECK (runs >= 0),
            successes bigint NOT NULL CHECK (successes >= 0)
        );
        INSERT INTO procedure_health (id, runs, successes)
        SELECT id, count(*), count(*) FILTER (WHERE outcome = 'success')
        FROM executions GROUP BY id;
        CREATE FUNCTION procreg_count_runs() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO procedure_health AS h (id, runs, successes)
            SELECT id, count(*), count(*) FILTER (WHERE outcome = 'success')
            FROM new_runs GROUP BY id ORDER BY id
            ON CONFLICT (id) DO UPDATE
                SET runs = h.runs + excluded.runs, successes = h.successes + excluded.successes;
            RETURN NULL;
        END
        $$;
        CREATE TRIGGER executions_count_runs AFTER INSERT ON executions
            REFERENCING NEW TABLE AS new_runs
            FOR EACH STATEMENT EXECUTE FUNCTION procreg_count_runs();
        """,
    ),
    (
        3,
        "runs record how they were isolated",
        # executions and procedure_health are run history, not derived data: a reindex
        # (DELETE_ALL_DERIVED) never touches them.
        "ALTER TABLE executions ADD COLUMN isolation text;",
    ),
    (
        4,
        "versions order their build metadata (pre_key recomputed)",
        _rekey_versions,
    ),
)

LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock($1)"
# The bookkeeping table itself is the one thing created before migrations can be read.
CREATE_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"""
SELECT_MIGRATIONS = "SELECT version FROM schema_migrations ORDER BY version"
INSERT_MIGRATION = (
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())"
)


def _dollars(n: int) -> list[str]:
    return [f"${i}" for i in range(1, n + 1)]


DELETE_ALL_DERIVED = (
    "DELETE FROM procedures; DELETE FROM versions; DELETE FROM channels; DELETE FROM sync_state"
)
# after a full apply the planner's statistics describe the old tables (or none at all,
# until autovacuum gets round to it), and a bad estimate turns a search into a scan
ANALYZE_DERIVED = "ANALYZE procedures, procedure_health"
DELETE_PROCEDURE = "DELETE FROM procedures WHERE id = $1"
_SEARCH_VECTOR = """setweight(to_tsvector('simple', {}), 'A')
    || setweight(to_tsvector('simple', {}), 'B')
    || setweight(to_tsvector('simple', {}), 'B')
    || setweight(to_tsvector('simple', {}), 'C')
    || setweight(to_tsvector('simple', {}), 'D')"""
UPSERT_PROCEDURE = upsert_sql(
    "procedures",
    (*PROCEDURE_COLUMNS, "search"),
    "id",
    [*_dollars(14), _SEARCH_VECTOR.format(*_dollars(19)[14:])],
)
# the placeholder is only inserted when the id is new; a known row keeps its content
UPSERT_INVALID = (
    UPSERT_PROCEDURE.split(" ON CONFLICT ")[0]
    + ' ON CONFLICT ("id") DO UPDATE SET valid = false, errors = excluded.errors'
)
DELETE_VERSION = "DELETE FROM versions WHERE tag = $1"
_VERSION_ALL = VERSION_COLUMNS + VERSION_SORT_COLUMNS

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
    "versions", _VERSION_ALL, "tag", _VERSION_ALL, [_unnest_value(c) for c in _VERSION_ALL]
)
DELETE_CHANNEL = "DELETE FROM channels WHERE tag = $1"
UPSERT_CHANNEL = upsert_sql("channels", CHANNEL_COLUMNS, "tag", _dollars(len(CHANNEL_COLUMNS)))
UPSERT_SYNC_STATE = upsert_sql("sync_state", SYNC_STATE_COLUMNS, "ref", [*_dollars(3), "now()"])
SELECT_SYNC_STATE = f"SELECT {column_list(SYNC_STATE_COLUMNS)} FROM sync_state WHERE ref = $1"
SELECT_ALL_SYNC_STATES = f"SELECT {column_list(SYNC_STATE_COLUMNS)} FROM sync_state"

# Procedure queries run in two steps: the inner query filters, ranks, orders and limits
# on narrow columns; only the rows it returns get their latest version and full columns.
# Sort keys travel out of the inner query as sort_* so both levels order identically.
HEALTH_JOIN = "LEFT JOIN procedure_health h ON h.id = p.id"
# a procedure without runs has no success rate, so it can never pass min_success_rate
HEALTH_INNER_JOIN = "JOIN procedure_health h ON h.id = p.id"
SUCCESS_RATE = "h.successes::float8 / NULLIF(h.runs, 0)"
SELECT_PAGE = """SELECT p.id AS sort_id, {rank} AS sort_rank, lower(p.name) AS sort_name{health}
FROM procedures p {joins} {where} ORDER BY {order} LIMIT {limit}"""
PAGE_HEALTH = f", {SUCCESS_RATE} AS sort_rate, coalesce(h.runs, 0) AS sort_runs"
_SELECT_ROWS = """SELECT {columns},
    (SELECT v.version FROM versions v WHERE v.id = p.id
     ORDER BY v.major DESC, v.minor DESC, v.patch DESC, v.is_release DESC, v.pre_key DESC
     LIMIT 1) AS latest_version,
    coalesce(h.runs, 0) AS runs, {success_rate} AS success_rate
FROM ({{page}}) s JOIN procedures p ON p.id = s.sort_id {health_join}
ORDER BY {{order}}"""
SELECT_PROCEDURES = _SELECT_ROWS.format(
    columns=column_list(PROCEDURE_COLUMNS, "p"), success_rate=SUCCESS_RATE, health_join=HEALTH_JOIN
)
SELECT_SUMMARIES = _SELECT_ROWS.format(
    columns=column_list(SUMMARY_COLUMNS, "p"), success_rate=SUCCESS_RATE, health_join=HEALTH_JOIN
)
RANK_TEXT = "ts_rank_cd(p.search, to_tsquery('simple', {}))"
RANK_NONE = "NULL::real"
WHERE_TEXT = "p.search @@ to_tsquery('simple', {})"
WHERE_CATEGORY = "p.category = {}"
WHERE_STATUS = "p.status = {}"
WHERE_VALID = "p.valid = {}"
WHERE_ID = "p.id = {}"
WHERE_TAGS = "p.tags @> {}::jsonb"
WHERE_MIN_SUCCESS = f"{SUCCESS_RATE} >= {{}}"
ORDER_BY: dict[str, str] = {
    "relevance": "sort_rank DESC, sort_name, sort_id",
    "name": "sort_name, sort_id",
    "health": "sort_rate DESC NULLS LAST, sort_runs DESC, sort_name, sort_id",
}

SELECT_VERSIONS = f"""SELECT {column_list(VERSION_COLUMNS)} FROM versions WHERE id = $1
ORDER BY major, minor, patch, is_release, pre_key, tag"""
SELECT_ALL_VERSIONS = f"SELECT {column_list(VERSION_COLUMNS)} FROM versions"
# get's two questions in one round trip: the procedure row (NULLs when absent) and its
# releases as a JSON array in SELECT_VERSIONS order
SELECT_PROCEDURE_AND_VERSIONS = f"""SELECT {column_list(PROCEDURE_COLUMNS, "p")},
    (SELECT v.version FROM versions v WHERE v.id = p.id
     ORDER BY v.major DESC, v.minor DESC, v.patch DESC, v.is_release DESC, v.pre_key DESC
     LIMIT 1) AS latest_version,
    coalesce(h.runs, 0) AS runs, {SUCCESS_RATE} AS success_rate,
    (SELECT coalesce(json_agg(v ORDER BY v.major, v.minor, v.patch, v.is_release, v.pre_key,
        v.tag), '[]'::json)::text
     FROM (SELECT {column_list(VERSION_COLUMNS + VERSION_SORT_COLUMNS)} FROM versions
           WHERE id = q.id) v) AS versions_json
FROM (SELECT $1::text AS id) q LEFT JOIN procedures p ON p.id = q.id {HEALTH_JOIN}"""
SELECT_VERSION_TAGS = "SELECT tag FROM versions"
SELECT_PROCEDURE_TREES = "SELECT id, tree_id FROM procedures"
SELECT_CHANNEL_TAGS = "SELECT tag FROM channels"
SELECT_CHANNELS = f"""SELECT {column_list(CHANNEL_COLUMNS)} FROM channels WHERE id = $1
ORDER BY channel, seq"""
SELECT_ALL_CHANNELS = f"SELECT {column_list(CHANNEL_COLUMNS)} FROM channels"
SELECT_CURRENT_CHANNELS = f"""SELECT DISTINCT ON (channel) {column_list(CHANNEL_COLUMNS)}
FROM channels WHERE id = $1 ORDER BY channel, seq DESC"""

_UNNEST_TYPES = {
    "started_at": "timestamptz",
    "duration_ms": "float8",
    "cpu_ms": "float8",
    "max_rss_kb": "int8",
    "imported": "bool",
}
INSERT_EXECUTIONS = (
    f"INSERT INTO executions ({column_list(EXECUTION_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(
        f"${i}::{_UNNEST_TYPES.get(c, 'text')}[]" for i, c in enumerate(EXECUTION_COLUMNS, 1)
    )
    + ") ON CONFLICT (run_id) DO NOTHING"
)
SELECT_EXECUTIONS = f"""SELECT {column_list(EXECUTION_COLUMNS)} FROM executions
WHERE id = $1 AND ($2::text IS NULL OR version = $2)
ORDER BY started_at DESC, run_id DESC LIMIT $3"""
COUNT_EXECUTIONS = "SELECT count(*) FROM executions WHERE ($1::text IS NULL OR id = $1)"
SELECT_METRICS = """SELECT GROUPING(version) = 1 AS overall, version, count(*) AS runs,
    count(*) FILTER (WHERE outcome = 'success') AS successes,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95,
    max(started_at) AS last_run
FROM executions WHERE id = $1
GROUP BY GROUPING SETS ((), (version))"""
SELECT_ERROR_COUNTS = """SELECT version, error_type, count(*) AS n FROM executions
WHERE id = $1 AND outcome = 'failure' GROUP BY version, error_type"""
SELECT_CALLER_COUNTS = """SELECT version, caller, count(*) AS n FROM executions
WHERE id = $1 GROUP BY version, caller"""
SELECT_RECENT_OUTCOMES = """SELECT outcome = 'success' FROM executions
WHERE id = $1 AND ($2::text IS NULL OR version = $2)
ORDER BY started_at DESC, run_id DESC LIMIT $3"""
NOTIFY = "SELECT pg_notify($1, $2)"
ADVISORY_LOCK = "SELECT pg_advisory_lock($1)"
ADVISORY_TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
ADVISORY_UNLOCK = "SELECT pg_advisory_unlock($1)"


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


def _procedure_params(r: ProcedureRecord) -> list[Any]:
    doc = search_document(r)
    return row_values(r, PROCEDURE_COLUMNS) + [
        doc[k] for k in ("name", "description", "tags", "params", "docstring")
    ]


def _execution_columns(records: Sequence[ExecutionRecord]) -> list[list[Any]]:
    return [[getattr(e, c) for e in records] for c in EXECUTION_COLUMNS]


def _procedure_row(row: asyncpg.Record) -> ProcedureRow:
    return trusted_procedure_row(dict(row))


def _procedure_row_values(values: dict[str, Any]) -> ProcedureRow:
    return trusted_procedure_row(values)


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


class _Params:
    """Numbers ``$n`` placeholders in the order values are added."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, fragment: str, value: Any) -> str:
        self.values.append(value)
        return fragment.format(f"${len(self.values)}")


class PostgresIndex:
    """The index in a PostgreSQL database; see the module docstring for the design."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self.url = url
        self.where = describe_url(url)
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
            raise IndexRejected(
                f"the PostgreSQL index at {self.where} refused the change ({exc}); nothing "
                "was written. The data breaks an index constraint: fix its source and sync again"
            ) from exc
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise IndexUnavailable(
                f"the PostgreSQL index at {self.where} failed: {_reason(exc)}. "
                "Check that the server is up and reachable, then retry"
            ) from exc

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
                    await conn.executemany(DELETE_VERSION, [(t,) for t in changes.versions_delete])
                for chunk in _chunks(_last_by(changes.versions_upsert, "tag")):
                    await conn.execute(
                        BULK_UPSERT_VERSIONS,
                        *_columns([version_values(v) for v in chunk], _VERSION_ALL),
                    )
                if changes.channels_delete:
                    await conn.executemany(DELETE_CHANNEL, [(t,) for t in changes.channels_delete])
                if changes.channels_upsert:
                    await conn.executemany(
                        UPSERT_CHANNEL,
                        [row_values(c, CHANNEL_COLUMNS) for c in changes.channels_upsert],
                    )
                await conn.execute(
                    UPSERT_SYNC_STATE, changes.ref, changes.commit, changes.tags_digest
                )
                if changes.full:
                    await conn.execute(ANALYZE_DERIVED)

    async def sync_state(self, ref: str) -> SyncState | None:
        """What was last indexed for ``ref``."""
        with self._errors():
            row = await self._pool.fetchrow(SELECT_SYNC_STATE, ref)
        return None if row is None else SyncState.model_validate(dict(row))

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

    # -- queries -----------------------------------------------------------

    async def _select_procedures(
        self,
        params: _Params,
        where: Sequence[str],
        rank: str = RANK_NONE,
        order: Order = "name",
        limit: int | None = None,
        min_success: bool = False,
        summary: bool = False,
    ) -> list[Any]:
        if order == "relevance" and rank == RANK_NONE:
            order = "name"
        # health is joined before the limit only when the filter or the order needs it
        joins = HEALTH_INNER_JOIN if min_success else HEALTH_JOIN if order == "health" else ""
        page = SELECT_PAGE.format(
            rank=rank,
            health=PAGE_HEALTH if joins else "",
            joins=joins,
            where=("WHERE " + " AND ".join(where)) if where else "",
            order=ORDER_BY[order],
            limit=params.add("{}", limit),
        )
        template = SELECT_SUMMARIES if summary else SELECT_PROCEDURES
        sql = template.format(page=page, order=ORDER_BY[order])
        with self._errors():
            rows = await self._pool.fetch(sql, *params.values)
        if summary:
            return [dict(r) for r in rows]
        return [_procedure_row(r) for r in rows]

    async def search(
        self,
        text: str | None = None,
        category: str | None = None,
        tags: Sequence[str] = (),
        status: str | None = None,
        valid: bool | None = None,
        limit: int = 50,
        order: Order = "relevance",
        min_success_rate: float | None = None,
    ) -> list[ProcedureRow]:
        """Procedures matching every filter; blank ``text`` means no text filter."""
        return await self._search(
            text, category, tags, status, valid, limit, order, min_success_rate
        )

    async def search_summaries(
        self,
        text: str | None = None,
        category: str | None = None,
        tags: Sequence[str] = (),
        status: str | None = None,
        valid: bool | None = None,
        limit: int = 50,
        order: Order = "relevance",
        min_success_rate: float | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`search` with only the summary columns (a list of 10,000 stays fast)."""
        return await self._search(
            text, category, tags, status, valid, limit, order, min_success_rate, summary=True
        )

    async def _search(
        self,
        text: str | None,
        category: str | None,
        tags: Sequence[str],
        status: str | None,
        valid: bool | None,
        limit: int,
        order: Order,
        min_success_rate: float | None,
        summary: bool = False,
    ) -> list[Any]:
        if limit <= 0:
            return []
        params = _Params()
        where: list[str] = []
        rank = RANK_NONE
        if text is not None and text.strip():
            query = tsquery(text)
            if query is None:  # only punctuation: nothing can match
                return []
            query_param = params.add("{}", query)
            rank = RANK_TEXT.format(query_param)
            where.append(WHERE_TEXT.format(query_param))
        if category is not None:
            where.append(params.add(WHERE_CATEGORY, category))
        if tags:
            where.append(params.add(WHERE_TAGS, list(tags)))
        if status is not None:
            where.append(params.add(WHERE_STATUS, status))
        if valid is not None:
            where.append(params.add(WHERE_VALID, valid))
        if min_success_rate is not None:
            where.append(params.add(WHERE_MIN_SUCCESS, min_success_rate))
        return await self._select_procedures(
            params,
            where,
            rank,
            order,
            limit,
            min_success=min_success_rate is not None,
            summary=summary,
        )

    async def get_procedure(self, id: str) -> ProcedureRow | None:
        """One procedure, or None."""
        params = _Params()
        rows = await self._select_procedures(params, [params.add(WHERE_ID, id)])
        return rows[0] if rows else None

    async def procedure_and_versions(
        self, id: str
    ) -> tuple[ProcedureRow | None, list[VersionRecord]]:
        """:meth:`get_procedure` and :meth:`versions` in one round trip."""
        with self._errors():
            row = await self._pool.fetchrow(SELECT_PROCEDURE_AND_VERSIONS, id)
        assert row is not None  # the FROM is one literal row
        values = dict(row)
        versions_json = values.pop("versions_json")
        versions = []
        for v in json.loads(versions_json):
            for column in VERSION_SORT_COLUMNS:
                del v[column]
            versions.append(trusted_version(v))
        return (None if values["id"] is None else _procedure_row_values(values)), versions

    async def list_procedures(self) -> list[ProcedureRow]:
        """Every procedure, by id."""
        return sorted(await self._select_procedures(_Params(), []), key=lambda r: r.id)

    async def procedure_trees(self) -> dict[str, str]:
        """``{id: tree id}`` of every procedure (what a rebuild compares, without the rows)."""
        with self._errors():
            return {r[0]: r[1] for r in await self._pool.fetch(SELECT_PROCEDURE_TREES)}

    async def versions(self, id: str) -> list[VersionRecord]:
        """Releases of ``id``, ascending semver."""
        with self._errors():
            rows = await self._pool.fetch(SELECT_VERSIONS, id)
        return [trusted_version(dict(r)) for r in rows]

    async def all_version_tags(self) -> set[str]:
        """Every release tag held."""
        with self._errors():
            return {r[0] for r in await self._pool.fetch(SELECT_VERSION_TAGS)}

    async def all_channel_tags(self) -> set[str]:
        """Every channel move tag held."""
        with self._errors():
            return {r[0] for r in await self._pool.fetch(SELECT_CHANNEL_TAGS)}

    async def channels(self, id: str) -> list[ChannelMove]:
        """Channel history of ``id``."""
        with self._errors():
            rows = await self._pool.fetch(SELECT_CHANNELS, id)
        return [ChannelMove.model_validate(dict(r)) for r in rows]

    async def current_channels(self, id: str) -> dict[str, ChannelMove]:
        """Each channel of ``id`` at its highest seq."""
        with self._errors():
            rows = await self._pool.fetch(SELECT_CURRENT_CHANNELS, id)
        return {r["channel"]: ChannelMove.model_validate(dict(r)) for r in rows}

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

    async def executions(
        self, id: str, version: str | None = None, limit: int | None = None
    ) -> list[ExecutionRecord]:
        """Runs of ``id``, newest first (``limit`` None: all)."""
        if limit is not None and limit <= 0:
            return []
        with self._errors():
            rows = await self._pool.fetch(SELECT_EXECUTIONS, id, version, limit)
        return [ExecutionRecord.model_validate(dict(r)) for r in rows]

    async def count_executions(self, id: str | None = None) -> int:
        """How many runs are recorded."""
        with self._errors():
            return int(await self._pool.fetchval(COUNT_EXECUTIONS, id))

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

    async def recent_outcomes(self, id: str, version: str | None, n: int) -> list[bool]:
        """Success flags of the last ``n`` runs, newest first."""
        if n <= 0:
            return []
        with self._errors():
            rows = await self._pool.fetch(SELECT_RECENT_OUTCOMES, id, version, n)
        return [bool(r[0]) for r in rows]

    async def snapshot(self) -> dict[str, Any]:
        """Canonical dump of the derived tables (see ``contract.canonical_snapshot``)."""
        with self._errors():
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                page = SELECT_PAGE.format(
                    rank=RANK_NONE, health="", joins="", where="", order="sort_id", limit="ALL"
                )
                sql = SELECT_PROCEDURES.format(page=page, order="sort_id")
                procedures = [_procedure_row(r) for r in await conn.fetch(sql)]
                versions = [trusted_version(dict(r)) for r in await conn.fetch(SELECT_ALL_VERSIONS)]
                channels = [
                    ChannelMove.model_validate(dict(r))
                    for r in await conn.fetch(SELECT_ALL_CHANNELS)
                ]
                states = [
                    SyncState.model_validate(dict(r))
                    for r in await conn.fetch(SELECT_ALL_SYNC_STATES)
                ]
        return canonical_snapshot(procedures, versions, channels, states)


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
