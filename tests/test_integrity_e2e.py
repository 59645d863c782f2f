"""Integrity under crashes and contention, end to end: processes, SIGKILL, plain git.

Every test drives ``procreg`` as a separate process the way a user (or a CI job,
or a crash) would, and checks what a user would notice afterwards with plain
``git``: the checkout matches its branch, the next ``git commit -a`` loses no
procedure, no lock blocks the rerun, every folder content is tagged once.

Kill points are random (a seeded ``random.Random``; the seed is in every
assertion message) among the places where a crash hurts: with a ref lock
held, just after a ref or a commit is written, half-way through updating the
checkout, or after a random delay. Trials are few (3 to 4 per command) so
the file stays quick on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    REPO_ROOT,
    Result,
    fill_disk,
    git,
    hold_open,
    remount_read_only,
    run_process,
    write_proc,
)
from tests.migrate.legacy_fixtures import build_sqlite

Mount = Callable[[Path, str], Path]
SEED = int(os.environ.get("PROCREG_TEST_SEED", str(random.SystemRandom().randrange(1 << 30))))


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), **extra}


def procreg(repo: Path, *args: str, **extra: str) -> Result:
    return run_process("-C", str(repo), *args, env=env(**extra))


def killed(repo: Path, mode: str, n: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``procreg ARGS`` under tests/integrity_killer.py (SIGKILLed at the chosen point)."""
    return subprocess.run(
        [sys.executable, "-m", "tests.integrity_killer", mode, str(n), "-C", str(repo), *args],
        cwd=REPO_ROOT,
        env=env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def new_repo(path: Path, ids: list[str]) -> Path:
    assert procreg(path.parent, "init", str(path)).code == 0
    for pid in ids:
        write_proc(path, pid)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "feat: procedures" if ids else "chore: a registry")
    return path


def release_tags(repo: Path) -> dict[str, list[str]]:
    """``{procedure id: [tag, ...]}`` of every release tag."""
    out: dict[str, list[str]] = {}
    for name in git(repo, "tag", "-l", "procedure-*").split():
        pid = name[len("procedure-") :].rsplit("-v", 1)[0]
        out.setdefault(pid, []).append(name)
    return out


def tagged_trees(repo: Path) -> dict[str, list[str]]:
    """``{procedure id: [folder tree id of each release]}``."""
    out: dict[str, list[str]] = {}
    for pid, names in release_tags(repo).items():
        for name in names:
            out.setdefault(pid, []).append(
                git(repo, "rev-parse", f"{name}^{{commit}}:procedures/{pid}").strip()
            )
    return out


def assert_once_per_content(repo: Path, why: str) -> None:
    for pid, trees in tagged_trees(repo).items():
        assert len(trees) == len(set(trees)), f"{why}: {pid} has one content tagged twice"


def assert_checkout_matches_branch(repo: Path, why: str) -> None:
    assert git(repo, "status", "--porcelain") == "", f"{why}: {git(repo, 'status')}"
    assert git(repo, "diff", "--cached", "--name-status") == "", why


def assert_next_commit_loses_nothing(repo: Path, why: str) -> None:
    """What bit users: a plain ``git commit -a`` after the crash removed procedures."""
    before = set(git(repo, "ls-tree", "--name-only", "HEAD:procedures").split())
    git(repo, "commit", "-q", "-a", "--allow-empty", "-m", "chore: an unrelated commit")
    after = set(git(repo, "ls-tree", "--name-only", "HEAD:procedures").split())
    assert after == before, f"{why}: the next commit removed {sorted(before - after)}"


def assert_no_lock_files(repo: Path, why: str) -> None:
    locks = list((repo / ".git" / "refs").rglob("*.lock"))
    assert locks == [], f"{why}: {locks}"
    assert not (repo / ".git" / "index.lock").exists(), why


# -- SIGKILL at random points, then rerun -----------------------------------------------


