"""`procreg watch` as a user runs it: a process that follows plain git until stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from registry.api import Registry
from registry.errors import NotFoundError
from tests.helpers import git, run_cli, stop, wait_for, write_proc

WAIT_S = 20.0


def visible(reg: Registry, proc_id: str, description: str) -> bool:
    try:
        meta = reg.get(proc_id).metadata
        return meta is not None and meta.description == description
    except NotFoundError:
        return False


def test_procreg_watch_makes_commits_visible_without_a_manual_sync(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], db_url: str | None
) -> None:
    repo = tmp_path / "reg"
    run_cli(capsys, "init", str(repo))
    write_proc(repo, "echo", description="first words")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo")
    extra = ["--database-url", db_url] if db_url else []
    out = (tmp_path / "watch.out").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry", "-C", str(repo), *extra, "watch"],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        with Registry.open(repo, db_url, auto_sync=False) as reg:
            wait_for(
                lambda: visible(reg, "echo", "first words"), "the start-up sync", timeout=WAIT_S
            )
            write_proc(repo, "echo", description="second words")
            git(repo, "commit", "-qam", "docs: reword echo")
            wait_for(
                lambda: visible(reg, "echo", "second words"), "a plain git commit", timeout=WAIT_S
            )
            assert [h.id for h in reg.search("second")] == ["echo"]
            git(repo, "rm", "-rq", "procedures/echo")
            git(repo, "commit", "-qm", "chore: drop echo")
            wait_for(lambda: reg.search() == [], "a deleted procedure", timeout=WAIT_S)
            assert reg.verify() == []
    finally:
        stop(proc, signal.SIGINT)
        out.close()
    lines = (tmp_path / "watch.out").read_text().splitlines()
    assert any(line.startswith("synced refs/heads/main") for line in lines)
    assert proc.returncode in (0, 130, -signal.SIGINT)
    assert "Traceback" not in "\n".join(lines)
