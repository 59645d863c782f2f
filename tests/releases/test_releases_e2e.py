"""Releases of a repository edited with plain git, the way people work, and the server hook.

Branches, ``--no-ff`` merges, squash merges, rebases, deleted procedures and
commits touching several procedures: only the procedures that changed are
released, with the bump their change and their commits call for. The
pre-receive hook is installed in a real bare server and exercised by
``git push``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import registry
from registry.errors import NotFoundError
from registry.git.store import GitStore
from registry.releases import channels, history
from registry.releases import release as releases
from tests.helpers import commit_all, git, invalid_files, make_repo, proc_files, write_files

ROOT = Path(registry.__file__).resolve().parent.parent


def released(repo: Path) -> list[tuple[str, str, str]]:
    """Release everything that changed; ``(id, version, bump)`` per new tag."""
    return [(r.id, r.version, r.bump) for r in releases.release(GitStore.open(repo))]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = make_repo(tmp_path / "work")
    write_files(path, "echo", proc_files("echo"))
    write_files(path, "upper", proc_files("upper", body="return text.upper()"))
    commit_all(path, "feat: echo and upper")
    assert released(path) == [("echo", "1.0.0", "initial"), ("upper", "1.0.0", "initial")]
    return path


def test_a_no_ff_merged_feature_branch_releases_only_what_it_changed(repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "feature/sep")
    write_files(repo, "echo", proc_files("echo", optional=("sep",), body="return text + sep"))
    commit_all(repo, "feat(echo): optional separator")
    write_files(
        repo, "echo", proc_files("echo", optional=("sep",), body="return text + sep", doc="Hi.")
    )
    commit_all(repo, "docs(echo): shorter docstring")
    git(repo, "switch", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge branch 'feature/sep'", "feature/sep")

    assert released(repo) == [("echo", "1.1.0", "minor")]
    (latest, *_) = history.history(GitStore.open(repo), "echo")
    assert latest.commit == git(repo, "rev-parse", "HEAD").strip()  # the merge commit
    assert any("optional separator" in r for r in latest.reasons)
    assert released(repo) == []


def test_a_squash_merge_is_released_as_its_one_commit_says(repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "fix/upper")
    write_files(repo, "upper", proc_files("upper", body="return text.upper() or 'EMPTY'"))
    commit_all(repo, "wip")
    write_files(repo, "upper", proc_files("upper", body="return text.upper() or ''"))
    commit_all(repo, "wip 2")
    git(repo, "switch", "-q", "main")
    git(repo, "merge", "-q", "--squash", "fix/upper")
    commit_all(repo, "fix(upper): handle empty text (#12)")

    assert released(repo) == [("upper", "1.0.1", "patch")]
    hist = history.history(GitStore.open(repo), "upper")
    assert any("handle empty text" in r for r in hist[0].reasons)
    assert not any("wip" in r for r in hist[0].reasons)  # the branch's commits are not on main


def test_a_rebased_branch_releases_its_own_procedure_only(repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "topic")
    write_files(repo, "echo", proc_files("echo", body="return text.strip()"))
    commit_all(repo, "fix(echo): strip spaces")
    git(repo, "switch", "-q", "main")
    write_files(
        repo, "upper", proc_files("upper", optional=("suffix",), body="return text + suffix")
    )
    commit_all(repo, "feat(upper): suffix")
    assert released(repo) == [("upper", "1.1.0", "minor")]

    git(repo, "switch", "-q", "topic")
    git(repo, "rebase", "-q", "main")
    git(repo, "switch", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "topic")

    assert released(repo) == [("echo", "1.0.1", "patch")]


def test_a_feat_commit_gives_minor_and_a_bang_gives_major(repo: Path) -> None:
    write_files(repo, "echo", proc_files("echo", body="return text + ''"))
    commit_all(repo, "feat: echo keeps working, now faster")
    assert released(repo) == [("echo", "1.1.0", "minor")]

    write_files(repo, "upper", proc_files("upper", body="return text.upper().strip()"))
    commit_all(repo, "fix!: upper strips whitespace now")
    assert released(repo) == [("upper", "2.0.0", "major")]

    write_files(repo, "upper", proc_files("upper", body="return text.upper()"))
    commit_all(repo, "revert strip\n\nBREAKING CHANGE: whitespace is kept again")
    assert released(repo) == [("upper", "3.0.0", "major")]


def test_several_procedures_in_one_commit_get_their_own_bumps(repo: Path) -> None:
    write_files(repo, "echo", proc_files("echo", optional=("sep",), body="return text + sep"))
    write_files(repo, "upper", proc_files("upper", body="return text.upper()  # same"))
    write_files(repo, "lower", proc_files("lower", body="return text.lower()"))
    commit_all(repo, "refactor: touch several procedures")

    assert released(repo) == [
        ("echo", "1.1.0", "minor"),
        ("lower", "1.0.0", "initial"),
        ("upper", "1.0.1", "patch"),
    ]


def test_a_deleted_procedure_keeps_its_releases_and_is_not_released(repo: Path) -> None:
    git(repo, "rm", "-q", "-r", "procedures/upper")
    commit_all(repo, "chore: drop upper")
    store = GitStore.open(repo)

    assert released(repo) == []
    with pytest.raises(NotFoundError, match="upper"):
        releases.release(store, ["upper"])
    assert history.resolve(store, "upper").version == "1.0.0"  # still served from its tag
    assert [h.version for h in history.history(store, "upper")] == ["1.0.0"]

    # brought back with a different signature: compared with its last release
    write_files(repo, "upper", proc_files("upper", params=("text", "locale")))
    commit_all(repo, "feat: upper is back")
    assert released(repo) == [("upper", "2.0.0", "major")]


def test_releasing_a_feature_branch_then_merging_does_not_release_twice(repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "early")
    write_files(repo, "echo", proc_files("echo", body="return str(text)"))
    commit_all(repo, "fix: str")
    assert released(repo) == [("echo", "1.0.1", "patch")]  # released from the branch
    git(repo, "switch", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge branch 'early'", "early")

    assert released(repo) == []  # same folder contents as 1.0.1


# --- the server's pre-receive hook ----------------------------------------------------

DIRECT_HOOK = '#!/bin/sh\nexec "$PROCREG_PYTHON" -m registry.releases.receive pre-receive\n'


def _cli_has_hook_command() -> bool:
    try:
        from registry.cli import cli
    except ImportError:
        return False
    return "hook" in getattr(cli, "commands", {})


@pytest.fixture(params=["server_hook-module", "committed-shim"])
def server(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bare server repository with the pre-receive hook installed."""
    if request.param == "committed-shim" and not _cli_has_hook_command():
        pytest.skip("the CLI has no `hook pre-receive` command yet for hooks/pre-receive to run")
    monkeypatch.setenv("PROCREG_PYTHON", sys.executable)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    path = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(path))
    hook = path / "hooks" / "pre-receive"
    if request.param == "committed-shim":
        hook.write_text((ROOT / "hooks" / "pre-receive").read_text())
    else:
        hook.write_text(DIRECT_HOOK)
    hook.chmod(0o755)
    return path


