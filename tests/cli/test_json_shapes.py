"""Every command's ``--json`` on a real registry, checked against its JSON Schema.

The schemas ship in ``registry/data/json-schema/`` (draft 2020-12) and are what
``docs/json.md`` describes: one name per concept (``id``, ``tagger_name`` /
``tagger_email``, ``problems`` as objects), and errors as
``{"error": {"type", "message", "hint"}}`` on stdout with the command's exit code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from registry.cli import main as cli_main
from registry.core.model import Example
from tests.helpers import (
    REPO_ROOT,
    commit_all,
    git,
    release,
    run_cli,
    write_code,
    write_proc,
)

SCHEMAS = REPO_ROOT / "registry" / "data" / "json-schema"
GREET_EXAMPLE = Example(description="echoes", input={"text": "hi"}, output="hi")


def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return data


def check_shape(name: str, data: Any) -> None:
    """``data`` is what ``<name>.schema.json`` says (every error shown at once)."""
    validator = jsonschema.Draft202012Validator(schema(name))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
    assert not errors, f"{name} --json does not match its schema:\n" + "\n".join(errors)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with releases, a channel, runs, an invalid and an unreleased procedure."""
    root = tmp_path_factory.mktemp("shapes") / "reg"
    assert cli_main(["init", str(root)]) == 0
    write_proc(root, "greet", examples=[GREET_EXAMPLE])
    write_proc(root, "shout", "return text.upper()")
    commit_all(root, "feat: greet and shout")
    release(root, "greet")
    release(root, "shout")
    write_proc(root, "greet", "return text + ''", examples=[GREET_EXAMPLE])
    commit_all(root, "feat: greet again")
    release(root, "greet")
    assert cli_main(["-C", str(root), "promote", "greet", "1.0.0", "--channel", "stable"]) == 0
    (root / "procedures" / "broken").mkdir()
    (root / "procedures" / "broken" / "main.py").write_text("def main(text: str) -> str:\n  (\n")
    (root / "procedures" / "broken" / "metadata.json").write_text('{"id": "broken"}\n')
    write_proc(root, "draft", "return text[::-1]")
    write_code(root, "raw", "return {'errors': ['kept as text'], 'by_name': 'x'}", [])
    git(root, "add", "-A")
    git(root, "commit", "-q", "--no-verify", "-m", "feat: broken and draft")
    for _ in range(2):
        assert cli_main(["-C", str(root), "run", "greet", "--arg", "text=hey"]) == 0
    assert cli_main(["-C", str(root), "sync"]) == 0
    return root


READS = [
    pytest.param("list", ["list"], id="list"),
    pytest.param("search", ["search"], id="search"),
    pytest.param("search", ["search", "greet", "--sort", "health"], id="search-text"),
    pytest.param("show", ["show", "greet@stable"], id="show"),
    pytest.param("show", ["show", "greet", "--source"], id="show-source"),
    pytest.param("log", ["log", "greet"], id="log"),
    pytest.param("log", ["log", "draft"], id="log-unreleased"),
    pytest.param("metrics", ["metrics", "greet"], id="metrics"),
    pytest.param("health", ["health"], id="health"),
    pytest.param("health", ["health", "greet", "--apply"], id="health-apply"),
    pytest.param("sync", ["sync"], id="sync"),
    pytest.param("sync", ["reindex"], id="reindex"),
    pytest.param("verify", ["verify"], id="verify"),
    pytest.param("test", ["test", "greet"], id="test"),
    pytest.param("run", ["run", "greet", "--arg", "text=x"], id="run"),
    pytest.param("release", ["release", "draft", "--dry-run"], id="release-dry-run"),
    pytest.param("channels", ["channels"], id="channels"),
    pytest.param("channels", ["channels", "greet"], id="channels-of-one"),
    pytest.param("doctor", ["doctor"], id="doctor"),
    pytest.param("tools", ["tools"], id="tools-mcp"),
    pytest.param("tools", ["tools", "--format", "openai"], id="tools-openai"),
    pytest.param("tools", ["tools", "--format", "anthropic"], id="tools-anthropic"),
]


@pytest.mark.parametrize(("name", "args"), READS)
def test_reading_commands_print_their_documented_shape(
    reg: Path, capsys: pytest.CaptureFixture[str], name: str, args: list[str]
) -> None:
    result = run_cli(capsys, "-C", str(reg), *args, "--json")
    assert result.code == 0, result.err or result.out
    check_shape(name, result.json())


def test_check_reports_problems_as_objects(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "-C", str(reg), "check", "--json", "--base", "HEAD~1")
    assert result.code == 1  # broken/ is invalid
    data = result.json()
    check_shape("check", data)
    assert {p["path"] for p in data["problems"]} >= {"procedures/broken/main.py"}


