"""Releases never block each other: a procedure whose examples fail is refused alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.core.model import Example
from tests.helpers import Result, commit_all, git, run_cli, write_code

GOOD = Example(description="upper", input={"text": "a"}, output="A")
BAD = Example(description="wrong on purpose", input={"text": "b"}, output="b")


@pytest.fixture
def three(repo: Path) -> Path:
    """alpha and gamma hold their examples; beta's second example is wrong."""
    write_code(repo, "alpha", "return text.upper()", examples=[GOOD])
    write_code(repo, "beta", "return text.upper()", examples=[GOOD, BAD])
    write_code(repo, "gamma", "return text.upper()", examples=[GOOD])
    commit_all(repo, "feat: three procedures")
    return repo


def cli(capsys: pytest.CaptureFixture[str], repo: Path, *args: str) -> Result:
    return run_cli(capsys, "-C", str(repo), *args)


def tags(repo: Path) -> list[str]:
    return git(repo, "tag", "-l").split()


def test_one_failing_procedure_does_not_block_the_others(
    three: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, three, "release")
    assert result.code == 1
    assert tags(three) == ["procedure-alpha-v1.0.0", "procedure-gamma-v1.0.0"]
    assert "tagged procedure-alpha-v1.0.0 (initial" in result.out
    assert "tagged procedure-gamma-v1.0.0 (initial" in result.out
    assert "beta" not in result.out
    refused = next(line for line in result.err.splitlines() if "procedure-beta" in line)
    assert refused.startswith(
        "procreg: refused procedure-beta-v1.0.0: example 2 (wrong on purpose)"
    )
    assert 'input {"text": "b"}, expected "b", got "B"' in refused
    assert "1 of 3 releases refused (beta)" in result.err
    # fixing the example releases beta alone; the others are already released
    write_code(three, "beta", "return text.upper()", examples=[GOOD])
    commit_all(three, "test: fix beta's example")
    again = cli(capsys, three, "release")
    assert again.code == 0, again.err
    assert "procedure-beta-v1.0.0" in tags(three)


def test_release_json_tells_refused_from_released(
    three: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, three, "release", "--json")
    assert result.code == 1
    rows = {row["id"]: row for row in result.json()}
    assert set(rows) == {"alpha", "beta", "gamma"}
    for pid in ("alpha", "gamma"):
        assert rows[pid]["refused"] is None and rows[pid]["created"] is True
        assert rows[pid]["tag_id"]
    beta = rows["beta"]
    assert beta["created"] is False and beta["tag"] == "procedure-beta-v1.0.0"
    assert beta["refused"]["failing"] == 1
    assert beta["refused"]["example"]["description"] == "wrong on purpose"
    assert (beta["refused"]["example"]["expected"], beta["refused"]["example"]["got"]) == (
        "b",
        "B",
    )
    assert "beta 1.0.0 not released: example 2" in beta["refused"]["message"]


def test_dry_run_runs_the_examples_and_tags_nothing(
    three: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dry = cli(capsys, three, "release", "--dry-run")
    assert dry.code == 1
    assert tags(three) == []
    assert "would tag procedure-alpha-v1.0.0" in dry.out
    assert "would refuse procedure-beta-v1.0.0: example 2 (wrong on purpose)" in dry.err
    assert "1 of 3 releases would be refused (beta)" in dry.err
    data = cli(capsys, three, "release", "--dry-run", "--json").json()
    assert [(r["id"], r["refused"] is not None) for r in data] == [
        ("alpha", False),
        ("beta", True),
        ("gamma", False),
    ]
    assert tags(three) == []
    # a dry run leaves no trace: its example runs are not recorded
    metrics = cli(capsys, three, "metrics", "beta", "--json")
    assert metrics.code == 0 and metrics.json()["runs"] == 0


def test_skip_examples_says_so_on_stderr_and_tags_everything(
    three: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dry = cli(capsys, three, "release", "--dry-run", "--skip-examples")
    assert dry.code == 0 and tags(three) == []
    assert "would tag procedure-beta-v1.0.0" in dry.out
    (line,) = dry.err.strip().splitlines()
    assert line.startswith("procreg: examples not run (--skip-examples)")
    made = cli(capsys, three, "release", "--skip-examples")
    assert made.code == 0
    assert "examples not run" in made.err
    assert len(tags(three)) == 3