def push(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", "--porcelain", "origin", *args],
        cwd=clone,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_server_refuses_tag_rewrites_and_invalid_procedures(
    server: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(server), str(clone))
    write_files(clone, "echo", proc_files("echo"))
    first = commit_all(clone, "feat: echo")
    assert push(clone, "main").returncode == 0

    # a release made locally is pushed
    store = GitStore.open(clone)
    releases.release(store)
    assert push(clone, "procedure-echo-v1.0.0").returncode == 0
    channels.promote(store, "echo", "1.0.0", "stable", reason="first")
    assert push(clone, "channel/echo/stable/000001").returncode == 0

    write_files(clone, "echo", proc_files("echo", body="return text * 2"))
    second = commit_all(clone, "fix: twice")
    assert push(clone, "main").returncode == 0

    # moving a release tag is refused
    git(clone, "tag", "-f", "-a", "-m", "moved", "procedure-echo-v1.0.0", second)
    refused = push(clone, "--force", "procedure-echo-v1.0.0")
    assert refused.returncode != 0
    assert "procedure-echo-v1.0.0: moving a release or channel tag is refused" in refused.stderr
    assert git(server, "rev-parse", "procedure-echo-v1.0.0^{commit}").strip() == first

    # deleting one is refused, and so is deleting or moving a channel tag
    refused = push(clone, ":refs/tags/procedure-echo-v1.0.0")
    assert "deleting a release or channel tag is refused" in refused.stderr
    git(clone, "tag", "-f", "-a", "-m", "moved", "channel/echo/stable/000001", second)
    assert "moving" in push(clone, "--force", "channel/echo/stable/000001").stderr
    assert "deleting" in push(clone, ":refs/tags/channel/echo/stable/000001").stderr
    assert "channel/echo/stable/000001" in git(server, "tag", "-l")

    # new tags in the namespace must be well formed, annotated and name a procedure there
    git(clone, "tag", "-a", "-m", "x", "procedure-echo-vnext", second)
    assert "not a release tag name" in push(clone, "procedure-echo-vnext").stderr
    git(clone, "tag", "-a", "-m", "x", "procedure-ghost-v1.0.0", second)
    assert "has no procedure 'ghost'" in push(clone, "procedure-ghost-v1.0.0").stderr
    git(clone, "tag", "procedure-echo-v1.0.1", second)
    assert "must be annotated" in push(clone, "procedure-echo-v1.0.1").stderr
    git(clone, "tag", "-d", "procedure-echo-v1.0.1")
    git(clone, "tag", "-a", "-m", "x", "channel/echo/Stable/1", second)
    assert "not a channel tag name" in push(clone, "channel/echo/Stable/1").stderr

    # the server still has the real tags: take them back over the local rewrites
    git(clone, "fetch", "-q", "--force", "origin", "refs/tags/*:refs/tags/*")
    assert git(clone, "rev-parse", "procedure-echo-v1.0.0^{commit}").strip() == first

    # an invalid procedure cannot reach main, but may live on a branch
    write_files(clone, "bad", invalid_files("bad"))
    commit_all(clone, "feat: bad")
    refused = push(clone, "main")
    assert refused.returncode != 0
    assert "procedures/bad/main.py" in refused.stderr
    assert git(server, "rev-parse", "main").strip() == second
    assert push(clone, "HEAD:refs/heads/wip-bad").returncode == 0

    # fixed, it goes through along with its release tag in one push
    write_files(clone, "bad", proc_files("bad"))
    commit_all(clone, "fix: bad is good now")
    store = GitStore.open(clone)
    made = {r.tag for r in releases.release(store)}
    assert made == {"procedure-bad-v1.0.0", "procedure-echo-v1.0.1"}
    ok = push(clone, "main", "procedure-bad-v1.0.0", "procedure-echo-v1.0.1")
    assert ok.returncode == 0, ok.stderr
    assert {"procedure-bad-v1.0.0", "procedure-echo-v1.0.1"} <= set(
        git(server, "tag", "-l").split()
    )
    assert git(server, "fsck", "--no-dangling").strip() == ""
