"""The server enforces releases: a real bare server with ``procreg hooks install --server``.

Clones push with the git CLI; each test asserts the push's exit code, the line
git relays from the hook (``remote: procreg: refused ...``) and the server's
tags afterwards. A new release tag is accepted only on a commit of main (as
the server has it, or as the same push makes it), with a valid procedure
there, at exactly the version procreg computes from the previous release.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from registry.git.store import GitStore
from registry.releases import release as releases
from tests.helpers import (
    commit_all,
    git,
    invalid_files,
    proc_files,
    release,
    run_process,
    tag_release,
    write_files,
)


@pytest.fixture
def server(tmp_path: Path) -> Path:
    """A bare server repository with procreg's pre-receive hook, installed as a user would."""
    path = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(path))
    installed = run_process("hooks", "install", "--server", cwd=path)
    assert installed.code == 0, installed.err
    assert (path / "hooks" / "pre-receive").is_file()
    return path


@pytest.fixture
def clone(server: Path, tmp_path: Path) -> Path:
    """A clone of ``server`` whose main has ``greet``, released as 1.0.0 and pushed."""
    path = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(server), str(path))
    write_files(path, "greet", proc_files("greet"))
    commit_all(path, "feat: greet")
    assert push(path, "main").returncode == 0
    assert release(path, "greet") == "1.0.0"
    pushed = push(path, "procedure-greet-v1.0.0")
    assert pushed.returncode == 0, pushed.stderr
    return path


def push(clone: Path, *refs: str) -> subprocess.CompletedProcess[str]:
    """``git push [--atomic ...] origin REFS``, as a person runs it."""
    return subprocess.run(
        ["git", "push", "origin", *refs], cwd=clone, capture_output=True, text=True, check=False
    )


def server_tags(server: Path) -> set[str]:
    return set(git(server, "tag", "-l").split())


