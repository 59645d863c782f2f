"""Migration end to end: legacy SQLite, JSON and PostgreSQL sources of 100+ quirky procedures
into fresh git repositories, checked independently with the git CLI and direct reads of the
source; ids, trailers, tags, run records, idempotence, resume after SIGKILL, dry runs, errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from registry.core.ids import ID_RE
from registry.core.model import Metadata, band_for
from registry.errors import MigrationError
from registry.git.store import GitStore
from registry.index.contract import ExecutionRecord
from registry.migrate.convert import assign_ids
from registry.migrate.legacy import LegacyProcedure, decode_value, describe_source, read_source
from registry.migrate.migration import MigrationReport, migrate, migrate_sync
from tests.helpers import REPO_ROOT, git
from tests.migrate.legacy_fixtures import (
    build_json,
    build_postgres,
    build_sqlite,
    legacy_rows,
    read_postgres,
    read_sqlite,
)

N = 110


# -- independent readers (git CLI, no registry code) ----------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal with the same types (1 is not 1.0 is not True), lists element-wise."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def metadata_by_legacy_key(repo: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{legacy key: (folder id, metadata.json)}`` read with `git ls-tree` and `git show`."""
    out = {}
    for path in git(repo, "ls-tree", "--name-only", "HEAD", "procedures/").split():
        data = json.loads(git(repo, "show", f"HEAD:{path}/metadata.json"))
        assert data["source"]["kind"] == "migrated"
        key = data["source"]["legacy_id"]
        assert key not in out, f"legacy id {key} migrated twice"
        out[key] = (path.split("/", 1)[1], data)
    return out


def decoded(legacy: dict[str, Any], part: str, i: int | None = None) -> dict[str, Any]:
    types = legacy["types"]
    row = legacy[part] if i is None else legacy[part][i]
    prefix = part if i is None else f"{part}.{i}"
    return {k: decode_value(v, types.get(f"{prefix}.{k}")) for k, v in row.items()}


def assert_zero_loss(repo: Path, source: dict[int, dict[str, Any]]) -> int:
    """Compare every legacy column, parameter and execution row with the source; fields."""
    stored = metadata_by_legacy_key(repo)
    assert sorted(stored) == sorted(str(k) for k in source)
    fields = 0
    for key, expected in source.items():
        _, meta = stored[str(key)]
        legacy = meta["legacy"]
        row = decoded(legacy, "row")
        assert list(row) == list(expected["row"]), "column order and names are kept"
        for col, value in expected["row"].items():
            assert same(row[col], value), (key, col, row[col], value)
            fields += 1
        for part in ("params", "executions"):
            assert len(legacy[part]) == len(expected[part])
            for i, src in enumerate(expected[part]):
                got = decoded(legacy, part, i)
                assert list(got) == list(src)
                for col, value in src.items():
                    assert same(got[col], value), (key, part, i, col)
                    fields += 1
    return fields


def commits(repo: Path) -> list[tuple[str, str]]:
    """``(sha, full message)`` of every commit, oldest first."""
    raw = git(repo, "log", "--reverse", "--format=%H%x00%B%x01")
    return [tuple(c.strip("\n").split("\x00", 1)) for c in raw.split("\x01") if c.strip()]  # type: ignore[misc]


def tags(repo: Path) -> dict[str, str]:
    """``{tag: commit}`` of the release tags."""
    raw = git(repo, "for-each-ref", "refs/tags", "--format=%(refname:short) %(*objectname)")
    return dict(line.split() for line in raw.splitlines())


# -- fixtures -----------------------------------------------------------------------------


async def _migrate_with_index(repo: Path, source: str, index: Path, **kw: Any) -> MigrationReport:
    from registry.index.sqlite import SqliteIndex

    backend = await SqliteIndex.connect(index)
    try:
        return await migrate(GitStore.open(repo), source, backend=backend, **kw)
    finally:
        await backend.close()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("migrated")
    db = build_sqlite(base / "legacy.db", N)
    repo = base / "repo"
    GitStore.init(repo)
    progress: list[tuple[int, int, str]] = []
    report = asyncio.run(
        _migrate_with_index(
            repo, str(db), base / "index.db", on_progress=lambda *a: progress.append(a)
        )
    )
    return {
        "db": db,
        "repo": repo,
        "report": report,
        "index": base / "index.db",
        "progress": progress,
    }


