"""The sync planner as a table: what the index holds and what git says -> kind and reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from registry.config import ValidationSection
from registry.index.contract import SyncState
from registry.index.plan import SyncInputs, plan_sync

A = "a" * 40
B = "b" * 40
STRICTER = ValidationSection(max_files=4)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def state(commit: str | None, digest: str | None = "d1") -> SyncState:
    return SyncState(ref="refs/heads/main", commit=commit, tags_digest=digest, synced_at=NOW)


def row(name: str, expect: tuple[str, str, bool], **inputs: Any) -> Any:
    """One case: the index at A with digest d1 and git at A with d1 and the same rules,
    but for ``inputs``; ``expect`` is (kind, a fragment of the reason, tags_changed)."""
    given: dict[str, Any] = {
        "state": state(A),
        "commit": A,
        "tags_digest": "d1",
        "descends": True,
        "rules_before": ValidationSection(),
        "rules_now": ValidationSection(),
        "full": False,
    }
    return pytest.param(SyncInputs(**(given | inputs)), expect, id=name)


ROWS = [
    row("full asked", ("rebuild", "full rebuild", False), full=True, descends=None),
    row("no state", ("rebuild", "no commit yet", False), state=None, descends=None),
    row("state without commit", ("rebuild", "no commit", False), state=state(None), descends=None),
    row("rewritten", ("rebuild", "does not descend", False), commit=B, descends=False),
    row("rules changed", ("rebuild", "[validation]", False), commit=B, rules_now=STRICTER),
    row("rules changed, same commit", ("rebuild", "[validation]", False), rules_before=STRICTER),
    row("up to date", ("noop", "as indexed", False)),
    row("tags moved", ("incremental", "tags changed", True), tags_digest="d2"),
    row("tags never listed", ("incremental", "tags changed", True), state=state(A, None)),
    row("new commit", ("incremental", "new commits", False), commit=B),
    row("new commit and tags", ("incremental", "and the tags", True), commit=B, tags_digest="d2"),
]


@pytest.mark.parametrize(("inputs", "expect"), ROWS)
def test_plan_sync(inputs: SyncInputs, expect: tuple[str, str, bool]) -> None:
    kind, reason, tags_changed = expect
    plan = plan_sync(inputs)
    assert (plan.kind, plan.tags_changed) == (kind, tags_changed)
    assert reason in plan.reason