@pytest.mark.slow
def test_release_killed_anywhere_then_rerun(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    ids = [f"p{i}" for i in range(6)]
    points = [("ref-locked", rng.randint(1, 6)), ("ref-written", rng.randint(1, 5))]
    points.append(rng.choice([("ref-locked", rng.randint(1, 6)), ("time", rng.randint(50, 900))]))
    for trial, (mode, n) in enumerate(points):
        why = f"seed {SEED}, trial {trial}: release killed at {mode} {n}"
        repo = new_repo(tmp_path / f"r{trial}", ids)
        first = killed(repo, mode, n, "release", "--skip-examples")
        assert first.returncode in (0, -signal.SIGKILL), f"{why}: {first.stderr}"
        again = procreg(repo, "release", "--skip-examples", "--json")
        assert again.code == 0, f"{why}: {again.err}"
        assert {pid: len(tags) for pid, tags in release_tags(repo).items()} == dict.fromkeys(
            ids, 1
        ), why
        assert_once_per_content(repo, why)
        assert_no_lock_files(repo, why)
        assert procreg(repo, "release", "--skip-examples").out.startswith("nothing to release")


@pytest.mark.slow
def test_migrate_killed_anywhere_then_rerun(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    db = build_sqlite(tmp_path / "legacy.db", 8)
    points = [
        ("commit", rng.randint(1, 7)),  # commits written, checkout not yet updated
        ("checkout", rng.randint(1, 12)),  # half-way through updating the checkout
        rng.choice([("ref-locked", rng.randint(1, 8)), ("time", rng.randint(100, 1500))]),
    ]
    for trial, (mode, n) in enumerate(points):
        why = f"seed {SEED + 1}, trial {trial}: migrate killed at {mode} {n}"
        repo = new_repo(tmp_path / f"m{trial}", [])
        first = killed(repo, mode, n, "migrate", "--from", str(db))
        assert first.returncode in (0, -signal.SIGKILL), f"{why}: {first.stderr}"
        again = procreg(repo, "migrate", "--from", str(db))
        assert again.code == 0, f"{why}: {again.err}"
        assert "verified: 8 procedures, 0 fields lost" in again.out, why
        assert "checkout differs" not in again.out, why
        assert_checkout_matches_branch(repo, why)
        assert_no_lock_files(repo, why)
        tags = release_tags(repo)
        assert len(tags) == 8 and all(len(t) == 1 for t in tags.values()), f"{why}: {tags}"
        assert_next_commit_loses_nothing(repo, why)


@pytest.mark.slow
def test_rollback_killed_anywhere_then_rerun(tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    points = [
        ("commit", 1),  # the rollback commit is written; neither tag nor checkout yet
        ("ref-locked", 1),  # the tag's lock is held
        ("checkout", rng.randint(1, 2)),
        ("time", rng.randint(100, 900)),
    ]
    rng.shuffle(points)
    for trial, (mode, n) in enumerate(points[:3]):
        why = f"seed {SEED + 2}, trial {trial}: rollback killed at {mode} {n}"
        repo = new_repo(tmp_path / f"b{trial}", ["echo", "other"])
        assert procreg(repo, "release", "--skip-examples").code == 0
        main = repo / "procedures" / "echo" / "main.py"
        main.write_text(main.read_text().replace("return text", "return text.upper()"))
        git(repo, "commit", "-q", "-am", "fix(echo): shout")
        assert procreg(repo, "release", "--skip-examples").code == 0
        first = killed(repo, mode, n, "rollback", "echo", "--to", "1.0.0")
        assert first.returncode in (0, -signal.SIGKILL), f"{why}: {first.stderr}"
        again = procreg(repo, "rollback", "echo", "--to", "1.0.0")
        # a rollback that had finished says there is nothing left to do
        assert again.code == 0 or "nothing to roll back" in again.err, f"{why}: {again.err}"
        assert again.code != 3, why
        assert_checkout_matches_branch(repo, why)
        assert_no_lock_files(repo, why)
        assert "return text\n" in main.read_text(), why  # the checkout shows the rollback
        assert len(release_tags(repo)["echo"]) == 3, f"{why}: {release_tags(repo)}"
        assert_next_commit_loses_nothing(repo, why)


# -- contention ----------------------------------------------------------------------------


@pytest.mark.slow
def test_eight_releasers_on_a_commit_and_its_child(tmp_path: Path) -> None:
    """No content tagged twice, no internal error; everyone exits 0 and lists real tags."""
    repo = new_repo(tmp_path / "repo", ["a", "b", "c"])
    parent = git(repo, "rev-parse", "HEAD").strip()
    for pid in ("a", "b"):
        main = repo / "procedures" / pid / "main.py"
        main.write_text(main.read_text().replace("return text", "return text.strip()"))
    write_proc(repo, "d")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "fix: strip; feat: d")
    child = git(repo, "rev-parse", "HEAD").strip()
    procs = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "registry", "-C", str(repo), "release"),
                *("--skip-examples", "--json", "--ref", parent if i % 2 else child),
            ],
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for code, out, err in outcomes:
        assert code == 0, err
        for result in json.loads(out):
            assert git(repo, "rev-parse", "-q", "--verify", f"refs/tags/{result['tag']}") != ""
    assert_once_per_content(repo, "8 releasers")
    assert_no_lock_files(repo, "8 releasers")
    # the child's contents are what is released last: nothing is left to release there
    assert procreg(repo, "release", "--skip-examples").out.startswith("nothing to release")


