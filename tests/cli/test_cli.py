"""The CLI as a person drives it: init, new, check, list, show, schema, hooks."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from registry.workspace.hooks import CLIENT_HOOKS, SERVER_HOOKS, hook_script
from tests.helpers import REPO_ROOT, git, run_cli, run_process, write_proc


def test_init_makes_a_registry_and_is_idempotent(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (repo / ".git").is_dir()
    assert (repo / "procedures").is_dir()
    assert "[health]" in (repo / "procreg.toml").read_text()
    assert (repo / ".git/hooks/pre-commit").stat().st_mode & stat.S_IXUSR
    again = run_cli(capsys, "init", str(repo))
    assert again.code == 0
    assert "nothing new" in again.out


def test_new_scaffolds_a_procedure_that_checks_clean(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "-C", str(repo), "new", "greet")
    assert result.code == 0, result.err
    meta = json.loads((repo / "procedures/greet/metadata.json").read_text())
    assert meta["id"] == "greet"
    assert meta["$schema"].startswith("https://")
    check = run_cli(capsys, "-C", str(repo), "check")
    assert check.code == 0, check.out + check.err
    assert "checked 1 procedure: all valid" in check.out


@pytest.mark.parametrize("bad", ["Bad", "../etc", "x!", "a" * 65, "a b", "_x"])
def test_new_refuses_bad_ids_with_one_clear_line(
    repo: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    result = run_cli(capsys, "-C", str(repo), "new", bad)
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "invalid procedure id" in result.err
    assert "Traceback" not in result.err


def test_new_refuses_an_existing_folder(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(capsys, "-C", str(repo), "new", "greet")
    result = run_cli(capsys, "-C", str(repo), "new", "greet")
    assert result.code == 1 and "already exists" in result.err


def test_check_reports_path_line_rule_and_exit_1(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_proc(repo, "broken")
    (folder / "main.py").write_text(
        '"""x."""\n\n\ndef main(text: str) -> str:\n    return text +\n'
    )
    result = run_cli(capsys, "-C", str(repo), "check")
    assert result.code == 1
    assert "procedures/broken/main.py:5: syntax:" in result.out
    assert "Traceback" not in result.out + result.err
    data = run_cli(capsys, "-C", str(repo), "check", "--json").json()
    assert data["ok"] is False
    assert data["problems"][0]["path"] == "procedures/broken/main.py"
    assert data["problems"][0]["rule"] == "syntax"
    assert data["problems"][0]["line"] == 5


def test_check_accepts_folders_and_files(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_proc(repo, "good")
    bad = write_proc(repo, "bad")
    (bad / "metadata.json").write_text("{not json")
    assert run_cli(capsys, "-C", str(repo), "check", "procedures/good").code == 0
    assert run_cli(capsys, "-C", str(repo), "check", "procedures/good/main.py").code == 0
    result = run_cli(capsys, "-C", str(repo), "check", "procedures/bad/metadata.json")
    assert result.code == 1 and "procedures/bad/metadata.json:1: metadata-json" in result.out


def test_check_staged_sees_only_what_commit_would_record(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_proc(repo, "good")
    git(repo, "add", "procedures/good")
    assert run_cli(capsys, "-C", str(repo), "check", "--staged").code == 0
    bad = write_proc(repo, "bad")
    (bad / "main.py").write_text("import os\n\ndef main(text: str) -> str:\n    return text\n")
    # not staged yet: the commit would be fine
    assert run_cli(capsys, "-C", str(repo), "check", "--staged").code == 0
    git(repo, "add", "procedures/bad")
    result = run_cli(capsys, "-C", str(repo), "check", "--staged")
    assert result.code == 1
    assert "procedures/bad/main.py:1:" in result.out


def test_list_and_show_read_git_not_the_working_tree(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_proc(repo, "echo", description="Echo the text back")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo")
    (repo / "procedures/echo/main.py").write_text("garbage(")  # uncommitted edit
    rows = run_cli(capsys, "-C", str(repo), "list", "--json").json()
    assert [(r["id"], r["valid"], r["version"]) for r in rows] == [("echo", True, None)]
    shown = run_cli(capsys, "-C", str(repo), "show", "echo", "--ref", "HEAD", "--json").json()
    assert shown["metadata"]["description"] == "Echo the text back"
    assert "source" not in shown
    source = run_cli(capsys, "-C", str(repo), "show", "echo", "--ref", "HEAD", "--source")
    assert source.out.startswith('"""echo."""')
    table = run_cli(capsys, "-C", str(repo), "list")
    assert "echo" in table.out and "ID" in table.out


def test_show_unknown_procedure_is_a_clear_error(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_proc(repo, "echo")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo")
    result = run_cli(capsys, "-C", str(repo), "show", "nope", "--ref", "HEAD")
    assert result.code == 1
    assert "no procedure 'nope'" in result.err


def test_schema_is_the_models_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "schema")
    schema = result.json()
    assert schema["$id"] == "https://procreg.dev/schemas/metadata-v1.json"
    assert schema["additionalProperties"] is False
    assert "parameters" in schema["properties"]


def test_outside_a_repository_exit_1_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "-C", str(tmp_path), "list")
    assert result.code == 1
    assert "not a git repository" in result.err and "procreg init" in result.err


def test_module_entry_point_and_version() -> None:
    result = run_process("--version")
    assert result.code == 0 and result.out.startswith("procreg, version ")


def test_committed_hooks_are_what_the_installer_writes() -> None:
    for name in [*CLIENT_HOOKS, *SERVER_HOOKS]:
        assert (REPO_ROOT / "hooks" / name).read_text() == hook_script(name)
        assert os.access(REPO_ROOT / "hooks" / name, os.X_OK)


def test_hooks_install_chains_an_existing_hook_and_blocks_bad_commits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    existing = repo / ".git/hooks/pre-commit"
    existing.write_text(f"#!/bin/sh\necho ran >> '{tmp_path}/user-hook-ran'\n")
    existing.chmod(0o755)
    result = run_cli(capsys, "-C", str(repo), "hooks", "install")
    assert result.code == 0
    assert "kept your hook as pre-commit.local" in result.out
    assert (repo / ".git/hooks/pre-commit.local").exists()
    # reinstalling is safe and keeps the chain
    assert run_cli(capsys, "-C", str(repo), "hooks", "install").code == 0
    env = {**os.environ, "PROCREG_PYTHON": sys.executable}

    write_proc(repo, "fine")
    git(repo, "add", "-A")
    import subprocess

    ok = subprocess.run(
        ["git", "commit", "-qm", "feat: fine"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "user-hook-ran").read_text() == "ran\n"

    bad = write_proc(repo, "evil")
    (bad / "main.py").write_text("def main(text: str) -> str:\n    return eval(text)\n")
    git(repo, "add", "-A")
    refused = subprocess.run(
        ["git", "commit", "-qm", "feat: evil"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "procedures/evil/main.py:2:" in refused.stdout + refused.stderr
    assert git(repo, "log", "--format=%s") == "feat: fine\n"


def test_global_options_work_after_the_command(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_proc(repo, "echo")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo")
    after = run_cli(capsys, "list", "-C", str(repo), "--json")
    assert after.code == 0, after.err
    assert [r["id"] for r in after.json()] == ["echo"]
    glued = run_cli(capsys, "list", f"-C{repo}", "--json")
    assert [r["id"] for r in glued.json()] == ["echo"]


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ('{"id": "echo", "name": ', "procedures/echo/metadata.json:1: metadata-json: invalid JSON"),
        ('{"id": "echo", "name": "Echo", "colour": "red"}\n', "procedures/echo/metadata.json"),
        (None, "procedures/echo/metadata.json: missing-file"),
    ],
)
def test_show_reports_invalid_metadata_like_check(
    repo: Path, capsys: pytest.CaptureFixture[str], metadata: str | None, expected: str
) -> None:
    """show only parses metadata.json, yet a broken one is named with file, line and rule."""
    write_proc(repo, "echo")
    meta = repo / "procedures/echo/metadata.json"
    if metadata is None:
        meta.unlink()
    else:
        meta.write_text(metadata)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo", "--no-verify")  # past the pre-commit check
    result = run_cli(capsys, "-C", str(repo), "show", "echo", "--ref", "HEAD")
    assert result.code == 1
    assert expected in result.err
    if metadata is not None and "colour" in metadata:
        assert "colour" in result.err


def test_show_displays_a_procedure_whose_code_check_fails(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Showing is not checking: valid metadata is shown even when main.py breaks a rule."""
    write_proc(repo, "echo", description="Echo the text back")
    main = repo / "procedures/echo/main.py"
    main.write_text(main.read_text() + "\nimport ctypes\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo", "--no-verify")  # past the pre-commit check
    assert run_cli(capsys, "-C", str(repo), "check").code == 1
    shown = run_cli(capsys, "-C", str(repo), "show", "echo", "--ref", "HEAD", "--json")
    assert shown.code == 0
    assert shown.json()["metadata"]["description"] == "Echo the text back"


