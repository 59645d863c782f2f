"""Locked third-party libraries end to end: wheels built here, locked with uv, run in the sandbox.

Offline: two versions of a tiny distribution are built in the test (``uv build``
without build isolation, so no backend is downloaded), served from a folder
(``--find-links``, ``--no-index``), locked, released and run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.sandbox.envs import uv_binary
from tests.cli.test_json_shapes import check_shape
from tests.helpers import commit_all, git, run_cli

PROC = "uses-tiny"
CODE = '''"""Reports the tinylib it runs with."""

import tinylib


def main(text: str) -> str:
    """The text and the locked tinylib version."""
    return text + tinylib.__version__
'''


def _wheel(root: Path, version: str, out: Path) -> None:
    src = root / f"tinylib-{version}"
    (src / "tinylib").mkdir(parents=True)
    (src / "tinylib" / "__init__.py").write_text(f'__version__ = "{version}"\n')
    (src / "pyproject.toml").write_text(
        f'[project]\nname = "tinylib"\nversion = "{version}"\n'
        '[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    uv = uv_binary()
    assert uv is not None, "uv is a dependency of procreg"
    subprocess.run(
        [
            uv,
            "build",
            "--wheel",
            "--no-build-isolation",
            "--python",
            sys.executable,
            "-o",
            str(out),
        ],
        cwd=src,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheels-src")
    out = tmp_path_factory.mktemp("wheels")
    for version in ("1.0.0", "2.0.0"):
        _wheel(root, version, out)
    return out


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache the sandbox's users can reach (pytest's own tmp folders are closed to others)."""
    path = Path(tempfile.mkdtemp(prefix="procreg-envs-", dir="/tmp"))
    path.chmod(0o755)
    monkeypatch.setenv("PROCREG_CACHE_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _write(repo: Path, requirement: str) -> None:
    folder = repo / "procedures" / PROC
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(CODE)
    meta = {
        "id": PROC,
        "name": "Uses tiny",
        "description": "Reports the version of tinylib it runs with.",
        "parameters": [{"name": "text", "type": "string"}],
        "returns": {"type": "string"},
        "requirements": [requirement],
    }
    (folder / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")


def _lock(capsys: pytest.CaptureFixture[str], repo: Path, wheels: Path) -> dict[str, object]:
    out = run_cli(
        capsys, "-C", str(repo), "lock", PROC, "--find-links", str(wheels), "--no-index", "--json"
    )
    assert out.code == 0, out.err
    report: dict[str, object] = json.loads(out.out)
    check_shape("lock", report)
    return report


def _envs(capsys: pytest.CaptureFixture[str], repo: Path, *args: str) -> list[dict[str, Any]]:
    out = run_cli(capsys, "-C", str(repo), "envs", *args, "--json")
    assert out.code == 0, out.err
    found: list[dict[str, Any]] = json.loads(out.out)
    check_shape("envs", found)
    return found


def _run(capsys: pytest.CaptureFixture[str], repo: Path, spec: str) -> str:
    out = run_cli(capsys, "-C", str(repo), "run", spec, "--arg", "text=v", "--json")
    assert out.code == 0, out.err
    result = json.loads(out.out)
    assert result["ok"], result
    value: str = result["result"]
    return value


def test_a_locked_library_runs_at_its_locked_version_and_each_release_keeps_its_own(
    repo: Path, wheels: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(repo, "tinylib>=1,<2")
    report = _lock(capsys, repo, wheels)
    assert [(d["name"], d["version"]) for d in report["locked"]] == [("tinylib", "1.0.0")]  # type: ignore[attr-defined]
    lock_text = (repo / "procedures" / PROC / "pylock.toml").read_text()
    assert "sha256" in lock_text and "tinylib" in lock_text
    assert run_cli(capsys, "-C", str(repo), "check").code == 0
    commit_all(repo, "feat: uses tinylib 1")
    assert run_cli(capsys, "-C", str(repo), "release", PROC).code == 0
    assert _run(capsys, repo, PROC) == "v1.0.0"

    # the same lock again: the environment is not built twice
    listed = _envs(capsys, repo, "list")
    assert len(listed) == 1 and listed[0]["distributions"] == {"tinylib": "1.0.0"}
    assert _run(capsys, repo, PROC) == "v1.0.0"
    again = _envs(capsys, repo, "list")
    assert len(again) == 1
    # the same build (not rebuilt), used again since
    assert again[0]["built_at"] == listed[0]["built_at"]
    assert again[0]["build_ms"] == listed[0]["build_ms"]
    assert again[0]["last_used"] >= listed[0]["last_used"]

    _write(repo, "tinylib>=2,<3")
    report = _lock(capsys, repo, wheels)
    assert [(d["name"], d["version"]) for d in report["locked"]] == [("tinylib", "2.0.0")]  # type: ignore[attr-defined]
    commit_all(repo, "fix: tinylib 2")
    released = run_cli(capsys, "-C", str(repo), "release", PROC)
    assert released.code == 0, released.err
    # a changed lock is (at least) a patch, whose reason names the distribution's versions
    assert "v1.0.1" in released.out, released.out
    assert "tinylib" in released.out and "1.0.0" in released.out and "2.0.0" in released.out
    tag = git(repo, "tag", "-l", "--format=%(contents)", f"procedure-{PROC}-v*")
    assert "Lock: " in tag

    # both versions side by side, each with its own lock (a rollback restores libraries too)
    assert _run(capsys, repo, f"{PROC}@1.0.1") == "v2.0.0"
    assert _run(capsys, repo, f"{PROC}@1.0.0") == "v1.0.0"
    shown = json.loads(run_cli(capsys, "-C", str(repo), "show", f"{PROC}@1.0.0", "--json").out)
    assert "tinylib" in json.dumps(shown) and "1.0.0" in json.dumps(shown)
    listed = _envs(capsys, repo, "list")
    assert sorted(e["distributions"]["tinylib"] for e in listed) == ["1.0.0", "2.0.0"]

    pruned = run_cli(capsys, "-C", str(repo), "envs", "prune", "--keep", "1")
    assert pruned.code == 0 and "1 environment removed" in pruned.out
    assert _envs(capsys, repo, "prune", "--keep", "1") == []  # nothing more to remove
    assert len(_envs(capsys, repo, "list")) == 1


def test_a_lock_whose_wheel_is_gone_fails_clearly_and_is_recorded(
    repo: Path, wheels: Path, cache: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    private = tmp_path / "only-here"
    private.mkdir()
    for wheel in wheels.glob("tinylib-1.0.0-*.whl"):
        (private / wheel.name).write_bytes(wheel.read_bytes())
    _write(repo, "tinylib==1.0.0")
    _lock(capsys, repo, private)
    commit_all(repo, "feat: uses tinylib")
    assert run_cli(capsys, "-C", str(repo), "release", PROC).code == 0
    for wheel in private.iterdir():
        os.remove(wheel)

    out = run_cli(capsys, "-C", str(repo), "run", PROC, "--arg", "text=v", "--json")
    assert out.code != 0
    result = json.loads(out.out)
    assert not result["ok"]
    assert result["error"]["type"] == "EnvironmentBuildError"
    assert "tinylib" in result["error"]["message"]
    assert _envs(capsys, repo, "list") == []
    metrics = run_cli(capsys, "-C", str(repo), "metrics", PROC, "--json")
    assert metrics.code == 0, metrics.err
    assert '"runs": 1' in metrics.out and "EnvironmentBuildError" in metrics.out, metrics.out


def test_lock_outside_the_tree_names_the_procedure(
    repo: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_cli(capsys, "-C", str(repo), "lock", "no-such-proc")
    assert out.code == 1
    assert "no-such-proc" in out.err and "Traceback" not in out.err


ENSURE = """
import sys
from pathlib import Path
from registry.sandbox import sandbox_python
from registry.sandbox.envs import EnvCache
env, built = EnvCache(Path(sys.argv[1])).ensure(Path(sys.argv[2]).read_text(), sandbox_python())
print(built, env.path)
"""


def test_concurrent_first_runs_from_several_processes_build_the_environment_once(
    repo: Path, wheels: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(repo, "tinylib==2.0.0")
    _lock(capsys, repo, wheels)
    lock_file = repo / "procedures" / PROC / "pylock.toml"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ENSURE, str(cache), str(lock_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    said = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        said.append(out.split())
    assert sorted(built for built, _ in said) == ["False", "False", "False", "True"]
    assert len({path for _, path in said}) == 1
    listed = _envs(capsys, repo, "list")
    assert [e["distributions"] for e in listed] == [{"tinylib": "2.0.0"}]
