"""The query API: AsyncRegistry and the Registry facade in the three event-loop situations."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio.from_thread
import pytest

from registry.api import AsyncRegistry, Registry
from registry.api._results import metadata_of
from registry.errors import NotFoundError, RegistryTimeout
from registry.git.store import GitStore
from registry.index.connect import open_backend
from registry.index.contract import SearchQuery
from tests.helpers import (
    commit_all,
    git,
    make_repo,
    tag_channel,
    tag_release,
    write_files,
    write_proc,
)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """slugify: 1.0.0 (stable), 1.1.0, then edited on main; csv-report: unreleased."""
    root = make_repo(tmp_path / "repo")
    write_proc(root, "slugify", description="Turn a title into a URL slug.", tags=("text",))
    write_proc(root, "csv-report", description="Summarise a CSV file.", category="data")
    commit_all(root, "feat: two procedures")
    tag_release(root, "slugify", "1.0.0")
    tag_channel(root, "slugify", "stable", 1, "1.0.0")
    write_proc(
        root,
        "slugify",
        description="Turn a title into a URL slug.",
        tags=("text",),
        body="return text.lower()",
    )
    commit_all(root, "fix: lowercase")
    tag_release(root, "slugify", "1.1.0")
    write_proc(
        root,
        "slugify",
        description="Turn any title into a URL slug.",
        tags=("text",),
        body="return text.strip()",
    )
    commit_all(root, "fix: strip")
    yield root


def test_queries(repo: Path, db_url: str | None) -> None:
    with Registry.open(repo, db_url) as reg:
        hits = reg.search("slug")
        assert [h.id for h in hits] == ["slugify"]
        assert hits[0].version == "1.1.0" and hits[0].valid
        assert [h.id for h in reg.search(category="data")] == ["csv-report"]
        assert [h.id for h in reg.search(tags=["text"])] == ["slugify"]

        latest = reg.get("slugify")
        assert (latest.version, latest.resolved_from) == ("1.1.0", "release")
        assert "text.lower()" in latest.source
        assert reg.get("slugify", "^1.0").version == "1.1.0"
        assert reg.get("slugify", "1.0.0").source.endswith("return text\n")
        stable = reg.get("slugify", "stable")
        assert (stable.version, stable.channel) == ("1.0.0", "stable")
        head = reg.get("slugify", "HEAD")
        assert head.version is None and "text.strip()" in head.source
        assert head.metadata is not None and head.metadata.description.startswith("Turn any")
        unreleased = reg.get("csv-report")
        assert unreleased.resolved_from == "head" and unreleased.version is None
        with pytest.raises(NotFoundError, match="no version matches"):
            reg.get("slugify", "^2")
        with pytest.raises(NotFoundError):
            reg.get("nope")

        versions = reg.versions("slugify")
        assert [(v.version, v.channels) for v in versions] == [
            ("1.0.0", ["stable"]),
            ("1.1.0", []),
        ]
        history = reg.history("slugify")
        assert [h.message.strip() for h in history] == [
            "fix: strip",
            "fix: lowercase",
            "feat: two procedures",
        ]
        assert [h.versions for h in history] == [[], ["1.1.0"], ["1.0.0"]]
        diff = reg.diff("slugify", "1.0.0", "1.1.0")
        assert "-    return text\n" in diff.patch and "+    return text.lower()" in diff.patch
        assert "procedures/slugify/main.py" in diff.patch
        assert reg.verify() == []


def test_async_core(repo: Path, db_url: str | None) -> None:
    async def body() -> None:
        async with await AsyncRegistry.open(repo, db_url) as reg:
            assert [h.id for h in await reg.search("csv")] == ["csv-report"]
            assert (await reg.get("slugify", "~1.0")).version == "1.0.0"
            write_proc(repo, "brand-new", description="Counts zebras.")
            commit_all(repo, "feat: zebras")
            assert await reg.search("zebras") == []  # the index follows git by sync
            report = await reg.sync()
            assert report.added == ["brand-new"]
            assert [h.id for h in await reg.search("zebras")] == ["brand-new"]

    asyncio.run(body())


def test_open_without_auto_sync_does_not_touch_the_index(repo: Path) -> None:
    with Registry.open(repo, auto_sync=False) as reg:
        assert reg.search() == []
        assert reg.sync().rebuilt
        assert len(reg.search()) == 2


# -- the facade in the three event-loop situations, each with a timeout --------------


@contextmanager
def holding_sync_lock(repo: Path, db_url: str | None) -> Iterator[None]:
    """Another syncer (its own connection, on its own thread) holds the sync lock."""
    with anyio.from_thread.start_blocking_portal() as portal:
        backend = portal.call(open_backend, GitStore.open(repo), db_url)
        lock = backend.sync_lock()
        portal.call(lock.__aenter__)
        try:
            yield
        finally:
            portal.call(lock.__aexit__, None, None, None)
            portal.call(backend.close)


def _exercise(repo: Path, db_url: str | None) -> None:
    """Query, then time out on a sync blocked by another syncer, then recover."""
    with Registry.open(repo, db_url, timeout=20) as reg:
        assert reg.get("slugify").version == "1.1.0"
        write_proc(repo, "late", description="Arrived late.")
        commit_all(repo, "feat: late")
        with holding_sync_lock(repo, db_url):
            with pytest.raises(RegistryTimeout):
                reg.sync(timeout=0.5)
            with pytest.raises(TimeoutError):  # RegistryTimeout is a TimeoutError too
                reg.sync(timeout=0.2)
        assert reg.sync().added == ["late"]  # the cancelled calls left no lock behind
        assert [h.id for h in reg.search("late")] == ["late"]


def test_facade_without_event_loop(repo: Path, db_url: str | None) -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    _exercise(repo, db_url)


def test_facade_with_loop_that_is_not_running(repo: Path, db_url: str | None) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        _exercise(repo, db_url)
        assert not loop.is_running() and not loop.is_closed()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_facade_inside_running_loop(repo: Path, db_url: str | None) -> None:
    async def app() -> None:
        asyncio.get_running_loop()  # like an async application or a notebook cell
        _exercise(repo, db_url)

    asyncio.run(app())


def test_facade_after_close_refuses_calls(repo: Path) -> None:
    reg = Registry.open(repo)
    reg.close()
    reg.close()  # idempotent
    from registry.errors import RegistryError

    with pytest.raises(RegistryError, match="closed"):
        reg.search()


def test_get_after_reset_reports_deleted_head(repo: Path) -> None:
    with Registry.open(repo) as reg:
        git(repo, "rm", "-q", "-r", "procedures/slugify")
        commit_all(repo, "remove slugify")
        reg.sync()
        assert reg.get("slugify", "1.0.0").version == "1.0.0"  # history stays
        with pytest.raises(NotFoundError, match="not on the tracked branch"):
            reg.get("slugify", "HEAD")


def test_summaries_match_the_full_rows_and_the_loop_cannot_call_itself(
    repo: Path, db_url: str | None
) -> None:
    """The lean list path shows what the full rows hold; a call from the registry's own loop
    (say, inside a coroutine passed to ``call``) fails at once instead of waiting forever."""
    from registry.errors import RegistryError

    with Registry.open(repo, db_url) as reg:
        hits = reg.search(None, limit=1000)
        rows = reg.call(reg.core.backend.search, SearchQuery(None, limit=1000, order="name"))
        assert [h.id for h in hits] == [r.id for r in rows]
        for hit, row in zip(hits, rows, strict=True):
            assert (hit.name, hit.tags, hit.version, hit.valid, hit.errors, hit.runs) == (
                row.name,
                row.tags,
                row.latest_version,
                row.valid,
                row.errors,
                row.runs,
            )
        assert hits[0].model_dump()["id"] == hits[0].id

        async def nested() -> None:
            reg.search(None)

        with pytest.raises(RegistryError, match="own background loop"):
            reg.call(nested)
        assert reg.search(None, limit=1)  # the registry still works


def test_get_shows_what_git_holds_at_every_kind_of_spec(repo: Path, db_url: str | None) -> None:
    """``get`` reads only main.py (and metadata.json off the tracked tree), yet every detail is
    what a full read of the folder from git gives: the files of nested folders, the source,
    the metadata of the tracked tree from the index and of an older release from git."""
    folder = write_proc(
        repo,
        "slugify",
        description="Turn every title into a URL slug.",
        tags=("text",),
        body="return text.strip()",
    )
    (folder / "helpers").mkdir()
    (folder / "helpers" / "words.py").write_text("STOP = ['a', 'the']\n")
    (folder / "README.md").write_text("# slugify\n")
    commit_all(repo, "fix: helpers")
    tag_release(repo, "slugify", "1.1.1")
    write_files(repo, "csv-report", {"main.py": b"def main(:\n", "metadata.json": b"{}"})
    commit_all(repo, "broken csv-report")
    store = GitStore.open(repo)
    with Registry.open(repo, db_url) as reg:
        for spec in (None, "1.0.0", "^1.0", "~1.1.0", "stable", "HEAD"):
            got = reg.get("slugify", spec)
            snap = store.read_tree("slugify", got.tree_id)
            assert got.files == sorted(snap.files)
            assert got.source == snap.text("main.py")
            assert got.metadata == metadata_of(snap), spec
        assert reg.get("slugify").files == [
            "README.md",
            "helpers/words.py",
            "main.py",
            "metadata.json",
        ]
        assert reg.get("slugify", "1.0.0").metadata.description == "Turn a title into a URL slug."  # type: ignore[union-attr]
        # an invalid head keeps its last indexed tree and metadata, marked invalid
        broken = reg.get("csv-report")
        snap = store.read_tree("csv-report", broken.tree_id)
        assert (broken.valid, broken.files, broken.source) == (
            False,
            sorted(snap.files),
            snap.text("main.py"),
        )
        assert broken.errors and broken.metadata == metadata_of(snap)
