"""The API's write side: release, rollback, promote, health, test; metrics with the spool."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from registry.api import AsyncRegistry, Registry
from registry.core.model import Example
from registry.errors import IndexUnavailable, NotFoundError
from registry.git.store import GitStore
from registry.index.contract import ExecutionRecord, IndexBackend
from registry.runs.execution import spool_path
from registry.runs.recorder import RunRecorder, spooled_records
from tests.helpers import commit_all, git, make_repo, write_code
from tests.releases.test_health import add_runs, two_releases

UPPER = Example(description="upper", input={"text": "a"}, output="A")
WRONG = Example(description="wrong on purpose", input={"text": "b"}, output="b")


def shout(root: Path, *examples: Example, body: str = "return text.upper()") -> None:
    write_code(root, "shout", body, examples=list(examples))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """``shout``, committed with one passing example, never released."""
    root = make_repo(tmp_path)
    shout(root, UPPER)
    commit_all(root, "feat: shout")
    return root


def tags(root: Path) -> list[str]:
    return git(root, "tag", "-l").split()


def test_release_dry_run_then_release_records_the_gate_runs(repo: Path) -> None:
    seen: list[tuple[int, int, str]] = []
    with Registry.open(repo, auto_sync=False) as reg:
        (planned,) = reg.release(dry_run=True)
        assert (planned.version, planned.created) == ("1.0.0", False)
        assert tags(repo) == []
        (made,) = reg.release(["shout"], on_progress=lambda *p: seen.append(p))
        assert (made.tag, made.created, made.bump) == ("procedure-shout-v1.0.0", True, "initial")
        assert tags(repo) == ["procedure-shout-v1.0.0"]
        assert seen == [(1, 1, "shout")]
        assert reg.release() == []  # nothing changed since
        # the gate ran the example in the sandbox: that run is recorded, as 'release'
        stats = reg.metrics("shout")
        assert stats.runs == 1 and stats.callers == {"release": 1}


def test_release_refused_by_a_failing_example_tags_nothing(repo: Path) -> None:
    shout(repo, UPPER, WRONG)
    commit_all(repo, "test: a wrong example")
    with Registry.open(repo, auto_sync=False) as reg:
        (refused,) = reg.release(["shout"])
        assert refused.refused is not None and not refused.created
        assert "wrong on purpose" in refused.refused.message
        assert refused.refused.example is not None
        assert refused.refused.example["got"] == "B"
        assert tags(repo) == []
        assert reg.metrics("shout").runs == 2  # both example runs are recorded anyway
        (made,) = reg.release(["shout"], run_examples=False)
        assert made.version == "1.0.0"


def test_test_runs_the_examples_without_recording(repo: Path) -> None:
    shout(repo, UPPER, WRONG)
    commit_all(repo, "test: a wrong example")
    with Registry.open(repo, auto_sync=False) as reg:
        report = reg.test("shout", "HEAD")
        assert report.id == "shout" and report.version is None and not report.ok
        assert [e.ok for e in report.examples] == [True, False]
        assert report.examples[1].got == "B"
        assert reg.metrics("shout").runs == 0
        with pytest.raises(NotFoundError):
            reg.test("nope")


def test_promote_moves_a_channel_once(repo: Path) -> None:
    with Registry.open(repo, auto_sync=False) as reg:
        reg.release(["shout"])
        move = reg.promote("shout", "1.0.0", "stable", reason="first")
        assert (move.version, move.created, move.reason) == ("1.0.0", True, "first")
        assert move.tag in tags(repo)
        again = reg.promote("shout", "1.0.0", "stable")
        assert (again.created, again.tag) == (False, move.tag)
        with pytest.raises(NotFoundError):
            reg.promote("shout", "9.9.9", "stable")
        reg.sync()
        assert reg.get("shout", "stable").version == "1.0.0"
        assert reg.config.health.channel == "stable"


def test_rollback_commits_releases_and_updates_the_checkout(repo: Path) -> None:
    main_py = repo / "procedures" / "shout" / "main.py"
    with Registry.open(repo, auto_sync=False) as reg:
        reg.release(["shout"])
        first = main_py.read_text()
        shout(repo, UPPER, body="return text.upper() + ''")
        commit_all(repo, "fix: the same, longer")
        (second,) = reg.release(["shout"])
        assert second.version == "1.0.1"
        left_alone: list[list[str]] = []
        result = reg.rollback(
            "shout", "1.0.0", reason="the old one was better", on_left_alone=left_alone.append
        )
    assert result.created and result.version == "1.0.2"
    assert result.tag == "procedure-shout-v1.0.2" and result.tag in tags(repo)
    assert any("rolls back to 1.0.0" in r for r in result.reasons)
    assert git(repo, "log", "-1", "--format=%s").strip() == "revert(shout): roll back to 1.0.0"
    assert main_py.read_text() == first  # the checkout follows the branch
    assert left_alone == [[]]


def test_health_applies_the_policy_and_lists_its_moves(tmp_path: Path) -> None:
    root = two_releases(tmp_path)

    async def go() -> None:
        async with await AsyncRegistry.open(root) as reg:
            await reg.promote("flaky", "1.0.0", "stable")
            await reg.promote("flaky", "1.0.1", "stable")
            await add_runs(reg.backend, "1.0.0", 20, 0)
            await add_runs(reg.backend, "1.0.1", 10, 10)
            assert await reg.health_moves() == []
            (would,) = await reg.health(["flaky"], dry_run=True)
            assert (would.to_version, would.applied) == ("1.0.0", False)
            assert await reg.health_moves(["flaky"]) == []
            (action,) = await reg.health()
            assert action.applied and action.to_version == "1.0.0"
            (move,) = await reg.health_moves()
            assert move.version == "1.0.0" and "below 0.90" in (move.reason or "")
            assert reg.config.health.enabled

    asyncio.run(go())


async def _unreachable() -> IndexBackend:
    raise IndexUnavailable("cannot reach the index (test)")


def _spool_one(root: Path, pid: str) -> None:
    """A run record written while the index was down: it waits in the spool."""

    async def go() -> None:
        recorder = RunRecorder(spool_path(GitStore.open(root)), connect=_unreachable, batch_size=1)
        await recorder.record(
            ExecutionRecord(
                run_id=uuid.uuid4().hex,
                id=pid,
                version="1.0.0",
                started_at=datetime.now(UTC),
                duration_ms=1.0,
                outcome="success",
                caller="offline",
            )
        )
        await recorder.close()

    asyncio.run(go())


def test_metrics_deliver_the_spooled_runs_first(repo: Path) -> None:
    _spool_one(repo, "shout")
    spool = spool_path(GitStore.open(repo))
    assert len(spooled_records(spool)) == 1
    with Registry.open(repo) as reg:
        stats = reg.metrics("shout")
        assert stats.runs == 1 and stats.callers == {"offline": 1}
        assert reg.metrics("shout").runs == 1  # delivered once, not twice
    assert spooled_records(spool) == []
