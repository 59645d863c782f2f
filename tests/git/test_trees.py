"""changed_procedures: the raw tree diff gives the answer of comparing every folder's id."""

from __future__ import annotations

from pathlib import Path

from registry.git.store import GitStore
from tests.helpers import REPO_ROOT, git


def naive(store: GitStore, old: str | None, new: str) -> dict[str, tuple[str | None, str | None]]:
    before = store.tree_ids(old) if old else {}
    after = store.tree_ids(new)
    return {
        pid: (before.get(pid), after.get(pid))
        for pid in before.keys() | after.keys()
        if before.get(pid) != after.get(pid)
    }


def meta(pid: str) -> bytes:
    return f'{{"id": "{pid}", "name": "{pid}"}}\n'.encode()


def test_no_old_commit_no_folder_and_a_folder_that_is_a_file(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    store = GitStore.init(repo)
    (repo / "README").write_text("hi\n")
    git(repo, "add", "README")
    git(repo, "commit", "-qm", "docs")
    bare = store.resolve("HEAD")  # no procedures/ at all
    first = store.write({"a": {"metadata.json": meta("a")}}, "feat: a")
    second = store.write({"b": {"metadata.json": meta("b")}, "a": None}, "feat: b, drop a")
    third = store.write({"a": {"metadata.json": meta("a")}}, "feat: a again")
    pairs = [
        (None, first),
        (bare, first),
        (first, bare),
        (first, second),
        (second, third),
        (first, third),
        (third, third),
    ]
    for old, new in pairs:
        assert store.changed_procedures(old, new) == naive(store, old, new), (old, new)
    git(repo, "checkout", "-q", "-f", "main")
    git(repo, "rm", "-rq", "procedures")
    (repo / "procedures").write_text("not a folder\n")
    git(repo, "add", "procedures")
    git(repo, "commit", "-qm", "procedures is a file")
    file_commit = store.resolve("HEAD")
    assert store.changed_procedures(third, file_commit) == naive(store, third, file_commit)
    assert store.changed_procedures(file_commit, third) == naive(store, file_commit, third)


def test_loose_and_packed_trees_read_as_libgit2_reads_them(tmp_path: Path) -> None:
    """The procedures/ tree an incremental sync inflates itself (a loose object, size from
    its header) is byte for byte libgit2's; packed ones are read by libgit2."""
    import pygit2

    from registry.git import trees

    repo = tmp_path / "repo"
    store = GitStore.init(repo)
    first = store.write(
        {f"p{i:03d}": {"metadata.json": meta(f"p{i:03d}")} for i in range(300)}, "a"
    )
    second = store.write({"p150": {"metadata.json": meta("p150") + b"\n"}}, "b")
    assert store.changed_procedures(first, second) == naive(store, first, second)
    raw = pygit2.Repository(str(repo))

    def folder(commit: str) -> pygit2.Oid:
        entry = raw.get(commit).tree["procedures"]  # type: ignore[union-attr]
        return entry.id

    loose = folder(second)
    path = repo / ".git" / "objects" / str(loose)[:2] / str(loose)[2:]
    assert path.is_file()
    body = trees._tree_bytes(raw, loose)
    assert isinstance(body, bytes) and body == raw.odb.read(loose)[1]
    git(repo, "gc", "-q")
    assert not path.exists()
    packed = pygit2.Repository(str(repo))
    assert trees._tree_bytes(packed, loose) == packed.odb.read(loose)[1]
    assert store.changed_procedures(first, second) == naive(store, first, second)


def test_a_damaged_loose_tree_stops_sync_with_a_clear_error(tmp_path: Path) -> None:
    """libgit2 1.9 loops forever reading a truncated loose object (libgit2#7342); the
    incremental sync reads the new procedures/ tree itself and must say what is wrong."""
    import subprocess
    import sys

    repo = tmp_path / "repo"
    store = GitStore.init(repo)
    store.write({"alpha": {"metadata.json": meta("alpha")}}, "feat: alpha")
    cli = [sys.executable, "-m", "registry", "-C", str(repo), "sync"]
    subprocess.run(cli, cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)
    commit = store.write({"alpha": {"metadata.json": meta("alpha") + b"\n"}}, "fix: alpha")
    tree = git(repo, "rev-parse", f"{commit}:procedures").strip()
    loose = repo / ".git" / "objects" / tree[:2] / tree[2:]
    damaged = loose.read_bytes()[: loose.stat().st_size // 2]
    loose.chmod(0o644)
    loose.write_bytes(damaged)
    done = subprocess.run(
        cli, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1, done.stderr
    assert f"the loose object {tree}" in done.stderr and "is damaged" in done.stderr
    assert "git fsck" in done.stderr and "Traceback" not in done.stderr
