"""One contract, two backends: every test here runs on SQLite and on PostgreSQL.

PostgreSQL tests use the ``pg_url`` fixture (a fresh database each) and skip
without a server unless ``PROCREG_REQUIRE_POSTGRES=1``. Tests are plain sync
functions that drive the async API with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import semver

from registry.core.network import NetworkDenial
from registry.core.tags import version_key
from registry.errors import ConflictError, IndexRejected, IndexUnavailable
from registry.index.connect import connect_index
from registry.index.contract import (
    CHANNEL_COLUMNS,
    EXECUTION_COLUMNS,
    PROCEDURE_COLUMNS,
    ChangeSet,
    ChannelMoveRecord,
    ExecutionRecord,
    IndexBackend,
    ProcedureRecord,
    SearchQuery,
    VersionRecord,
    row_values,
    semver_key,
    version_values,
)
from registry.index.fulltext import fts5_query, tsquery
from registry.index.sql import column_list
from tests.helpers import REPO_ROOT

REF = "refs/heads/main"
T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
# the index file's on SQLite (6: what git objects proved; 7: latest versions kept);
# PostgreSQL has one schema: 6 = the run file's 2 (network denials), 7 the queue,
# 8 = SQLite's 6, 9 = SQLite's 7, 10 latest_versions.id collated as C
MAIN_MIGRATIONS = [1, 2, 3, 4, 5, 6, 7]
PG_MIGRATIONS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def all_migrations(target: str) -> list[int]:
    return PG_MIGRATIONS if target.startswith("postgresql://") else MAIN_MIGRATIONS


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the index lives: a SQLite file inside a fake .git, or a fresh PostgreSQL db."""
    if request.param == "sqlite":
        return str(tmp_path / "repo.git" / "procreg" / "index.sqlite3")
    return request.getfixturevalue("pg_url")


def run(target: str, body: Callable[[IndexBackend], Awaitable[Any]]) -> Any:
    """Open the index at ``target``, run ``body`` with it, close it."""

    async def main() -> Any:
        async with await connect_index(target) as index:
            return await body(index)

    return asyncio.run(main())


def proc(id: str, **fields: Any) -> ProcedureRecord:
    values: dict[str, Any] = {
        "id": id,
        "name": id.replace("-", " ").title(),
        "description": f"The {id} procedure",
        "category": "general",
        "tags": [],
        "parameters": [],
        "docstring": None,
        "metadata": {"id": id, "schema_version": 1},
        "tree_id": f"tree-{id}",
        "commit": "c1",
    }
    values.update(fields)
    return ProcedureRecord(**values)


def version(id: str, v: str, **fields: Any) -> VersionRecord:
    values: dict[str, Any] = {
        "id": id,
        "version": v,
        "tag": f"procedure-{id}-v{v}",
        "commit": f"commit-{v}",
        "tree_id": f"tree-{v}",
        "tagger_name": "Ada",
        "tagger_email": "ada@example.com",
        "tagged_at": T0,
        "bump": "minor",
        "breaking": False,
        "lines_added": 3,
        "lines_removed": 1,
        "reasons": ["new optional parameter 'limit'"],
        "message": "Release\n\nBump: minor",
    }
    values.update(fields)
    return VersionRecord(**values)


def move(id: str, channel: str, seq: int, v: str, **fields: Any) -> ChannelMoveRecord:
    values: dict[str, Any] = {
        "id": id,
        "channel": channel,
        "seq": seq,
        "version": v,
        "tag": f"channel-{id}-{channel}-{seq}",
        "commit": f"commit-{v}",
        "moved_by": "Ada",
        "moved_at": T0 + timedelta(minutes=seq),
        "action": "promote",
        "reason": None,
    }
    values.update(fields)
    return ChannelMoveRecord(**values)


def runrec(id: str, i: int, **fields: Any) -> ExecutionRecord:
    values: dict[str, Any] = {
        "run_id": uuid.uuid4().hex,
        "id": id,
        "version": "1.0.0",
        "commit": "c1",
        "tree_id": "t1",
        "python_version": "3.11.9",
        "caller": "test",
        "started_at": T0 + timedelta(seconds=i),
        "duration_ms": float(i + 1),
        "outcome": "success",
    }
    values.update(fields)
    return ExecutionRecord(**values)


CATALOG = [
    proc(
        "csv-to-json",
        name="CSV to JSON",
        description="Convert a comma separated file into JSON records",
        category="data",
        tags=["csv", "json", "convert"],
        parameters=[{"name": "delimiter", "type": "string"}],
        docstring="Reads every row with the stdlib reader.",
    ),
    proc(
        "slugify",
        name="Slugify",
        description="Turn a title into a URL slug",
        category="text",
        tags=["text", "url"],
        parameters=[{"name": "separator", "type": "string"}],
        docstring="Lowercases and strips accents from the title.",
    ),
    proc(
        "disk-report",
        name="Disk report",
        description="Summarise disk usage of a directory",
        category="ops",
        tags=["ops", "json"],
        status="deprecated",
        parameters=[{"name": "path", "type": "directory"}],
        docstring="Walks the tree; skips symlinks.",
    ),
]


def initial_changes(**extra: Any) -> ChangeSet:
    return ChangeSet(
        ref=REF,
        commit="c1",
        tags_digest="digest-1",
        upsert=CATALOG,
        versions_upsert=[version("csv-to-json", "1.0.0"), version("slugify", "0.1.0")],
        channels_upsert=[move("csv-to-json", "stable", 1, "1.0.0")],
        **extra,
    )


# --- migrations ------------------------------------------------------------


def test_migrations_are_recorded_and_reconnect_applies_nothing(target: str) -> None:
    expected = all_migrations(target)

    async def body() -> None:
        first = await connect_index(target)
        async with first:
            assert first.applied_migrations == expected
            assert await first.schema_migrations() == expected
        second = await connect_index(target)
        async with second:
            assert second.applied_migrations == []
            assert await second.schema_migrations() == expected

    asyncio.run(body())


def test_concurrent_connects_migrate_once(target: str) -> None:
    expected = all_migrations(target)

    async def main() -> list[list[int]]:
        indexes = await asyncio.gather(*(connect_index(target) for _ in range(3)))
        try:
            assert [await i.schema_migrations() for i in indexes] == [expected] * 3
            return sorted(i.applied_migrations for i in indexes)
        finally:
            for i in indexes:
                await i.close()

    assert asyncio.run(main()) == [[], [], expected]


