"""Sync from git into the index, on both backends: incremental, rebuilds, tags, crashes, verify."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from registry.git.store import GitStore
from registry.index.connect import open_backend
from registry.index.contract import (
    ChangeSet,
    IndexBackend,
    ProcedureHead,
    ReleaseRef,
    SearchQuery,
)
from registry.index.sync import sync, verify
from tests.helpers import (
    REPO_ROOT,
    commit_all,
    git,
    make_repo,
    tag_channel,
    tag_release,
    write_proc,
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _open(root: Path, db_url: str | None) -> tuple[GitStore, IndexBackend]:
    store = GitStore.open(root)
    return store, await open_backend(store, db_url)


# -- tests -------------------------------------------------------------------------


def test_first_sync_builds_and_second_changes_nothing(repo: Path, db_url: str | None) -> None:
    async def body() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            first = await sync(store, backend)
            assert first.rebuilt and first.added == ["alpha", "beta", "gamma"]
            before = await backend.snapshot()
            again = await sync(store, backend)
            assert not again.changed
            assert await backend.snapshot() == before
            assert await verify(store, backend) == []

    run(body())


def test_incremental_sync_reads_only_changed_folders(
    repo: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            await sync(store, backend)
            write_proc(repo, "beta", description="Beta now parses invoices.")
            write_proc(repo, "delta")
            commit_all(repo, "edit beta, add delta")
            reads: list[str] = []
            real = store.read_tree

            def counting(proc_id: str, tree_id: str, commit: str | None = None) -> Any:
                reads.append(proc_id)
                return real(proc_id, tree_id, commit)

            monkeypatch.setattr(store, "read_tree", counting)
            report = await sync(store, backend)
            assert not report.rebuilt
            assert report.updated == ["beta"] and report.added == ["delta"]
            assert sorted(reads) == ["beta", "delta"]
            hits = await backend.search(SearchQuery("invoices"))
            assert [h.id for h in hits] == ["beta"]
            assert await verify(store, backend) == []

    run(body())


def test_force_push_rebuilds(repo: Path, db_url: str | None) -> None:
    async def body() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            write_proc(repo, "delta")
            commit_all(repo, "add delta")
            write_proc(repo, "alpha", description="Alpha v2 with zebras.")
            commit_all(repo, "edit alpha")
            await sync(store, backend)
            git(repo, "reset", "-q", "--hard", "HEAD~2")
            report = await sync(store, backend)
            assert report.rebuilt
            assert report.deleted == ["delta"] and report.updated == ["alpha"]
            assert await backend.get_procedure("delta") is None
            assert await backend.search(SearchQuery("zebras")) == []
            assert await verify(store, backend) == []

    run(body())


def test_pack_refs_changes_nothing(repo: Path, db_url: str | None) -> None:
    async def body() -> None:
        tag_release(repo, "alpha", "1.0.0")
        tag_channel(repo, "alpha", "stable", 1, "1.0.0")
        store, backend = await _open(repo, db_url)
        async with backend:
            await sync(store, backend)
            before = await backend.snapshot()
            git(repo, "pack-refs", "--all")
            report = await sync(store, backend)
            assert not report.changed
            assert await backend.snapshot() == before
            assert await verify(store, backend) == []

    run(body())


def test_tags_are_added_and_removed_incrementally(repo: Path, db_url: str | None) -> None:
    async def body() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            await sync(store, backend)
            t1 = tag_release(repo, "alpha", "1.0.0")
            c1 = tag_channel(repo, "alpha", "stable", 1, "1.0.0")
            report = await sync(store, backend)
            assert not report.rebuilt and report.tags_added == sorted([t1, c1])
            [v] = await backend.versions("alpha")
            assert (v.version, v.bump, v.reasons) == ("1.0.0", "minor", ["test release"])
            assert v.tree_id == store.tree_ids("HEAD")["alpha"]
            assert (await backend.current_channels("alpha"))["stable"].version == "1.0.0"
            git(repo, "tag", "-d", t1)
            report = await sync(store, backend)
            assert report.tags_removed == [t1]
            assert await backend.versions("alpha") == []
            assert await verify(store, backend) == []

    run(body())


def test_deleted_procedure_leaves_current_table_but_keeps_versions(
    repo: Path, db_url: str | None
) -> None:
    async def body() -> None:
        tag_release(repo, "gamma", "1.0.0")
        store, backend = await _open(repo, db_url)
        async with backend:
            await sync(store, backend)
            git(repo, "rm", "-q", "-r", "procedures/gamma")
            commit_all(repo, "remove gamma")
            report = await sync(store, backend)
            assert report.deleted == ["gamma"]
            assert await backend.get_procedure("gamma") is None
            assert [h.id for h in await backend.search(SearchQuery())] == ["alpha", "beta"]
            assert [v.version for v in await backend.versions("gamma")] == ["1.0.0"]
            assert await verify(store, backend) == []

    run(body())


def test_invalid_procedure_keeps_last_valid_state(repo: Path, db_url: str | None) -> None:
    async def body() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            await sync(store, backend)
            (repo / "procedures" / "alpha" / "main.py").write_text("def main(text:\n")
            write_proc(repo, "beta", description="Beta learned about walruses.")
            commit_all(repo, "break alpha, improve beta")
            report = await sync(store, backend)
            assert report.invalid == ["alpha"] and report.updated == ["beta"]
            alpha = await backend.get_procedure("alpha")
            assert alpha is not None and not alpha.valid
            assert any("procedures/alpha/main.py" in e for e in alpha.errors)
            assert alpha.description == "The alpha procedure."  # the last valid content
            assert [h.id for h in await backend.search(SearchQuery("walruses"))] == ["beta"]
            assert await verify(store, backend) == []
            # a rebuild from git alone finds the same last valid state in history
            rebuilt = await sync(store, backend, full=True)
            assert rebuilt.invalid == ["alpha"]
            alpha = await backend.get_procedure("alpha")
            assert alpha is not None and alpha.description == "The alpha procedure."
            assert await verify(store, backend) == []

    run(body())


def test_verify_reports_tampering(repo: Path, db_url: str | None) -> None:
    async def body() -> None:
        tag_release(repo, "alpha", "1.0.0")
        store, backend = await _open(repo, db_url)
        async with backend:
            report = await sync(store, backend)
            row = await backend.get_procedure("beta")
            assert row is not None and report.commit is not None
            state = await backend.sync_state(report.ref)
            assert state is not None and state.tags_digest is not None
            record = row.model_copy(update={"description": "tampered"})
            fields = set(type(record).model_fields) - {"latest_version", "runs", "success_rate"}
            from registry.index.contract import ProcedureRecord

            await backend.apply(
                ChangeSet(
                    ref=report.ref,
                    commit=report.commit,
                    tags_digest=state.tags_digest,
                    upsert=[ProcedureRecord(**record.model_dump(include=fields))],
                    versions_delete=["procedure-alpha-v1.0.0"],
                )
            )
            drift = await verify(store, backend)
            assert [(d.table, d.key, d.kind, d.fields) for d in drift] == [
                ("procedures", "beta", "different", ["description"]),
                ("versions", "procedure-alpha-v1.0.0", "missing", []),
            ]
            await sync(store, backend, full=True)
            assert await verify(store, backend) == []

    run(body())


def test_unborn_branch_syncs_nothing(tmp_path: Path, db_url: str | None) -> None:
    async def body() -> None:
        root = make_repo(tmp_path / "empty")
        store, backend = await _open(root, db_url)
        async with backend:
            report = await sync(store, backend)
            assert report.commit is None and not report.changed
            assert await verify(store, backend) == []

    run(body())


def test_one_syncer_at_a_time(repo: Path, db_url: str | None) -> None:
    async def body() -> None:
        store, first = await _open(repo, db_url)
        _, second = await _open(repo, db_url)
        async with first, second:
            async with first.sync_lock():
                other = asyncio.create_task(sync(store, second))
                await asyncio.sleep(0.5)
                assert not other.done()  # waits for the lock holder
            report = await asyncio.wait_for(other, 30)
            assert report.rebuilt

    run(body())


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from registry.git.store import GitStore
    from registry.index.connect import open_backend
    from registry.index.sync import sync

    async def main():
        store = GitStore.open(sys.argv[2])
        backend = await open_backend(store, sys.argv[3] or None)
        real = backend.apply
        async def apply(changes):
            Path(sys.argv[4]).write_text("applying")
            await real(changes)
            Path(sys.argv[4]).write_text("applied")
            await asyncio.sleep(60)
        backend.apply = apply
        await sync(store, backend)

    asyncio.run(main())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.02])
def test_sync_killed_midway_converges(
    repo: Path, db_url: str | None, tmp_path: Path, delay: float
) -> None:
    async def first() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            await sync(store, backend)

    run(first())
    for i in range(300):
        write_proc(repo, f"bulk-{i:03d}", description=f"Bulk procedure number {i}.")
    commit_all(repo, "300 procedures")
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(REPO_ROOT), str(repo), db_url or "", str(marker)]
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.002)
        assert marker.exists(), "the sync never reached apply"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()

    async def after() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            report = await sync(store, backend)
            assert report.commit == store.resolve("HEAD")
            assert len(await backend.search(SearchQuery(limit=1000))) == 303
            assert await verify(store, backend) == []

    run(after())


# -- the byte-level tree diff, the lean queries and the kept lock connection ----------


def test_tree_diff_matches_git_for_random_edits(tmp_path: Path) -> None:
    """Adds, edits, deletes, files beside folders and renames: the same answer as libgit2."""
    import random

    import pygit2

    store = GitStore.init(tmp_path / "r", bare=True)
    repo = store.repo
    rng = random.Random(7)
    blobs = [repo.create_blob(f"content {i}".encode()) for i in range(4)]

    def folder(seed: int) -> pygit2.Oid:
        tb = repo.TreeBuilder()
        tb.insert("main.py", blobs[seed % 4], pygit2.GIT_FILEMODE_BLOB)
        return tb.write()

    def commit(entries: dict[str, tuple[int, bool]], parents: list[pygit2.Oid]) -> str:
        tb = repo.TreeBuilder()
        for name, (seed, is_tree) in entries.items():
            if is_tree:
                tb.insert(name, folder(seed), pygit2.GIT_FILEMODE_TREE)
            else:
                tb.insert(name, blobs[seed % 4], pygit2.GIT_FILEMODE_BLOB)
        root = repo.TreeBuilder()
        root.insert("procedures", tb.write(), pygit2.GIT_FILEMODE_TREE)
        sig = pygit2.Signature("T", "t@example.com", 1_700_000_000, 0)
        return str(repo.create_commit(None, sig, sig, "c", root.write(), parents))

    names = [f"p{i:03d}" + "x" * (i % 3) for i in range(120)] + ["a b", "p-1", "p.md"]
    entries = {n: (rng.randrange(4), not n.endswith(".md")) for n in names[:80]}
    previous = commit(entries, [])
    for _ in range(60):
        for _ in range(rng.randrange(1, 6)):
            name = rng.choice(names)
            if rng.random() < 0.25:
                entries.pop(name, None)
            else:
                entries[name] = (rng.randrange(4), rng.random() < 0.8)
        current = commit(entries, [pygit2.Oid(hex=previous)])
        before, after = store.tree_ids(previous), store.tree_ids(current)
        expected = {
            pid: (before.get(pid), after.get(pid))
            for pid in before.keys() | after.keys()
            if before.get(pid) != after.get(pid)
        }
        assert store.changed_procedures(previous, current) == expected
        previous = current


def test_lean_search_and_get_agree_with_the_full_rows(repo: Path, db_url: str | None) -> None:
    """search_summaries and procedure_refs agree with the full rows."""

    async def body() -> None:
        write_proc(repo, "delta", tags=("csv", "text"))
        commit_all(repo, "delta")
        tag_release(repo, "alpha", "1.0.0")
        tag_release(repo, "alpha", "1.2.0-rc.1")
        tag_release(repo, "alpha", "1.10.0")
        store, backend = await _open(repo, db_url)
        async with backend:
            await sync(store, backend)
            full = await backend.search(SearchQuery(None, limit=100))
            lean = await backend.search_summaries(SearchQuery(None, limit=100))
            assert [h["id"] for h in lean] == [r.id for r in full]
            for hit, row in zip(lean, full, strict=True):
                assert hit == {k: getattr(row, k) for k in hit}
            assert {h["id"]: h["latest_version"] for h in lean}["alpha"] == "1.10.0"
            for pid in ("alpha", "delta", "nope"):
                got, versions = await backend.get_procedure(pid), await backend.versions(pid)
                head, releases = await backend.procedure_refs(pid)
                assert (head is None) == (got is None)
                if got is not None:
                    assert head == tuple(getattr(got, k) for k in ProcedureHead._fields)
                assert releases == [
                    tuple(getattr(v, k) for k in ReleaseRef._fields) for v in versions
                ]
            versions = await backend.versions("alpha")
            assert [v.version for v in versions] == ["1.0.0", "1.2.0-rc.1", "1.10.0"]
            tagged_at = versions[0].tagged_at
            assert tagged_at is not None and tagged_at.utcoffset() == timedelta(0)

    run(body())


def test_many_syncs_reuse_one_lock_session(repo: Path, pg_url: str) -> None:
    """The PostgreSQL sync lock survives its connection dying and stays exclusive in-process."""
    from registry.errors import ConflictError

    async def body() -> None:
        store, backend = await _open(repo, pg_url)
        async with backend:
            await sync(store, backend)
            write_proc(repo, "alpha", doc="Changed.")
            commit_all(repo, "edit")
            conn = backend._lock_conn  # type: ignore[attr-defined]
            assert conn is not None
            conn.terminate()  # the server or a proxy dropped it between syncs
            report = await sync(store, backend)
            assert report.updated == ["alpha"]
            async with backend.sync_lock():
                with pytest.raises(ConflictError, match="another sync"):
                    async with backend.sync_lock(wait=False):
                        pass
            async with backend.sync_lock(wait=False):
                pass

    run(body())


def test_rebuild_reads_tags_without_ref_lookups(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild takes tag targets from its one pass over the refs (no per-tag lookup)."""

    async def body() -> None:
        tag_release(repo, "alpha", "1.0.0")
        tag_release(repo, "beta", "0.1.0")
        looked_up: list[str] = []
        original = GitStore.tag

        def spy(self: GitStore, name: str) -> Any:
            looked_up.append(name)
            return original(self, name)

        monkeypatch.setattr(GitStore, "tag", spy)
        store, backend = await _open(repo, None)
        async with backend:
            report = await sync(store, backend)
            assert report.tags_added == ["procedure-alpha-v1.0.0", "procedure-beta-v0.1.0"]
            assert [v.version for v in await backend.versions("beta")] == ["0.1.0"]
            tag_release(repo, "gamma", "2.0.0")
            report = await sync(store, backend)
            assert report.tags_added == ["procedure-gamma-v2.0.0"]
            assert await verify(store, backend) == []
        assert looked_up == []

    run(body())


