"""Session-wide isolation from the machine's git config, and shared fixtures.

Git: HOME, GIT_CONFIG_NOSYSTEM and pygit2's config search path point at an
empty folder, with a fixed author and committer, so tests never read the
developer's config and produce the same commits everywhere.

PostgreSQL: ``pg_url`` gives each test its own fresh database on the server
at ``PROCREG_TEST_PG`` (default 127.0.0.1:5432, user postgres), dropped
afterwards. Without a server the test skips, unless ``PROCREG_REQUIRE_POSTGRES=1``
(CI sets it), in which case it fails. ``db_url`` runs a test once per index backend:
None (SQLite) and a ``pg_url``.

A registry: ``repo`` is a new one made by ``procreg init``; ``sandbox`` a module's sandbox.

Disks: ``tmpfs`` mounts small file systems for a test, ``small_disk`` is one of 512 KiB.

Plain helper functions (git, procedure writers, CLI runners, waits) are in helpers.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry.sandbox import Sandbox
from tests.helpers import mount_tmpfs, run_cli

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
}


@pytest.fixture(autouse=True, scope="session")
def isolate_git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import pygit2

    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = user@example.com\n"
        "[init]\n\tdefaultBranch = main\n"
        '[protocol "file"]\n\tallow = always\n'
    )
    saved = dict(os.environ)
    os.environ.update(GIT_IDENTITY)
    os.environ["HOME"] = str(home)
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    os.environ.pop("GIT_DIR", None)
    os.environ.pop("GIT_WORK_TREE", None)
    os.environ.pop("PROCREG_DATABASE_URL", None)
    for level in (
        pygit2.enums.ConfigLevel.GLOBAL,
        pygit2.enums.ConfigLevel.XDG,
        pygit2.enums.ConfigLevel.SYSTEM,
        pygit2.enums.ConfigLevel.PROGRAMDATA,
    ):
        pygit2.settings.search_path[level] = str(home)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


PG_ADMIN = os.environ.get("PROCREG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres_available() -> str | None:
    """None when the server answers, else the reason it does not."""
    import asyncio

    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable server"
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def _pg_server() -> str:
    reason = _postgres_available()
    if reason is not None:
        if os.environ.get("PROCREG_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (PROCREG_REQUIRE_POSTGRES=1) but: {reason}")
        pytest.skip(f"no PostgreSQL server at {PG_ADMIN}: {reason}")
    return PG_ADMIN


@pytest.fixture
def pg_url(_pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test; dropped afterwards.

    pytest-postgresql's ``DatabaseJanitor`` creates it on the running server
    (no server of its own is started) and drops it, connections and all.
    """
    from urllib.parse import urlsplit

    from pytest_postgresql.janitor import DatabaseJanitor

    url = urlsplit(_pg_server)
    name = f"procreg_test_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user=url.username or "postgres",
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        password=url.password,
        dbname=name,
    )
    with janitor:
        yield f"{_pg_server.rsplit('/', 1)[0]}/{name}"


@pytest.fixture
def repo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A new registry made by ``procreg init`` at ``tmp_path/reg``.

    Modules that need more in it override ``repo``, asking for this one by the same name.
    """
    path = tmp_path / "reg"
    assert run_cli(capsys, "init", str(path)).code == 0
    return path


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox (a pool of one) for the tests of a module."""
    with Sandbox(pool_size=1) as box:
        yield box


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """The index a test runs against, once per backend: None (the SQLite file in .git)
    or a fresh PostgreSQL database (``pg_url``)."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """``mount(where, size)``: a small tmpfs at ``where`` (a disk that can fill up or turn
    read-only), unmounted after the test.

    Skips when mounting is impossible (not root, no CAP_SYS_ADMIN), except in CI
    (``CI=true``), where the test must run.
    """
    import subprocess

    mounted: list[Path] = []

    def mount(where: Path, size: str = "512k") -> Path:
        mount_tmpfs(where, size)
        mounted.append(where)
        return where

    try:
        yield mount
    finally:
        for where in reversed(mounted):
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path, tmpfs: Callable[[Path, str], Path]) -> Path:
    """A 512 KiB tmpfs mounted for this test (unmounted afterwards)."""
    return tmpfs(tmp_path / "disk", "512k")