def test_index_newer_than_this_procreg_is_refused(target: str) -> None:
    run(target, lambda index: index.schema_migrations())
    if target.startswith("postgresql://"):

        async def bump() -> None:
            conn = await asyncpg.connect(target)
            await conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', now())")
            await conn.close()

        asyncio.run(bump())
    else:
        with sqlite3.connect(target) as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', '2099-01-01')")
    with pytest.raises(IndexUnavailable, match=r"999.*upgrade procreg"):
        run(target, lambda index: index.schema_migrations())


async def _write_v1_index(target: str) -> None:
    """An index as migration 1 alone left it, holding CATALOG, its versions and some runs."""
    changes = initial_changes()
    runs = [runrec("slugify", i, outcome="failure" if i == 0 else "success") for i in range(4)]
    if target.startswith("postgresql://"):
        from registry.index import postgres as pg
        from registry.index import postgres_migrations as pgm

        pool = await asyncpg.create_pool(target, min_size=1, max_size=1, init=pg._init_connection)
        async with pool.acquire() as conn:
            await conn.execute(pgm.CREATE_MIGRATIONS_TABLE)
            await conn.execute(pgm.MIGRATIONS[0][2])
            await conn.execute(pgm.INSERT_MIGRATION, 1, pgm.MIGRATIONS[0][1])
        # migration 2 leaves procedures and versions alone, so today's writes fit version 1,
        # but for the table migration 9 adds (today's writes keep it; it is dropped after)
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE latest_versions (id text, version text)")
        v1 = pg.PostgresIndex(target, pool)
        await v1.apply(changes.model_copy(update={"channels_upsert": []}))
        async with pool.acquire() as conn:
            await conn.execute("DROP TABLE latest_versions")
        async with pool.acquire() as conn:  # channels and runs as version 1 stored them
            await conn.executemany(
                f"INSERT INTO channels ({column_list(V1_CHANNEL_COLUMNS)}) VALUES "
                f"({', '.join(f'${i}' for i in range(1, len(V1_CHANNEL_COLUMNS) + 1))})",
                [row_values(m, V1_CHANNEL_COLUMNS) for m in changes.channels_upsert],
            )
            await conn.executemany(
                f"INSERT INTO executions ({column_list(V1_RUN_COLUMNS)}) VALUES "
                f"({', '.join(f'${i}' for i in range(1, len(V1_RUN_COLUMNS) + 1))})",
                [row_values(e, V1_RUN_COLUMNS) for e in runs],
            )
        await pool.close()
        return
    from registry.index import sqlite as sq
    from registry.index import sqlite_migrations as sqm

    Path(target).parent.mkdir(parents=True)
    conn = sqlite3.connect(target, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(sqm.CREATE_MIGRATIONS_TABLE.format(schema="main"))
    for statement in sqm.MIGRATIONS[0][2]:
        conn.execute(str(statement))
    conn.execute(
        sqm.INSERT_MIGRATION.format(schema="main"), (1, sqm.MIGRATIONS[0][1], "2026-01-01")
    )
    # version 1 kept the id as an UNINDEXED first FTS column; rows are written as it did
    for record in changes.upsert:
        conn.execute(
            f"INSERT INTO procedures ({column_list(PROCEDURE_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(PROCEDURE_COLUMNS))})",
            sq._params(row_values(record, PROCEDURE_COLUMNS)),
        )
        conn.execute(
            "INSERT INTO procedures_fts (id, name, description, tags, params, docstring) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (record.id, *sqm.fts_params(record)),
        )
    for v in changes.versions_upsert:
        conn.execute(sq.UPSERT_VERSION, sq._params(version_values(v)))
    for m in changes.channels_upsert:
        conn.execute(
            f"INSERT INTO channels ({column_list(V1_CHANNEL_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(V1_CHANNEL_COLUMNS))})",
            sq._params(row_values(m, V1_CHANNEL_COLUMNS)),
        )
    conn.execute(sq.SQL.upsert_sync_state, (REF, "c1", "digest-1", "2026-01-01"))
    conn.executemany(
        f"INSERT INTO executions ({column_list(V1_RUN_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(V1_RUN_COLUMNS))})",
        [sq._params(row_values(e, V1_RUN_COLUMNS)) for e in runs],
    )
    conn.close()


V1_RUN_COLUMNS = EXECUTION_COLUMNS[: EXECUTION_COLUMNS.index("imported") + 1]
V1_CHANNEL_COLUMNS = tuple(c for c in CHANNEL_COLUMNS if c != "out_of_service")


def test_migration_3_moves_sqlite_runs_to_their_own_file(tmp_path: Path) -> None:
    """An index that held its runs (migrations 1-2) keeps every one, now in runs.sqlite3."""
    from registry.index.sqlite import runs_path

    target = str(tmp_path / "procreg" / "index.sqlite3")

    async def body() -> None:
        await _write_v1_index(target)
        async with await connect_index(target) as index:
            assert index.applied_migrations == MAIN_MIGRATIONS[1:]
            assert await index.count_executions("slugify") == 4
            assert (await index.metrics("slugify")).success_rate == 0.75
            # migration 7 filled in the latest version of every procedure released before it
            for row in await index.search(SearchQuery(None)):
                versions = [semver.Version.parse(v.version) for v in await index.versions(row.id)]
                best = max(versions, key=version_key) if versions else None
                assert row.latest_version == (None if best is None else str(best)), row.id
            assert any(row.latest_version for row in await index.search(SearchQuery(None)))

    asyncio.run(body())
    with sqlite3.connect(runs_path(Path(target))) as runs:
        assert runs.execute("SELECT count(*) FROM executions").fetchone() == (4,)
    with sqlite3.connect(target) as index:
        tables = {r[0] for r in index.execute("SELECT name FROM sqlite_master")}
    assert "executions" not in tables and "procedure_health" not in tables


def test_migration_2_converts_an_existing_index(target: str, tmp_path: Path) -> None:
    """An index written by migration 1 answers exactly as a fresh one after migrating."""

    async def answers(index: IndexBackend) -> Any:
        return (
            await index.snapshot(),
            {
                t: [r.id for r in await index.search(SearchQuery(t))]
                for t in ("csv", "json", "slug", "reader")
            },
            [
                (r.id, r.runs, r.success_rate)
                for r in await index.search(SearchQuery(order="health"))
            ],
            (await index.get_procedure("csv-to-json")).latest_version,  # type: ignore[union-attr]
        )

    async def fresh(index: IndexBackend) -> Any:
        await index.apply(initial_changes())
        runs = [runrec("slugify", i, outcome="failure" if i == 0 else "success") for i in range(4)]
        await index.record_executions(runs)
        return await answers(index)

    async def migrated() -> Any:
        await _write_v1_index(target)
        async with await connect_index(target) as index:
            assert index.applied_migrations == all_migrations(target)[1:]
            before = await answers(index)
            # later writes find each procedure's search row: no stale or doubled matches
            await index.apply(
                ChangeSet(
                    ref=REF,
                    commit="c2",
                    tags_digest="digest-1",
                    upsert=[proc("slugify", description="Make a permalink")],
                    delete=["disk-report"],
                )
            )
            await index.record_executions([runrec("slugify", 9)])
            after = (
                [r.id for r in await index.search(SearchQuery("permalink"))],
                [r.id for r in await index.search(SearchQuery("turn"))],
                [r.id for r in await index.search(SearchQuery("disk"))],
                [(r.id, r.runs) for r in await index.search(SearchQuery("slugify"))],
            )
            return before, after

    before, after = asyncio.run(migrated())
    assert before == run(str(tmp_path / "fresh" / "index.sqlite3"), fresh)
    assert before[2][0] == ("slugify", 4, 0.75)
    assert after == (["slugify"], [], [], [("slugify", 5)])


# --- apply -------------------------------------------------------------------


def test_apply_upserts_and_records_sync_state(target: str) -> None:
    async def body(index: IndexBackend) -> None:
        assert await index.sync_state(REF) is None
        await index.apply(initial_changes())
        state = await index.sync_state(REF)
        assert state is not None
        assert (state.commit, state.tags_digest) == ("c1", "digest-1")
        assert state.synced_at.tzinfo is not None
        assert [p.id for p in await index.list_procedures()] == [
            "csv-to-json",
            "disk-report",
            "slugify",
        ]
        row = await index.get_procedure("csv-to-json")
        assert row is not None
        assert row.model_dump(include=set(ProcedureRecord.model_fields)) == CATALOG[0].model_dump()
        assert row.latest_version == "1.0.0"
        assert await index.get_procedure("nope") is None

        changed = proc("slugify", description="Make slugs", commit="c2")
        await index.apply(ChangeSet(ref=REF, commit="c2", tags_digest="digest-2", upsert=[changed]))
        again = await index.get_procedure("slugify")
        assert again is not None
        assert (again.description, again.commit) == ("Make slugs", "c2")
        assert (await index.sync_state(REF)).commit == "c2"  # type: ignore[union-attr]

    run(target, body)


def test_delete_removes_procedure_but_keeps_its_versions(target: str) -> None:
    async def body(index: IndexBackend) -> None:
        await index.apply(initial_changes())
        await index.apply(
            ChangeSet(ref=REF, commit="c2", tags_digest="digest-1", delete=["csv-to-json"])
        )
        assert await index.get_procedure("csv-to-json") is None
        assert await index.search(SearchQuery("csv")) == []
        assert [v.version for v in await index.versions("csv-to-json")] == ["1.0.0"]

    run(target, body)


def test_invalid_keeps_last_valid_content_or_inserts_placeholder(target: str) -> None:
    async def body(index: IndexBackend) -> None:
        await index.apply(initial_changes())
        await index.apply(
            ChangeSet(
                ref=REF,
                commit="c2",
                tags_digest="digest-1",
                invalid=[
                    ("slugify", ["procedures/slugify/main.py:3: syntax: invalid syntax"]),
                    ("brand-new", ["procedures/brand-new/metadata.json: json: not JSON"]),
                ],
            )
        )
        slug = await index.get_procedure("slugify")
        assert slug is not None
        assert not slug.valid
        assert slug.errors == ["procedures/slugify/main.py:3: syntax: invalid syntax"]
        assert (slug.description, slug.commit) == ("Turn a title into a URL slug", "c1")
        assert [r.id for r in await index.search(SearchQuery("slug"))] == ["slugify"]

        new = await index.get_procedure("brand-new")
        assert new is not None
        assert (new.valid, new.name) == (False, "brand-new")
        assert [r.id for r in await index.search(SearchQuery(valid=False))] == [
            "brand-new",
            "slugify",
        ]

        await index.apply(
            ChangeSet(ref=REF, commit="c3", tags_digest="digest-1", upsert=[CATALOG[1]])
        )
        fixed = await index.get_procedure("slugify")
        assert fixed is not None
        assert (fixed.valid, fixed.errors) == (True, [])

    run(target, body)


def test_full_rebuild_replaces_derived_rows_but_keeps_executions(target: str) -> None:
    async def body(index: IndexBackend) -> None:
        await index.apply(initial_changes())
        await index.record_executions([runrec("slugify", i) for i in range(5)])
        await index.apply(
            ChangeSet(
                ref=REF,
                commit="c9",
                tags_digest="digest-9",
                full=True,
                upsert=[proc("slugify", description="rebuilt")],
                versions_upsert=[version("slugify", "2.0.0")],
            )
        )
        assert [p.id for p in await index.list_procedures()] == ["slugify"]
        assert await index.all_version_tags() == {"procedure-slugify-v2.0.0"}
        assert await index.channels("csv-to-json") == []
        assert await index.count_executions() == 5
        row = await index.get_procedure("slugify")
        assert row is not None
        assert (row.description, row.runs) == ("rebuilt", 5)

    run(target, body)


def test_applying_the_same_changes_twice_changes_nothing(target: str) -> None:
    async def body(index: IndexBackend) -> None:
        changes = initial_changes(invalid=[("broken", ["bad"])])
        await index.apply(changes)
        once = await index.snapshot()
        await index.apply(changes)
        assert await index.snapshot() == once
        assert len(once["procedures"]) == 4

    run(target, body)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            {"versions_upsert": [version("slugify", "0.2.0", lines_added=-1)]}, id="check"
        ),
        pytest.param(
            {"versions_upsert": [version("slugify", "0.1.0", tag="procedure-slugify-v0.1.0-dup")]},
            id="unique",
        ),
    ],
)
def test_failed_apply_leaves_previous_state(target: str, bad: dict[str, Any]) -> None:
    async def body(index: IndexBackend) -> None:
        await index.apply(initial_changes())
        before = await index.snapshot()
        failing = ChangeSet(
            ref=REF,
            commit="c2",
            tags_digest="digest-2",
            upsert=[proc("slugify", description="half-written"), proc("extra")],
            delete=["disk-report"],
            **bad,
        )
        with pytest.raises(IndexRejected, match="nothing was written"):
            await index.apply(failing)
        assert await index.snapshot() == before
        assert (await index.sync_state(REF)).commit == "c1"  # type: ignore[union-attr]

    run(target, body)