# -- ids ------------------------------------------------------------------------------------


def _procs(names: list[str]) -> list[LegacyProcedure]:
    return [
        LegacyProcedure("sqlite:x.db", str(i), {"id": i, "name": n}) for i, n in enumerate(names, 1)
    ]


def test_ids_are_safe_distinct_and_independent_of_row_order() -> None:
    procs = _procs(
        [
            "Deploy App", "deploy-app", "DEPLOY  app!", "../../etc/passwd", "", "   ", "部署",
            "Café", "x" * 300, "x" * 299 + "y", "42", "ok", "OK!",
        ]
    )  # fmt: skip
    ids = assign_ids(procs)
    assert len(set(ids.values())) == len(procs)
    assert all(ID_RE.match(i) for i in ids.values())
    assert ids["sqlite:x.db#4"] == "etc-passwd"  # unique slug: kept bare, path characters gone
    assert ids["sqlite:x.db#8"] == "cafe"
    assert ids["sqlite:x.db#11"] == "42"
    assert all(ids[f"sqlite:x.db#{k}"].startswith("deploy-app-") for k in (1, 2, 3))
    shuffled = procs[:]
    random.Random(7).shuffle(shuffled)
    assert assign_ids(shuffled) == ids
    # an existing folder of the same name pushes the newcomer to a hashed id
    assert assign_ids(procs, occupied={"cafe"})["sqlite:x.db#8"].startswith("cafe-")


# -- the full SQLite migration ------------------------------------------------------------


def test_sqlite_migration_loses_nothing(migrated: dict[str, Any]) -> None:
    report: MigrationReport = migrated["report"]
    assert report.counts == {"migrated": N, "skipped": 0, "failed": 0}
    assert sum(report.bands.values()) == N and all(report.bands[b] > 0 for b in report.bands)
    assert report.verification.line == f"verified: {N} procedures, 0 fields lost"
    assert report.render_table().rstrip().endswith(f"verified: {N} procedures, 0 fields lost")
    fields = assert_zero_loss(migrated["repo"], read_sqlite(migrated["db"]))
    assert fields == report.verification.fields_checked
    assert migrated["progress"][-1][:2] == (N, N)
    assert [p[0] for p in migrated["progress"]] == list(range(1, N + 1))


def test_metadata_is_valid_and_ids_are_safe(migrated: dict[str, Any]) -> None:
    stored = metadata_by_legacy_key(migrated["repo"])
    for key, (folder, data) in stored.items():
        meta = Metadata.model_validate(data)
        assert meta.id == folder and ID_RE.match(folder)
        assert meta.confidence is not None and meta.confidence.band == band_for(
            meta.confidence.score
        )
        assert meta.source.system == "sqlite:legacy.db" and meta.source.generator == "builtin"
        assert meta.legacy is not None and meta.legacy["key"] == key
    by_name = {data["legacy"]["row"]["name"]: folder for folder, data in stored.values()}
    assert len({by_name["Deploy App"], by_name["deploy-app"], by_name["DEPLOY  app!"]}) == 3
    assert by_name["../../etc/passwd"].startswith("etc-passwd")
    assert ".." not in "".join(by_name.values()) and "/" not in "".join(by_name.values())
    # legacy statistics stay, verbatim, with their types
    stats = ("success_rate", "usage_count", "avg_completion_time_ms", "last_used")
    row = stored["3"][1]["legacy"]["row"]
    assert [row[k] for k in stats] == [1.0, 0, 1234.5, 1_710_000_120]  # 1 in a REAL column
    assert isinstance(row["success_rate"], float)
    row = stored["4"][1]["legacy"]["row"]
    assert [row[k] for k in stats] == ["n/a", 2**40, 0, 1_710_000_180]  # text in a REAL column