def refusal(pushed: subprocess.CompletedProcess[str], tag: str) -> str:
    """The one line the hook printed (relayed by git) for ``refs/tags/<tag>``."""
    prefix = f"remote: procreg: refused refs/tags/{tag}: "
    lines = [line for line in pushed.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, pushed.stderr
    return lines[0][len(prefix) :].rstrip()


def test_a_hand_made_tag_that_skips_versions_is_refused_naming_the_computed_one(
    clone: Path, server: Path
) -> None:
    write_files(clone, "greet", proc_files("greet", body="return text + '!'"))
    fixed = commit_all(clone, "fix: greet shouts")
    assert push(clone, "main").returncode == 0

    tag_release(clone, "greet", "9.0.0")
    refused = push(clone, "procedure-greet-v9.0.0")
    assert refused.returncode != 0
    why = refusal(refused, "procedure-greet-v9.0.0")
    assert why.startswith("procreg computes 1.0.1 from procedure-greet-v1.0.0 (patch: ")
    assert why.endswith("tag procedure-greet-v1.0.1 instead (procreg release does)")
    assert "procedure-greet-v9.0.0" not in server_tags(server)

    # the version procreg computes goes through, even hand-made
    git(clone, "tag", "-d", "procedure-greet-v9.0.0")
    tag_release(clone, "greet", "1.0.1")
    accepted = push(clone, "procedure-greet-v1.0.1")
    assert accepted.returncode == 0, accepted.stderr
    assert git(server, "rev-parse", "procedure-greet-v1.0.1^{commit}").strip() == fixed


def test_a_first_release_at_another_version_is_refused(clone: Path, server: Path) -> None:
    write_files(clone, "shout", proc_files("shout", body="return text.upper()"))
    commit_all(clone, "feat: shout")
    tag_release(clone, "shout", "0.1.0")
    refused = push(clone, "main", "procedure-shout-v0.1.0")
    assert refused.returncode != 0
    why = refusal(refused, "procedure-shout-v0.1.0")
    assert why.startswith("procreg computes 1.0.0 for a first release (initial")
    assert "tag procedure-shout-v1.0.0 instead" in why
    assert "procedure-shout-v0.1.0" not in server_tags(server)


def test_a_procreg_release_pushed_atomically_with_its_branch_is_accepted(
    clone: Path, server: Path
) -> None:
    write_files(clone, "greet", proc_files("greet", optional=("name",)))
    head = commit_all(clone, "feat: greet takes a name")
    made = run_process("release", "greet", cwd=clone)
    assert made.code == 0, made.err
    assert "procedure-greet-v1.1.0" in git(clone, "tag", "-l")

    pushed = push(clone, "--atomic", "main", "procedure-greet-v1.1.0")
    assert pushed.returncode == 0, pushed.stderr
    assert "procedure-greet-v1.1.0" in server_tags(server)
    assert git(server, "rev-parse", "main").strip() == head


def test_a_tag_whose_commit_arrives_in_the_same_push_is_accepted(clone: Path, server: Path) -> None:
    write_files(clone, "shout", proc_files("shout", body="return text.upper()"))
    head = commit_all(clone, "feat: shout")
    tag_release(clone, "shout", "1.0.0")
    pushed = push(clone, "main", "procedure-shout-v1.0.0")
    assert pushed.returncode == 0, pushed.stderr
    assert git(server, "rev-parse", "procedure-shout-v1.0.0^{commit}").strip() == head
    assert git(server, "rev-parse", "main").strip() == head


def test_a_tag_on_an_unmerged_invalid_commit_is_refused_with_both_reasons(
    clone: Path, server: Path
) -> None:
    git(clone, "switch", "-q", "-c", "wip")
    write_files(clone, "greet", invalid_files("greet"))
    wip = commit_all(clone, "fix: greet evaluates")
    assert push(clone, "wip").returncode == 0  # an invalid procedure may live on a branch
    tag_release(clone, "greet", "1.0.1")

    refused = push(clone, "procedure-greet-v1.0.1")
    assert refused.returncode != 0
    why = refusal(refused, "procedure-greet-v1.0.1")
    assert why.startswith(f"points to {wip[:7]}, which is not on main; merge it first; ")
    assert "the procedure there is invalid: procedures/greet/main.py:" in why
    assert "procedure-greet-v1.0.1" not in server_tags(server)

    # pushed along with a new main that does not contain it: still not on main
    git(clone, "switch", "-q", "main")
    write_files(clone, "shout", proc_files("shout"))
    commit_all(clone, "feat: shout")
    refused = push(clone, "main", "procedure-greet-v1.0.1")
    assert refused.returncode != 0
    assert "which is not on main (nor on the main this push makes)" in refusal(
        refused, "procedure-greet-v1.0.1"
    )
    assert "procedure-greet-v1.0.1" not in server_tags(server)


def test_a_tag_on_an_unmerged_valid_commit_is_refused(clone: Path, server: Path) -> None:
    git(clone, "switch", "-q", "-c", "feature")
    write_files(clone, "greet", proc_files("greet", body="return text + '?'"))
    feature = commit_all(clone, "fix: greet asks")
    assert push(clone, "feature").returncode == 0
    made = releases.release(GitStore.open(clone), ["greet"])
    assert [r.tag for r in made] == ["procedure-greet-v1.0.1"]

    refused = push(clone, "procedure-greet-v1.0.1")
    assert refused.returncode != 0
    assert refusal(refused, "procedure-greet-v1.0.1") == (
        f"points to {feature[:7]}, which is not on main; merge it first"
    )
    assert "procedure-greet-v1.0.1" not in server_tags(server)

    # merged, the same tag goes through
    git(clone, "switch", "-q", "main")
    git(clone, "merge", "-q", "--ff-only", "feature")
    pushed = push(clone, "main", "procedure-greet-v1.0.1")
    assert pushed.returncode == 0, pushed.stderr
    assert "procedure-greet-v1.0.1" in server_tags(server)


def test_moving_or_deleting_a_release_tag_is_refused(clone: Path, server: Path) -> None:
    first = git(clone, "rev-parse", "HEAD").strip()
    write_files(clone, "greet", proc_files("greet", body="return text * 2"))
    second = commit_all(clone, "fix: twice")
    assert push(clone, "main").returncode == 0

    git(clone, "tag", "-f", "-a", "-m", "moved", "procedure-greet-v1.0.0", second)
    moved = push(clone, "--force", "procedure-greet-v1.0.0")
    assert moved.returncode != 0
    assert refusal(moved, "procedure-greet-v1.0.0").startswith(
        "moving a release or channel tag is refused"
    )
    deleted = push(clone, ":refs/tags/procedure-greet-v1.0.0")
    assert deleted.returncode != 0
    assert refusal(deleted, "procedure-greet-v1.0.0").startswith(
        "deleting a release or channel tag is refused"
    )
    assert git(server, "rev-parse", "procedure-greet-v1.0.0^{commit}").strip() == first


def test_releases_of_two_procedures_in_one_push_are_accepted(clone: Path, server: Path) -> None:
    write_files(clone, "greet", proc_files("greet", body="return text.strip()"))
    write_files(clone, "shout", proc_files("shout", body="return text.upper()"))
    commit_all(clone, "fix: greet strips; add shout")
    made = {r.tag for r in releases.release(GitStore.open(clone))}
    assert made == {"procedure-greet-v1.0.1", "procedure-shout-v1.0.0"}

    pushed = push(clone, "--atomic", "main", *sorted(made))
    assert pushed.returncode == 0, pushed.stderr
    assert made <= server_tags(server)


def test_two_releases_of_one_procedure_in_one_push_are_checked_in_order(
    clone: Path, server: Path
) -> None:
    write_files(clone, "greet", proc_files("greet", body="return text.strip()"))
    fixed = commit_all(clone, "fix: greet strips")
    write_files(clone, "greet", proc_files("greet", optional=("name",), body="return text"))
    commit_all(clone, "feat: greet takes a name")
    tag_release(clone, "greet", "1.0.1", fixed)
    tag_release(clone, "greet", "1.0.2")

    # 1.0.2 is computed from the 1.0.1 this same push makes: a feature gives 1.1.0
    refused = push(clone, "main", "procedure-greet-v1.0.1", "procedure-greet-v1.0.2")
    assert refused.returncode != 0
    assert refusal(refused, "procedure-greet-v1.0.2").startswith(
        "procreg computes 1.1.0 from procedure-greet-v1.0.1 (minor: "
    )
    assert "refs/tags/procedure-greet-v1.0.1:" not in refused.stderr
    assert not {"procedure-greet-v1.0.1", "procedure-greet-v1.0.2"} & server_tags(server)

    git(clone, "tag", "-d", "procedure-greet-v1.0.2")
    tag_release(clone, "greet", "1.1.0")
    pushed = push(clone, "main", "procedure-greet-v1.0.1", "procedure-greet-v1.1.0")
    assert pushed.returncode == 0, pushed.stderr
    assert {"procedure-greet-v1.0.1", "procedure-greet-v1.1.0"} <= server_tags(server)


def test_a_tag_of_unchanged_code_is_refused(clone: Path, server: Path) -> None:
    head = commit_all(clone, "docs: nothing in greet changes")
    tag_release(clone, "greet", "1.0.1")
    refused = push(clone, "main", "procedure-greet-v1.0.1")
    assert refused.returncode != 0
    assert refusal(refused, "procedure-greet-v1.0.1") == (
        f"the procedure at {head[:7]} is unchanged since procedure-greet-v1.0.0; nothing to release"
    )
    assert "procedure-greet-v1.0.1" not in server_tags(server)


def test_a_tag_whose_tree_trailer_lies_is_refused(clone: Path, server: Path) -> None:
    write_files(clone, "greet", proc_files("greet", body="return text.strip()"))
    commit_all(clone, "fix: greet strips")
    wrong = git(clone, "rev-parse", "HEAD~1:procedures/greet").strip()
    message = f"Release greet 1.0.1\n\nBump: patch\nTree: {wrong}\nReason: by hand\n"
    git(clone, "tag", "-a", "-m", message, "procedure-greet-v1.0.1")

    refused = push(clone, "main", "procedure-greet-v1.0.1")
    assert refused.returncode != 0
    assert refusal(refused, "procedure-greet-v1.0.1").startswith(
        f"its Tree: trailer says {wrong[:12]} but the folder there is "
    )
    assert "procedure-greet-v1.0.1" not in server_tags(server)


def test_the_check_reads_a_quarantine_named_only_by_git_object_directory(
    clone: Path, server: Path
) -> None:
    # Gitaly (GitLab) names the push's quarantine in GIT_OBJECT_DIRECTORY only
    hook = server / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\nunset GIT_QUARANTINE_PATH\n"
        f'exec "{sys.executable}" -m registry.releases.receive pre-receive\n'
    )
    write_files(clone, "shout", proc_files("shout", body="return text.upper()"))
    head = commit_all(clone, "feat: shout")
    tag_release(clone, "shout", "2.0.0")
    refused = push(clone, "main", "procedure-shout-v2.0.0")
    assert refused.returncode != 0
    assert refusal(refused, "procedure-shout-v2.0.0").startswith(
        "procreg computes 1.0.0 for a first release"
    )

    git(clone, "tag", "-d", "procedure-shout-v2.0.0")
    tag_release(clone, "shout", "1.0.0")
    pushed = push(clone, "main", "procedure-shout-v1.0.0")
    assert pushed.returncode == 0, pushed.stderr
    assert git(server, "rev-parse", "procedure-shout-v1.0.0^{commit}").strip() == head