def test_search_follows_updates_deletes_and_re_adds(target: str) -> None:
    async def body(index: IndexBackend) -> None:
        await index.apply(initial_changes())
        ids = lambda rows: [r.id for r in rows]  # noqa: E731
        assert ids(await index.search(SearchQuery("turn"))) == ["slugify"]
        update = ChangeSet(
            ref=REF,
            commit="c2",
            tags_digest="digest-1",
            upsert=[proc("slugify", description="Make a permalink")],
        )
        await index.apply(update)
        await index.apply(update)
        assert ids(await index.search(SearchQuery("turn"))) == []
        assert ids(await index.search(SearchQuery("permalink"))) == ["slugify"]
        gone = ChangeSet(ref=REF, commit="c3", tags_digest="digest-1", delete=["slugify"])
        await index.apply(gone)
        assert ids(await index.search(SearchQuery("permalink"))) == []
        await index.apply(update.model_copy(update={"commit": "c4"}))
        assert ids(await index.search(SearchQuery("permalink"))) == ["slugify"]
        # the other procedures' search rows were never disturbed
        assert ids(await index.search(SearchQuery("json", order="name"))) == [
            "csv-to-json",
            "disk-report",
        ]
        full = initial_changes(full=True)
        await index.apply(full)
        assert ids(await index.search(SearchQuery("permalink"))) == []
        assert ids(await index.search(SearchQuery("turn"))) == ["slugify"]

    run(target, body)