def test_one_commit_per_procedure_with_trailers(migrated: dict[str, Any]) -> None:
    repo = migrated["repo"]
    stored = metadata_by_legacy_key(repo)
    log = commits(repo)
    assert len(log) == N
    by_extracted = {}
    for sha, message in log:
        subject, _, body = message.partition("\n\n")
        trailers = dict(line.split(": ", 1) for line in body.splitlines() if line)
        assert set(trailers) == {"Extracted-From", "Confidence", "Confidence-Band", "Category"}
        system, _, key = trailers["Extracted-From"].partition("#")
        assert system == "sqlite:legacy.db"
        folder, meta = stored[key]
        assert subject == f"feat: Convert procedure {meta['name']} to executable code"
        assert float(trailers["Confidence"]) == meta["confidence"]["score"]
        assert trailers["Confidence-Band"] == meta["confidence"]["band"]
        assert trailers["Category"] == meta["category"]
        changed = git(repo, "show", "--name-only", "--format=", sha).split()
        assert changed == [f"procedures/{folder}/main.py", f"procedures/{folder}/metadata.json"]
        by_extracted[key] = sha
    assert len(by_extracted) == N


def test_every_procedure_is_released_as_1_0_0(migrated: dict[str, Any]) -> None:
    repo = migrated["repo"]
    released = tags(repo)
    stored = metadata_by_legacy_key(repo)
    assert len(released) == N
    for folder, _ in stored.values():
        tag = f"procedure-{folder}-v1.0.0"
        added = git(repo, "log", "--format=%H", "--", f"procedures/{folder}/metadata.json").split()
        assert released[tag] == added[-1]
        message = git(repo, "tag", "-l", "--format=%(contents)", tag)
        assert "Bump: initial" in message and "Previous: none" in message


def test_legacy_executions_become_imported_runs(migrated: dict[str, Any]) -> None:
    from registry.index.sqlite import SqliteIndex

    _, _, runs = legacy_rows(N)
    stored = metadata_by_legacy_key(migrated["repo"])
    assert migrated["report"].runs_imported == len(runs)

    async def check() -> list[ExecutionRecord]:
        backend = await SqliteIndex.connect(migrated["index"])
        try:
            assert await backend.count_executions() == len(runs)
            folder = stored["3"][0]  # procedure id 3 ran twice: partial, then success
            return await backend.executions(folder)
        finally:
            await backend.close()

    records = asyncio.run(check())
    assert len(records) == 2
    assert all(r.imported and r.version == "1.0.0" for r in records)
    assert sorted((r.outcome, r.error_type or "") for r in records) == [
        ("failure", "Partial"),
        ("success", ""),
    ]
    partial = next(r for r in records if r.error_type == "Partial")
    assert partial.error_message == "legacy outcome: 'partial'"
    assert partial.commit == tags(migrated["repo"])[f"procedure-{stored['3'][0]}-v1.0.0"]


def test_second_run_changes_nothing(migrated: dict[str, Any]) -> None:
    repo = migrated["repo"]
    head, released = git(repo, "rev-parse", "HEAD"), tags(repo)
    report = asyncio.run(
        _migrate_with_index(repo, f"sqlite:///{migrated['db']}", migrated["index"])
    )
    assert report.counts == {"migrated": 0, "skipped": N, "failed": 0}
    assert report.tags_created == 0 and report.runs_imported == 0
    assert report.verification.line == f"verified: {N} procedures, 0 fields lost"
    assert git(repo, "rev-parse", "HEAD") == head
    assert tags(repo) == released
    dry = migrate_sync(GitStore.open(repo), str(migrated["db"]), dry_run=True)
    assert dry.counts["skipped"] == N
    assert dry.verification.line == f"verified: {N} procedures, 0 fields lost"


def test_report_json_has_every_procedure(migrated: dict[str, Any]) -> None:
    data = json.loads(migrated["report"].to_json())
    assert set(data) >= {"source", "counts", "bands", "procedures", "verification"}
    assert data["verification"]["line"] == f"verified: {N} procedures, 0 fields lost"
    first = data["procedures"][0]
    assert set(first) >= {"id", "legacy_id", "name", "confidence", "band", "problems"}
    assert len(data["procedures"]) == N