def test_search_refuses_a_limit_below_one(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "-C", str(repo), "search", "--limit", "0")
    assert result.code == 2
    assert "--limit" in result.err and "Traceback" not in result.err


# --------------------------------------------------------------------------- for scripts


def test_help_command_shows_a_commands_help(capsys: pytest.CaptureFixture[str]) -> None:
    direct = run_cli(capsys, "release", "--help")
    via_help = run_cli(capsys, "help", "release")
    assert via_help.code == 0 and direct.code == 0
    assert via_help.out == direct.out
    assert "Usage: procreg release" in via_help.out
    assert "Commands:" in run_cli(capsys, "help").out
    unknown = run_cli(capsys, "help", "relase")
    assert unknown.code == 1
    assert unknown.err.count("\n") == 1 and "no command 'relase'" in unknown.err


def test_help_summaries_are_not_cut_off(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, "--help").out
    commands = out.split("Commands:", 1)[1]
    assert "..." not in commands
    assert "(default HEAD)" in commands  # the end of diff's first sentence


def test_every_json_flag_says_what_it_does() -> None:
    from registry.cli import cli

    def walk(group: object):
        for command in getattr(group, "commands", {}).values():
            yield command
            yield from walk(command)

    missing = [
        command.name
        for command in walk(cli)
        for param in getattr(command, "params", [])
        if "--json" in getattr(param, "opts", []) and not getattr(param, "help", None)
    ]
    assert missing == []