def test_a_key_upserted_twice_in_one_change_keeps_the_last(target: str) -> None:
    async def body(index: IndexBackend) -> None:
        await index.apply(
            ChangeSet(
                ref=REF,
                commit="c1",
                tags_digest="d",
                upsert=[
                    proc("slugify", description="first"),
                    proc("slugify", description="second"),
                ],
                versions_upsert=[
                    version("slugify", "1.0.0", message="first"),
                    version("slugify", "1.0.0", message="second"),
                ],
            )
        )
        row = await index.get_procedure("slugify")
        assert row is not None
        assert (row.description, row.latest_version) == ("second", "1.0.0")
        assert [v.message for v in await index.versions("slugify")] == ["second"]
        assert [r.id for r in await index.search(SearchQuery("second"))] == ["slugify"]
        assert await index.search(SearchQuery("first")) == []

    run(target, body)


# --- search ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("csv", ["csv-to-json"]),  # name and tag
        ("comma separated", ["csv-to-json"]),  # description words
        ("delimiter", ["csv-to-json"]),  # parameter name
        ("stdlib reader", ["csv-to-json"]),  # docstring words
        ("slug", ["slugify"]),  # prefix of the last word
        ("SLUGIFY", ["slugify"]),  # case does not matter
        ("disk-report", ["disk-report"]),  # the id itself
        ("url title", ["slugify"]),  # every word must match
        ("json", ["csv-to-json", "disk-report"]),
        ("nothing-like-this", []),
    ],
)
def test_search_by_text(target: str, text: str, expected: list[str]) -> None:
    async def body(index: IndexBackend) -> list[str]:
        await index.apply(initial_changes())
        return sorted(r.id for r in await index.search(SearchQuery(text)))

    assert run(target, body) == expected


HOSTILE = [
    '"',
    "'",
    "*",
    "-",
    "OR",
    "AND NOT",
    '"unbalanced',
    "csv OR",
    "NEAR(csv json)",
    "name:csv",
    "^csv",
    "(",
    "a' OR '1'='1",
    "\\",
    "%_",
    "a & b | !c",
    ":*",
    "ünïcødé 日本語 🎉",
    "",
    "   ",
    "-csv",
    'csv"',
]


def test_hostile_search_text_never_raises(target: str) -> None:
    async def body(index: IndexBackend) -> dict[str, list[str]]:
        await index.apply(initial_changes())
        return {text: [r.id for r in await index.search(SearchQuery(text))] for text in HOSTILE}

    results = run(target, body)
    assert results["-csv"] == ["csv-to-json"]  # punctuation is not an operator
    assert results['csv"'] == ["csv-to-json"]
    assert results["^csv"] == ["csv-to-json"]
    assert len(results[""]) == 3  # blank text is no filter
    assert results["*"] == []  # text without words matches nothing


def test_query_builders_quote_every_word() -> None:
    assert fts5_query('csv" OR -json*') == '"csv" "or" "json"*'
    assert fts5_query("csv ") == '"csv"'
    assert tsquery("csv' & json") == "'csv' & 'json':*"
    assert fts5_query("***") is None
    assert tsquery("") is None


def test_search_pages_cut_inside_ties_by_name_then_id(target: str) -> None:
    """Equal relevance is ordered by name, then id, wherever the limit cuts the ties."""
    # six equally good matches (same text), one better (the word is also in its name)
    tied = [("t-b", "Beta"), ("t-a2", "alpha"), ("t-a1", "Alpha"), ("t-c", "gamma"),
            ("t-d", "Delta"), ("t-e", "epsilon")]  # fmt: skip
    records = [proc(i, name=n, description="Reads invoice files") for i, n in tied]
    records.append(proc("t-top", name="Invoice reader", description="Reads invoice files"))
    expected = ["t-top", "t-a1", "t-a2", "t-b", "t-d", "t-e", "t-c"]

    async def body(index: IndexBackend) -> None:
        await index.apply(ChangeSet(ref=REF, commit="c1", tags_digest="d", upsert=records))
        for limit in range(1, 9):
            found = [r.id for r in await index.search(SearchQuery("invoice", limit=limit))]
            assert found == expected[:limit], limit
            lean = await index.search_summaries(SearchQuery("invoice", limit=limit))
            assert [h["id"] for h in lean] == expected[:limit], limit
        # another filter or order than relevance takes the general path: same rows
        by_name = await index.search(SearchQuery("invoice", order="name", limit=3))
        assert [r.id for r in by_name] == ["t-a1", "t-a2", "t-b"]

    run(target, body)


