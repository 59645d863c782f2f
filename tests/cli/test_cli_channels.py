"""``procreg channels`` and the channel column of ``list``, ``search``, ``show``, on real tags."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from registry.git.store import GitStore
from registry.index.connect import open_backend
from tests.helpers import Result, git, run_cli, write_proc
from tests.releases.test_health import add_runs
from tests.releases.test_out_of_service import breaking_major


def cli(capsys: pytest.CaptureFixture[str], repo: Path, *args: str) -> Result:
    return run_cli(capsys, "-C", str(repo), *args)


@pytest.fixture
def two(repo: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """echo (1.0.0 and 1.1.0; stable and beta) and shout (1.0.0, no channel)."""
    write_proc(repo, "echo")
    write_proc(repo, "shout", body="return text.upper()")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: echo and shout")
    assert cli(capsys, repo, "release", "--skip-examples").code == 0
    write_proc(repo, "echo", doc="Return the text, unchanged.")
    git(repo, "commit", "-qam", "feat: echo says more")
    assert cli(capsys, repo, "release", "--skip-examples").code == 0
    for version, channel, reason in (
        ("1.0.0", "stable", "first"),
        ("1.1.0", "beta", "try it"),
        ("1.1.0", "stable", "beta went well"),
    ):
        done = cli(
            capsys, repo, "promote", "echo", version, "--channel", channel, "--reason", reason
        )
        assert done.code == 0, done.err
    return repo


def test_channels_json_lists_every_move_with_who_when_why(
    two: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, two, "channels", "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert [(c["id"], c["channel"], c["version"], c["status"]) for c in data] == [
        ("echo", "beta", "1.1.0", "in-service"),
        ("echo", "stable", "1.1.0", "in-service"),
    ]
    stable = data[1]
    assert [(m["version"], m["reason"], m["by_health"]) for m in stable["moves"]] == [
        ("1.1.0", "beta went well", False),
        ("1.0.0", "first", False),
    ]
    move = stable["moves"][0]
    # the git identity of who moved it, named as every command names a tagger
    assert (move["tagger_name"], move["tagger_email"]) == ("Test User", "user@example.com")
    assert move["date"] and move["tag"] == "channel/echo/stable/000002"
    assert cli(capsys, two, "channels", "echo", "--json").json() == data
    assert cli(capsys, two, "channels", "shout", "--json").json() == []
    missing = cli(capsys, two, "channels", "nope", "--json")
    assert missing.code == 1 and missing.json()["error"]["type"] == "NotFoundError"


def test_channels_text_is_a_table_per_channel(
    two: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli(capsys, two, "channels", "echo").out
    assert "echo@beta: 1.1.0" in out and "echo@stable: 1.1.0" in out
    stable = out[out.index("echo@stable") :].splitlines()
    assert stable[1].split() == ["SEQ", "VERSION", "WHEN", "BY", "HOW", "REASON"]
    assert stable[2].split()[:2] == ["2", "1.1.0"] and stable[2].endswith("beta went well")
    assert stable[3].split()[:2] == ["1", "1.0.0"] and "promote" in stable[3]
    none = cli(capsys, two, "channels", "shout")
    assert none.code == 0 and "no channels for shout yet" in none.out


def test_channel_column_in_list_search_and_show(
    two: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = cli(capsys, two, "list")
    assert listed.out.splitlines()[0].split()[:3] == ["ID", "VERSION", "CHANNELS"]
    echo_row = next(line for line in listed.out.splitlines() if line.startswith("echo"))
    assert "beta=1.1.0 stable=1.1.0" in echo_row
    rows = {r["id"]: r for r in cli(capsys, two, "list", "--json").json()}
    assert rows["echo"]["channels"] == {"beta": "1.1.0", "stable": "1.1.0"}
    assert rows["shout"]["channels"] == {}

    hits = {h["id"]: h for h in cli(capsys, two, "search", "--json").json()}
    assert hits["echo"]["channels"] == {"beta": "1.1.0", "stable": "1.1.0"}
    assert hits["shout"]["channels"] == {}
    text = cli(capsys, two, "search", "echo").out
    assert "CHANNELS" in text and "beta=1.1.0 stable=1.1.0" in text

    shown = cli(capsys, two, "show", "echo", "--json").json()
    assert shown["channels"] == {"beta": "1.1.0", "stable": "1.1.0"}
    assert "  channels: beta=1.1.0 stable=1.1.0" in cli(capsys, two, "show", "echo").out
    assert "  channels: -" in cli(capsys, two, "show", "shout").out


def test_channels_show_a_health_move_out_of_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = breaking_major(tmp_path)

    async def seed() -> None:
        async with await open_backend(GitStore.open(root)) as backend:
            await add_runs(backend, "1.0.0", 20, 0)
            await add_runs(backend, "2.0.0", 0, 20)

    asyncio.run(seed())
    assert cli(capsys, root, "health", "--apply").code == 0
    (report,) = cli(capsys, root, "channels", "flaky", "--json").json()
    assert (report["version"], report["status"]) == (None, "out-of-service")
    newest, *older = report["moves"]
    assert newest["by_health"] is True and newest["out_of_service"] is True
    assert newest["version"] == "2.0.0" and "below 0.90" in newest["reason"]
    assert [(m["version"], m["by_health"]) for m in older] == [("2.0.0", False), ("1.0.0", False)]
    text = cli(capsys, root, "channels", "flaky").out
    assert text.startswith("flaky@stable: OUT OF SERVICE since ")
    assert "(was 2.0.0); `procreg promote flaky VERSION --channel stable` restores it" in text
    assert "out of service (was 2.0.0)" in text and "health policy" in text
    # the column says so too, in git's view (list) and the index's (search)
    assert cli(capsys, root, "list", "--json").json()[0]["channels"] == {"stable": None}
    assert "stable=out-of-service" in cli(capsys, root, "search").out
    assert cli(capsys, root, "search", "--json").json()[0]["channels"] == {"stable": None}
