"""Remotes with a real bare server: shallow and tagless clones are caught, pushes are atomic."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.errors import GitError, HistoryIncomplete, UsageError
from registry.git import remotes
from registry.git.store import GitStore
from tests.helpers import git, run_cli, write_proc

PREFIX = "procedure-"


@pytest.fixture
def server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A bare remote holding main and two releases of ``greet``."""
    work = tmp_path / "work"
    assert run_cli(capsys, "init", str(work)).code == 0
    write_proc(work, "greet")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "feat: greet")
    assert run_cli(capsys, "-C", str(work), "release", "--skip-examples").code == 0
    write_proc(work, "greet", description="greets better")
    git(work, "commit", "-qam", "fix: wording")
    assert run_cli(capsys, "-C", str(work), "release", "--skip-examples").code == 0
    bare = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare


def clone(server: Path, where: Path, *args: str) -> GitStore:
    git(where.parent, "clone", "-q", *args, f"file://{server}", str(where))
    return GitStore.open(where)


def test_a_shallow_clone_stops_with_the_fetch_hint(server: Path, tmp_path: Path) -> None:
    store = clone(server, tmp_path / "ci", "--depth", "1")
    assert remotes.is_shallow(store)
    with pytest.raises(HistoryIncomplete) as caught:
        remotes.check_history(store, PREFIX)
    assert caught.value.shallow
    assert "git fetch --unshallow --tags" in str(caught.value)
    assert "\n" not in str(caught.value)
    git(tmp_path / "ci", "fetch", "-q", "--unshallow", "--tags")
    remotes.check_history(store, PREFIX, compare_remote=True)  # what the hint says, works


def test_a_tagless_clone_names_the_missing_release_tags(server: Path, tmp_path: Path) -> None:
    store = clone(server, tmp_path / "ci", "--no-tags")
    assert not remotes.is_shallow(store)
    with pytest.raises(HistoryIncomplete) as caught:
        remotes.check_history(store, PREFIX)
    assert caught.value.remote == "origin"
    assert caught.value.missing == ["procedure-greet-v1.0.0", "procedure-greet-v1.0.1"]
    assert "2 release tags of remote 'origin' are missing" in str(caught.value)


def test_a_complete_clone_goes_on_and_a_newer_remote_tag_is_seen_before_releasing(
    server: Path, tmp_path: Path
) -> None:
    store = clone(server, tmp_path / "mine")
    remotes.check_history(store, PREFIX)
    remotes.check_history(store, PREFIX, compare_remote=True)
    other = tmp_path / "other"
    clone(server, other)
    git(other, "tag", "-a", "procedure-greet-v1.0.2", "-m", "made elsewhere")
    git(other, "push", "-q", "origin", "procedure-greet-v1.0.2")
    remotes.check_history(store, PREFIX)  # has tags: no round trip unless asked
    with pytest.raises(HistoryIncomplete) as caught:
        remotes.check_history(store, PREFIX, compare_remote=True)
    assert caught.value.missing == ["procedure-greet-v1.0.2"]


def test_an_unreachable_remote_does_not_stop_a_command(server: Path, tmp_path: Path) -> None:
    store = clone(server, tmp_path / "ci", "--no-tags")
    git(tmp_path / "ci", "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    remotes.check_history(store, PREFIX)


def test_push_is_atomic_and_never_forces(server: Path, tmp_path: Path) -> None:
    work = tmp_path / "mine"
    store = clone(server, work)
    git(work, "tag", "-a", "procedure-greet-v2.0.0", "-m", "new")
    git(work, "tag", "-a", "procedure-greet-v1.0.1", "-f", "-m", "moved by hand", "HEAD~1")
    refs = ["refs/tags/procedure-greet-v2.0.0", "refs/tags/procedure-greet-v1.0.1"]
    with pytest.raises(GitError) as caught:
        remotes.push(store, "origin", refs)
    assert "procedure-greet-v1.0.1" in str(caught.value)
    # All or nothing: the good tag did not land either.
    assert "procedure-greet-v2.0.0" not in git(server, "tag", "-l")
    done = remotes.push(store, "origin", refs[:1])
    assert done.atomic and done.refs == (refs[0],)
    assert "procedure-greet-v2.0.0" in git(server, "tag", "-l")


def test_push_names_a_missing_remote_and_the_hint_says_what_to_run(
    server: Path, tmp_path: Path
) -> None:
    store = clone(server, tmp_path / "mine")
    with pytest.raises(UsageError, match="no remote named 'upstream'"):
        remotes.push(store, "upstream", ["refs/tags/x"])
    assert remotes.default_remote(store, "main") == "origin"
    hint = remotes.push_hint("origin", ["refs/tags/procedure-greet-v2.0.0", "refs/heads/main"])
    assert hint == (
        "not pushed; publish with `git push --atomic origin procedure-greet-v2.0.0 main` "
        "(or rerun with --push)"
    )