def test_search_filters_and_orders(target: str) -> None:
    async def body(index: IndexBackend) -> None:
        await index.apply(initial_changes())
        ids = lambda rows: [r.id for r in rows]  # noqa: E731
        assert ids(await index.search(SearchQuery(category="text"))) == ["slugify"]
        assert ids(await index.search(SearchQuery(tags=["json"]))) == ["csv-to-json", "disk-report"]
        assert ids(await index.search(SearchQuery(tags=["json", "ops"]))) == ["disk-report"]
        assert ids(await index.search(SearchQuery(tags=["json", "absent"]))) == []
        assert ids(await index.search(SearchQuery(status="deprecated"))) == ["disk-report"]
        assert ids(await index.search(SearchQuery(text="json", category="ops"))) == ["disk-report"]
        assert ids(await index.search(SearchQuery(order="name"))) == [
            "csv-to-json",
            "disk-report",
            "slugify",
        ]
        assert len(await index.search(SearchQuery(limit=2))) == 2
        # a name match outranks a mere tag match
        assert ids(await index.search(SearchQuery("json")))[0] == "csv-to-json"

        await index.record_executions(
            [runrec("slugify", i) for i in range(4)]
            + [runrec("disk-report", i, outcome="failure") for i in range(3)]
            + [runrec("disk-report", 10)]
        )
        health = await index.search(SearchQuery(order="health"))
        assert ids(health) == ["slugify", "disk-report", "csv-to-json"]
        assert [(r.runs, r.success_rate) for r in health] == [(4, 1.0), (4, 0.25), (0, None)]
        assert ids(await index.search(SearchQuery(min_success_rate=0.5))) == ["slugify"]

    run(target, body)


# --- versions and channels ----------------------------------------------------


def test_versions_follow_semver_order(target: str) -> None:
    tags = ["1.9.0", "1.10.0", "0.9.0", "1.10.0-rc.1", "1.10.0-alpha", "1.2.3"]

    async def body(index: IndexBackend) -> None:
        records = [version("csv-to-json", v) for v in tags]
        await index.apply(
            ChangeSet(
                ref=REF, commit="c1", tags_digest="d", upsert=CATALOG, versions_upsert=records
            )
        )
        got = await index.versions("csv-to-json")
        assert [v.version for v in got] == [
            "0.9.0",
            "1.2.3",
            "1.9.0",
            "1.10.0-alpha",
            "1.10.0-rc.1",
            "1.10.0",
        ]
        assert got[-1] == version("csv-to-json", "1.10.0")  # every trailer round-trips
        row = await index.get_procedure("csv-to-json")
        assert row is not None
        assert row.latest_version == "1.10.0"
        assert (await index.get_procedure("disk-report")).latest_version is None  # type: ignore[union-attr]
        assert await index.all_version_tags() == {f"procedure-csv-to-json-v{v}" for v in tags}

        await index.apply(
            ChangeSet(
                ref=REF,
                commit="c1",
                tags_digest="d2",
                versions_delete=["procedure-csv-to-json-v1.10.0"],
            )
        )
        assert (await index.get_procedure("csv-to-json")).latest_version == "1.10.0-rc.1"  # type: ignore[union-attr]

    run(target, body)


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("1.9.0", "1.10.0"),
        ("1.0.0-alpha", "1.0.0"),
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
        ("1.0.0-alpha.beta", "1.0.0-alpha-x"),
        ("1.0.0-beta.2", "1.0.0-beta.11"),
        ("1.0.0-1", "1.0.0-a"),
        ("0.99.99", "1.0.0-0"),
    ],
)
def test_semver_key_sorts_like_semver(low: str, high: str) -> None:
    assert semver.Version.parse(low) < semver.Version.parse(high)
    as_tuple = lambda v: tuple(semver_key(v).model_dump().values())  # noqa: E731
    assert as_tuple(low) < as_tuple(high)


def test_channel_history_and_current(target: str) -> None:
    async def body(index: IndexBackend) -> None:
        moves = [
            move("csv-to-json", "stable", 1, "1.0.0"),
            move("csv-to-json", "stable", 2, "1.1.0"),
            move("csv-to-json", "stable", 10, "1.0.0", action="rollback", reason="unhealthy"),
            move("csv-to-json", "beta", 1, "1.1.0"),
        ]
        await index.apply(initial_changes().model_copy(update={"channels_upsert": moves}))
        history = await index.channels("csv-to-json")
        assert [(m.channel, m.seq) for m in history] == [
            ("beta", 1),
            ("stable", 1),
            ("stable", 2),
            ("stable", 10),
        ]
        current = await index.current_channels("csv-to-json")
        assert current["stable"] == moves[2]
        assert current["beta"].version == "1.1.0"
        assert await index.current_channels("slugify") == {}
        assert await index.all_channel_tags() == {m.tag for m in moves}

        await index.apply(
            ChangeSet(
                ref=REF,
                commit="c1",
                tags_digest="d",
                channels_delete=["channel-csv-to-json-stable-10"],
            )
        )
        assert (await index.current_channels("csv-to-json"))["stable"].version == "1.1.0"

    run(target, body)


def test_current_channel_versions_and_out_of_service(target: str) -> None:
    """One query gives the channel column of a search; a channel out of service names None."""

    async def body(index: IndexBackend) -> None:
        moves = [
            move("csv-to-json", "stable", 1, "1.0.0"),
            move("csv-to-json", "stable", 2, "1.0.0", action="health", out_of_service=True),
            move("csv-to-json", "beta", 1, "1.1.0"),
            move("slugify", "stable", 1, "1.0.0"),
        ]
        await index.apply(initial_changes().model_copy(update={"channels_upsert": moves}))
        both = {"csv-to-json": {"beta": "1.1.0", "stable": None}, "slugify": {"stable": "1.0.0"}}
        assert await index.current_channel_versions() == both
        assert await index.current_channel_versions(["slugify", "nope"]) == {
            "slugify": {"stable": "1.0.0"}
        }
        assert (await index.current_channels("csv-to-json"))["stable"].out_of_service is True
        assert (await index.channels("csv-to-json"))[1].out_of_service is False

    run(target, body)


# --- executions -----------------------------------------------------------------


def test_record_executions_dedups_by_run_id(target: str) -> None:
    async def body(index: IndexBackend) -> None:
        first = [runrec("slugify", i) for i in range(100)]
        assert await index.record_executions(first) == 100
        again = first[50:] + [runrec("slugify", 100 + i) for i in range(50)]
        assert await index.record_executions(again) == 50
        assert await index.record_executions(first[:1] * 3) == 0
        assert await index.record_executions([]) == 0
        twice = runrec("slugify", 200)
        assert await index.record_executions([twice, twice]) == 1
        assert await index.count_executions() == 151
        assert await index.count_executions("slugify") == 151
        assert await index.count_executions("csv-to-json") == 0

    run(target, body)


