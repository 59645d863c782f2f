"""The SQLite index's schema: its numbered migrations, for the index file and the run file.

A migration never changes once released, so its statements stay literal here
(the queries of today's schema are in :mod:`registry.index.sql` and
:mod:`registry.index.sqlite`). Migrations 1 and 2 ran before the run file
existed; from migration 3 on, the run file is attached as schema ``runs``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from registry.index.contract import (
    PROCEDURE_COLUMNS,
    ProcedureRecord,
    semver_key,
)
from registry.index.fulltext import search_document
from registry.index.sql import column_list

RUNS_SCHEMA = "runs"
"""The schema name the run file is attached under."""

JSON_COLUMNS = frozenset({"tags", "parameters", "metadata", "errors", "reasons"})
"""Columns that hold JSON text."""

INSERT_PROCEDURE_FTS = """INSERT INTO procedures_fts
    (rowid, name, description, tags, params, docstring)
VALUES (?, ?, ?, ?, ?, ?)"""


def fts_params(r: ProcedureRecord) -> tuple[str, ...]:
    """The text of the FTS columns of ``r``, in INSERT_PROCEDURE_FTS order."""
    doc = search_document(r)
    return (doc["name"], doc["description"], doc["tags"], doc["params"], doc["docstring"])


def _json_decoded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: json.loads(v) if k in JSON_COLUMNS else v for k, v in values.items()}


def _fill_fts(conn: sqlite3.Connection) -> None:
    """Migration step: write every procedure's FTS row under its ``fts_rowid``."""
    columns = column_list(PROCEDURE_COLUMNS)
    rows = []
    for row in conn.execute(f"SELECT fts_rowid, {columns} FROM procedures"):
        values = dict(row)
        rowid = values.pop("fts_rowid")
        rows.append((rowid, *fts_params(ProcedureRecord.model_validate(_json_decoded(values)))))
    conn.executemany(INSERT_PROCEDURE_FTS, rows)


# Migrations 1 and 2 ran before the run file existed; they run with it detached.
ATTACHED_FROM = 3
# The columns executions had then (frozen: later columns never existed in main.executions).
_OLD_RUN_COLUMNS = (
    "run_id",
    "id",
    "version",
    "commit",
    "tree_id",
    "python_version",
    "caller",
    "started_at",
    "duration_ms",
    "outcome",
    "error_type",
    "error_message",
    "cpu_ms",
    "max_rss_kb",
    "imported",
)
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
    (
        5,
        "channel moves say when they took the channel out of service",
        ("ALTER TABLE channels ADD COLUMN out_of_service INTEGER",),
    ),
    (
        6,
        "what git objects already proved (validations by tree id), so a rebuild reuses them",
        (
            """CREATE TABLE object_cache (
                kind TEXT NOT NULL,
                key TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (kind, key)
            )""",
        ),
    ),
    (
        7,
        "each procedure's latest version is kept, not computed per listed row",
        (
            """CREATE TABLE latest_versions (
                id TEXT PRIMARY KEY,
                version TEXT NOT NULL
            ) WITHOUT ROWID""",
            """INSERT INTO latest_versions (id, version)
            SELECT id, version FROM (
                SELECT id, version, row_number() OVER (PARTITION BY id
                    ORDER BY major DESC, minor DESC, patch DESC, is_release DESC, pre_key DESC
                ) AS n FROM versions
            ) WHERE n = 1""",
        ),
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
    (
        2,
        "runs record the requests their network proxy refused",
        ("ALTER TABLE runs.executions ADD COLUMN network_denied TEXT",),
    ),
    (
        3,
        "runs name the queued job, its attempt and the worker (PostgreSQL runs them)",
        (
            "ALTER TABLE runs.executions ADD COLUMN job_id INTEGER",
            "ALTER TABLE runs.executions ADD COLUMN attempt INTEGER",
            "ALTER TABLE runs.executions ADD COLUMN worker TEXT",
            # the run record of an attempt whose worker died is not counted (as PostgreSQL)
            "DROP TRIGGER runs.executions_count_runs",
            """CREATE TRIGGER runs.executions_count_runs AFTER INSERT ON executions
            WHEN coalesce(new.error_type, '') <> 'WorkerLost' BEGIN
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
