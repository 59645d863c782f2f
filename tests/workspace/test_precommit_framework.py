"""The pre-commit framework (https://pre-commit.com) runs procreg's hook as this repo defines it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT, git, run_cli, write_proc


def _hook() -> dict[str, object]:
    (hook,) = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "procreg-check"
    return dict(hook)


def _configure(repo: Path) -> None:
    """The framework's config with our hook definition, run from this environment.

    ``language: system`` instead of the definition's ``python`` only spares the test a
    fresh virtualenv with every dependency downloaded; entry, files and pass_filenames
    are the definition's own.
    """
    hook = {**_hook(), "language": "system"}
    config = {"repos": [{"repo": "local", "hooks": [hook]}]}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))


def _pre_commit(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)  # procreg and pre-commit, as installed
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env["PRE_COMMIT_HOME"] = str(repo.parent / "pre-commit-home")
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_hook_passes_a_fresh_init_repo_and_refuses_a_bad_procedure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "reg"
    assert run_cli(capsys, "init", str(repo)).code == 0
    assert run_cli(capsys, "-C", str(repo), "hooks", "uninstall").code == 0  # the framework's turn
    _configure(repo)
    git(repo, "add", "-A")
    installed = _pre_commit(repo, "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # The first commit of a `procreg init` repo: only procedures/.gitkeep is under procedures/.
    first = subprocess.run(
        ["git", "commit", "-qm", "chore: start"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
        check=False,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "procreg check" in first.stdout + first.stderr  # the hook ran

    write_proc(repo, "greet")
    git(repo, "add", "-A")
    every = _pre_commit(repo, "run", "--all-files")
    assert every.returncode == 0, every.stdout + every.stderr
    assert "Passed" in every.stdout

    (repo / "procedures/greet/main.py").write_text(
        "def main(text: str) -> str:\n    return eval(text)\n"
    )
    git(repo, "add", "-A")
    bad = _pre_commit(repo, "run", "--all-files")
    assert bad.returncode == 1
    assert "Failed" in bad.stdout
    assert "procedures/greet/main.py" in bad.stdout