def test_health_counts_each_run_once_and_filters_at_the_threshold(target: str) -> None:
    async def body(index: IndexBackend) -> None:
        # runs may arrive before their procedure is indexed; they count once it is
        early = [runrec("slugify", i, outcome="failure" if i < 2 else "success") for i in range(8)]
        assert await index.record_executions(early) == 8
        await index.apply(initial_changes())
        assert await index.record_executions(early + early[:3]) == 0
        await index.record_executions([runrec("csv-to-json", i) for i in range(3)])
        slug = await index.get_procedure("slugify")
        assert slug is not None
        assert (slug.runs, slug.success_rate) == (8, 0.75)
        ids = lambda rows: [r.id for r in rows]  # noqa: E731
        assert ids(await index.search(SearchQuery(min_success_rate=0.75, order="name"))) == [
            "csv-to-json",
            "slugify",
        ]
        assert ids(await index.search(SearchQuery(min_success_rate=0.76))) == ["csv-to-json"]
        assert ids(await index.search(SearchQuery("json", min_success_rate=0.5))) == ["csv-to-json"]
        assert ids(
            await index.search(SearchQuery("url", min_success_rate=0.5, order="health"))
        ) == ["slugify"]
        assert ids(
            await index.search(SearchQuery(min_success_rate=0.0, limit=1, order="health"))
        ) == ["csv-to-json"]
        assert ids(await index.search(SearchQuery(order="health", limit=2))) == [
            "csv-to-json",
            "slugify",
        ]

    run(target, body)


def test_executions_round_trip_newest_first(target: str) -> None:
    berlin = timezone(timedelta(hours=2))
    full = runrec(
        "slugify",
        0,
        version="2.0.0",
        started_at=datetime(2026, 3, 1, 12, 0, 0, 500, tzinfo=berlin),
        outcome="failure",
        error_type="ValueError",
        error_message="bad title: 'ü'",
        cpu_ms=1.25,
        max_rss_kb=10240,
        imported=True,
    )
    others = [runrec("slugify", i) for i in range(1, 6)]

    async def body(index: IndexBackend) -> None:
        await index.record_executions([full, *others])
        got = await index.executions("slugify")
        assert [e.run_id for e in got] == [full.run_id] + [e.run_id for e in reversed(others)]
        assert got[0] == full
        assert got[0].started_at.tzinfo is not None
        assert got[0].started_at.utcoffset() == timedelta(0)
        assert [e.run_id for e in await index.executions("slugify", version="2.0.0")] == [
            full.run_id
        ]
        assert len(await index.executions("slugify", limit=2)) == 2
        assert await index.recent_outcomes("slugify", None, 3) == [False, True, True]
        assert await index.recent_outcomes("slugify", "1.0.0", 10) == [True] * 5
        assert await index.recent_outcomes("slugify", None, 0) == []
        assert await index.executions("slugify", limit=0) == []

    run(target, body)


METRIC_RUNS = [
    runrec("slugify", i, duration_ms=float(d), version=v, outcome=o, error_type=err)
    for i, (d, v, o, err) in enumerate(
        [
            (12.5, "1.0.0", "success", None),
            (3.0, "1.0.0", "success", None),
            (7.25, "1.0.0", "failure", "ValueError"),
            (100.0, "1.1.0", "failure", "TimeoutError"),
            (1.0, "1.1.0", "success", None),
            (55.5, "1.1.0", "failure", "ValueError"),
            (9.0, None, "failure", None),
        ]
    )
]


def test_metrics(target: str) -> None:
    async def body(index: IndexBackend) -> Any:
        empty = await index.metrics("slugify")
        assert (empty.runs, empty.success_rate, empty.p50_ms, empty.versions) == (0, None, None, {})
        await index.record_executions(METRIC_RUNS)
        return await index.metrics("slugify")

    m = run(target, body)
    assert m.runs == 7
    assert m.success_rate == pytest.approx(3 / 7)
    assert m.p50_ms == 9.0  # sorted: 1, 3, 7.25, 9, 12.5, 55.5, 100
    assert m.p95_ms == pytest.approx(55.5 + 0.7 * (100 - 55.5))
    assert m.last_run == METRIC_RUNS[-1].started_at
    assert m.errors == {"TimeoutError": 1, "ValueError": 2, "unknown": 1}
    assert sorted(m.versions) == ["1.0.0", "1.1.0", "unversioned"]
    assert m.versions["1.0.0"].p50_ms == 7.25
    assert m.versions["1.1.0"].errors == {"TimeoutError": 1, "ValueError": 1}
    assert m.versions["1.1.0"].success_rate == pytest.approx(1 / 3)
    assert m.callers == {"test": 7}


def test_metrics_count_runs_per_caller(target: str) -> None:
    records = [
        runrec("slugify", i, caller=caller, version=version)
        for i, (caller, version) in enumerate(
            [("mcp:claude", "1.0.0"), ("mcp:claude", "1.1.0"), ("release", "1.1.0"),
             ("ana@laptop", "1.0.0"), ("mcp:claude", "1.1.0")]
        )
    ]  # fmt: skip

    async def body(index: IndexBackend) -> Any:
        await index.record_executions(records)
        return await index.metrics("slugify")

    m = run(target, body)
    assert m.callers == {"ana@laptop": 1, "mcp:claude": 3, "release": 1}
    assert m.versions["1.1.0"].callers == {"mcp:claude": 2, "release": 1}


