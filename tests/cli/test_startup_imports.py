"""Start-up guards: the read commands load what they use, and nothing else.

``procreg show`` and ``procreg log`` are whole processes a person or a script starts
many times; their time is almost all imports (issue 19). These tests run each command
in a fresh interpreter and look at ``sys.modules`` and at which pydantic models were
built, so a module-level import or model that creeps onto the path fails here rather
than silently in the benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, git, run_cli, write_proc

NEVER_ON_A_READ = (
    "asyncio",
    "sqlite3",
    "rich",
    "packaging",
    "tomllib",  # no lock in these procedures
    "registry.api",
    "registry.index",
    "registry.runs",
    "registry.sandbox",
    "registry.serve",
    "registry.core.validation",  # valid metadata is parsed, not validated as a folder
    "registry.core.versioning",
)
"""Modules ``show`` and ``log`` of a released, valid procedure must not import."""

DEFERRED_MODELS = (
    "registry.core.conventional:ConventionalCommit",
    "registry.core.problems:Problem",
    "registry.core.pylock:Lock",
    "registry.core.network:NetworkDenial",
    "registry.releases.channels:ChannelTag",
    "registry.releases.channels:ChannelMoveEntry",
    "registry.releases.channels:ChannelReport",
)
"""Models these commands import but never use: their validators must not be built."""

PROBE = """
import importlib, json, sys
from registry.cli import main
code = main(sys.argv[1:])
models = {}
for spec in json.loads(sys.stdin.read()):
    module, _, name = spec.partition(":")
    if module in sys.modules:
        models[spec] = bool(getattr(sys.modules[module], name).__pydantic_complete__)
print(json.dumps({"code": code, "modules": sorted(sys.modules), "built": models}), file=sys.stderr)
"""


def _probe(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=REPO_ROOT,
        input=json.dumps(DEFERRED_MODELS),
        capture_output=True,
        text=True,
        check=False,
    )
    report: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr
    return report


def _under(report: dict[str, object], packages: tuple[str, ...]) -> list[str]:
    """The loaded modules that are one of ``packages`` or inside one."""
    modules = report["modules"]
    assert isinstance(modules, list)
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


@pytest.fixture
def released(repo: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    write_proc(repo, "echo")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo")
    assert run_cli(capsys, "-C", str(repo), "release", "--skip-examples").code == 0
    return repo


@pytest.mark.parametrize("command", [["show", "echo"], ["show", "echo", "--json"],
                                     ["log", "echo"], ["log", "echo", "--json"]])  # fmt: skip
def test_show_and_log_import_only_what_they_use(released: Path, command: list[str]) -> None:
    report = _probe("-C", str(released), *command)
    assert _under(report, NEVER_ON_A_READ) == []
    built = report["built"]
    assert isinstance(built, dict)
    assert [spec for spec, done in built.items() if done] == []


def test_version_imports_neither_pydantic_nor_git_nor_package_metadata() -> None:
    report = _probe("--version")
    heavy = ("pydantic", "pygit2", "importlib.metadata", "registry.git", "registry.core")
    assert _under(report, heavy) == []


SPAWNS = """
import sys
spawned = []
sys.addaudithook(lambda event, args: spawned.append(repr(args)[:200])
                 if event in ("subprocess.Popen", "os.posix_spawn", "os.exec") else None)
import registry.api, registry.index.sync, registry.cli.procedures, registry.cli.index
print("\\n".join(spawned))
"""


def test_loading_the_index_and_its_commands_starts_no_process() -> None:
    # ctypes.util.find_library("c") at import ran `ldconfig -p` in every command that
    # loads the index (search, list, sync, release): milliseconds of each start
    done = subprocess.run(
        [sys.executable, "-c", SPAWNS], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""
