"""Several ``procreg watch`` processes on one PostgreSQL index keep one consistent index.

Each sync holds the database-wide advisory lock (``PostgresIndex.sync_lock``) and applies
only the difference between the indexed state and git, read under that lock. So if two
syncs ever overlapped, both would apply the same change from the same old state and say
so; with one at a time, every change is applied (and printed) by exactly one watcher.
After a burst of commits, every watcher sees the same, complete, drift-free index.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import Registry
from tests.helpers import commit_all, git, make_repo, stop, wait_for, write_proc

pytestmark = pytest.mark.postgres

WATCHERS = 3
BURST = 15
SYNC_LINE = re.compile(r"^(synced|rebuilt) \S+ at [0-9a-f-]+: \+(\d+) ~(\d+) -(\d+),")


@pytest.fixture
def watchers(tmp_path: Path, pg_url: str) -> Iterator[tuple[Path, list[Path]]]:
    root = make_repo(tmp_path / "repo")
    write_proc(root, "first", description="The first procedure.")
    commit_all(root, "feat: first")
    procs: list[subprocess.Popen[str]] = []
    logs = [tmp_path / f"watch-{i}.out" for i in range(WATCHERS)]
    command = [sys.executable, "-m", "registry", "watch", "-C", str(root), "--database-url"]
    try:
        for log in logs:
            with log.open("w") as out, log.with_suffix(".err").open("w") as err:
                procs.append(
                    subprocess.Popen(
                        [*command, pg_url, "--reconcile-every", "1"],
                        stdout=out,
                        stderr=err,
                        text=True,
                    )
                )
        yield root, logs
        assert all(p.poll() is None for p in procs), "a watcher died"
    finally:
        for p in procs:
            if p.poll() is None:
                stop(p, signal.SIGTERM, timeout=30)


def applied(logs: list[Path]) -> tuple[int, int, int]:
    """Procedures added, updated and deleted, summed over what every watcher printed."""
    total = [0, 0, 0]
    for log in logs:
        for line in log.read_text().splitlines():
            found = SYNC_LINE.match(line)
            if found:
                for i in range(3):
                    total[i] += int(found.group(i + 2))
    return total[0], total[1], total[2]


def test_several_watchers_apply_each_change_once_and_agree(
    watchers: tuple[Path, list[Path]], pg_url: str
) -> None:
    root, logs = watchers
    with Registry.open(root, pg_url, auto_sync=False) as reg:
        wait_for(lambda: [h.id for h in reg.search()] == ["first"], "the first sync", timeout=60)
        for i in range(BURST):  # a burst: commits as fast as git makes them
            write_proc(root, f"p{i:02d}", description=f"Burst procedure {i}.")
            commit_all(root, f"feat: p{i:02d}")
        write_proc(root, "first", description="The first procedure, edited.")
        git(root, "rm", "-q", "-r", "procedures/p00")
        commit_all(root, "fix: edit first, drop p00")
        head = git(root, "rev-parse", "HEAD").strip()

        wait_for(
            lambda: len(reg.search(limit=100)) == BURST and reg.verify() == [],
            "every commit indexed",
            timeout=90,
            poll=0.2,
        )
        assert sorted(h.id for h in reg.search(limit=100)) == sorted(
            ["first", *(f"p{i:02d}" for i in range(1, BURST))]
        )
        detail = reg.get("first", "HEAD")
        assert detail.commit == head
        assert detail.metadata is not None
        assert detail.metadata.description == "The first procedure, edited."
    # every change was applied by exactly one of the three watchers: the edit of `first`
    # once; p00 added and deleted once (or never seen, if one sync covered both commits)
    wait_for(lambda: applied(logs)[1] >= 1, "the last sync's line")
    assert applied(logs) in {(BURST + 1, 1, 1), (BURST, 1, 0)}
    printed = sum(len(log.read_text().splitlines()) for log in logs)
    assert printed >= 2  # the start-up sync and at least one for the burst
    for log in logs:
        assert "Traceback" not in log.with_suffix(".err").read_text()