def test_worker_lost_records_count_in_neither_metrics_nor_health(target: str) -> None:
    # a queued attempt whose worker died has its run record, but the job ran again:
    # metrics and health count the job once, by the attempt that ran
    lost = [
        runrec(
            "slugify",
            10 + i,
            outcome="failure",
            error_type="WorkerLost",
            duration_ms=90_000.0,
            job_id=7 + i,
            attempt=1,
            worker="gone-host",
        )
        for i in range(3)
    ]
    ran = [runrec("slugify", i, job_id=7 + i, attempt=2, worker="live-host") for i in range(3)]

    async def body(index: IndexBackend) -> Any:
        await index.apply(initial_changes())
        assert await index.record_executions(lost) == 3
        only_lost = await index.metrics("slugify")
        assert only_lost.runs == 0 and only_lost.success_rate is None
        slug = await index.get_procedure("slugify")
        assert slug is not None and (slug.runs, slug.success_rate) == (0, None)
        assert await index.recent_outcomes("slugify", "1.0.0", 10) == []
        assert await index.record_executions(ran) == 3
        records = await index.executions("slugify")
        assert len(records) == 6  # shown: every attempt has its run record
        assert [r.error_type for r in records[:3]] == ["WorkerLost"] * 3
        assert await index.recent_outcomes("slugify", "1.0.0", 10) == [True] * 3
        slug = await index.get_procedure("slugify")
        assert slug is not None and (slug.runs, slug.success_rate) == (3, 1.0)
        found = await index.search(SearchQuery("url", min_success_rate=1.0))
        assert [r.id for r in found] == ["slugify"]
        return await index.metrics("slugify")

    m = run(target, body)
    assert (m.runs, m.success_rate, m.errors) == (3, 1.0, {})
    assert (m.p50_ms, m.p95_ms) == (2.0, pytest.approx(2.9))
    assert m.last_run == ran[-1].started_at
    assert m.callers == {"test": 3}
    assert m.versions["1.0.0"].runs == 3


@pytest.mark.postgres
def test_both_backends_agree_exactly(tmp_path: Path, pg_url: str) -> None:
    durations = [((i * 7919) % 1000) / 7.0 for i in range(500)]
    records = [
        runrec(
            "csv-to-json",
            i,
            duration_ms=d,
            version=f"1.{i % 3}.0",
            outcome="failure" if i % 11 == 0 else "success",
            error_type="OSError" if i % 22 == 0 else None,
            caller=f"caller-{i % 4}",
        )
        for i, d in enumerate(durations)
    ] + [  # lost attempts: recorded by both, counted by neither
        runrec("csv-to-json", 600 + i, duration_ms=5e4, version=f"1.{i % 3}.0",
               outcome="failure", error_type="WorkerLost", job_id=i, attempt=1)
        for i in range(20)
    ]  # fmt: skip

    async def body(index: IndexBackend) -> Any:
        await index.apply(initial_changes(invalid=[("broken", ["bad"])]))
        await index.record_executions(records)
        return (
            await index.metrics("csv-to-json"),
            await index.snapshot(),
            [r.model_dump() for r in await index.search(SearchQuery("json", order="name"))],
            [r.model_dump() for r in await index.search(SearchQuery(order="health"))],
        )

    sqlite_result = run(str(tmp_path / "index.sqlite3"), body)
    postgres_result = run(pg_url, body)
    assert sqlite_result == postgres_result


# --- locking, notification, errors ---------------------------------------------------

