"""procreg migrate on the bundled legacy sample, then search and run, as the README shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, git, run_cli

SAMPLE = REPO_ROOT / "examples/legacy/sample.db"


def test_migrate_the_sample_then_search_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "reg"
    assert run_cli(capsys, "init", str(repo)).code == 0
    dry = run_cli(capsys, "-C", str(repo), "migrate", "--from", str(SAMPLE), "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert git(repo, "tag", "-l") == ""

    report_file = tmp_path / "report.json"
    result = run_cli(
        capsys,
        "-C",
        str(repo),
        "migrate",
        "--from",
        f"sqlite:///{SAMPLE}",
        "--report",
        str(report_file),
    )
    assert result.code == 0, result.err
    assert "verified: 20 procedures, 0 fields lost" in result.out
    report = json.loads(report_file.read_text())
    assert report["counts"]["migrated"] == 20
    assert len(git(repo, "tag", "-l", "procedure-*").split()) == 20
    # the checkout shows what was committed: nothing is left dirty
    assert git(repo, "status", "--porcelain", "--", "procedures") == "?? procedures/.gitkeep\n"

    hits = run_cli(capsys, "-C", str(repo), "search", "branch", "--json").json()
    assert "create-feature-branch" in [h["id"] for h in hits]
    ran = run_cli(
        capsys,
        "-C",
        str(repo),
        "run",
        "create-feature-branch",
        "--arg",
        "ticket=PROJ-12",
        "--arg",
        "slug=login-form",
        "--json",
    )
    assert ran.code == 0, ran.err
    assert ran.json()["result"]["rendered"] == "git checkout -b feature/PROJ-12-login-form"

    again = run_cli(capsys, "-C", str(repo), "migrate", "--from", str(SAMPLE), "--json")
    assert again.code == 0
    assert json.loads(again.out)["counts"]["migrated"] == 0


def test_migrate_from_a_missing_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "reg"
    run_cli(capsys, "init", str(repo))
    result = run_cli(capsys, "-C", str(repo), "migrate", "--from", str(tmp_path / "nope.db"))
    assert result.code == 1
    assert "nope.db" in result.err and "Traceback" not in result.err
