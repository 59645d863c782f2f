"""Resolving ID@SPEC against real tags: the whole spec grammar, and build metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.git.store import GitStore
from registry.releases import history, tagged
from registry.releases import release as releases
from tests.helpers import git, proc_files


@pytest.fixture
def built(tmp_path: Path) -> GitStore:
    """echo tagged by hand as 1.2.3+b (first) and 1.2.3+a (second), plus 1.0.0 and 2.0.0-rc.1."""
    store = GitStore.init(tmp_path / "repo")
    repo = tmp_path / "repo"
    git(repo, "config", "user.name", "Release Tester")
    git(repo, "config", "user.email", "release@example.com")
    one = store.write({"echo": proc_files("echo")}, "feat: echo")
    releases.release(store)  # 1.0.0
    b = store.write({"echo": proc_files("echo", body="return text.strip()")}, "fix: b")
    git(repo, "tag", "-a", "-m", "by hand", "procedure-echo-v1.2.3+b", b)
    a = store.write({"echo": proc_files("echo", body="return text.lower()")}, "fix: a")
    git(repo, "tag", "-a", "-m", "by hand", "procedure-echo-v1.2.3+a", a)
    rc = store.write({"echo": proc_files("echo", params=("text", "mode"))}, "feat!: mode")
    git(repo, "tag", "-a", "-m", "by hand", "procedure-echo-v2.0.0-rc.1", rc)
    assert one
    return store


@pytest.mark.parametrize(
    ("spec", "version"),
    [
        # Same precedence: build metadata decides, as docs/versioning.md says (b > a).
        (None, "1.2.3+b"),
        ("latest", "1.2.3+b"),
        ("1.2.3", "1.2.3+b"),
        ("^1", "1.2.3+b"),
        # Exact with build metadata names that build, with or without "=".
        ("1.2.3+a", "1.2.3+a"),
        ("=1.2.3+a", "1.2.3+a"),
        ("v1.2.3+a", "1.2.3+a"),
        # npm grammar
        ("1.0.0 - 1.2", "1.2.3+b"),
        ("<1.2 || >=2.0.0-rc.0", "2.0.0-rc.1"),
        ("~>1.0", "1.0.0"),
        ("", "1.2.3+b"),
        # PEP 440
        (">=1,<2", "1.2.3+b"),
        ("==1.0", "1.0.0"),
        ("~=1.0", "1.2.3+b"),
        (">=2.0.0rc1,<3", "2.0.0-rc.1"),
    ],
)
def test_resolve(built: GitStore, spec: str | None, version: str) -> None:
    r = history.resolve(built, "echo", spec)
    assert r.version == version
    repo = built.workdir
    assert repo is not None
    assert r.commit == git(repo, "rev-parse", f"procedure-echo-v{version}^{{commit}}").strip()


def test_latest_with_build_metadata_is_the_same_in_history_and_releases(built: GitStore) -> None:
    latest = tagged.latest_release(built, "echo")
    assert latest is not None and str(latest[0]) == "2.0.0-rc.1"  # highest precedence
    versions = [v.version for v in history.history(built, "echo")]
    assert versions == ["2.0.0-rc.1", "1.2.3+b", "1.2.3+a", "1.0.0"]