# -- other sources ---------------------------------------------------------------------------


def test_json_dump_and_relative_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dump = build_json(tmp_path / "dump.json", N)
    GitStore.init(tmp_path / "repo")
    report = migrate_sync(GitStore.open(tmp_path / "repo"), str(dump))
    assert report.verification.line == f"verified: {N} procedures, 0 fields lost"
    procs, params, runs = legacy_rows(N)
    source = {
        p["id"]: {
            "row": p,
            "params": [q for q in params if q["procedure_id"] == p["id"]],
            "executions": [e for e in runs if e["procedure_id"] == p["id"]],
        }
        for p in procs
    }
    assert_zero_loss(tmp_path / "repo", source)

    build_sqlite(tmp_path / "rel.db", 3)
    monkeypatch.chdir(tmp_path)
    GitStore.init(tmp_path / "repo2")
    report = migrate_sync(GitStore.open(tmp_path / "repo2"), "sqlite:///rel.db")
    assert report.counts["migrated"] == 3


@pytest.mark.postgres
def test_postgres_source(pg_url: str, tmp_path: Path) -> None:
    asyncio.run(build_postgres(pg_url, 105))
    GitStore.init(tmp_path / "repo")
    report = migrate_sync(GitStore.open(tmp_path / "repo"), pg_url)
    assert report.counts == {"migrated": 105, "skipped": 0, "failed": 0}
    assert report.verification.line == "verified: 105 procedures, 0 fields lost"
    source = asyncio.run(read_postgres(pg_url))
    assert_zero_loss(tmp_path / "repo", source)
    stored = metadata_by_legacy_key(tmp_path / "repo")
    shared = [f for f, m in stored.values() if m["legacy"]["row"]["name"] == "Shared Name"]
    assert len(set(shared)) == 3 and all(f.startswith("shared-name-") for f in shared)
    _, meta = stored["2"]
    assert meta["legacy"]["types"]["row.created_at"] == "timestamp"
    assert meta["legacy"]["row"]["created_at"] == dt.datetime(2023, 5, 7, 7, 8, 9).isoformat()
    assert [p["name"] for p in meta["parameters"]][:4] == [
        "service",
        "environment",
        "replicas",
        "force",
    ]


# -- dry run, resume, errors -----------------------------------------------------------------


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    db = build_sqlite(tmp_path / "legacy.db", N)
    store = GitStore.init(tmp_path / "repo")
    report = migrate_sync(store, str(db), dry_run=True)
    assert report.dry_run and report.counts["migrated"] == N
    assert report.verification.line == f"verified: {N} procedures, 0 fields lost"
    assert store.is_unborn()
    assert git(tmp_path / "repo", "tag") == ""
    assert not (tmp_path / "repo" / "procedures").exists()


