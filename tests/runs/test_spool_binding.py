"""Spooled run records reach only the index they were meant for.

A record spooled while database A was down must wait for A, never be delivered to
database B because B happened to be the next one procreg opened.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from registry.runs.recorder import index_fingerprint, spool_counts, spool_dir
from tests.helpers import commit_all, release, run_cli, write_proc

pytestmark = pytest.mark.postgres


@pytest.fixture
def repo(repo: Path) -> Path:
    write_proc(repo, "greet")
    commit_all(repo, "feat: greet")
    release(repo, "greet")
    return repo


@pytest.fixture
def database(pg_url: str) -> Iterator[Callable[[str], AbstractContextManager[object]]]:
    """Makes a database by name on ``pg_url``'s server, as ``pg_url`` makes its own."""
    from pytest_postgresql.janitor import DatabaseJanitor

    server = urlsplit(pg_url)

    def make(name: str) -> AbstractContextManager[object]:
        return DatabaseJanitor(
            user=server.username or "postgres",
            host=server.hostname or "127.0.0.1",
            port=server.port or 5432,
            password=server.password,
            dbname=name,
        )

    yield make


def runs(capsys: pytest.CaptureFixture[str], repo: Path, url: str) -> int:
    result = run_cli(capsys, "-C", str(repo), "--database-url", url, "metrics", "greet", "--json")
    assert result.code == 0, result.out
    return int(result.json()["runs"])


def test_a_record_spooled_for_one_database_waits_for_it(
    repo: Path,
    pg_url: str,
    database: Callable[[str], AbstractContextManager[object]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name_a = f"procreg_test_a_{uuid.uuid4().hex[:10]}"
    url_a = f"{pg_url.rsplit('/', 1)[0]}/{name_a}"  # not created yet: "down"
    url_b = pg_url

    ran = run_cli(
        capsys, "-C", str(repo), "--database-url", url_a, "run", "greet", "--arg", "text=x"
    )
    assert ran.code == 0, ran.err
    assert "spool" in ran.err  # the index is unreachable; the record waits
    spool = spool_dir(repo / ".git")
    assert spool_counts(spool, url_a) == (1, 0)

    # database B opens fine: it must not take A's record
    assert runs(capsys, repo, url_b) == 0
    text = run_cli(capsys, "-C", str(repo), "--database-url", url_b, "metrics", "greet")
    assert "1 spooled run record wait for another index" in text.err
    assert spool_counts(spool, url_b) == (0, 1)
    doctor = run_cli(capsys, "-C", str(repo), "--database-url", url_b, "doctor", "--json").json()
    assert doctor["spool_pending"] == 0 and doctor["spool_other_index"] == 1

    # nor the SQLite index in .git
    sqlite = f"sqlite:///{repo / '.git' / 'procreg' / 'index.sqlite3'}"
    assert runs(capsys, repo, sqlite) == 0

    # database A comes up: the record is delivered there, once
    with database(name_a):
        assert runs(capsys, repo, url_a) == 1
        assert runs(capsys, repo, url_a) == 1
        assert spool_counts(spool, url_a) == (0, 0)
    assert runs(capsys, repo, url_b) == 0


def test_a_fingerprint_names_the_database_not_the_password(tmp_path: Path) -> None:
    a = "postgresql://app:secret@db.example:5432/registry"
    assert index_fingerprint(a) == index_fingerprint("postgresql://app:other@DB.example/registry")
    assert index_fingerprint(a) != index_fingerprint("postgresql://app:secret@db.example/other")
    assert index_fingerprint(a) != index_fingerprint("postgresql://ops:secret@db.example/registry")
    assert "secret" not in str(index_fingerprint(a))
    path = tmp_path / "index.sqlite3"
    assert index_fingerprint(path) == index_fingerprint(f"sqlite://{path}")
    assert index_fingerprint(path) != index_fingerprint(tmp_path / "other.sqlite3")
    assert index_fingerprint(None) is None
