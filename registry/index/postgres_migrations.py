"""The PostgreSQL index's schema: its numbered migrations.

A migration never changes once released, so its statements stay literal here
(the queries of today's schema are in :mod:`registry.index.sql` and
:mod:`registry.index.postgres`). Connections that migrate at once take
``pg_advisory_xact_lock(MIGRATION_LOCK_KEY)``: one migrates, the others wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from registry.index.contract import semver_key

MIGRATION_LOCK_KEY = 0x70726F636D696772
"""The pg_advisory_lock key (bigint) of migrating: "procmigr" as ASCII."""


async def _rekey_versions(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch("SELECT tag, version FROM versions")
    await conn.executemany(
        "UPDATE versions SET pre_key = $2 WHERE tag = $1",
        [(r["tag"], semver_key(r["version"]).pre_key) for r in rows],
    )


QUEUE_TABLES = """
ALTER TABLE executions ADD COLUMN job_id bigint, ADD COLUMN attempt integer,
    ADD COLUMN worker text;
CREATE INDEX executions_by_job ON executions (job_id) WHERE job_id IS NOT NULL;
CREATE TABLE job_attempts (
    job_id bigint NOT NULL,
    attempt integer NOT NULL CHECK (attempt >= 1),
    worker text NOT NULL,
    pid integer,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    outcome text CHECK (outcome IN ('success', 'failure', 'error', 'lost')),
    run_id text,
    result jsonb,
    error text,
    version text,
    "commit" text,
    tree_id text,
    PRIMARY KEY (job_id, attempt)
);
CREATE FUNCTION procreg_notify_job_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('procreg_job_done', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER procreg_job_done AFTER UPDATE OF status ON procrastinate_jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION procreg_notify_job_done();
CREATE OR REPLACE FUNCTION procreg_count_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO procedure_health AS h (id, runs, successes)
    SELECT id, count(*), count(*) FILTER (WHERE outcome = 'success')
    FROM new_runs WHERE coalesce(error_type, '') <> 'WorkerLost' GROUP BY id ORDER BY id
    ON CONFLICT (id) DO UPDATE
        SET runs = h.runs + excluded.runs, successes = h.successes + excluded.successes;
    RETURN NULL;
END
$$;
"""
"""Queued runs: run records name their job, attempt and worker; one row per attempt
(with the result ``Registry.result`` returns); a NOTIFY when a job reaches a final state;
health no longer counts the run record of an attempt whose worker died (``WorkerLost``)."""


async def _queue_schema(conn: asyncpg.Connection) -> None:
    # procrastinate's own tables and functions, as the installed procrastinate ships them
    # (a database it already set up keeps its schema; its upgrades are later migrations)
    from procrastinate.schema import SchemaManager

    if await conn.fetchval("SELECT to_regclass('procrastinate_jobs')") is None:
        await conn.execute(SchemaManager.get_schema())
    await conn.execute(QUEUE_TABLES)


# Numbers need not be contiguous: a migration is applied when its number is not recorded,
# whatever the numbers around it.
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
    (
        5,
        "channel moves say when they took the channel out of service",
        "ALTER TABLE channels ADD COLUMN out_of_service boolean;",
    ),
    (
        6,
        "runs record the requests their network proxy refused",
        "ALTER TABLE executions ADD COLUMN network_denied text;",
    ),
    (
        7,
        "queued runs: procrastinate's schema, job columns on runs, job attempts",
        _queue_schema,
    ),
    (
        8,
        "what git objects already proved (validations by tree id), so a rebuild reuses them",
        """
        CREATE TABLE object_cache (
            kind text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            fingerprint text NOT NULL,
            value text NOT NULL,
            PRIMARY KEY (kind, key)
        );
        """,
    ),
    (
        9,
        "each procedure's latest version is kept, not computed per listed row",
        """CREATE TABLE latest_versions (
            id text PRIMARY KEY,
            version text NOT NULL
        );
        INSERT INTO latest_versions (id, version)
        SELECT DISTINCT ON (id) id, version FROM versions
        ORDER BY id, major DESC, minor DESC, patch DESC, is_release DESC, pre_key DESC;""",
    ),
    (
        10,
        "latest_versions.id collates as C like procedures.id, so joins use its primary key",
        # with the default collation its index could not serve `lv.id = p.id` (C): every
        # search joined it by a hash over all 10,000 rows
        'ALTER TABLE latest_versions ALTER COLUMN id TYPE text COLLATE "C";',
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