def test_errors_under_json_are_json_with_the_same_exit_codes(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_proc(repo, "echo")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo")
    problem = run_cli(capsys, "-C", str(repo), "show", "nope", "--ref", "HEAD", "--json")
    assert problem.code == 1
    error = problem.json()["error"]
    assert error["type"] == "NotFoundError" and "nope" in error["message"]
    assert set(error) == {"type", "message", "hint"}
    usage = run_cli(capsys, "-C", str(repo), "show", "--json")
    assert usage.code == 2
    assert usage.json()["error"]["type"] == "UsageError"
    assert usage.json()["error"]["hint"] == "see `procreg show --help`"
    plain = run_cli(capsys, "-C", str(repo), "show", "nope", "--ref", "HEAD")
    assert plain.code == 1 and plain.out == "" and plain.err.startswith("procreg: error:")


def test_a_closed_pipe_ends_quietly_with_0(repo: Path) -> None:
    import subprocess

    for pid in ("a-one", "b-two", "c-three"):
        write_proc(repo, pid)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: three")
    # `true` exits at once, long before procreg (a Python process) writes: every
    # write then meets a closed pipe
    command = f"{sys.executable} -m registry -C {repo} search"
    shell = command + ' | true; echo "status=${PIPESTATUS[0]}"'
    done = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.strip() == "status=0", done.stderr
    assert done.stderr == ""


def test_the_lazy_command_table_names_every_command_of_every_family() -> None:
    """``FAMILIES`` (what ``procreg`` imports on demand) lists exactly each module's COMMANDS."""
    import importlib

    from registry.cli import FAMILIES, cli

    for module, names in FAMILIES.items():
        commands = importlib.import_module(f"registry.cli.{module}").COMMANDS
        assert sorted(c.name for c in commands) == sorted(names), module
    listed = set(cli.commands)
    assert listed == {n for names in FAMILIES.values() for n in names} | {"help"}


def test_looking_up_one_command_imports_its_family_alone() -> None:
    """What ``LazyCommands`` promises: ``procreg show`` does not import the other families."""
    import subprocess

    from registry.cli import FAMILIES

    code = (
        "import sys\nfrom registry.cli import cli\n"
        "assert cli.commands.get('show') is not None and 'log' in cli.commands\n"
        "print(' '.join(sorted(m[13:] for m in sys.modules if m.startswith('registry.cli.'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split()) & set(FAMILIES)
    assert loaded == {"procedures", "versions"}
