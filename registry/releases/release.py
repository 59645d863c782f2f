"""Releases: tagging the planned versions of procedure folders, and rollback.

The impure layer over :mod:`registry.core.versioning` (the bump decision) and
:mod:`registry.core.tags` (the tag grammar): it reads folders and tags through the
git store and creates annotated tags. Tags are found by name prefix, never by
walking history, and are never moved or deleted: a rollback is a new commit
and a new release, a channel move is a new tag in the channel's own namespace.

Concurrency: releases are planned, then re-planned and tagged under the
repository's release lock (:meth:`GitStore.release_lock`, one ``flock``), so
the plan that is tagged always sees every tag made before it: two processes
releasing a commit and its descendant never tag the same folder contents
twice, and a release whose work another process did reports that process's
tags (``existing=True``) instead of failing. Each tag ref is created under
its own lock besides (never overwritten). Channel movers each get their own
sequence number. A rollback moves the branch by compare-and-swap.

Planning is :mod:`registry.releases.plan`, reading the release tags
:mod:`registry.releases.tagged`; history, resolve and diff live in
:mod:`registry.releases.history`, channels in :mod:`registry.releases.channels`.
This module builds on the first two and imports neither of the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import semver
from pydantic import BaseModel

from registry.core import tags
from registry.core.snapshot import Snapshot
from registry.errors import ConflictError, ExamplesFailed, LockedError, UsageError
from registry.git.store import GitStore
from registry.releases.plan import (
    PREFIX_LOOKUPS,
    ReleasePlan,
    ReleaseView,
    plan_one,
    planned_changes,
    validate_snapshots,
)
from registry.releases.tagged import (
    latest_release,
    parse_version,
    release_of,
    release_tree,
    releases,
)


class Refusal(BaseModel):
    """Why one planned version was not tagged: its examples fail.

    ``message`` is the one line a person reads (it names the first failing
    example: description, input, expected, got); ``example`` is that example
    as JSON (``index``, ``description``, ``input``, ``expected``, ``got``,
    ``error``); ``failing`` counts the failing examples.
    """

    message: str
    example: dict[str, Any] | None = None
    failing: int = 1


class ReleaseResult(ReleasePlan):
    """A release made (or, on a dry run, the one that would be made), or refused.

    ``existing``: another process released this folder while this call waited
    for the release lock; ``tag`` and ``version`` are that release (``created``
    is False). ``refused``: the version's examples fail, so it was not tagged
    (``created`` is False; ``tag`` and ``version`` are what it would have been).
    """

    created: bool = True
    tag_id: str | None = None
    existing: bool = False
    refused: Refusal | None = None


BeforeTag = Callable[[ReleasePlan, Snapshot], None]
"""Called for every plan before its tag is made. Raising :class:`ExamplesFailed`
refuses that plan alone (it is reported with ``refused``; the others are tagged);
raising any other error refuses the whole release before any tag is made."""

Progress = Callable[[int, int, str], None]
"""``(done, total, procedure id)`` after each tag."""


# --- releasing -----------------------------------------------------------------


def _message(plan: ReleasePlan) -> str:
    from registry.core.versioning import BumpDecision, DiffStats

    decision = BumpDecision(bump=plan.bump, breaking=plan.breaking, reasons=plan.reasons)
    stats = DiffStats(
        lines_added=plan.lines_added,
        lines_removed=plan.lines_removed,
        files_changed=plan.files_changed,
    )
    previous = semver.Version.parse(plan.previous) if plan.previous else None
    return tags.format_release_message(
        plan.id,
        semver.Version.parse(plan.version),
        decision,
        stats,
        previous,
        plan.tree_id,
        lock=plan.lock,
    )


def release(
    store: GitStore,
    ids: Sequence[str] | None = None,
    ref: str = "HEAD",
    all_changed: bool = False,
    dry_run: bool = False,
    on_progress: Progress | None = None,
    before_tag: BeforeTag | None = None,
    extra_reasons: Mapping[str, Sequence[str]] | None = None,
) -> list[ReleaseResult]:
    """Tag every changed procedure at ``ref`` with its computed next version.

    Candidates and validation as in :func:`plan_release`; nothing changed gives
    ``[]``. Each tag is an annotated ``procedure-<id>-vX.Y.Z`` on the ref's
    commit whose message carries the bump, the reasons and the line counts as
    trailers. ``before_tag`` sees every plan before the first tag is made (on a
    dry run too; the execution layer runs examples there): a plan it refuses
    with :class:`ExamplesFailed` is returned with ``refused`` set and not
    tagged, and the others are tagged as if it were not there; any other error
    it raises refuses the whole release. Results follow the plans' order.
    ``extra_reasons`` adds reasons per id (a rollback says what it restores).
    Tags are made under the release lock after re-planning with the tags as
    they are then: if another process released the same folder meanwhile, its
    release is returned with ``existing=True`` (nothing is tagged twice); if it
    released another version first, the version is recomputed. An existing tag
    is never overwritten.
    """
    planned, view = planned_changes(store, ids, ref, all_changed)
    extra = extra_reasons or {}
    planned = [
        (plan.model_copy(update={"reasons": [*extra.get(plan.id, ()), *plan.reasons]}), snap)
        for plan, snap in planned
    ]
    refused: dict[str, ReleaseResult] = {}
    if before_tag is not None:
        for plan, snap in planned:
            refusal = _gate(before_tag, plan, snap)
            if refusal is not None:
                refused[plan.id] = _refused(plan, refusal)
    if dry_run:
        return [
            refused.get(plan.id) or ReleaseResult(**plan.model_dump(), created=False)
            for plan, _ in planned
        ]
    to_tag = [(plan, snap) for plan, snap in planned if plan.id not in refused]
    made: dict[str, ReleaseResult] = {}
    if to_tag:
        with store.release_lock():
            latest_now = _latest_tag_names(store, view, [plan.id for plan, _ in to_tag])
            for done, (plan, snap) in enumerate(to_tag, start=1):
                reasons = extra.get(plan.id, ())
                if latest_now.get(plan.id) == plan.previous_tag:
                    # nobody released it since it was planned: the plan still holds
                    made[plan.id] = _tag_or_replan(store, plan, snap, before_tag, reasons)
                else:
                    made[plan.id] = _create(store, plan, snap, before_tag, reasons)
                if on_progress is not None:
                    on_progress(done, len(to_tag), plan.id)
    return [refused.get(plan.id) or made[plan.id] for plan, _ in planned]


def _gate(before_tag: BeforeTag, plan: ReleasePlan, snap: Snapshot) -> Refusal | None:
    """Run ``before_tag`` on one plan: None if it may be tagged, else why not."""
    try:
        before_tag(plan, snap)
    except ExamplesFailed as exc:
        return _refusal(exc)
    return None


def _refusal(exc: ExamplesFailed) -> Refusal:
    report = exc.report
    dumped = report.model_dump(mode="json") if isinstance(report, BaseModel) else {}
    failed = [e for e in dumped.get("examples", []) if not e.get("ok")]
    return Refusal(message=str(exc), example=failed[0] if failed else None, failing=len(failed))


def _refused(plan: ReleasePlan, refusal: Refusal) -> ReleaseResult:
    return ReleaseResult(**plan.model_dump(), created=False, refused=refusal)


def _latest_tag_names(store: GitStore, view: ReleaseView, ids: Sequence[str]) -> dict[str, str]:
    """``{id: name of its highest release tag}``, read again (one listing, or one prefix each).

    The plan's own listing answers when no tag was created, deleted or moved since
    (:meth:`ReleaseView.latest_names_now`).
    """
    unchanged = view.latest_names_now(ids)
    if unchanged is not None:
        return unchanged
    if len(ids) <= PREFIX_LOOKUPS:
        names: list[str] = []
        for proc_id in ids:
            names += store.ref_names(tags.TAGS_REF_PREFIX + tags.release_tag_prefix(proc_id))
    else:
        names = store.ref_names(tags.TAGS_REF_PREFIX + tags.RELEASE_TAG_PREFIX)
    wanted = set(ids)
    return {
        proc_id: name
        for proc_id, (_, name) in tags.latest_release_tags(names).items()
        if proc_id in wanted
    }


def _tag_or_replan(
    store: GitStore,
    plan: ReleasePlan,
    snap: Snapshot,
    before_tag: BeforeTag | None,
    extra: Sequence[str],
) -> ReleaseResult:
    try:
        info = store.create_tag(plan.tag, plan.commit, _message(plan))
    except LockedError:
        raise
    except ConflictError:  # made meanwhile by something that is not a procreg release
        return _create(store, plan, snap, before_tag, extra)
    return ReleaseResult(**plan.model_dump(), created=True, tag_id=info.tag_id)


def _create(
    store: GitStore,
    plan: ReleasePlan,
    snap: Snapshot,
    before_tag: BeforeTag | None,
    extra: Sequence[str],
) -> ReleaseResult:
    """Re-plan ``plan`` with the tags as they are now and tag it (under the release lock).

    If another process released the folder meanwhile, the result is that
    release (``existing=True``); if it released another version first, the
    plan's version and reasons are recomputed (``before_tag`` sees the new plan).
    """
    again = plan_one(store, plan.id, plan.commit, plan.tree_id)
    if again is None:
        return _existing(store, plan)
    fresh, fresh_snap = again
    if fresh.version != plan.version or fresh.previous_tag != plan.previous_tag:
        plan = fresh.model_copy(update={"reasons": [*extra, *fresh.reasons]})
        if before_tag is not None:
            refusal = _gate(before_tag, plan, fresh_snap)
            if refusal is not None:
                return _refused(plan, refusal)
    info = store.create_tag(plan.tag, plan.commit, _message(plan))
    return ReleaseResult(**plan.model_dump(), created=True, tag_id=info.tag_id)


def _existing(store: GitStore, plan: ReleasePlan) -> ReleaseResult:
    """The release another process made of ``plan``'s folder (or that superseded it)."""
    latest = latest_release(store, plan.id)
    if latest is None:  # cannot happen under the lock: a re-plan found a release
        raise ConflictError(f"{store.name}: the releases of {plan.id} changed meanwhile; retry")
    version, info = latest
    for candidate, tagged in releases(store, plan.id):
        if release_tree(store, plan.id, candidate, tagged) == plan.tree_id:
            version, info = candidate, tagged
            break
    return ReleaseResult(
        **plan.model_dump(exclude={"version", "tag", "commit"}),
        version=str(version),
        tag=info.name,
        commit=info.commit,
        created=False,
        existing=True,
        tag_id=info.tag_id,
    )


