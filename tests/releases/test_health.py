"""The health policy: the pure decision table, and channel moves in real repositories."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry.cli import main
from registry.config import Config, HealthSection
from registry.core.model import Parameter
from registry.git.store import GitStore
from registry.index.connect import open_backend
from registry.index.contract import ExecutionRecord, IndexBackend
from registry.releases import channels
from registry.releases.health import ChannelState, apply_policy, evaluate, health_moves
from registry.runs import execution
from registry.sandbox import Sandbox
from tests.helpers import commit_all, git, make_repo, release, run_cli, write_code

DEFAULT = HealthSection()


def flags(ok: int, bad: int) -> list[bool]:
    """Newest first: the failures are the most recent runs."""
    return [False] * bad + [True] * ok


def state(version: str | None, released: tuple[str, ...] = ("1.0.0", "1.1.0", "1.2.0")):
    return ChannelState(id="p", channel="stable", version=version, released=list(released))


@pytest.mark.parametrize(
    ("outcomes", "current", "config", "expected"),
    [
        # healthy current version: nothing to do
        ({"1.2.0": flags(20, 0)}, "1.2.0", DEFAULT, []),
        # exactly at the threshold is healthy (18/20 = 0.90)
        ({"1.2.0": flags(18, 2), "1.1.0": flags(20, 0)}, "1.2.0", DEFAULT, []),
        # too few runs to judge, however bad
        ({"1.2.0": flags(0, 9), "1.1.0": flags(20, 0)}, "1.2.0", DEFAULT, []),
        # bad: back to the most recent earlier healthy release
        (
            {"1.2.0": flags(14, 6), "1.1.0": flags(20, 0), "1.0.0": flags(20, 0)},
            "1.2.0",
            DEFAULT,
            [("move", "1.1.0")],
        ),
        # the previous release is itself bad: skip it
        (
            {"1.2.0": flags(5, 5), "1.1.0": flags(10, 10), "1.0.0": flags(19, 1)},
            "1.2.0",
            DEFAULT,
            [("move", "1.0.0")],
        ),
        # an earlier release with too few runs is not proven healthy
        ({"1.2.0": flags(5, 5), "1.1.0": flags(3, 0)}, "1.2.0", DEFAULT, [("stay", None)]),
        # only the last `window` runs count: old failures are forgotten
        ({"1.2.0": flags(20, 0) + [False] * 30, "1.1.0": flags(20, 0)}, "1.2.0", DEFAULT, []),
        # switched off
        ({"1.2.0": flags(0, 20), "1.1.0": flags(20, 0)}, "1.2.0", HealthSection(enabled=False), []),
        # no channel set
        ({"1.2.0": flags(0, 20)}, None, DEFAULT, []),
        # a stricter config
        (
            {"1.2.0": flags(9, 1), "1.1.0": flags(5, 0)},
            "1.2.0",
            HealthSection(window=10, min_runs=5, threshold=0.95),
            [("move", "1.1.0")],
        ),
        # later releases are never candidates
        ({"1.1.0": flags(0, 20), "1.2.0": flags(20, 0)}, "1.1.0", DEFAULT, [("stay", None)]),
    ],
)
def test_policy_decisions(outcomes, current, config, expected) -> None:
    actions = evaluate(outcomes, state(current), config)
    assert [(a.kind, a.to_version) for a in actions] == expected


def breaking_state(current: str, released: tuple[str, ...], breaking: tuple[str, ...]):
    return ChannelState(
        id="p", channel="stable", version=current, released=list(released), breaking=list(breaking)
    )


@pytest.mark.parametrize(
    ("outcomes", "current", "released", "breaking", "expected"),
    [
        # 1.2.0 broke callers of 1.1.0: never back across it, not even to a healthy 1.1.0;
        # the channel goes out of service instead
        ({"1.2.0": flags(0, 20), "1.1.0": flags(20, 0)}, "1.2.0", ("1.1.0", "1.2.0"),
         ("1.2.0",), [("out-of-service", None)]),
        # the breaking change was before the candidate: moving back is safe
        ({"1.3.0": flags(0, 20), "1.2.0": flags(20, 0)}, "1.3.0", ("1.1.0", "1.2.0", "1.3.0"),
         ("1.2.0",), [("move", "1.2.0")]),
        # the newest healthy one is beyond a break, an older one is not: no, both are beyond
        ({"1.3.0": flags(0, 20), "1.2.0": flags(20, 0), "1.1.0": flags(20, 0)}, "1.3.0",
         ("1.1.0", "1.2.0", "1.3.0"), ("1.3.0",), [("out-of-service", None)]),
        # an unhealthy release in between is skipped; the break is further back
        ({"1.4.0": flags(0, 20), "1.3.0": flags(0, 20), "1.2.0": flags(20, 0)}, "1.4.0",
         ("1.1.0", "1.2.0", "1.3.0", "1.4.0"), ("1.1.0",), [("move", "1.2.0")]),
        # another major version is another contract, whatever the trailers say
        ({"2.0.0": flags(0, 20), "1.9.0": flags(20, 0)}, "2.0.0", ("1.9.0", "2.0.0"), (),
         [("out-of-service", None)]),
        # before 1.0.0 a breaking change bumps the minor version: still never crossed
        ({"0.3.0": flags(0, 20), "0.2.1": flags(20, 0)}, "0.3.0", ("0.2.1", "0.3.0"),
         ("0.3.0",), [("out-of-service", None)]),
        # beyond the break nothing is proven healthy either: nothing known is better, stay
        ({"1.2.0": flags(0, 20), "1.1.0": flags(2, 0)}, "1.2.0", ("1.1.0", "1.2.0"),
         ("1.2.0",), [("stay", None)]),
        # a patch after a break, back to the break itself: fine
        ({"0.3.1": flags(0, 20), "0.3.0": flags(20, 0)}, "0.3.1", ("0.2.1", "0.3.0", "0.3.1"),
         ("0.3.0",), [("move", "0.3.0")]),
    ],
)  # fmt: skip
def test_policy_never_crosses_a_breaking_change(outcomes, current, released, breaking, expected):
    actions = evaluate(outcomes, breaking_state(current, released, breaking), DEFAULT)
    assert [(a.kind, a.to_version) for a in actions] == expected


def test_out_of_service_names_the_healthy_release_beyond_a_breaking_change() -> None:
    (action,) = evaluate(
        {"1.2.0": flags(0, 20), "1.1.0": flags(20, 0)},
        breaking_state("1.2.0", ("1.1.0", "1.2.0"), ("1.2.0",)),
        DEFAULT,
    )
    assert (action.kind, action.to_version) == ("out-of-service", None)
    assert "1.1.0 is healthy but 1.2.0 was a breaking change after it" in action.reason
    assert action.reason.endswith(
        "so stable is out of service rather than moved to another signature"
    )
    assert "; " not in action.reason  # one clause: it is quoted in a one-line error


def test_the_reason_says_rate_window_version_and_threshold() -> None:
    (action,) = evaluate({"1.2.0": flags(14, 6), "1.1.0": flags(20, 0)}, state("1.2.0"), DEFAULT)
    assert action.reason.startswith(
        "success rate 0.70 over the last 20 runs of 1.2.0 is below 0.90"
    )
    assert action.success_rate == pytest.approx(0.7) and action.runs == 20


# --------------------------------------------------------------------------- real repos


PARAMS = [Parameter(name="fail", type="boolean")]


def two_releases(tmp_path: Path) -> Path:
    """``flaky`` 1.0.0 (always works) and 1.1.0 (fails when asked to)."""
    root = make_repo(tmp_path / "repo")
    write_code(root, "flaky", "return 'ok'", PARAMS, signature="fail")
    commit_all(root, "feat: flaky")
    release(root, "flaky")
    write_code(
        root,
        "flaky",
        "if fail:\n    raise RuntimeError('broken')\nreturn 'ok v2'",
        PARAMS,
        signature="fail",
    )
    commit_all(root, "fix: new code path")
    assert release(root, "flaky") == "1.0.1"
    return root


async def add_runs(backend: IndexBackend, version: str, ok: int, bad: int) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    rows = []
    for i, good in enumerate([True] * ok + [False] * bad):
        rows.append(
            ExecutionRecord(
                run_id=uuid.uuid4().hex,
                id="flaky",
                version=version,
                started_at=start + timedelta(seconds=i),
                duration_ms=2.0,
                outcome="success" if good else "failure",
                error_type=None if good else "RuntimeError",
            )
        )
    await backend.record_executions(rows)


def test_apply_policy_moves_stable_back_with_the_reason_in_the_tag(tmp_path: Path) -> None:
    root = two_releases(tmp_path)
    store = GitStore.open(root)
    channels.promote(store, "flaky", "1.0.0", "stable")
    channels.promote(store, "flaky", "1.0.1", "stable")

    async def go():
        async with await open_backend(store) as backend:
            await add_runs(backend, "1.0.0", 20, 0)
            await add_runs(backend, "1.0.1", 14, 6)
            return await apply_policy(store, backend, "flaky", Config())

    (action,) = asyncio.run(go())
    assert action.applied and action.to_version == "1.0.0"
    assert str(channels.current_channel(store, "flaky", "stable")) == "1.0.0"
    message = git(root, "tag", "-l", "--format=%(contents)", action.tag or "")
    assert "success rate 0.70 over the last 20 runs of 1.0.1 is below 0.90" in message
    (move,) = health_moves(store, "flaky")
    assert move.version == "1.0.0" and "0.70" in (move.reason or "")


def test_apply_policy_does_nothing_when_switched_off(tmp_path: Path) -> None:
    root = two_releases(tmp_path)
    store = GitStore.open(root)
    channels.promote(store, "flaky", "1.0.1", "stable")
    off = Config(health=HealthSection(enabled=False))

    async def go():
        async with await open_backend(store) as backend:
            await add_runs(backend, "1.0.0", 20, 0)
            await add_runs(backend, "1.0.1", 0, 20)
            return await apply_policy(store, backend, "flaky", off)

    assert asyncio.run(go()) == []
    assert str(channels.current_channel(store, "flaky", "stable")) == "1.0.1"


def test_failing_runs_move_stable_back_automatically(tmp_path: Path) -> None:
    """Runs through the execution path; the policy acts when their records reach the index."""
    root = two_releases(tmp_path)
    (root / "procreg.toml").write_text("[health]\nwindow = 10\nmin_runs = 5\n")
    store = GitStore.open(root)
    channels.promote(store, "flaky", "1.0.0", "stable")

    async def go():
        recorder = execution.open_recorder(store, batch_size=1)
        try:
            with Sandbox(pool_size=1) as box:
                for _ in range(5):
                    r = await execution.run(
                        store, recorder, "flaky", "stable", {"fail": False}, sandbox=box
                    )
                    assert r.ok and r.version == "1.0.0"
                channels.promote(store, "flaky", "1.0.1", "stable")
                results = []
                for i in range(6):
                    results.append(
                        await execution.run(
                            store, recorder, "flaky", "stable", {"fail": i % 2 == 0}, sandbox=box
                        )
                    )
        finally:
            await recorder.close()
        return results, recorder.events

    results, events = asyncio.run(go())
    assert results[0].version == "1.0.1" and results[0].error is not None
    assert results[0].error.type == "RuntimeError"
    # after the fifth run of 1.0.1 (3 failures of 5) the policy moved stable back
    assert results[-1].version == "1.0.0" and results[-1].ok
    assert str(channels.current_channel(store, "flaky", "stable")) == "1.0.0"
    assert any(getattr(e, "applied", False) for e in events)

    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["-C", str(root), "health", "flaky", "--json"]) == 0
    data = json.loads(out.getvalue())
    assert data["enabled"] is True
    (move,) = data["moves"]
    assert move["version"] == "1.0.0" and "below 0.90" in move["reason"]


def test_cli_health_apply(tmp_path: Path, capsys) -> None:
    root = two_releases(tmp_path)
    store = GitStore.open(root)
    channels.promote(store, "flaky", "1.0.0", "stable")
    channels.promote(store, "flaky", "1.0.1", "stable")

    async def seed():
        async with await open_backend(store) as backend:
            await add_runs(backend, "1.0.0", 20, 0)
            await add_runs(backend, "1.0.1", 10, 10)

    asyncio.run(seed())
    listed = run_cli(capsys, "-C", str(root), "health")
    assert listed.code == 0 and "no channel moves" in listed.out
    applied = run_cli(capsys, "-C", str(root), "health", "--apply")
    assert applied.code == 0 and "moved flaky stable" in applied.out
    assert str(channels.current_channel(store, "flaky", "stable")) == "1.0.0"
    again = run_cli(capsys, "-C", str(root), "health", "--json").json()
    assert [m["version"] for m in again["moves"]] == ["1.0.0"]
