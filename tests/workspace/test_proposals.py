"""Registry.propose and `procreg propose`: a new branch proposals/<id>/<n>, validated first."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from registry.api import Registry
from registry.errors import ValidationFailed
from registry.git.store import GitStore
from tests.helpers import git, run_cli, write_proc


@pytest.fixture
def repo(repo: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The new registry with echo committed and released."""
    write_proc(repo, "echo", description="say it back")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo")
    assert run_cli(capsys, "-C", str(repo), "release", "--skip-examples").code == 0
    return repo


def files(repo: Path, pid: str) -> tuple[str, dict[str, object]]:
    folder = repo / "procedures" / pid
    return (folder / "main.py").read_text(), json.loads((folder / "metadata.json").read_text())


def test_a_proposal_is_one_commit_on_a_new_branch_with_the_bump_a_merge_would_release(
    repo: Path,
) -> None:
    store = GitStore.open(repo)
    main_before = store.resolve("main")
    source, meta = files(repo, "echo")
    source = source.replace("def main(text: str)", "def main(text: str, loud: bool = False)")
    meta["parameters"].append(  # type: ignore[attr-defined]
        {"name": "loud", "type": "boolean", "required": False, "default": False}
    )
    with Registry.open(repo) as reg:
        first = reg.propose("echo", source, meta, "feat: loud echo", proposer="someone")
        second = reg.propose("echo", source.replace("Do it", "Do it well"), meta)
    assert (first.branch, second.branch) == ("proposals/echo/1", "proposals/echo/2")
    assert (first.bump, first.version, first.previous) == ("minor", "1.1.0", "1.0.0")
    assert first.base == main_before
    assert store.resolve("main") == main_before
    assert store.resolve("refs/heads/proposals/echo/1") == first.commit
    commit = store.repo.get(first.commit)
    assert [str(p) for p in commit.parent_ids] == [main_before]  # type: ignore[union-attr]
    assert "Proposed-By: someone" in commit.message  # type: ignore[union-attr]
    assert store.read("echo", first.commit).text("main.py") == source
    # the working tree is never touched
    assert "loud" not in (repo / "procedures" / "echo" / "main.py").read_text()


def test_a_new_procedure_can_be_proposed(repo: Path) -> None:
    source, meta = files(repo, "echo")
    meta["id"] = "parrot"
    with Registry.open(repo) as reg:
        proposal = reg.propose("parrot", source, meta)
    assert (proposal.bump, proposal.version) == ("initial", "1.0.0")
    assert "parrot" in GitStore.open(repo).list_procedures(proposal.commit)


def test_an_invalid_proposal_writes_nothing(repo: Path) -> None:
    store = GitStore.open(repo)
    refs = set(store.ref_names("refs/"))
    objects = sum(1 for _ in (repo / ".git" / "objects").rglob("*"))
    _, meta = files(repo, "echo")
    with Registry.open(repo) as reg, pytest.raises(ValidationFailed) as caught:
        reg.propose("echo", "import os\ndef main(other: str) -> str:\n    return other\n", meta)
    assert caught.value.problems
    assert set(store.ref_names("refs/")) == refs
    assert sum(1 for _ in (repo / ".git" / "objects").rglob("*")) == objects


def test_concurrent_proposals_get_distinct_branches(repo: Path) -> None:
    source, meta = files(repo, "echo")
    branches: list[str] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with Registry.open(repo, auto_sync=False) as reg:
                p = reg.propose("echo", source.replace("Do it", f"Do it {i}"), meta)
                branches.append(p.branch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(branches) == [f"proposals/echo/{n}" for n in range(1, 5)]


def test_procreg_propose_from_the_working_tree(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_proc(repo, "echo", description="say it back, louder")
    result = run_cli(capsys, "-C", str(repo), "propose", "echo", "-m", "docs: louder", "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert data["branch"] == "proposals/echo/1"
    assert data["bump"] == "patch"
    git(repo, "checkout", "-q", "--", ".")
    again = run_cli(capsys, "-C", str(repo), "propose", "echo")
    assert again.code == 1
    assert "nothing to review" in again.err
    assert len(again.err.strip().splitlines()) == 1
