"""The folder-history walk against a brute-force reference computed with the git CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.git import walk
from registry.git.store import GitStore
from tests.helpers import git

IDS = ("a", "b", "c")


def files(pid: str, body: str) -> dict[str, bytes]:
    return {
        "main.py": f"def main(text: str) -> str:\n    return {body}\n".encode(),
        "metadata.json": f'{{"id": "{pid}", "name": "{pid}"}}\n'.encode(),
    }


def _edit(repo: Path, pid: str, body: str, message: str) -> None:
    folder = repo / "procedures" / pid
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files(pid, body).items():
        (folder / name).write_bytes(data)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def _history(tmp_path: Path) -> tuple[GitStore, Path]:
    """Branches, a merge that changes nothing of one side, a merge that takes both sides."""
    repo = tmp_path / "repo"
    store = GitStore.init(repo)
    store.write({"a": files("a", "text"), "b": files("b", "text")}, "feat: a and b")
    git(repo, "checkout", "-q", "-f", "main")
    git(repo, "checkout", "-q", "-b", "side")
    _edit(repo, "a", "text * 2", "fix(a): double")
    _edit(repo, "c", "text", "feat(c): add")
    git(repo, "checkout", "-q", "main")
    _edit(repo, "b", "text.upper()", "feat(b): upper")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge side", "side")
    git(repo, "checkout", "-q", "-b", "other")
    _edit(repo, "a", "text * 3", "fix(a): triple")
    git(repo, "checkout", "-q", "main")
    _edit(repo, "a", "text * 3", "fix(a): triple on main too")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge other", "other")
    _edit(repo, "b", "text.lower()", "feat(b): lower")
    return store, repo


def _subtree(repo: Path, commit: str, pid: str) -> str | None:
    out = git(repo, "rev-parse", "-q", "--verify", f"{commit}:procedures/{pid}", check=False)
    return out.strip() or None


def _reference(repo: Path, pid: str, until: str, since: str | None) -> set[str]:
    """The commits of ``since..until`` whose folder differs from every parent's (git CLI)."""
    spec = [until] if since is None else [until, f"^{since}"]
    out: set[str] = set()
    for line in git(repo, "rev-list", "--parents", *spec).splitlines():
        commit, *parents = line.split()
        mine = _subtree(repo, commit, pid)
        if not parents and mine is None:
            continue
        if any(_subtree(repo, p, pid) == mine for p in parents):
            continue
        out.add(commit)
    return out


@pytest.mark.parametrize("diff_over", [walk._DIFF_OVER, 0], ids=["lookups", "tree-diffs"])
def test_folder_history_matches_the_git_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, diff_over: int
) -> None:
    monkeypatch.setattr(walk, "_DIFF_OVER", diff_over)
    store, repo = _history(tmp_path)
    head = store.resolve("HEAD")
    every = git(repo, "rev-list", head).split()
    for since in [None, every[-1], store.resolve("HEAD~2"), store.resolve("side")]:
        found = store.folder_history(dict.fromkeys(IDS, since), head)
        for pid in IDS:
            ids = [c.id for c in found[pid]]
            assert set(ids) == _reference(repo, pid, head, since), (pid, since)
            assert len(ids) == len(set(ids))
            single = store.folder_commits(pid, head, since)
            assert [c.id for c in single] == ids  # one walk or many: the same answer


def test_each_id_has_its_own_range(tmp_path: Path) -> None:
    store, repo = _history(tmp_path)
    head = store.resolve("HEAD")
    since = {"a": store.resolve("side"), "b": None, "c": store.resolve("HEAD~1")}
    found = store.folder_history(since, head)
    for pid, start in since.items():
        assert {c.id for c in found[pid]} == _reference(repo, pid, head, start), pid
    assert found["c"] == []
    assert found["b"][0].message.splitlines()[0] == "feat(b): lower"
