"""The git store against real repositories, bare and not, written by several processes."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

from registry.core.snapshot import MODE_EXECUTABLE, MODE_SYMLINK, FileEntry
from registry.errors import ConflictError, GitError, LockedError, NotFoundError
from registry.git.checkout import read_worktree_folder
from registry.git.store import GitStore
from tests.helpers import REPO_ROOT, git, hold_open

MAIN = b"def main(text: str) -> str:\n    return text\n"


def meta(pid: str) -> bytes:
    return f'{{"id": "{pid}", "name": "{pid}"}}\n'.encode()


def files(pid: str, body: bytes = MAIN) -> dict[str, bytes]:
    return {"main.py": body, "metadata.json": meta(pid)}


@pytest.fixture(params=["bare", "worktree"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> GitStore:
    return GitStore.init(tmp_path / "repo", bare=request.param == "bare")


def test_write_is_one_commit_with_the_right_tree(store: GitStore) -> None:
    first = store.write({"echo": files("echo")}, "feat: add echo")
    second = store.write({"upper": files("upper"), "lower": files("lower")}, "feat: two more")

    commit = store.repo.get(second)
    assert isinstance(commit, pygit2.Commit)
    assert [str(p) for p in commit.parent_ids] == [first]
    procedures = commit.tree["procedures"]
    assert isinstance(procedures, pygit2.Tree)
    assert sorted(str(e.name) for e in procedures) == ["echo", "lower", "upper"]
    snap = store.read("upper", second)
    assert snap.files["main.py"].data == MAIN
    assert snap.commit == second
    assert snap.tree_id == str(commit.tree["procedures/upper"].id)
    # the earlier commit still reads as it was
    assert store.list_procedures(first) == ["echo"]
    with pytest.raises(NotFoundError, match="no procedure 'upper'"):
        store.read("upper", first)


def test_bare_repo_has_no_working_tree_and_still_reads(tmp_path: Path) -> None:
    store = GitStore.init(tmp_path / "srv.git", bare=True)
    store.write({"echo": files("echo")}, "feat: add echo")
    assert store.workdir is None
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(tmp_path / "srv.git"), str(clone)], check=True)
    assert (clone / "procedures/echo/main.py").read_bytes() == MAIN
    assert git(clone, "log", "--format=%s") == "feat: add echo\n"


def test_write_does_not_touch_the_working_tree(tmp_path: Path) -> None:
    store = GitStore.init(tmp_path / "repo")
    store.write({"echo": files("echo")}, "feat: add echo")
    assert not (tmp_path / "repo/procedures").exists()


def test_delete_and_update_in_one_commit(store: GitStore) -> None:
    store.write({"a": files("a"), "b": files("b")}, "feat: a and b")
    tip = store.write({"a": None, "b": files("b", b"def main():\n    return 2\n")}, "chore: swap")
    assert store.list_procedures(tip) == ["b"]
    assert store.read("b", tip).files["main.py"].data.endswith(b"2\n")
    # deleting the last procedure drops the folder entirely
    tip = store.write({"b": None}, "chore: empty")
    assert store.list_procedures(tip) == []
    assert store.procedures_tree_id(tip) is None


def test_an_unchanged_write_makes_no_commit(store: GitStore) -> None:
    tip = store.write({"a": files("a")}, "feat: a")
    assert store.write({"a": files("a")}, "feat: a again") == tip


def test_modes_and_nested_files_round_trip(store: GitStore) -> None:
    tip = store.write(
        {
            "a": {
                **files("a"),
                "run.sh": FileEntry(b"#!/bin/sh\n", MODE_EXECUTABLE),
                "lib/util.py": b"X = 1\n",
                "link": FileEntry(b"../b", MODE_SYMLINK),
            }
        },
        "feat: a",
    )
    snap = store.read("a", tip)
    assert snap.files["run.sh"].mode == MODE_EXECUTABLE
    assert snap.files["link"].mode == MODE_SYMLINK
    assert snap.files["lib/util.py"].data == b"X = 1\n"


def test_expected_tip_mismatch_is_a_conflict(store: GitStore) -> None:
    first = store.write({"a": files("a")}, "feat: a")
    store.write({"b": files("b")}, "feat: b")
    with pytest.raises(ConflictError, match="expected"):
        store.write({"c": files("c")}, "feat: c", expected_tip=first)


def _writer(repo: str, pid: str, n: int) -> None:
    store = GitStore.open(repo)
    for i in range(n):
        store.write({f"{pid}-{i}": files(f"{pid}-{i}")}, f"feat: {pid} {i}", retries=1000)


def test_concurrent_writers_in_separate_processes_lose_no_update(tmp_path: Path) -> None:
    store = GitStore.init(tmp_path / "repo.git", bare=True)
    store.write({"seed": files("seed")}, "feat: seed")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(str(tmp_path / "repo.git"), f"w{k}", 15))
        for k in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ids = store.list_procedures("HEAD")
    assert len(ids) == 1 + 4 * 15
    # the history is linear and has one commit per write
    count = git(tmp_path / "repo.git", "rev-list", "--count", "HEAD").strip()
    assert count == str(1 + 4 * 15)
    assert git(tmp_path / "repo.git", "fsck", "--strict", "--no-dangling") == ""


def test_concurrent_writers_to_the_same_procedure_conflict(tmp_path: Path) -> None:
    store = GitStore.init(tmp_path / "repo.git", bare=True)
    base = store.write({"a": files("a")}, "feat: a")
    other = GitStore.open(tmp_path / "repo.git")
    other.write({"a": files("a", b"def main():\n    return 'theirs'\n")}, "fix: theirs")
    # simulate a writer that read `base` and lost the race: its CAS must fail and not retry blindly
    ref = store.repo.lookup_reference("refs/heads/main")
    assert str(ref.target) != base
    with pytest.raises(ConflictError):
        store.write(
            {"a": files("a", b"def main():\n    return 'mine'\n")}, "fix: mine", expected_tip=base
        )
    assert b"theirs" in store.read("a").files["main.py"].data


def test_diff_stats_match_git_numstat(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    store = GitStore.init(repo)
    t1 = store.write({"a": files("a", b"l1\nl2\nl3\n")}, "feat: a")
    t2 = store.write({"a": {**files("a", b"l1\nL2\nl3\nl4\n"), "extra.txt": b"x\ny\n"}}, "fix: a")
    added, removed, changed = store.diff_stats(
        store.read("a", t1).tree_id, store.read("a", t2).tree_id
    )
    numstat = git(repo, "diff", "--numstat", t1, t2, "--", "procedures/a")
    rows = [line.split("\t") for line in numstat.splitlines()]
    assert (added, removed, changed) == (
        sum(int(r[0]) for r in rows),
        sum(int(r[1]) for r in rows),
        len(rows),
    )


def test_folder_commits_follow_git_log_path_rules(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    store = GitStore.init(repo)
    store.write({"a": files("a"), "b": files("b")}, "feat: a and b")
    git(repo, "checkout", "-q", "-f", "main")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "procedures/a/main.py").write_text("def main(text: str) -> str:\n    return text * 2\n")
    git(repo, "commit", "-qam", "fix(a): double")
    (repo / "procedures/b/main.py").write_text("def main(text: str) -> str:\n    return ''\n")
    git(repo, "commit", "-qam", "fix(b): empty")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
    subjects = [c.message.splitlines()[0] for c in store.folder_commits("a", "HEAD")]
    expected = git(repo, "log", "--format=%s", "--", "procedures/a").splitlines()
    assert subjects == expected == ["fix(a): double", "feat: a and b"]


def test_read_staged_and_worktree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    store = GitStore.init(repo)
    (repo / "procedures/a").mkdir(parents=True)
    (repo / "procedures/a/main.py").write_bytes(MAIN)
    (repo / "procedures/a/metadata.json").write_bytes(meta("a"))
    git(repo, "add", "procedures")
    staged = store.read_staged()
    assert [s.id for s in staged] == ["a"]
    assert staged[0].files["main.py"].data == MAIN
    assert [s.id for s in store.read_changed_staged()] == ["a"]
    git(repo, "commit", "-qm", "feat: a")
    assert store.read_changed_staged() == []
    (repo / "procedures/a/link").symlink_to("/etc/passwd")
    snap = read_worktree_folder(repo / "procedures/a")
    assert snap.files["link"].mode == MODE_SYMLINK
    assert snap.path == "procedures/a"


def test_open_outside_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not a git repository"):
        GitStore.open(tmp_path)


def test_unknown_ref_is_not_found(store: GitStore) -> None:
    store.write({"a": files("a")}, "feat: a")
    with pytest.raises(NotFoundError, match="unknown revision 'nope'"):
        store.read("a", "nope")


def test_tags_are_atomic_and_never_overwritten(store: GitStore) -> None:
    tip = store.write({"a": files("a")}, "feat: a")
    info = store.create_tag("procedure-a-v1.0.0", tip, "Release a 1.0.0\n\nBump: initial\n")
    assert info.commit == tip and info.tagger is not None
    with pytest.raises(ConflictError, match="already exists"):
        store.create_tag("procedure-a-v1.0.0", tip, "again")
    assert [t.name for t in store.tags("procedure-a-v")] == ["procedure-a-v1.0.0"]
    assert info.tag_id is not None
    assert isinstance(store.repo.get(info.tag_id), pygit2.Tag)


# -- ref listing by prefix: packed-refs and loose refs read directly --------------------


def for_each_ref(repo: Path, prefix: str) -> list[str]:
    """What git itself lists under ``prefix`` (sorted by name, like ``ref_names``)."""
    names = git(repo, "for-each-ref", "--format=%(refname)").split()
    return sorted(n for n in names if n.startswith(prefix))


PREFIXES = [
    "refs/tags/procedure-foo-v",  # "foo" must not be confused with...
    "refs/tags/procedure-foo-v2-v",  # ...id "foo-v2"
    "refs/tags/procedure-",
    "refs/tags/channel/foo/",
    "refs/tags/channel/foo/stable/",
    "refs/tags/channel/",
    "refs/tags/",
    "refs/heads/",
    "refs/",
    "",
    "refs/tags/procedure-zzz-v",
    "refs/tags/procedure-foo-v1.0.0",
]


@pytest.fixture
def tagged(tmp_path: Path) -> tuple[GitStore, Path, str]:
    """A repo with release and channel tags of ids ``foo``, ``foo-v2`` and ``bar``."""
    repo = tmp_path / "tagged"
    store = GitStore.init(repo)
    tip = store.write({"foo": files("foo"), "bar": files("bar")}, "feat: two")
    for name in [
        "procedure-foo-v1.0.0",
        "procedure-foo-v1.1.0",
        "procedure-foo-v2-v1.0.0",
        "procedure-bar-v1.0.0",
        "channel/foo/stable/000001",
        "channel/foo/stable/000002",
        "channel/foo/beta/000001",
        "channel/foo-v2/stable/000001",
    ]:
        git(repo, "tag", "-a", "-m", f"tag {name}", name, tip)
    git(repo, "tag", "lightweight-foo", tip)
    return store, repo, tip


def assert_same_as_git(store: GitStore, repo: Path) -> None:
    for prefix in PREFIXES:
        assert store.ref_names(prefix) == for_each_ref(repo, prefix), prefix


def test_ref_names_match_git_with_loose_refs(tagged: tuple[GitStore, Path, str]) -> None:
    store, repo, _ = tagged
    assert not (repo / ".git" / "packed-refs").exists()
    assert_same_as_git(store, repo)
    assert store.ref_names("refs/tags/procedure-foo-v") == [
        "refs/tags/procedure-foo-v1.0.0",
        "refs/tags/procedure-foo-v1.1.0",
        "refs/tags/procedure-foo-v2-v1.0.0",  # the over-match callers filter by id
    ]


def test_ref_names_match_git_with_packed_and_mixed_refs(tagged: tuple[GitStore, Path, str]) -> None:
    store, repo, tip = tagged
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "tags" / "procedure-foo-v1.0.0").exists()
    assert_same_as_git(store, repo)
    # new loose refs beside the packed ones, in the middle of the packed range
    git(repo, "tag", "-a", "-m", "new", "procedure-foo-v1.0.1", tip)
    git(repo, "tag", "-a", "-m", "new", "channel/foo/stable/000003", tip)
    assert_same_as_git(store, repo)
    assert "refs/tags/procedure-foo-v1.0.1" in store.ref_names("refs/tags/procedure-foo-v")


def test_ref_names_forget_deleted_refs_packed_or_loose(tagged: tuple[GitStore, Path, str]) -> None:
    store, repo, tip = tagged
    git(repo, "pack-refs", "--all")
    git(repo, "tag", "-a", "-m", "loose", "procedure-bar-v1.0.1", tip)
    git(repo, "tag", "-d", "procedure-foo-v1.0.0")  # packed: git rewrites packed-refs
    git(repo, "tag", "-d", "procedure-bar-v1.0.1")  # loose: git removes the file
    assert_same_as_git(store, repo)
    assert store.ref_names("refs/tags/procedure-foo-v") == [
        "refs/tags/procedure-foo-v1.1.0",
        "refs/tags/procedure-foo-v2-v1.0.0",
    ]
    assert [t.name for t in store.tags("procedure-bar-v")] == ["procedure-bar-v1.0.0"]


def test_a_loose_ref_overrides_its_packed_copy(tagged: tuple[GitStore, Path, str]) -> None:
    store, repo, tip = tagged
    git(repo, "pack-refs", "--all")
    second = store.write({"foo": files("foo", MAIN + b"# changed\n")}, "fix: foo")
    # what `git tag -f` does to a packed tag: a loose ref with the new target
    git(repo, "tag", "-f", "lightweight-foo", second)
    (info,) = store.tags("lightweight-foo")
    assert info.commit == second != tip
    assert store.tag("lightweight-foo") == info
    # a lock file (a write in progress) is not a ref
    (repo / ".git" / "refs" / "tags" / "procedure-foo-v9.0.0.lock").write_text(second + "\n")
    assert "refs/tags/procedure-foo-v9.0.0" not in store.ref_names("refs/tags/procedure-foo-v")
    assert_same_as_git(store, repo)


def test_tags_by_prefix_read_messages_and_targets(tagged: tuple[GitStore, Path, str]) -> None:
    store, repo, tip = tagged
    git(repo, "pack-refs", "--all")
    found = store.tags("channel/foo/")
    assert [t.name for t in found] == [
        "channel/foo/beta/000001",
        "channel/foo/stable/000001",
        "channel/foo/stable/000002",
    ]
    assert all(t.commit == tip and t.message == f"tag {t.name}\n" for t in found)
    assert store.tags("lightweight-")[0].tag_id is None


def test_ref_names_in_a_linked_worktree_and_a_bare_clone(
    tagged: tuple[GitStore, Path, str], tmp_path: Path
) -> None:
    _, repo, _ = tagged
    git(repo, "pack-refs", "--all")
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "side", str(linked))
    in_worktree = GitStore.open(linked)
    assert (in_worktree.git_dir / "commondir").exists()  # refs live in the main git dir
    assert in_worktree.ref_names("refs/tags/procedure-foo-v") == for_each_ref(
        repo, "refs/tags/procedure-foo-v"
    )
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    server = GitStore.open(bare)
    for prefix in PREFIXES:
        assert server.ref_names(prefix) == for_each_ref(bare, prefix), prefix


def test_ref_names_with_an_unsorted_packed_refs_file(tagged: tuple[GitStore, Path, str]) -> None:
    """An old git wrote packed-refs without the ``sorted`` trait: it is scanned whole."""
    store, repo, _ = tagged
    git(repo, "pack-refs", "--all")
    packed = repo / ".git" / "packed-refs"
    lines = packed.read_text().splitlines(keepends=True)
    records: list[str] = []
    for line in lines[1:]:
        if line.startswith("^"):
            records[-1] += line
        else:
            records.append(line)
    packed.write_text("# pack-refs with: peeled \n" + "".join(reversed(records)))
    assert store.ref_names("refs/tags/procedure-foo-v") == for_each_ref(
        repo, "refs/tags/procedure-foo-v"
    )


def test_ref_names_binary_search_over_many_packed_tags(tmp_path: Path) -> None:
    """Hundreds of packed tags (annotated ones carry peeled lines): every prefix agrees with git."""
    repo = tmp_path / "many"
    store = GitStore.init(repo)
    tip = store.write({"a": files("a")}, "feat: a")
    git(repo, "tag", "-a", "-m", "annotated", "procedure-p050-v1.0.0", tip)
    annotated = git(repo, "rev-parse", "procedure-p050-v1.0.0").strip()
    commands = []
    for i in range(400):
        target = annotated if i % 3 == 0 else tip  # a mix of peeled and plain records
        commands.append(f"create refs/tags/procedure-p{i:03d}-v1.0.{i % 7} {target}\n")
        commands.append(f"create refs/tags/channel/p{i:03d}/stable/000001 {target}\n")
    subprocess.run(
        ["git", "update-ref", "--stdin"], cwd=repo, input="".join(commands), text=True, check=True
    )
    git(repo, "pack-refs", "--all")
    for prefix in [
        "refs/tags/procedure-p000-v",
        "refs/tags/procedure-p399-v",
        "refs/tags/procedure-p2",
        "refs/tags/procedure-p05",
        "refs/tags/channel/p123/",
        "refs/tags/channel/",
        "refs/tags/procedure-p400-v",
        "refs/tags/",
        "refs/heads/main",
        "refs/tags/b",
    ]:
        assert store.ref_names(prefix) == for_each_ref(repo, prefix), prefix


# -- refs through libgit2: worktrees, locks left behind, locks held ---------------------------


def _stale(path: Path) -> None:
    """A lock file whose creator is gone (no process holds it; older than the grace period)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    old = time.time() - 60
    os.utime(path, (old, old))