# --- rollback ------------------------------------------------------------------


def rollback(
    store: GitStore,
    proc_id: str,
    to_version: str,
    branch: str | None = None,
    reason: str | None = None,
) -> ReleaseResult:
    """Restore ``to_version``'s folder in a new commit on ``branch`` and release it.

    The commit (``revert(<id>): roll back to <version>`` with a
    ``Rollback-To:`` trailer) moves the branch by compare-and-swap; the
    release's bump is computed honestly against the latest release, so rolling
    a breaking 2.0.0 back to 1.4.0's code is itself breaking (3.0.0). No tag is
    moved or deleted. If the folder already equals that version and the latest
    release has that content too, there is nothing to do: :class:`UsageError`.
    If the folder equals it but is unreleased, no commit is made and the tip is
    released.
    """
    target_version = parse_version(to_version)
    info = release_of(store, proc_id, target_version)
    target = store.read(proc_id, info.commit)
    ref_name = store.branch_ref(branch)
    tip = store.resolve(ref_name)
    current = store.subtree_ids(tip, [proc_id])[proc_id]
    note = f"rolls back to {target_version}" + (f": {reason}" if reason else "")
    if current == target.tree_id:
        latest = latest_release(store, proc_id)
        if latest is not None and release_tree(store, proc_id, *latest) == current:
            raise UsageError(
                f"{proc_id} is already at {target_version}'s code and released as "
                f"{latest[0]}; nothing to roll back"
            )
        commit = tip
    else:
        validate_snapshots(store, [target], tip)
        body = f"\n\n{reason}" if reason else ""
        message = (
            f"revert({proc_id}): roll back to {target_version}{body}\n\n"
            f"Rollback-To: {target_version}\n"
        )
        commit = store.write(
            {proc_id: dict(target.files)}, message, branch=ref_name, expected_tip=tip
        )
    results = release(store, [proc_id], ref=commit, extra_reasons={proc_id: [note]})
    if not results:
        raise UsageError(f"{proc_id}: the rollback commit {commit[:12]} needs no release")
    return results[0]


__all__ = [
    "BeforeTag",
    "Progress",
    "Refusal",
    "ReleaseResult",
    "release",
    "rollback",
]
