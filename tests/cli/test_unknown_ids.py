"""An unknown procedure id is an error in every command, with a "did you mean"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import commit_all, git, release, run_cli, write_proc


@pytest.fixture
def repo(repo: Path) -> Path:
    """`slugify` released; `draft` never released; `gone` released, then deleted."""
    write_proc(repo, "slugify")
    write_proc(repo, "gone")
    commit_all(repo, "feat: slugify and gone")
    release(repo, "slugify")
    release(repo, "gone")
    git(repo, "rm", "-rq", "procedures/gone")
    write_proc(repo, "draft")
    commit_all(repo, "feat: draft; drop gone")
    return repo


COMMANDS = [
    pytest.param(["show", "slugfy"], id="show"),
    pytest.param(["log", "slugfy"], id="log"),
    pytest.param(["diff", "slugfy", "1.0.0"], id="diff"),
    pytest.param(["run", "slugfy", "--arg", "text=x"], id="run"),
    pytest.param(["test", "slugfy"], id="test"),
    pytest.param(["metrics", "slugfy"], id="metrics"),
    pytest.param(["promote", "slugfy", "1.0.0", "--channel", "stable"], id="promote"),
    pytest.param(["rollback", "slugfy", "--to", "1.0.0"], id="rollback"),
    pytest.param(["release", "slugfy"], id="release"),
    pytest.param(["health", "slugfy"], id="health"),
]


@pytest.mark.parametrize("args", COMMANDS)
def test_an_unknown_id_says_what_was_meant(
    repo: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    result = run_cli(capsys, "-C", str(repo), *args)
    assert result.code == 1
    assert "Traceback" not in result.err
    line = result.err.strip()
    assert "\n" not in line
    assert "no procedure 'slugfy'" in line and "did you mean 'slugify'?" in line


def test_log_of_an_unknown_id_is_an_error_not_no_releases(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "-C", str(repo), "log", "nothing-like-it", "--json")
    assert result.code == 1
    error = result.json()["error"]
    assert error["type"] == "NotFoundError"
    assert "no procedure 'nothing-like-it'" in error["message"]
    assert "did you mean" not in error["message"]  # nothing is close


def test_log_of_a_never_released_id_still_says_no_releases_yet(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "-C", str(repo), "log", "draft")
    assert result.code == 0
    assert "draft: no releases yet" in result.out
    assert run_cli(capsys, "-C", str(repo), "log", "draft", "--json").json() == []


def test_a_deleted_procedure_is_known_by_its_release_tags(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "-C", str(repo), "log", "gone", "--json")
    assert result.code == 0
    assert [v["version"] for v in result.json()] == ["1.0.0"]
    # and its id is offered as a suggestion too
    wrong = run_cli(capsys, "-C", str(repo), "show", "gon@1.0.0")
    assert "did you mean 'gone'?" in wrong.err
