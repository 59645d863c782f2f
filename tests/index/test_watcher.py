"""The watcher end to end: plain git changes become visible through Registry without a sync."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from watchfiles import Change

from registry.api import Registry
from registry.errors import NotFoundError
from registry.git.store import GitStore
from registry.index.watcher import RefFilter
from tests.helpers import REPO_ROOT, commit_all, git, make_repo, tag_release, wait_for, write_proc

T = TypeVar("T")
WAIT_S = 15.0

WATCH_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, logging, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from registry.git.store import GitStore
    from registry.index.connect import open_backend
    from registry.index.watcher import watch

    repo, url, marker, log_path = sys.argv[2], sys.argv[3] or None, sys.argv[4], sys.argv[5]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    async def main():
        store = GitStore.open(repo)

        async def factory():
            backend = await open_backend(store, url)
            if marker:
                real = backend.apply
                async def apply(changes):
                    if len(changes.upsert) > 100:  # the big commit: die inside this sync
                        Path(marker).write_text("applying")
                        await asyncio.sleep(60)
                    await real(changes)
                backend.apply = apply
            return backend

        def on_sync(report):
            with open(log_path, "a") as f:
                f.write(json.dumps({"commit": report.commit, "rebuilt": report.rebuilt}) + "\\n")

        await watch(store, factory, on_sync=on_sync, reconcile_every=3600)

    asyncio.run(main())
    """
)


class Watcher:
    """``procreg watch`` in a subprocess (so it can be SIGKILLed)."""

    def __init__(self, repo: Path, db_url: str | None, tmp: Path) -> None:
        self.repo, self.db_url, self.tmp = repo, db_url, tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "syncs.jsonl"

    def start(self, marker: Path | None = None) -> None:
        args = [str(REPO_ROOT), str(self.repo), self.db_url or "", str(marker or ""), str(self.log)]
        with (self.tmp / "watcher.err").open("ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", WATCH_SCRIPT, *args], stderr=err)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def watcher(tmp_path: Path, db_url: str | None) -> Iterator[Watcher]:
    root = make_repo(tmp_path / "repo")
    write_proc(root, "first", description="The first procedure.")
    commit_all(root, "feat: first")
    w = Watcher(root, db_url, tmp_path)
    try:
        yield w
    finally:
        w.kill()


def eventually(check: Callable[[], T], what: str) -> T:
    """``wait_for`` with this module's bound; a procedure not found yet is "not yet"."""
    return wait_for(check, what, timeout=WAIT_S, poll=0.05, tolerate=(NotFoundError,))


def ids(reg: Registry, text: str | None = None) -> list[str]:
    return [h.id for h in reg.search(text, limit=1000)]


@pytest.mark.slow
def test_plain_git_changes_become_visible(watcher: Watcher) -> None:
    repo = watcher.repo
    watcher.start()
    with Registry.open(repo, watcher.db_url, auto_sync=False) as reg:
        eventually(lambda: ids(reg) == ["first"], "the start-up reconcile")

        write_proc(repo, "second", description="Counts penguins.")
        commit_all(repo, "feat: second")
        eventually(lambda: ids(reg, "penguins") == ["second"], "a new commit")
        assert reg.verify() == []

        tag_release(repo, "second", "1.0.0")
        eventually(lambda: reg.get("second").version == "1.0.0", "a new release tag")
        write_proc(repo, "second", description="Counts penguins and seals.")
        commit_all(repo, "fix: seals")
        eventually(lambda: ids(reg, "seals") == ["second"], "an edit")

        # force-push: the branch drops the last commit (not a descendant any more)
        git(repo, "reset", "-q", "--hard", "HEAD~1")
        eventually(lambda: ids(reg, "seals") == [], "a rewritten branch")
        meta = reg.get("second", "HEAD").metadata
        assert meta is not None and meta.description == "Counts penguins."
        assert reg.verify() == []

        git(repo, "pack-refs", "--all")
        write_proc(repo, "third", description="Feeds otters.")
        commit_all(repo, "feat: third")
        eventually(lambda: ids(reg, "otters") == ["third"], "a commit after pack-refs")
        assert reg.verify() == []

        git(repo, "rm", "-q", "-r", "procedures/first")
        commit_all(repo, "remove first")
        eventually(lambda: "first" not in ids(reg), "a deleted procedure")
        assert reg.verify() == []
    assert watcher.alive()


@pytest.mark.slow
def test_watcher_killed_mid_sync_converges_after_restart(watcher: Watcher) -> None:
    repo = watcher.repo
    marker = watcher.tmp / "applying"
    watcher.start(marker=marker)
    with Registry.open(repo, watcher.db_url, auto_sync=False) as reg:
        eventually(lambda: ids(reg) == ["first"], "the start-up reconcile")
        for i in range(150):
            write_proc(repo, f"bulk-{i:03d}", description=f"Bulk procedure {i}.")
        commit_all(repo, "feat: 150 procedures")
        eventually(marker.exists, "the watcher reaching the big sync")
        watcher.kill(signal.SIGKILL)
        assert ids(reg) == ["first"]  # the killed sync wrote nothing

        watcher.start()
        eventually(lambda: len(ids(reg)) == 151, "the big commit after restart")
        assert reg.verify() == []