KILLER = """
import os, signal, sys
from registry.git.store import GitStore
from registry.migrate.migration import migrate_sync

mode, repo, source, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = GitStore.open(repo)
if mode == "progress":
    def on_progress(done, total, name):
        if done == n:
            os.kill(os.getpid(), signal.SIGKILL)
    migrate_sync(store, source, on_progress=on_progress)
else:  # die between a procedure's commit and its tag
    calls = [0]
    original = GitStore.create_tag
    def create_tag(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)
    GitStore.create_tag = create_tag
    migrate_sync(store, source)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "n", "commits_left", "tags_left"), [("progress", 37, 37, 37), ("tag", 12, 12, 11)]
)
def test_resume_after_sigkill(
    tmp_path: Path, mode: str, n: int, commits_left: int, tags_left: int
) -> None:
    db = build_sqlite(tmp_path / "legacy.db", N)
    repo = tmp_path / "repo"
    GitStore.init(repo)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), mode, str(repo), str(db), str(n)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(commits(repo)) == commits_left
    assert len(tags(repo)) == tags_left

    report = migrate_sync(GitStore.open(repo), str(db))
    assert report.counts == {"migrated": N - commits_left, "skipped": commits_left, "failed": 0}
    assert report.tags_created == N - tags_left
    assert report.verification.line == f"verified: {N} procedures, 0 fields lost"
    assert len(commits(repo)) == N
    assert len(tags(repo)) == N
    assert_zero_loss(repo, read_sqlite(db))  # also asserts each legacy id exactly once


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_bad_sources_raise_a_clear_error(tmp_path: Path) -> None:
    store = GitStore.init(tmp_path / "repo")
    empty = tmp_path / "empty.db"
    import sqlite3

    sqlite3.connect(empty).close()
    cases = [
        (str(tmp_path / "missing.db"), "missing.db"),
        ("sqlite:/x.db", "three slashes"),
        ("mysql://h/db", "unsupported source scheme 'mysql'"),
        (_write(tmp_path / "junk.db", b"not a database at all" * 10), "junk.db"),
        (str(empty), "no `procedures` table"),
        (_write(tmp_path / "bad.json", b"{not json"), "bad.json: not a readable JSON dump"),
        (_write(tmp_path / "obj.json", b'{"a": 1}'), "must be a list"),
        ("", "no legacy source"),
    ]
    for source, expected in cases:
        with pytest.raises(MigrationError, match=re.escape(expected)):
            migrate_sync(store, source)
    with pytest.raises(MigrationError) as err:
        migrate_sync(store, "postgresql://postgres:hunter2@127.0.0.1:1/legacy")
    assert "127.0.0.1:1/legacy" in str(err.value) and "hunter2" not in str(err.value)
    assert store.is_unborn()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("sqlite:///rel/legacy.db", ("sqlite", "rel/legacy.db")),
        ("sqlite:////abs/legacy.db", ("sqlite", "/abs/legacy.db")),
        ("dump.JSON", ("json", "dump.JSON")),
        ("legacy.sqlite3", ("sqlite", "legacy.sqlite3")),
        ("postgresql://u@h/db", ("postgresql", "postgresql://u@h/db")),
    ],
)
def test_source_forms(source: str, expected: tuple[str, str]) -> None:
    assert describe_source(source) == expected


def test_failed_procedures_are_reported_and_others_still_migrate(tmp_path: Path) -> None:
    db = build_sqlite(tmp_path / "legacy.db", 5)
    import sqlite3

    conn = sqlite3.connect(db)
    with conn:  # a template too large for main.py (256 KiB at most) cannot pass validation
        conn.execute("UPDATE procedures SET template = ? WHERE id = 2", ("{{x}} " * 60_000,))
    conn.close()
    report = migrate_sync(GitStore.init(tmp_path / "repo"), str(db))
    assert report.counts == {"migrated": 4, "skipped": 0, "failed": 1}
    failed = next(p for p in report.procedures if p.status == "failed")
    assert failed.legacy_id == "2" and any("file-too-large" in p for p in failed.problems)
    assert report.verification.line == "verified: 4 procedures, 0 fields lost"
    assert asyncio.run(read_source(str(db))).procedures[1].key == "2"
    shutil.rmtree(tmp_path / "repo")


def test_bundled_sample_is_current_and_migrates(tmp_path: Path) -> None:
    sample = REPO_ROOT / "examples" / "legacy" / "sample.db"
    subprocess.run(
        [sys.executable, str(sample.with_name("make_sample.py")), str(tmp_path / "fresh.db")],
        check=True, capture_output=True,
    )  # fmt: skip
    assert (tmp_path / "fresh.db").read_bytes() == sample.read_bytes()
    report = migrate_sync(GitStore.init(tmp_path / "repo"), str(sample))
    assert report.counts == {"migrated": 20, "skipped": 0, "failed": 0}
    assert all(report.bands[b] > 0 for b in ("approved", "review", "expert"))
    assert report.verification.line == "verified: 20 procedures, 0 fields lost"
    assert "create-feature-branch" in git(
        tmp_path / "repo", "ls-tree", "--name-only", "HEAD:procedures"
    )