def test_the_same_concept_has_one_name_everywhere(
    reg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = run_cli(capsys, "-C", str(reg), "list", "--json").json()
    hits = run_cli(capsys, "-C", str(reg), "search", "--json").json()
    broken_listed = next(r for r in listed if r["id"] == "broken")
    broken_hit = next(h for h in hits if h["id"] == "broken")
    # problems: objects with path, line, rule and message, in list and search alike
    assert broken_listed["problems"] and broken_listed["problems"] == broken_hit["problems"]
    assert "procedures/broken/main.py" in {p["path"] for p in broken_hit["problems"]}
    assert all(p["rule"] and p["message"] for p in broken_hit["problems"])
    assert broken_hit["errors"]  # the older text lines are still there
    # the tagger: tagger_name / tagger_email, in log and in channel moves
    logged = run_cli(capsys, "-C", str(reg), "log", "greet", "--json").json()[0]
    moved = run_cli(
        capsys, "-C", str(reg), "promote", "greet", "1.0.0", "--channel", "stable", "--json"
    ).json()
    assert moved["tagger_name"] and moved["tagger_name"] == logged["tagger_name"]
    assert moved["tagger_email"] == logged["tagger_email"]
    assert moved["by_name"] == moved["tagger_name"]  # kept for older scripts
    # metrics says whose they are
    stats = run_cli(capsys, "-C", str(reg), "metrics", "greet", "--json").json()
    assert stats["id"] == "greet" and stats["runs"] >= 2


def test_a_returned_value_is_printed_as_it_is(
    reg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Key naming shapes procreg's records, never what a procedure returned."""
    ran = run_cli(capsys, "-C", str(reg), "run", "raw", "--json")
    assert ran.code == 0, ran.err
    assert ran.json()["result"] == {"errors": ["kept as text"], "by_name": "x"}


def test_write_commands_print_their_documented_shape(
    reg: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo = tmp_path / "copy"
    shutil.copytree(reg, repo)
    promoted = run_cli(
        capsys, "-C", str(repo), "promote", "greet", "1.1.0", "--channel", "beta", "--json"
    )
    assert promoted.code == 0, promoted.out
    check_shape("promote", promoted.json())
    released = run_cli(capsys, "-C", str(repo), "release", "draft", "--json")
    assert released.code == 0, released.out
    check_shape("release", released.json())
    assert [r["id"] for r in released.json()] == ["draft"]
    rolled = run_cli(capsys, "-C", str(repo), "rollback", "greet", "--to", "1.0.0", "--json")
    assert rolled.code == 0, rolled.out
    check_shape("rollback", rolled.json())
    write_proc(repo, "shout", "return text.upper() + '!'")
    proposed = run_cli(capsys, "-C", str(repo), "propose", "shout", "--json")
    assert proposed.code == 0, proposed.out
    check_shape("propose", proposed.json())


def test_migrate_prints_its_documented_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "mig"
    assert run_cli(capsys, "init", str(repo)).code == 0
    sample = REPO_ROOT / "examples" / "legacy" / "sample.db"
    result = run_cli(capsys, "-C", str(repo), "migrate", "--from", str(sample), "--json")
    assert result.code == 0, result.out
    check_shape("migrate", result.json())


ERRORS = [
    pytest.param(["show", "gret"], 1, "NotFoundError", id="show-unknown"),
    pytest.param(["log", "gret"], 1, "NotFoundError", id="log-unknown"),
    pytest.param(["run", "gret"], 1, "NotFoundError", id="run-unknown"),
    pytest.param(["test", "gret"], 1, "NotFoundError", id="test-unknown"),
    pytest.param(["metrics", "gret"], 1, "NotFoundError", id="metrics-unknown"),
    pytest.param(["promote", "gret", "1.0.0", "--channel", "x"], 1, "NotFoundError", id="promote"),
    pytest.param(["rollback", "gret", "--to", "1.0.0"], 1, "NotFoundError", id="rollback"),
    pytest.param(["show", "greet@9"], 1, "NotFoundError", id="no-such-version"),
    pytest.param(
        ["search", "--database-url", "postgresql://procreg@127.0.0.1:1/none"],
        1,
        "IndexUnavailable",
        id="index-unreachable",
    ),
    pytest.param(["list", "--no-such-option"], 2, "UsageError", id="usage"),
]


@pytest.mark.parametrize(("args", "code", "kind"), ERRORS)
def test_errors_under_json_are_json_with_the_same_exit_code(
    reg: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, kind: str
) -> None:
    result = run_cli(capsys, "-C", str(reg), *args, "--json")
    assert result.code == code
    data = result.json()
    check_shape("error", data)
    assert data["error"]["type"] == kind
    if args[1:2] == ["gret"]:
        assert "did you mean 'greet'?" in data["error"]["message"]


def test_every_schema_is_a_valid_draft_2020_12_schema() -> None:
    names = sorted(p.name for p in SCHEMAS.glob("*.schema.json"))
    assert len(names) >= 18
    for name in names:
        jsonschema.Draft202012Validator.check_schema(json.loads((SCHEMAS / name).read_text()))
    documented = (REPO_ROOT / "docs" / "json.md").read_text()
    for name in names:
        assert name in documented, f"docs/json.md does not name {name}"


def test_verify_names_the_procedure_of_each_difference(
    reg: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo = tmp_path / "copy"
    shutil.copytree(reg, repo)
    write_proc(repo, "newcomer")
    git(repo, "add", "-A")
    # no hooks: the post-commit sync would index it; the index must lack it
    git(repo, "-c", "core.hooksPath=/dev/null", "commit", "-qm", "feat: newcomer")
    git(repo, "tag", "-d", "procedure-shout-v1.0.0")
    result = run_cli(capsys, "-C", str(repo), "verify", "--json")
    assert result.code == 1
    data = result.json()
    check_shape("verify", data)
    by_key = {d["key"]: d for d in data["drift"]}
    assert by_key["newcomer"]["id"] == "newcomer"
    assert by_key["procedure-shout-v1.0.0"]["id"] == "shout"