@pytest.mark.slow
def test_bad_procedure_never_stops_the_watcher(watcher: Watcher) -> None:
    repo = watcher.repo
    watcher.start()
    with Registry.open(repo, watcher.db_url, auto_sync=False) as reg:
        eventually(lambda: ids(reg) == ["first"], "the start-up reconcile")
        (repo / "procedures" / "first" / "main.py").write_text("import os\n\ndef main(:\n")
        write_proc(repo, "ok", description="Still fine.")
        commit_all(repo, "break first, add ok")
        row = eventually(
            lambda: [h for h in reg.search(limit=10) if h.id == "first" and not h.valid],
            "the invalid procedure",
        )
        assert row[0].errors and "ok" in ids(reg)
        write_proc(repo, "later", description="After the bad one.")
        commit_all(repo, "feat: later")
        eventually(lambda: "later" in ids(reg), "a commit after the bad one")
        assert reg.verify() == []
    assert watcher.alive()


@pytest.mark.postgres
def test_watcher_notifies_listeners(tmp_path: Path, pg_url: str) -> None:
    import asyncpg

    from registry.index.contract import SYNC_CHANNEL

    root = make_repo(tmp_path / "repo")
    write_proc(root, "first")
    commit_all(root, "feat: first")
    w = Watcher(root, pg_url, tmp_path)

    async def listen() -> dict[str, object]:
        conn = await asyncpg.connect(pg_url)
        got: asyncio.Queue[str] = asyncio.Queue()
        await conn.add_listener(SYNC_CHANNEL, lambda *args: got.put_nowait(args[3]))
        try:
            w.start()
            first = json.loads(await asyncio.wait_for(got.get(), WAIT_S))
            assert first["rebuilt"] is True
            write_proc(root, "second")
            commit = commit_all(root, "feat: second")
            while True:
                payload = json.loads(await asyncio.wait_for(got.get(), WAIT_S))
                if payload["commit"] == commit:
                    return payload
        finally:
            await conn.close()

    try:
        payload = asyncio.run(listen())
        assert payload["added"] == 1 and payload["rebuilt"] is False
    finally:
        w.kill()


def test_ref_filter_keeps_refs_and_procedures_only(tmp_path: Path) -> None:
    store = GitStore.open(make_repo(tmp_path / "r"))
    (store.workdir / "procedures").mkdir()  # type: ignore[operator]
    f = RefFilter(store.git_dir, store.workdir / "procedures")  # type: ignore[operator]
    g = store.git_dir
    assert f(Change.added, str(g / "refs" / "heads" / "main"))
    assert f(Change.deleted, str(g / "refs" / "tags" / "procedure-a-v1.0.0"))
    assert f(Change.modified, str(g / "packed-refs"))
    assert f(Change.modified, str(g / "HEAD"))
    assert f(Change.added, str(store.workdir / "procedures" / "a" / "main.py"))  # type: ignore[operator]
    assert not f(Change.added, str(g / "refs" / "heads" / "main.lock"))
    assert not f(Change.added, str(g / "objects" / "ab" / "cdef"))
    assert not f(Change.modified, str(g / "index"))
    assert not f(Change.modified, str(g / "procreg" / "index.sqlite3"))
    assert not f(Change.modified, str(g / "logs" / "HEAD"))


def _down_postgres_url() -> str:
    import socket

    with socket.socket() as s:  # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/down"


def test_while_postgres_is_down_each_error_is_said_once_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from registry.index.connect import open_backend
    from registry.index.watcher import _Watcher

    repo = make_repo(tmp_path)
    store = GitStore.open(repo)
    url = _down_postgres_url()
    said: list[BaseException] = []

    async def go(on_error: Callable[[BaseException], None] | None) -> None:
        watcher = _Watcher(store, lambda: open_backend(store, url), None, on_error, 60.0, 0.01)
        for _ in range(4):  # four failed attempts while the server stays down
            watcher.retry_at = 0.0
            await watcher.step()
        assert watcher.failures == 4

    asyncio.run(go(said.append))
    assert len(said) == 1 and "cannot reach the PostgreSQL index" in str(said[0])
    assert [r for r in caplog.records if r.levelno >= 30] == []  # the callback said it
    caplog.clear()
    asyncio.run(go(None))  # no callback: one warning line, no traceback
    warnings = [r for r in caplog.records if r.levelno >= 30]
    assert len(warnings) == 1 and warnings[0].exc_info is None
    assert "cannot reach the PostgreSQL index" in warnings[0].getMessage()
