"""What a sync has to do, decided from what it read: nothing, the change, or everything.

:func:`plan_sync` is pure: :func:`registry.index.sync.sync` reads the index's
stored state, the tracked commit, the tag digest and the validation rules, and
this says which of the three kinds of sync applies and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from registry.config import ValidationSection
from registry.index.contract import SyncState

PlanKind = Literal["noop", "incremental", "rebuild"]


@dataclass(frozen=True)
class SyncPlan:
    """The kind of sync to run, the reason, and (incremental) whether the tags need listing."""

    kind: PlanKind
    reason: str
    tags_changed: bool = False


@dataclass(frozen=True)
class SyncInputs:
    """What a sync compares: the index's state against git now.

    ``descends`` is whether the indexed commit is an ancestor of (or is) ``commit``;
    ``None`` when the index holds no commit (or a full rebuild was asked for).
    ``rules_before`` and ``rules_now`` are the ``[validation]`` sections at the
    indexed commit and at ``commit``.
    """

    state: SyncState | None
    commit: str
    tags_digest: str
    descends: bool | None
    rules_before: ValidationSection
    rules_now: ValidationSection
    full: bool = False


def plan_sync(inputs: SyncInputs) -> SyncPlan:
    """Rebuild when asked, when the index is empty, when history was rewritten or the
    validation rules changed; else nothing when commit and tags are as indexed; else
    apply the difference."""
    state = inputs.state
    previous = state.commit if state is not None else None
    if inputs.full:
        return SyncPlan("rebuild", "a full rebuild was asked for")
    if previous is None:
        return SyncPlan("rebuild", "the index holds no commit yet")
    if not inputs.descends:
        return SyncPlan(
            "rebuild",
            f"{inputs.commit[:12]} does not descend from the indexed {previous[:12]} "
            "(history rewritten or another branch)",
        )
    if inputs.rules_now != inputs.rules_before:
        return SyncPlan("rebuild", "the [validation] config changed")
    assert state is not None
    tags_changed = state.tags_digest != inputs.tags_digest
    if previous == inputs.commit and not tags_changed:
        return SyncPlan("noop", "the commit and the tags are as indexed")
    if previous == inputs.commit:
        return SyncPlan("incremental", "the tags changed", tags_changed=True)
    reason = f"new commits since {previous[:12]}" + (
        ", and the tags changed" if tags_changed else ""
    )
    return SyncPlan("incremental", reason, tags_changed=tags_changed)