def test_a_tag_made_in_a_linked_worktree_lands_in_the_common_refs(tmp_path: Path) -> None:
    main = GitStore.init(tmp_path / "repo")
    tip = main.write({"a": files("a")}, "feat: a")
    git(tmp_path / "repo", "worktree", "add", "-q", "-b", "side", str(tmp_path / "linked"))
    linked = GitStore.open(tmp_path / "linked")
    assert linked.common_dir == (tmp_path / "repo" / ".git").resolve() != linked.git_dir
    linked.create_tag("procedure-a-v1.0.0", tip, "Release a 1.0.0\n")
    assert (tmp_path / "repo" / ".git" / "refs" / "tags" / "procedure-a-v1.0.0").is_file()
    assert git(tmp_path / "repo", "tag", "-l") == "procedure-a-v1.0.0\n"
    assert main.tag("procedure-a-v1.0.0") is not None
    with pytest.raises(ConflictError, match="already exists"):
        main.create_tag("procedure-a-v1.0.0", tip, "again")


def test_a_stale_tag_lock_is_cleared(store: GitStore) -> None:
    tip = store.write({"a": files("a")}, "feat: a")
    lock = store.common_dir / "refs" / "tags" / "procedure-a-v1.0.0.lock"
    _stale(lock)
    info = store.create_tag("procedure-a-v1.0.0", tip, "Release a 1.0.0\n")
    assert info.commit == tip and not lock.exists()