def test_a_rollback_pushed_with_its_commit_is_accepted(clone: Path, server: Path) -> None:
    write_files(clone, "greet", proc_files("greet", body="return text * 2"))
    commit_all(clone, "fix: twice")
    assert release(clone, "greet") == "1.0.1"
    assert push(clone, "main", "procedure-greet-v1.0.1").returncode == 0

    rolled = releases.rollback(GitStore.open(clone), "greet", "1.0.0", reason="twice was wrong")
    pushed = push(clone, "--atomic", "main", rolled.tag)
    assert pushed.returncode == 0, pushed.stderr
    assert rolled.tag in server_tags(server)
    assert git(server, "rev-parse", "main").strip() == rolled.commit


def test_the_tracked_branch_is_the_one_the_server_head_names(tmp_path: Path) -> None:
    server = tmp_path / "trunk.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "trunk", str(server))
    assert run_process("hooks", "install", "--server", cwd=server).code == 0
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(server), str(clone))
    git(clone, "switch", "-q", "-c", "trunk")
    write_files(clone, "greet", proc_files("greet"))
    commit_all(clone, "feat: greet")
    git(clone, "switch", "-q", "-c", "main")  # a main that the server does not track
    write_files(clone, "greet", proc_files("greet", body="return text.strip()"))
    on_main = commit_all(clone, "fix: greet strips")
    tag_release(clone, "greet", "1.0.0")

    refused = push(clone, "trunk", "main", "procedure-greet-v1.0.0")
    assert refused.returncode != 0
    assert refusal(refused, "procedure-greet-v1.0.0") == (
        f"points to {on_main[:7]}, which is not on trunk (nor on the trunk this push makes); "
        "merge it first"
    )
    assert server_tags(server) == set()
