"""The sync planner as a table: what the index holds and what git says -> kind and reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from registry.config import ValidationSection
from registry.index.contract import SyncState
from registry.index.plan import SyncInputs, plan_sync

A = "a" * 40
B = "b" * 40
RULES = ValidationSection()
STRICTER = ValidationSection(max_files=4)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def state(commit: str | None, digest: str | None = "d1") -> SyncState:
    return SyncState(ref="refs/heads/main", commit=commit, tags_digest=digest, synced_at=NOW)


ROWS = [
    # (name, stored state, commit, digest, descends, rules before, rules now, full)
    #   -> (kind, reason fragment, tags_changed)
    ("full asked", state(A), A, "d1", True, RULES, RULES, True, "rebuild", "full rebuild", False),
    ("no state", None, A, "d1", None, RULES, RULES, False, "rebuild", "no commit yet", False),
    (
        "state without commit",
        state(None),
        A,
        "d1",
        None,
        RULES,
        RULES,
        False,
        "rebuild",
        "no commit",
        False,
    ),
    (
        "rewritten",
        state(A),
        B,
        "d1",
        False,
        RULES,
        RULES,
        False,
        "rebuild",
        "does not descend",
        False,
    ),
    (
        "rules changed",
        state(A),
        B,
        "d1",
        True,
        RULES,
        STRICTER,
        False,
        "rebuild",
        "[validation]",
        False,
    ),
    (
        "rules changed, same commit",
        state(A),
        A,
        "d1",
        True,
        STRICTER,
        RULES,
        False,
        "rebuild",
        "[validation]",
        False,
    ),
    ("up to date", state(A), A, "d1", True, RULES, RULES, False, "noop", "as indexed", False),
    (
        "tags moved",
        state(A),
        A,
        "d2",
        True,
        RULES,
        RULES,
        False,
        "incremental",
        "tags changed",
        True,
    ),
    (
        "never listed tags",
        state(A, None),
        A,
        "d1",
        True,
        RULES,
        RULES,
        False,
        "incremental",
        "tags",
        True,
    ),
    (
        "new commit",
        state(A),
        B,
        "d1",
        True,
        RULES,
        RULES,
        False,
        "incremental",
        "new commits",
        False,
    ),
    (
        "new commit and tags",
        state(A),
        B,
        "d2",
        True,
        RULES,
        RULES,
        False,
        "incremental",
        "and the tags",
        True,
    ),
]


@pytest.mark.parametrize(
    ("stored", "commit", "digest", "descends", "before", "now", "full", "kind", "reason", "tags"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_plan_sync(
    stored: SyncState | None,
    commit: str,
    digest: str,
    descends: bool | None,
    before: ValidationSection,
    now: ValidationSection,
    full: bool,
    kind: str,
    reason: str,
    tags: bool,
) -> None:
    plan = plan_sync(
        SyncInputs(
            state=stored,
            commit=commit,
            tags_digest=digest,
            descends=descends,
            rules_before=before,
            rules_now=now,
            full=full,
        )
    )
    assert (plan.kind, plan.tags_changed) == (kind, tags)
    assert reason in plan.reason
