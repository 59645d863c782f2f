"""Pushing what a command made, releasing from the right branch, and clones that lack history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import git, run_cli, write_proc


@pytest.fixture
def clone(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A clone of a bare server whose main holds ``greet`` 1.0.0; ``echo`` is new, unreleased."""
    write_proc(repo, "greet")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: greet")
    assert run_cli(capsys, "-C", str(repo), "release").code == 0
    server = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(server))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", f"file://{server}", str(work))
    write_proc(work, "echo")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "feat: echo")
    return work


def server_tags(clone: Path, pattern: str) -> list[str]:
    return git(clone / ".." / "server.git", "tag", "-l", pattern).split()


def test_without_push_one_line_says_what_to_push(
    clone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_cli(capsys, "-C", str(clone), "release")
    assert done.code == 0, done.err
    assert done.out.splitlines()[-1] == (
        "not pushed; publish with `git push --atomic origin procedure-echo-v1.0.0` "
        "(or rerun with --push)"
    )
    assert server_tags(clone, "procedure-echo-*") == []


def test_a_repository_without_a_remote_gets_no_push_line(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_proc(repo, "greet")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: greet")
    done = run_cli(capsys, "-C", str(repo), "release")
    assert done.code == 0
    assert "push" not in done.out + done.err


def test_release_push_lands_the_tags_and_a_trailing_id_is_not_a_remote(
    clone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_cli(capsys, "-C", str(clone), "release", "--push", "echo")
    assert done.code == 0, done.err
    assert "pushed 1 ref to origin" in done.out
    assert server_tags(clone, "procedure-echo-*") == ["procedure-echo-v1.0.0"]


def test_json_release_push_keeps_stdout_one_document(
    clone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_cli(capsys, "-C", str(clone), "release", "--json", "--push", "origin")
    assert done.code == 0, done.err
    assert [r["tag"] for r in json.loads(done.out)] == ["procedure-echo-v1.0.0"]
    assert "pushed 1 ref to origin" in done.err


def test_promote_and_rollback_push(clone: Path, capsys: pytest.CaptureFixture[str]) -> None:
    moved = run_cli(
        capsys, "-C", str(clone), "promote", "greet", "1.0.0", "--channel", "stable", "--push"
    )
    assert moved.code == 0, moved.err
    assert server_tags(clone, "channel/greet/stable/*") == ["channel/greet/stable/000001"]
    git(clone, "push", "-q", "origin", "main")
    write_proc(clone, "greet", description="greets differently")
    git(clone, "commit", "-qam", "fix: wording")
    assert run_cli(capsys, "-C", str(clone), "release", "--push").code == 0
    back = run_cli(capsys, "-C", str(clone), "rollback", "greet", "--to", "1.0.0", "--push")
    assert back.code == 0, back.err
    assert "pushed 2 refs to origin" in back.out
    server = clone / ".." / "server.git"
    assert git(server, "rev-parse", "main") == git(clone, "rev-parse", "main")
    assert len(server_tags(clone, "procedure-greet-*")) == 3


def test_a_push_the_remote_refuses_says_the_tags_were_made_here(
    clone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    git(clone, "remote", "set-url", "origin", str(clone / ".." / "gone.git"))
    done = run_cli(capsys, "-C", str(clone), "release", "--push")
    assert done.code == 1
    assert "made here but not pushed (procedure-echo-v1.0.0)" in done.err
    assert git(clone, "tag", "-l", "procedure-echo-*").split() == ["procedure-echo-v1.0.0"]


def test_releasing_off_the_tracked_branch_needs_from_branch(
    clone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    git(clone, "switch", "-q", "-c", "feature")
    merged = run_cli(capsys, "-C", str(clone), "release", "--dry-run")
    assert merged.code == 0
    write_proc(clone, "echo", description="only on the branch")
    git(clone, "commit", "-qam", "fix: not merged")
    refused = run_cli(capsys, "-C", str(clone), "release")
    assert refused.code != 0
    assert "the checked-out branch is feature, not main" in refused.err
    assert "--from-branch" in refused.err
    assert git(clone, "tag", "-l", "procedure-echo-*") == ""
    dry = run_cli(capsys, "-C", str(clone), "release", "--dry-run")
    assert dry.code == 0  # a dry run tags nothing: no branch rule
    done = run_cli(capsys, "-C", str(clone), "release", "--from-branch")
    assert done.code == 0, done.err
    assert "warning: releasing anyway (--from-branch)" in done.err
    git(clone, "switch", "-q", "--detach", "HEAD")
    detached = run_cli(capsys, "-C", str(clone), "release")
    assert "HEAD is detached" in detached.err


def test_shallow_and_tagless_clones_stop_unless_allowed(
    clone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = tmp_path / "server.git"
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{server}", str(shallow))
    for command in (["log", "greet"], ["release", "--dry-run"], ["search", "greet"]):
        stopped = run_cli(capsys, "-C", str(shallow), *command)
        assert stopped.code == 1, command
        assert "git fetch --unshallow --tags" in stopped.err, command
    as_json = run_cli(capsys, "-C", str(shallow), "log", "greet", "--json")
    assert json.loads(as_json.out)["error"]["type"] == "HistoryIncomplete"
    allowed = run_cli(capsys, "-C", str(shallow), "--allow-shallow", "log", "greet")
    assert allowed.code == 0
    assert run_cli(capsys, "-C", str(shallow), "check").code == 0  # no history needed

    tagless = tmp_path / "tagless"
    git(tmp_path, "clone", "-q", "--no-tags", f"file://{server}", str(tagless))
    stopped = run_cli(capsys, "-C", str(tagless), "release", "--dry-run")
    assert stopped.code == 1
    assert "release tag of remote 'origin' is missing here" in stopped.err
    assert "procedure-greet-v1.0.0" in stopped.err


def test_a_branch_at_the_tracked_commit_releases_with_a_warning(
    clone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A linked worktree's branch at main's commit releases main's own code."""
    git(clone, "switch", "-q", "-c", "feature")
    done = run_cli(capsys, "-C", str(clone), "release")
    assert done.code == 0, done.err
    assert "tagged procedure-echo-v1.0.0" in done.out
    assert "warning: releasing from feature, whose commit main already holds" in done.err
