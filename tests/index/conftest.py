"""Fixtures the index tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import commit_all, make_repo, write_proc


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """A repository with three valid procedures (alpha, beta, gamma) in one commit."""
    root = make_repo(tmp_path / "repo")
    for pid in ("alpha", "beta", "gamma"):
        write_proc(root, pid)
    commit_all(root, "three procedures")
    yield root
