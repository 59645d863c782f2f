"""The write side needs git and the sandbox, not the index: it works while the index is down."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.core.model import Example
from registry.git.store import GitStore
from registry.runs.execution import spool_path
from registry.runs.recorder import spool_counts
from tests.helpers import git, run_cli, write_proc

# Nothing listens on port 9 (discard): connecting is refused at once.
DOWN = "postgresql://postgres@127.0.0.1:9/procreg_down"


def test_release_and_promote_work_while_the_index_is_down_and_spool_the_example_runs(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_proc(repo, "echo", examples=[Example(input={"text": "hi"}, output="hi")])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo")
    done = run_cli(capsys, "-C", str(repo), "--database-url", DOWN, "release")
    assert done.code == 0, done.err
    assert git(repo, "tag", "-l", "procedure-echo-*").split() == ["procedure-echo-v1.0.0"]
    spooled = list(spool_path(GitStore.open(repo)).glob("*"))
    assert spooled, "the example's run record was neither delivered nor spooled"
    # bound to the index that was down: it waits for it, not for the SQLite index
    assert spool_counts(spool_path(GitStore.open(repo)), DOWN) == (1, 0)
    sqlite = repo / ".git" / "procreg" / "index.sqlite3"
    assert spool_counts(spool_path(GitStore.open(repo)), sqlite) == (0, 1)
    moved = run_cli(
        capsys,
        "-C",
        str(repo),
        "--database-url",
        DOWN,
        "promote",
        "echo",
        "1.0.0",
        "--channel",
        "stable",
    )
    assert moved.code == 0, moved.err
    assert git(repo, "tag", "-l", "channel/echo/stable/*").split()
    # Commands that read the index still say it is down.
    down = run_cli(capsys, "-C", str(repo), "--database-url", DOWN, "search", "echo")
    assert down.code == 1
    assert "127.0.0.1:9" in down.err or "PostgreSQL" in down.err
