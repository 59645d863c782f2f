"""Fixtures the release tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.git.store import GitStore
from tests.helpers import git


@pytest.fixture
def store(tmp_path: Path) -> GitStore:
    """An empty repository with a release tagger configured."""
    s = GitStore.init(tmp_path / "repo")
    git(tmp_path / "repo", "config", "user.name", "Release Tester")
    git(tmp_path / "repo", "config", "user.email", "release@example.com")
    return s