def test_kept_latest_version_follows_every_change(repo: Path, db_url: str | None) -> None:
    """The latest version a list shows is always the highest release tag (semver, then build).

    It is kept in the index, not computed per row, so every way the tags change is
    checked against the definition: added (a lower one, a higher prerelease, a build),
    deleted (the highest, all of them), the procedure deleted and added back, and a
    rebuild from scratch.
    """
    from registry.core.tags import parse_release_tag, version_key

    def expected() -> dict[str, str]:
        best: dict[str, Any] = {}
        for name in git(repo, "tag", "-l", "procedure-*").split():
            parsed = parse_release_tag(name)
            assert parsed is not None
            pid, version = parsed
            if pid not in best or version_key(version) > version_key(best[pid]):
                best[pid] = version
        return {pid: str(v) for pid, v in best.items()}

    async def shown(backend: IndexBackend) -> dict[str, str]:
        hits = await backend.search_summaries(SearchQuery(None, limit=100))
        got = {h["id"]: h["latest_version"] for h in hits if h["latest_version"]}
        for h in hits:  # get and the full rows say the same
            row = await backend.get_procedure(h["id"])
            assert row is not None and row.latest_version == h["latest_version"]
        return got

    async def body() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            steps = [
                lambda: tag_release(repo, "alpha", "1.2.0"),
                lambda: tag_release(repo, "alpha", "1.10.0"),
                lambda: tag_release(repo, "alpha", "1.9.0"),
                lambda: tag_release(repo, "alpha", "2.0.0-rc.1"),
                lambda: tag_release(repo, "beta", "0.1.0"),
                lambda: tag_release(repo, "beta", "0.1.0+build.2"),
                lambda: git(repo, "tag", "-d", "procedure-alpha-v2.0.0-rc.1"),
                lambda: git(repo, "tag", "-d", "procedure-beta-v0.1.0+build.2"),
                lambda: git(repo, "tag", "-d", "procedure-beta-v0.1.0"),
                lambda: (git(repo, "rm", "-rq", "procedures/alpha"), commit_all(repo, "rm alpha")),
                lambda: (write_proc(repo, "alpha"), commit_all(repo, "alpha back")),
            ]
            await sync(store, backend)
            for step in steps:
                step()
                await sync(store, backend)
                present = {h["id"] for h in await backend.search_summaries(SearchQuery(None))}
                assert await shown(backend) == {
                    k: v for k, v in expected().items() if k in present
                }, step
            before = await shown(backend)
            report = await sync(store, backend, full=True)
            assert report.rebuilt
            assert await shown(backend) == before
            assert before["alpha"] == "1.10.0"

    run(body())
