"""`procreg watch` as a user runs it: a process that follows plain git until stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from registry.api import Registry
from registry.errors import NotFoundError
from tests.cli_helpers import run_cli, write_procedure
from tests.conftest import git

WAIT_S = 20.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def visible(reg: Registry, proc_id: str, description: str) -> bool:
    try:
        return reg.get(proc_id).metadata.description == description
    except NotFoundError:
        return False


def wait_for(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not visible within {WAIT_S} s: {what}")


def test_procreg_watch_makes_commits_visible_without_a_manual_sync(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], db_url: str | None
) -> None:
    repo = tmp_path / "reg"
    run_cli(capsys, "init", str(repo))
    write_procedure(repo, "echo", description="first words")
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
            wait_for(lambda: visible(reg, "echo", "first words"), "the start-up sync")
            write_procedure(repo, "echo", description="second words")
            git(repo, "commit", "-qam", "docs: reword echo")
            wait_for(lambda: visible(reg, "echo", "second words"), "a plain git commit")
            assert [h.id for h in reg.search("second")] == ["echo"]
            git(repo, "rm", "-rq", "procedures/echo")
            git(repo, "commit", "-qm", "chore: drop echo")
            wait_for(lambda: reg.search() == [], "a deleted procedure")
            assert reg.verify() == []
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        out.close()
    lines = (tmp_path / "watch.out").read_text().splitlines()
    assert any(line.startswith("synced refs/heads/main") for line in lines)
    assert proc.returncode in (0, 130, -signal.SIGINT)
    assert "Traceback" not in "\n".join(lines)