def test_a_stale_branch_lock_is_cleared(store: GitStore) -> None:
    store.write({"a": files("a")}, "feat: a")
    lock = store.common_dir / "refs" / "heads" / "main.lock"
    _stale(lock)
    second = store.write({"b": files("b")}, "feat: b")
    assert store.resolve("main") == second and not lock.exists()


def test_a_live_lock_is_reported_by_name_and_holder(
    store: GitStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCREG_LOCK_WAIT", "0.3")
    tip = store.write({"a": files("a")}, "feat: a")
    lock = store.common_dir / "refs" / "tags" / "procedure-a-v1.0.0.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = hold_open(lock)
    try:
        with pytest.raises(LockedError) as caught:
            store.create_tag("procedure-a-v1.0.0", tip, "Release a 1.0.0\n")
        assert caught.value.path == str(lock) and caught.value.holders == [holder.pid]
        assert str(lock) in str(caught.value) and f"pid {holder.pid}" in str(caught.value)
        assert lock.exists()  # a live lock is never removed
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_the_release_lock_is_exclusive_and_dies_with_its_holder(tmp_path: Path) -> None:
    store = GitStore.init(tmp_path / "repo")
    script = (
        "import sys, time; from registry.git.store import GitStore\n"
        f"with GitStore.open({str(tmp_path / 'repo')!r}).release_lock():\n"
        "    print('held', flush=True); time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    holder.stdout.close()
    with pytest.raises(LockedError, match=f"pid {holder.pid}") as caught, store.release_lock(0.3):
        pass
    assert caught.value.path == str(store.common_dir / "procreg" / "release.lock")
    holder.kill()  # SIGKILL: no cleanup ran, and the lock is free all the same
    holder.wait(timeout=30)
    with store.release_lock(wait_s=10):
        pass


def test_tags_of_no_commit_are_left_out_and_named(tmp_path: Path) -> None:
    store = GitStore.init(tmp_path / "repo")
    tip = store.write({"a": files("a")}, "feat: a")
    git(tmp_path / "repo", "tag", "procedure-a-v9.9.9", f"{tip}:procedures/a")
    store.create_tag("procedure-a-v1.0.0", tip, "Release a 1.0.0\n")
    ignored: list[str] = []
    assert [t.name for t in store.tags("procedure-a-v", ignored=ignored)] == ["procedure-a-v1.0.0"]
    assert ignored == ["procedure-a-v9.9.9"]
    assert store.tag("procedure-a-v9.9.9") is None


# -- commits before checkouts ---------------------------------------------------------------------


def _checkout(tmp_path: Path) -> tuple[GitStore, Path]:
    repo = tmp_path / "repo"
    store = GitStore.init(repo)
    store.write({"a": files("a"), "b": files("b")}, "feat: a and b")
    git(repo, "reset", "-q", "--hard")
    return store, repo


def test_an_interrupted_run_is_caught_up_by_the_next(tmp_path: Path) -> None:
    store, repo = _checkout(tmp_path)
    assert store.begin_checkout_update() == []
    store.write({"c": files("c")}, "feat: c")
    store.write({"a": None}, "chore: drop a")
    # ... killed here: the branch moved, the checkout did not
    assert git(repo, "status", "--porcelain") != ""
    rerun = GitStore.open(repo)
    assert rerun.begin_checkout_update() == []
    assert git(repo, "status", "--porcelain") == ""
    assert sorted(p.name for p in (repo / "procedures").iterdir()) == ["b", "c"]
    assert rerun.finish_checkout_update() == []
    assert not (repo / ".git" / "procreg" / "checkout-base").exists()


def test_the_catch_up_finishes_a_half_done_update_and_keeps_user_changes(tmp_path: Path) -> None:
    store, repo = _checkout(tmp_path)
    store.begin_checkout_update()
    store.write({"a": files("a", MAIN + b"# two\n"), "b": files("b", MAIN + b"# two\n")}, "fix")
    # half-done: a's file was written, the index was not; b was edited by the user
    (repo / "procedures" / "a" / "main.py").write_bytes(MAIN + b"# two\n")
    (repo / "procedures" / "b" / "main.py").write_bytes(MAIN + b"# mine\n")
    assert store.finish_checkout_update() == ["procedures/b/main.py"]
    assert git(repo, "status", "--porcelain") == " M procedures/b/main.py\n"
    assert store.checkout_differences() == []  # the index holds the branch's version
    assert (repo / "procedures" / "b" / "main.py").read_bytes() == MAIN + b"# mine\n"


def test_checkout_differences_list_what_git_diff_cached_would(tmp_path: Path) -> None:
    store, _ = _checkout(tmp_path)
    store.write({"c": files("c")}, "feat: c")  # not checked out
    assert store.checkout_differences() == ["procedures/c/main.py", "procedures/c/metadata.json"]
    assert store.checkout_differences(["a"]) == []


def test_the_catch_up_clears_an_index_lock_a_killed_process_left(tmp_path: Path) -> None:
    store, repo = _checkout(tmp_path)
    store.begin_checkout_update()
    store.write({"c": files("c")}, "feat: c")
    _stale(repo / ".git" / "index.lock")
    assert store.finish_checkout_update() == []
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".git" / "index.lock").exists()
