"""The health policy takes a channel out of service rather than cross a breaking change."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from registry.api import AsyncRegistry, Registry
from registry.core import tags
from registry.core.model import Parameter
from registry.errors import NotFoundError
from registry.git.store import GitStore
from registry.index.connect import open_backend
from registry.releases import channels
from registry.releases.history import resolve
from registry.serve.catalog import served_tools
from tests.helpers import commit_all, git, make_repo, release, run_cli, write_code
from tests.releases.test_health import add_runs

FAIL = Parameter(name="fail", type="boolean")
MODE = Parameter(name="mode", type="string")


def breaking_major(tmp_path: Path) -> Path:
    """``flaky`` 1.0.0 (``fail``), then 2.0.0, which needs a new ``mode`` (a breaking change)."""
    root = make_repo(tmp_path / "repo")
    write_code(root, "flaky", "return 'ok'", [FAIL], signature="fail")
    commit_all(root, "feat: flaky")
    assert release(root, "flaky") == "1.0.0"
    write_code(
        root,
        "flaky",
        "if fail:\n    raise RuntimeError('broken')\nreturn mode",
        [FAIL, MODE],
        signature="fail, mode",
    )
    commit_all(root, "feat: flaky needs a mode")
    assert release(root, "flaky") == "2.0.0"
    store = GitStore.open(root)
    channels.promote(store, "flaky", "1.0.0", "stable", reason="first")
    channels.promote(store, "flaky", "2.0.0", "stable", reason="the new mode")
    return root


def seed_runs(root: Path, db_url: str | None) -> None:
    """1.0.0 proven healthy; every recent run of 2.0.0 failed."""

    async def go() -> None:
        async with await open_backend(GitStore.open(root), db_url) as backend:
            await add_runs(backend, "1.0.0", 20, 0)
            await add_runs(backend, "2.0.0", 0, 20)

    asyncio.run(go())


def test_health_takes_stable_out_of_service_instead_of_crossing_a_major(
    tmp_path: Path, db_url: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    root = breaking_major(tmp_path)
    seed_runs(root, db_url)
    base = ["-C", str(root)] + (["--database-url", db_url] if db_url else [])

    applied = run_cli(capsys, *base, "health", "--apply")
    assert applied.code == 0, applied.err
    assert "took flaky stable out of service" in applied.out
    assert "1.0.0 is healthy but the major version changed (1 to 2)" in applied.out
    store = GitStore.open(root)
    assert channels.current_channel(store, "flaky", "stable") is None
    # the move is a tag at 2.0.0's commit: history is kept, the version it left is named
    newest = git(root, "tag", "-l", "channel/flaky/stable/*", "--sort=-refname").split()[0]
    message = git(root, "tag", "-l", "--format=%(contents)", newest)
    assert "Out-Of-Service: yes" in message and "Version: 2.0.0" in message
    assert "Action: health" in message
    # applying again changes nothing: an out-of-service channel is not evaluated
    again = run_cli(capsys, *base, "health", "--apply")
    assert "nothing to do" in again.out
    assert len(git(root, "tag", "-l", "channel/flaky/stable/*").split()) == 3

    # procreg health shows the status
    shown = run_cli(capsys, *base, "health")
    assert "OUT OF SERVICE (was 2.0.0)" in shown.out
    moves = run_cli(capsys, *base, "health", "--json").json()["moves"]
    assert [(m["version"], m["out_of_service"]) for m in moves] == [("2.0.0", True)]

    # the resolver refuses, through git (run) and through the index (Registry.get)
    with pytest.raises(NotFoundError, match="out of service since") as caught:
        resolve(store, "flaky", "stable")
    assert caught.value.kind == "channel"
    ran = run_cli(capsys, *base, "run", "flaky@stable", "--arg", "fail=false")
    assert ran.code == 1
    (line,) = ran.err.strip().splitlines()
    assert "flaky@stable is out of service since" in line
    assert "(it was on 2.0.0) because success rate 0.00 over the last 20 runs" in line
    assert "`procreg promote flaky VERSION --channel stable`" in line
    as_json = run_cli(capsys, *base, "run", "flaky@stable", "--json").json()
    assert as_json["error"]["type"] == "NotFoundError"
    assert as_json["error"]["hint"].startswith("restore it with `procreg promote flaky")
    with Registry.open(root, db_url) as reg:
        with pytest.raises(NotFoundError, match="flaky@stable is out of service since") as got:
            reg.get("flaky", "stable")
        assert got.value.kind == "channel"
        assert reg.get("flaky", "1.0.0").version == "1.0.0"  # versions stay callable
        assert all(v.channels == [] for v in reg.versions("flaky"))
        (report,) = reg.channels("flaky")
        assert (report.status, report.version) == ("out-of-service", None)
        assert report.moves[0].by_health and report.moves[0].out_of_service
        assert reg.search("flaky")[0].channels == {"stable": None}
    # the MCP server serves nothing for it on stable (not some other version)
    assert served_ids(root, db_url) == []

    # promote brings it back, even to the version it left
    back = run_cli(capsys, *base, "promote", "flaky", "2.0.0", "--channel", "stable")
    assert back.code == 0 and "moved 2.0.0" in back.out
    with Registry.open(root, db_url) as reg:
        assert reg.get("flaky", "stable").version == "2.0.0"
    assert resolve(store, "flaky", "stable").version == "2.0.0"
    assert served_ids(root, db_url) == ["flaky"]


def served_ids(root: Path, db_url: str | None) -> list[str]:
    """The procedures the MCP server would serve on ``stable``."""

    async def go() -> list[str]:
        async with await AsyncRegistry.open(root, db_url) as reg:
            return sorted(await served_tools(reg, "stable"))

    return asyncio.run(go())


def test_health_still_moves_back_within_a_major(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same failing runs, but 1.1.0 is a compatible release: stable moves, stays in service."""
    root = make_repo(tmp_path / "repo")
    write_code(root, "flaky", "return 'ok'", [FAIL], signature="fail")
    commit_all(root, "feat: flaky")
    release(root, "flaky")
    write_code(root, "flaky", "return 'ok 2'", [FAIL], signature="fail")
    commit_all(root, "feat: another answer")
    assert release(root, "flaky") == "1.1.0"
    store = GitStore.open(root)
    channels.promote(store, "flaky", "1.1.0", "stable")

    async def go() -> None:
        async with await open_backend(store) as backend:
            await add_runs(backend, "1.0.0", 20, 0)
            await add_runs(backend, "1.1.0", 0, 20)

    asyncio.run(go())
    applied = run_cli(capsys, "-C", str(root), "health", "--apply")
    assert "moved flaky stable" in applied.out
    assert str(channels.current_channel(store, "flaky", "stable")) == "1.0.0"


def test_out_of_service_round_trips_through_the_tag_message() -> None:
    message = tags.format_channel_message(
        "flaky", "stable", "2.0.0", "all failing", "health", out_of_service=True
    )
    assert message.startswith("Take flaky stable out of service (was 2.0.0)\n")
    read = tags.parse_channel_message(message)
    assert (read.out_of_service, str(read.version), read.action) == (True, "2.0.0", "health")
    plain = tags.parse_channel_message(
        tags.format_channel_message("flaky", "stable", "2.0.0", "ok", "promote")
    )
    assert plain.out_of_service is False and "Out-Of-Service" not in message.split("Reason")[0]