def test_a_release_in_a_linked_worktree_is_everyones(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", ["echo"])
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(linked))
    made = procreg(linked, "release", "--skip-examples")
    assert made.code == 0 and "tagged procedure-echo-v1.0.0" in made.out, made.err
    assert git(repo, "tag", "-l") == "procedure-echo-v1.0.0\n"
    log = procreg(repo, "log", "echo", "--json")
    assert [v["version"] for v in log.json()] == ["1.0.0"]
    assert procreg(linked, "release", "--skip-examples").out.startswith("nothing to release")
    git(repo, "worktree", "remove", str(linked))
    assert git(repo, "tag", "-l") == "procedure-echo-v1.0.0\n"


# -- locks left behind, locks held ------------------------------------------------------------


def _dead_lock(path: Path) -> None:
    """A lock file created by a process that was then SIGKILLed, as git or libgit2 leave it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import os, time; os.open({str(path)!r}, os.O_CREAT | "
         "os.O_EXCL | os.O_WRONLY); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    old = time.time() - 60
    os.utime(path, (old, old))


@pytest.fixture
def live_lock(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    repo = new_repo(tmp_path / "repo", ["echo"])
    lock = repo / ".git" / "refs" / "tags" / "procedure-echo-v1.0.0.lock"
    holder = hold_open(lock, "w")
    try:
        yield lock, holder
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_stale_tag_and_branch_locks_are_cleared(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", ["echo"])
    _dead_lock(repo / ".git" / "refs" / "tags" / "procedure-echo-v1.0.0.lock")
    made = procreg(repo, "release", "--skip-examples")
    assert made.code == 0, made.err
    assert "removed the stale lock" in made.err and "procedure-echo-v1.0.0.lock" in made.err
    main = repo / "procedures" / "echo" / "main.py"
    main.write_text(main.read_text().replace("return text", "return text.upper()"))
    git(repo, "commit", "-q", "-am", "fix(echo): shout")
    assert procreg(repo, "release", "--skip-examples").code == 0
    _dead_lock(repo / ".git" / "refs" / "heads" / "main.lock")
    back = procreg(repo, "rollback", "echo", "--to", "1.0.0")
    assert back.code == 0, back.err
    assert "main.lock" in back.err
    assert_no_lock_files(repo, "stale locks")
    assert_checkout_matches_branch(repo, "stale locks")


def test_a_live_tag_lock_is_reported_by_name(live_lock: tuple[Path, subprocess.Popen[str]]) -> None:
    lock, holder = live_lock
    repo = lock.parents[3]
    result = procreg(repo, "release", "--skip-examples", PROCREG_LOCK_WAIT="1")
    assert result.code == 1, result.err
    assert str(lock) in result.err and f"pid {holder.pid}" in result.err
    assert "wait for it to finish" in result.err
    assert "kept winning" not in result.err and "Traceback" not in result.err
    holder.kill()
    holder.wait(timeout=30)
    lock.unlink()  # what the holder, had it finished, would have done
    assert procreg(repo, "release", "--skip-examples").code == 0


# -- hand-made tags --------------------------------------------------------------------------


def test_a_lightweight_tag_of_a_tree_is_ignored_with_a_warning(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo", ["x"])
    tree = git(repo, "rev-parse", "HEAD:procedures/x").strip()
    git(repo, "tag", "procedure-x-v9.9.9", tree)
    made = procreg(repo, "release", "--skip-examples")
    assert made.code == 0, made.err
    assert "tagged procedure-x-v1.0.0" in made.out
    assert "procedure-x-v9.9.9" in made.err and "warning" in made.err
    assert [v["version"] for v in procreg(repo, "log", "x", "--json").json()] == ["1.0.0"]


# -- full and read-only disks --------------------------------------------------------------


def test_release_on_a_full_disk_is_a_clear_error_then_works(tmp_path: Path, tmpfs: Mount) -> None:
    disk = tmpfs(tmp_path / "disk", "4m")
    repo = new_repo(disk / "repo", [f"p{i}" for i in range(3)])
    fill_disk(disk)
    full = procreg(repo, "release", "--skip-examples")
    assert full.code == 1, full.err
    assert "full" in full.err and str(disk) in full.err and "Traceback" not in full.err
    for filler in disk.glob("filler*"):
        filler.unlink()
    again = procreg(repo, "release", "--skip-examples")
    assert again.code == 0, again.err
    assert {pid: len(t) for pid, t in release_tags(repo).items()} == {"p0": 1, "p1": 1, "p2": 1}


@pytest.fixture
def released_echo(tmp_path: Path) -> Path:
    repo = new_repo(tmp_path / "repo", ["echo"])
    assert procreg(repo, "release", "--skip-examples").code == 0
    return repo


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_run_whose_record_cannot_be_kept_says_so(released_echo: Path, tmpfs: Mount) -> None:
    """Index down and spool read-only: the result is shown, the lost record is named, exit 1."""
    repo = released_echo
    spool = tmpfs(repo / ".git" / "procreg" / "spool", "64k")
    remount_read_only(spool)
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/nowhere"
    result = procreg(repo, "--database-url", url, "run", "echo", "--arg", "text=hi")
    assert result.code == 1, result.err
    assert json.loads(result.out) == "hi"  # the run happened and its result is shown
    assert "the run's record could not be stored or spooled" in result.err
    assert "Read-only file system" in result.err and "Traceback" not in result.err


def test_a_run_on_a_full_disk_says_its_record_is_lost(tmp_path: Path, tmpfs: Mount) -> None:
    disk = tmpfs(tmp_path / "disk", "4m")
    repo = new_repo(disk / "repo", ["echo"])
    assert procreg(repo, "release", "--skip-examples").code == 0
    fill_disk(disk)
    result = procreg(repo, "run", "echo", "--arg", "text=hi")
    assert result.code == 1, result.err
    assert json.loads(result.out) == "hi"
    assert "could not be stored or spooled" in result.err and "Traceback" not in result.err


# -- the index is derived; run history is not ----------------------------------------------


def _runs(repo: Path, *args: str) -> int:
    stats = procreg(repo, *args, "metrics", "echo", "--json")
    assert stats.code == 0, stats.err
    return int(stats.json()["runs"])


def test_reindex_rebuilds_a_corrupt_sqlite_index_keeping_every_run(released_echo: Path) -> None:
    repo = released_echo
    for word in ("a", "b", "c"):
        assert procreg(repo, "run", "echo", "--arg", f"text={word}").code == 0
    assert _runs(repo) == 3
    index = repo / ".git" / "procreg" / "index.sqlite3"
    index.write_bytes(b"garbage, not a database " * 400)
    broken = procreg(repo, "search", "echo")
    assert broken.code == 1 and "procreg reindex" in broken.err, broken.err
    rebuilt = procreg(repo, "reindex")
    assert rebuilt.code == 0, rebuilt.err
    assert _runs(repo) == 3
    assert procreg(repo, "verify").code == 0
    assert [h["id"] for h in procreg(repo, "search", "echo", "--json").json()] == ["echo"]


@pytest.mark.postgres
def test_reindex_on_postgres_keeps_every_run(released_echo: Path, pg_url: str) -> None:
    import asyncio

    import asyncpg

    repo = released_echo
    for word in ("a", "b"):
        assert (
            procreg(repo, "--database-url", pg_url, "run", "echo", "--arg", f"text={word}").code
            == 0
        )

    async def damage() -> None:
        conn = await asyncpg.connect(pg_url)
        await conn.execute("DELETE FROM versions; UPDATE procedures SET tree_id = 'garbage'")
        await conn.close()

    asyncio.run(damage())
    assert procreg(repo, "--database-url", pg_url, "verify").code == 1
    assert procreg(repo, "--database-url", pg_url, "reindex").code == 0
    assert procreg(repo, "--database-url", pg_url, "verify").code == 0
    assert _runs(repo, "--database-url", pg_url) == 2


# -- a hung PostgreSQL server ----------------------------------------------------------------


@pytest.fixture
def hung_server() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def test_a_run_against_a_hung_postgres_spools_with_the_reason(
    released_echo: Path, hung_server: int
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{hung_server}/hung"
    result = procreg(
        released_echo, "--database-url", url, "run", "echo", "--arg", "text=hi",
        PROCREG_PG_CONNECT_TIMEOUT="1",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads(result.out) == "hi"
    assert "no answer within the timeout" in result.err, result.err
    assert "spool" in result.err