HOLDER = """
import asyncio, sys
from registry.index.connect import connect_index

async def main():
    async with await connect_index(sys.argv[1]) as index, index.sync_lock():
        print("locked", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def test_sync_lock_excludes_another_process(target: str) -> None:
    run(target, lambda index: index.schema_migrations())  # migrate before the race
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, target],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "locked"

            async def try_lock(index: IndexBackend) -> None:
                async with index.sync_lock(wait=False):
                    pass

            with pytest.raises(ConflictError, match="another sync"):
                run(target, try_lock)
            holder.stdin.close()
            assert holder.wait(timeout=30) == 0
            run(target, try_lock)  # free again once the holder is gone
        finally:
            if holder.poll() is None:
                holder.kill()


def test_sync_lock_waits_for_the_holder(target: str) -> None:
    async def main() -> None:
        async with await connect_index(target) as a, await connect_index(target) as b:
            acquired = asyncio.Event()

            async def second() -> None:
                async with b.sync_lock():
                    acquired.set()

            async with a.sync_lock():
                waiter = asyncio.create_task(second())
                await asyncio.sleep(0.3)
                assert not acquired.is_set()
            await asyncio.wait_for(waiter, timeout=30)
            assert acquired.is_set()

    asyncio.run(main())


@pytest.mark.postgres
def test_notify_reaches_listeners(pg_url: str) -> None:
    async def main() -> str:
        received: asyncio.Queue[str] = asyncio.Queue()
        listener = await asyncpg.connect(pg_url)
        await listener.add_listener("procreg_sync", lambda *args: received.put_nowait(args[3]))
        try:
            async with await connect_index(pg_url) as index:
                await index.notify('{"commit": "c1"}')
            return await asyncio.wait_for(received.get(), timeout=10)
        finally:
            await listener.close()

    assert asyncio.run(main()) == '{"commit": "c1"}'


@pytest.mark.postgres
def test_latest_versions_joins_procedures_by_its_primary_key(pg_url: str) -> None:
    """latest_versions.id collates as procedures.id does, so a page of search results
    looks its latest versions up by the primary key instead of hashing the whole table."""

    async def main() -> tuple[set[str | None], str]:
        async with await connect_index(pg_url) as index:
            await index.apply(initial_changes())
        conn = await asyncpg.connect(pg_url)
        try:
            collations = await conn.fetch(
                "SELECT collation_name FROM information_schema.columns "
                "WHERE column_name = 'id' AND table_name IN ('procedures', 'latest_versions')"
            )
            await conn.execute("SET enable_seqscan = off")  # a table this small is scanned
            plan = await conn.fetch(
                "EXPLAIN SELECT lv.version FROM procedures p "
                "JOIN latest_versions lv ON lv.id = p.id WHERE p.id = 'slugify'"
            )
        finally:
            await conn.close()
        return {r[0] for r in collations}, "\n".join(r[0] for r in plan)

    collations, plan = asyncio.run(main())
    assert collations == {"C"}
    assert "latest_versions_pkey" in plan


def test_sqlite_notify_is_a_no_op(tmp_path: Path) -> None:
    run(str(tmp_path / "i.sqlite3"), lambda index: index.notify("x"))


def test_unreachable_postgres_is_index_unavailable() -> None:
    with pytest.raises(IndexUnavailable, match=r"127\.0\.0\.1:1/procreg.*server is running"):
        run("postgresql://postgres:secret@127.0.0.1:1/procreg", lambda index: index.notify("x"))


def test_unreachable_postgres_message_hides_password() -> None:
    with pytest.raises(IndexUnavailable) as info:
        run("postgresql://postgres:secret@127.0.0.1:1/procreg", lambda index: index.notify("x"))
    assert "secret" not in str(info.value)


def test_unopenable_sqlite_is_index_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(IndexUnavailable, match="a-folder"):
        run(str(tmp_path / "a-folder"), lambda index: index.notify("x"))


# --- run history is not derived data --------------------------------------------------------


def test_a_corrupt_sqlite_index_is_set_aside_and_the_runs_stay(tmp_path: Path) -> None:
    from registry.errors import IndexCorrupt
    from registry.git.store import GitStore
    from registry.index.connect import default_index_path, open_backend
    from registry.index.sqlite import runs_path

    store = GitStore.init(tmp_path / "repo")
    path = default_index_path(store)
    assert runs_path(path) == path.with_name("runs.sqlite3")

    async def body() -> None:
        async with await open_backend(store) as index:
            await index.apply(initial_changes())
            await index.record_executions([runrec("slugify", i) for i in range(3)])
        path.write_bytes(b"not a database, garbage " * 200)
        with pytest.raises(IndexCorrupt, match="procreg reindex") as caught:
            await open_backend(store)
        assert caught.value.path == path
        async with await open_backend(store, set_aside_corrupt=True) as index:
            assert await index.count_executions() == 3  # nothing derived, every run
            assert await index.list_procedures() == []
            assert (await index.metrics("slugify")).runs == 3

    asyncio.run(body())
    assert [p.name.startswith("index.sqlite3.corrupt-") for p in path.parent.iterdir()].count(
        True
    ) == 1


def test_runs_keep_their_isolation(target: str) -> None:
    async def body(index: IndexBackend) -> list[str]:
        await index.record_executions(
            [
                runrec("slugify", 0).model_copy(update={"isolation": "bubblewrap"}),
                runrec("slugify", 1),
            ]
        )
        return sorted((r.isolation or "-") for r in await index.executions("slugify"))

    assert run(target, body) == ["-", "bubblewrap"]


def test_runs_keep_the_requests_their_proxy_refused(target: str) -> None:
    denials = [
        NetworkDenial(target="127.0.0.1:9", at="2026-01-02T03:04:05.000+00:00", reason="why"),
        NetworkDenial(target="[::1]:80", at="2026-01-02T03:04:06.000+00:00", reason="\u00e9'\""),
    ]

    async def body(index: IndexBackend) -> list[list[NetworkDenial]]:
        await index.record_executions(
            [runrec("slugify", 0, network_denied=denials), runrec("slugify", 1)]
        )
        runs = sorted(await index.executions("slugify"), key=lambda r: r.started_at)
        return [r.network_denied for r in runs]

    assert run(target, body) == [denials, []]


def test_a_full_reindex_keeps_every_run(target: str) -> None:
    async def body(index: IndexBackend) -> tuple[int, float | None]:
        await index.apply(initial_changes())
        await index.record_executions([runrec("slugify", i) for i in range(5)])
        await index.apply(ChangeSet(ref=REF, commit="c9", tags_digest="d9", full=True))
        return await index.count_executions("slugify"), (
            await index.metrics("slugify")
        ).success_rate

    assert run(target, body) == (5, 1.0)


def test_a_hung_postgres_server_is_a_timeout_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from registry.index import postgres as index_postgres

    monkeypatch.setattr(index_postgres, "CONNECT_TIMEOUT_S", 0.5)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # accepts (in the kernel backlog) and never answers
    port = server.getsockname()[1]
    try:
        with pytest.raises(IndexUnavailable, match="no answer within the timeout") as caught:
            asyncio.run(index_postgres.PostgresIndex.connect(f"postgresql://u@127.0.0.1:{port}/x"))
        assert "hung" in str(caught.value)
    finally:
        server.close()


def test_the_index_orders_versions_as_latest_is_chosen_everywhere() -> None:
    """The SQL order (major, minor, patch, is_release, pre_key) equals tags.version_key's."""
    import random

    import semver

    from registry.core import tags
    from registry.index.contract import semver_key

    versions = [
        "1.2.3", "1.2.3+a", "1.2.3+b", "1.2.3+2", "1.2.3+10", "1.2.3+a.1", "1.2.3+001",
        "1.2.3-alpha", "1.2.3-alpha+b", "1.2.3-alpha.1", "1.2.3-alpha.1+z", "1.2.3-beta",
        "1.2.3-2", "1.2.3-10", "1.2.4", "1.10.0", "0.9.9+build.5", "2.0.0-rc.1",
    ]  # fmt: skip
    shuffled = random.Random(7).sample(versions, len(versions))

    def sql_order(v: str) -> tuple[int, int, int, int, bytes]:
        k = semver_key(v)
        return (k.major, k.minor, k.patch, k.is_release, k.pre_key.encode())

    by_sql = sorted(shuffled, key=sql_order)
    by_tags = sorted(shuffled, key=lambda v: tags.version_key(semver.Version.parse(v)))
    # "+001" and "+1" would tie on value; nothing else may differ
    assert by_sql == by_tags
    assert by_sql[-1] == "2.0.0-rc.1" and by_sql.index("1.2.3+b") > by_sql.index("1.2.3+a")


def test_a_full_rebuild_writes_what_the_same_changes_row_by_row_write(target: str) -> None:
    # a rebuild's rows are written in batches (SQLite): repeated keys, invalid marks on an
    # upserted row and placeholders must come out as the incremental path writes them
    def changes(full: bool) -> ChangeSet:
        return ChangeSet(
            ref=REF,
            commit="c5",
            tags_digest="d5",
            full=full,
            upsert=[
                proc("slugify", description="first"),
                CATALOG[0],
                proc("slugify", description="second"),
            ],
            invalid=[
                ("slugify", ["procedures/slugify/main.py:3: syntax: invalid syntax"]),
                ("brand-new", ["procedures/brand-new/metadata.json: json: not JSON"]),
                ("brand-new", ["procedures/brand-new/metadata.json: json: still not JSON"]),
            ],
        )

    async def answers(index: IndexBackend) -> Any:
        listed = [p.model_dump() for p in await index.list_procedures()]
        rows = [await index.get_procedure(p["id"]) for p in listed]
        found = [
            [r.id for r in await index.search(query)]
            for query in (
                SearchQuery("second"),
                SearchQuery("first"),
                SearchQuery("brand"),
                SearchQuery(valid=False),
            )
        ]
        return listed, [r.model_dump() if r else None for r in rows], found

    async def body(index: IndexBackend) -> None:
        await index.apply(initial_changes())
        await index.apply(changes(full=True))
        rebuilt = await answers(index)
        await index.apply(ChangeSet(ref=REF, commit="c6", tags_digest="d6", full=True))
        await index.apply(changes(full=False))
        assert await answers(index) == rebuilt
        assert rebuilt[2] == [["slugify"], [], ["brand-new"], ["brand-new", "slugify"]]

    run(target, body)
