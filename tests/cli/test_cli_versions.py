"""Release, log, show ID@SPEC, diff, rollback and promote through the CLI, with plain git."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.core.model import Parameter
from tests.helpers import Result, git, run_cli, write_proc


@pytest.fixture
def repo(repo: Path) -> Path:
    """The new registry with echo and shout committed."""
    write_proc(repo, "echo")
    write_proc(repo, "shout", body="return text.upper()")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo and shout")
    return repo


def cli(capsys: pytest.CaptureFixture[str], repo: Path, *args: str) -> Result:
    return run_cli(capsys, "-C", str(repo), *args)


def test_release_json_keys_and_first_release(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, repo, "release", "--json")
    assert result.code == 0, result.err
    rows = result.json()
    assert {r["id"] for r in rows} == {"echo", "shout"}
    for row in rows:
        assert {
            "id",
            "version",
            "previous",
            "bump",
            "tag",
            "commit",
            "lines_added",
            "lines_removed",
            "reasons",
        } <= row.keys()
        assert (row["version"], row["previous"], row["bump"]) == ("1.0.0", None, "initial")
        assert row["tag"] == f"procedure-{row['id']}-v1.0.0"
    assert git(repo, "tag", "-l").split() == ["procedure-echo-v1.0.0", "procedure-shout-v1.0.0"]
    # nothing changed: nothing tagged, exit 0
    again = cli(capsys, repo, "release", "--json")
    assert again.code == 0 and again.json() == []


def test_only_changed_procedures_are_released_with_computed_bumps(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, repo, "release")
    write_proc(
        repo,
        "echo",
        signature="text: str, times: int = 1",
        body="return text * times",
        parameters=[
            Parameter(name="text"),
            Parameter(name="times", type="integer", required=False, default=1),
        ],
    )
    git(repo, "commit", "-qam", "feat(echo): repeat")
    dry = cli(capsys, repo, "release", "--dry-run", "--json").json()
    assert [(r["id"], r["version"], r["bump"]) for r in dry] == [("echo", "1.1.0", "minor")]
    assert "procedure-echo-v1.1.0" not in git(repo, "tag", "-l")
    rows = cli(capsys, repo, "release", "--json").json()
    assert [(r["id"], r["version"], r["previous"]) for r in rows] == [("echo", "1.1.0", "1.0.0")]
    assert any("'times'" in reason and "optional" in reason for reason in rows[0]["reasons"])
    numstat = git(
        repo,
        "diff",
        "--numstat",
        "procedure-echo-v1.0.0",
        "procedure-echo-v1.1.0",
        "--",
        "procedures/echo",
    )
    lines = [line.split("\t") for line in numstat.splitlines()]
    assert rows[0]["lines_added"] == sum(int(x[0]) for x in lines)
    assert rows[0]["lines_removed"] == sum(int(x[1]) for x in lines)
    message = git(repo, "tag", "-l", "--format=%(contents)", "procedure-echo-v1.1.0")
    assert "Bump: minor" in message and "Breaking: false" in message
    assert f"Lines-Added: {rows[0]['lines_added']}" in message


def test_invalid_procedure_is_never_released(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "procedures/echo/main.py").write_text(
        "def main(text: str) -> str:\n    return eval(text)\n"
    )
    git(repo, "commit", "-qam", "fix: oops", "--no-verify")
    result = cli(capsys, repo, "release", "echo")
    assert result.code == 1
    assert "procedures/echo/main.py:2:" in result.err
    assert "Traceback" not in result.err
    assert git(repo, "tag", "-l") == ""


def test_log_show_spec_diff_rollback_promote(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, repo, "release")
    (repo / "procedures/echo/main.py").write_text(
        '"""echo."""\n\n\ndef main(text: str) -> str:\n    """Do it."""\n    return text.strip()\n'
    )
    git(repo, "commit", "-qam", "fix(echo): strip")
    cli(capsys, repo, "release")
    log = cli(capsys, repo, "log", "echo", "--json").json()
    assert [v["version"] for v in log] == ["1.0.1", "1.0.0"]
    assert log[0]["bump"] == "patch" and log[0]["tagger_name"]
    assert "1.0.1" in cli(capsys, repo, "log", "echo").out

    shown = cli(capsys, repo, "show", "echo@~1.0.0", "--source").out
    assert "strip" in shown
    exact = cli(capsys, repo, "show", "echo@1.0.0", "--source").out
    assert "strip" not in exact
    assert cli(capsys, repo, "show", "echo@^1", "--json").json()["version"] == "1.0.1"
    assert cli(capsys, repo, "show", "echo@>=1,<1.0.1", "--json").json()["version"] == "1.0.0"
    missing = cli(capsys, repo, "show", "echo@^2")
    assert missing.code == 1 and "1.0.1" in missing.err

    patch = cli(capsys, repo, "diff", "echo", "1.0.0", "1.0.1").out
    assert "-    return text\n" in patch and "+    return text.strip()\n" in patch
    assert "procedures/echo/main.py" in patch

    tags_before = git(repo, "show-ref", "--tags")
    rolled = cli(capsys, repo, "rollback", "echo", "--to", "1.0.0", "--json").json()
    assert rolled["version"] == "1.0.2"
    for line in tags_before.splitlines():
        assert line in git(repo, "show-ref", "--tags")
    assert "Rollback-To: 1.0.0" in git(repo, "log", "-1", "--format=%B", "main")
    assert git(repo, "fsck", "--strict", "--no-dangling") == ""

    moved = cli(capsys, repo, "promote", "echo", "1.0.0", "--channel", "stable", "--json").json()
    assert moved["version"] == "1.0.0"
    cli(capsys, repo, "promote", "echo", "1.0.2", "--channel", "stable", "--reason", "fixed")
    assert cli(capsys, repo, "show", "echo@stable", "--json").json()["version"] == "1.0.2"
    channel_tags = git(repo, "tag", "-l", "channel/*").split()
    assert len(channel_tags) == 2  # the history of both moves is kept


def test_check_base_prints_the_bump_a_merge_would_release(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, repo, "release")
    git(repo, "checkout", "-qb", "feature")
    write_proc(
        repo,
        "shout",
        signature="loud: str",
        body="return loud.upper()",
        parameters=[Parameter(name="loud")],
    )
    git(repo, "commit", "-qam", "refactor(shout): rename parameter")
    text = cli(capsys, repo, "check", "--base", "main")
    assert text.code == 0
    assert "shout: 1.0.0 -> 2.0.0 (major)" in text.out
    md = cli(capsys, repo, "check", "--base", "main", "--format", "markdown").out
    assert "| `shout` | 1.0.0 | **2.0.0** | **major** (breaking) |" in md
    assert "echo" not in md  # unchanged procedures are not listed
    data = cli(capsys, repo, "check", "--base", "main", "--json").json()
    assert [(r["id"], r["bump"], r["version"]) for r in data["releases"]] == [
        ("shout", "major", "2.0.0")
    ]
    assert any("'text'" in reason for reason in data["releases"][0]["reasons"])


def test_rollback_keeps_the_checkout_in_step(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, repo, "release")
    (repo / "procedures/echo/main.py").write_text(
        '"""echo."""\n\n\ndef main(text: str) -> str:\n    """Do it."""\n    return text * 2\n'
    )
    git(repo, "commit", "-qam", "fix(echo): double")
    cli(capsys, repo, "release")
    (repo / "procedures/shout/main.py").write_text("# a local edit the rollback must keep\n")
    assert cli(capsys, repo, "rollback", "echo", "--to", "1.0.0").code == 0
    # the commit is in the working tree and index too: only the user's own edit shows
    assert git(repo, "status", "--porcelain") == " M procedures/shout/main.py\n"
    assert "return text\n" in (repo / "procedures/echo/main.py").read_text()


def test_show_reads_npm_and_pep440_specs_and_names_refused_ones(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, repo, "release")
    (repo / "procedures/echo/main.py").write_text(
        '"""echo."""\n\n\ndef main(text: str) -> str:\n    """Do it."""\n    return text.strip()\n'
    )
    git(repo, "commit", "-qam", "fix(echo): strip")
    cli(capsys, repo, "release")

    def version(spec: str) -> str:
        return cli(capsys, repo, "show", f"echo@{spec}", "--json").json()["version"]

    assert version("1.0.0 - 1.0") == "1.0.1"  # hyphen range, partial upper end
    assert version("<1.0.1 || >=2") == "1.0.0"  # union
    assert version("~>1.0.0") == "1.0.1"
    assert version(">1.0,<2") == "1.0.1"  # PEP 440: >1.0 includes 1.0.1
    npm = cli(capsys, repo, "show", "echo@>1.0")  # without a comma, npm: >1.0 is >=1.1.0
    assert npm.code == 1 and ">=1.1.0" in npm.err and "1.0.1" in npm.err
    refused = cli(capsys, repo, "show", "echo@^1.0, <2")
    assert refused.code != 0 and "comma-separated spec is read as PEP 440" in refused.err
    hyphen = cli(capsys, repo, "show", "echo@1.0.0 -2")
    assert hyphen.code != 0 and "'1.2.3 - 2.3.4'" in hyphen.err
