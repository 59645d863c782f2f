"""`verify` in a fresh clone, `search --sort name` and `watch --quiet`, as a user runs them."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from registry.api import Registry
from tests.helpers import commit_all, git, run_cli, stop, wait_for, write_proc

WAIT_S = 20.0


def test_verify_in_a_fresh_clone_says_to_sync_first(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for pid in ("alpha", "beta", "gamma"):
        write_proc(repo, pid)
    commit_all(repo, "feat: three procedures")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))

    result = run_cli(capsys, "-C", str(clone), "verify")
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err  # one line, not every procedure "missing"
    assert "no index" in lines[0] and "procreg sync" in lines[0]
    assert "missing" not in result.out + result.err

    as_json = run_cli(capsys, "-C", str(clone), "verify", "--json")
    assert as_json.code == 1
    assert as_json.json()["error"]["type"] == "IndexNotSynced"
    assert "procreg sync" in as_json.json()["error"]["hint"]

    assert run_cli(capsys, "-C", str(clone), "sync").code == 0
    synced = run_cli(capsys, "-C", str(clone), "verify")
    assert synced.code == 0 and "index matches git" in synced.err + synced.out


def test_search_sort_name_sorts_by_the_id_shown(
    repo: Path, capsys: pytest.CaptureFixture[str], db_url: str | None
) -> None:
    # ids and names in opposite orders
    write_proc(repo, "a-first", name="Zebra crossing")
    write_proc(repo, "b-second", name="Middle ground")
    write_proc(repo, "c-third", name="Apple pie")
    commit_all(repo, "feat: three")
    extra = ["--database-url", db_url] if db_url else []
    result = run_cli(capsys, "-C", str(repo), *extra, "search", "--sort", "name", "--json")
    assert result.code == 0, result.err
    assert [h["id"] for h in result.json()] == ["a-first", "b-second", "c-third"]
    table = run_cli(capsys, "-C", str(repo), *extra, "search", "--sort", "name")
    shown = [line.split()[0] for line in table.out.splitlines()[1:]]
    assert shown == ["a-first", "b-second", "c-third"]


def _watch_while_committing(repo: Path, out: Path, *args: str) -> int:
    """Run ``procreg watch ARGS`` (reconciling every 0.1 s), commit a change, wait until
    the watcher has indexed it, stop it with SIGTERM; its exit code (output in ``out``)."""
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry", "-C", str(repo), "watch",
             "--reconcile-every", "0.1", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with Registry.open(repo, auto_sync=False) as reg:
                write_proc(repo, "echo", description="new words")
                commit_all(repo, "feat: echo")
                wait_for(lambda: [h.id for h in reg.search("new words")] == ["echo"], "the sync")
        finally:
            stop(proc, signal.SIGTERM)
    return proc.returncode


def test_watch_prints_no_line_for_a_no_op_reconcile(repo: Path, tmp_path: Path) -> None:
    synced = subprocess.run([sys.executable, "-m", "registry", "-C", str(repo), "sync"])
    assert synced.returncode == 0
    out = tmp_path / "watch.out"
    assert _watch_while_committing(repo, out) == 0
    lines = out.read_text().splitlines()
    syncs = [line for line in lines if line.startswith(("synced", "rebuilt"))]
    # reconciles ran every 0.1 s meanwhile; only the sync that indexed echo says so
    assert syncs and all("+1 " in line or "~1 " in line for line in syncs), lines
    assert lines[0].startswith("watching") and lines[-1] == "stopped"


def test_watch_quiet_prints_nothing_but_errors(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "watch.out"
    assert _watch_while_committing(repo, out, "--quiet") == 0
    assert out.read_text() == ""
