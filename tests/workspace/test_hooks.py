"""Hooks that travel: no pinned interpreter, ``core.hooksPath``, uninstall, ``.gitkeep``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from registry.git.store import GitStore
from registry.workspace import hooks
from registry.workspace.scaffold import init_registry
from tests.helpers import git, run_cli, write_proc


def _commit(repo: Path, env: dict[str, str], message: str) -> subprocess.CompletedProcess[str]:
    git(repo, "add", "-A")
    return subprocess.run(
        ["git", "-C", str(repo), "commit", "-qm", message],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def _env_without_procreg(**extra: str) -> dict[str, str]:
    """PATH without this interpreter's bin folder, so `procreg` is not found there."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    env = {k: v for k, v in os.environ.items() if k != "PROCREG_PYTHON"}
    return {**env, "PATH": path, **extra}


def _registry(path: Path) -> GitStore:
    """What `procreg init` makes: the repository, procedures/, procreg.toml and the hooks."""
    store, _ = init_registry(path)
    hooks.install(store)
    return store


def _bad_procedure(repo: Path) -> None:
    folder = write_proc(repo, "broken")
    (folder / "main.py").write_text("def main(text: str) -> str:\n    return eval(text)\n")


def test_installed_hooks_pin_no_interpreter_and_equal_the_committed_shims(tmp_path: Path) -> None:
    store = _registry(tmp_path / "reg")
    shims = Path(__file__).resolve().parents[2] / "hooks"
    for name in hooks.CLIENT_HOOKS:
        text = (store.git_dir / "hooks" / name).read_text()
        assert sys.executable not in text
        assert text == (shims / name).read_text()
    # The fallback lives in this clone's config, not in the hook.
    assert store.config_value(hooks.PYTHON_CONFIG) == sys.executable


def test_a_hook_finds_procreg_on_path_without_the_clone_fallback(tmp_path: Path) -> None:
    store = _registry(tmp_path / "reg")
    repo = tmp_path / "reg"
    store.set_local_config(hooks.PYTHON_CONFIG, None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "procreg").symlink_to(Path(sys.executable).with_name("procreg"))
    env = _env_without_procreg()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    _bad_procedure(repo)
    refused = _commit(repo, env, "feat: broken")
    assert refused.returncode != 0
    assert "broken" in refused.stdout + refused.stderr


def test_a_hook_says_what_to_install_when_procreg_is_nowhere(tmp_path: Path) -> None:
    store = _registry(tmp_path / "reg")
    store.set_local_config(hooks.PYTHON_CONFIG, None)
    # A PATH with git and dirname only: no procreg, no python3 that could import it.
    bare_bin = tmp_path / "bare-bin"
    bare_bin.mkdir()
    for tool in ("git", "dirname"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bare_bin / tool).symlink_to(found)
    env = _env_without_procreg(PATH=str(bare_bin))
    write_proc(tmp_path / "reg", "greet")
    done = _commit(tmp_path / "reg", env, "feat: greet")
    assert done.returncode != 0
    assert "procreg is not installed here" in done.stderr


def test_hooks_go_where_core_hookspath_points(tmp_path: Path) -> None:
    repo = tmp_path / "reg"
    store = _registry(repo)
    git(repo, "config", "core.hooksPath", ".githooks")
    installed = hooks.install(GitStore.open(repo))
    assert {Path(h.path).parent for h in installed} == {repo / ".githooks"}
    _bad_procedure(repo)
    for default in (store.git_dir / "hooks").iterdir():
        default.unlink()  # only the core.hooksPath copies can refuse the commit now
    refused = _commit(repo, _env_without_procreg(), "feat: broken")
    assert refused.returncode != 0
    assert "broken" in refused.stdout + refused.stderr


def test_uninstall_removes_only_procregs_hooks_and_restores_the_users(tmp_path: Path) -> None:
    repo = tmp_path / "reg"
    store = _registry(repo)
    folder = store.git_dir / "hooks"
    for name in ("pre-commit", "post-commit"):
        (folder / name).unlink()
    (folder / "pre-commit").write_text("#!/bin/sh\nexit 0\n")
    (folder / "post-commit").write_text("#!/bin/sh\n# the user's own\nexit 0\n")
    hooks.install(store)
    (folder / "post-commit").write_text("#!/bin/sh\n# replaced by hand\nexit 0\n")
    removed = hooks.uninstall(store)
    assert {h.name for h in removed} == {"pre-commit", "post-merge"}
    assert (folder / "pre-commit").read_text() == "#!/bin/sh\nexit 0\n"  # put back
    assert not (folder / "pre-commit.local").exists()
    assert "replaced by hand" in (folder / "post-commit").read_text()  # not ours: kept
    assert not (folder / "post-merge").exists()
    assert store.config_value(hooks.PYTHON_CONFIG) is None
    assert hooks.uninstall(store) == []


def test_check_ignores_the_gitkeep_init_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "reg"
    _registry(repo)
    # What the pre-commit framework passes on the first commit, and with --all-files.
    first = run_cli(capsys, "-C", str(repo), "check", str(repo / "procedures/.gitkeep"))
    assert first.code == 0, first.out + first.err
    folder = write_proc(repo, "greet")
    files = [str(p) for p in (*folder.iterdir(), repo / "procedures/.gitkeep")]
    every = run_cli(capsys, "-C", str(repo), "check", *files)
    assert every.code == 0, every.out + every.err
    assert "checked 1 procedure" in every.out + every.err


def test_the_cli_uninstalls_procregs_hooks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "reg"
    assert run_cli(capsys, "init", str(repo)).code == 0
    done = run_cli(capsys, "-C", str(repo), "hooks", "uninstall")
    assert done.code == 0
    assert done.out.count("removed ") == 3
    assert not (repo / ".git/hooks/pre-commit").exists()
    again = run_cli(capsys, "-C", str(repo), "hooks", "uninstall")
    assert "no procreg hook is installed here" in again.out
