"""Releases: computed semver tags on procedure folders, their history, rollback and channels.

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

Reading the release tags is :mod:`registry.releases.tagged`; history, resolve and
diff live in :mod:`registry.releases.history`, channels in
:mod:`registry.releases.channels`. This module builds on the first and imports
neither of the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import semver
from pydantic import BaseModel, ConfigDict

from registry.core import tags
from registry.core.snapshot import Snapshot
from registry.errors import (
    ConflictError,
    LockedError,
    NotFoundError,
    UsageError,
    ValidationFailed,
)
from registry.git.info import TagInfo
from registry.git.store import GitStore
from registry.releases.tagged import (
    latest_release,
    parse_version,
    release_of,
    release_tree,
    releases,
)

if TYPE_CHECKING:
    from registry.config import ValidationSection

log = logging.getLogger(__name__)

# validation, versioning, specs and config are imported where they are used:
# `procreg log` and `procreg show` need none of them, and their pydantic
# models cost more to build than the rest of the command.

ReleaseBump = Literal["major", "minor", "patch", "initial"]
CONFIG_PATH = "procreg.toml"
# Explicit ids up to this many are looked up by tag prefix; more (or
# --all-changed) list the release tags once.
_PREFIX_LOOKUPS = 64


class ReleasePlan(BaseModel):
    """The release one procedure would get: its next version and why."""

    model_config = ConfigDict(defer_build=True)

    id: str
    version: str
    previous: str | None
    bump: ReleaseBump
    tag: str
    commit: str
    lines_added: int
    lines_removed: int
    reasons: list[str]
    breaking: bool
    files_changed: int = 0
    tree_id: str = ""
    previous_tag: str | None = None


class ReleaseResult(ReleasePlan):
    """A release made (or, on a dry run, the one that would be made).

    ``existing``: another process released this folder while this call waited
    for the release lock; ``tag`` and ``version`` are that release (``created``
    is False).
    """

    created: bool = True
    tag_id: str | None = None
    existing: bool = False


BeforeTag = Callable[[ReleasePlan, Snapshot], None]
"""Called for every plan before any tag is made; raise a RegistryError to refuse the release."""

Progress = Callable[[int, int, str], None]
"""``(done, total, procedure id)`` after each tag."""


class _View:
    """The latest release of each candidate, found with one listing of the tags.

    Planning 10,000 procedures would otherwise list 30,000 refs (or read
    every folder's tree) once per procedure.
    """

    def __init__(self, store: GitStore, ids: Collection[str] | None = None) -> None:
        self.store = store
        self._latest: dict[str, tuple[semver.Version, str]] = {}
        self._infos: dict[str, TagInfo | None] = {}
        self._ancestry: dict[tuple[str, str], bool] = {}
        if ids is not None and len(ids) <= _PREFIX_LOOKUPS:
            for proc_id in ids:
                found = releases(store, proc_id)
                if found:
                    version, info = found[0]
                    self._latest[proc_id] = (version, info.name)
                    self._infos[info.name] = info
        else:
            prefix = tags.TAGS_REF_PREFIX + tags.RELEASE_TAG_PREFIX
            self._latest = tags.latest_release_tags(store.ref_names(prefix))

    def latest(self, proc_id: str) -> tuple[semver.Version, TagInfo] | None:
        found = self._latest.get(proc_id)
        if found is None:
            return None
        if found[1] not in self._infos:
            self._infos[found[1]] = self.store.tag(found[1])
        info = self._infos[found[1]]
        if info is None:
            # the highest name tags no commit (a hand-made tag of a tree): skip it
            found_all = releases(self.store, proc_id)
            if not found_all:
                del self._latest[proc_id]
                return None
            version, info = found_all[0]
            self._latest[proc_id] = (version, info.name)
            self._infos[info.name] = info
            return version, info
        return found[0], info

    def superseded(self, commit: str, released_at: str) -> bool:
        """True when ``commit`` is a strict ancestor of ``released_at`` (a later release's commit).

        Releasing it would tag older contents over a newer release: a commit and
        its descendant released at once must not tag the same contents twice.
        """
        if commit == released_at:
            return False
        key = (commit, released_at)
        if key not in self._ancestry:
            self._ancestry[key] = self.store.is_ancestor(commit, released_at)
        return self._ancestry[key]

    def changed(self, commit: str, trees: Mapping[str, str]) -> dict[str, str]:
        """The candidates whose folder differs from their latest release (or never released).

        Release trees come from the tags' ``Tree:`` trailers; only tags without
        one (hand-made) cost a tree read, one per tagged commit.
        """
        out: dict[str, str] = {}
        unknown: dict[str, list[str]] = {}
        for proc_id, tree in trees.items():
            latest = self.latest(proc_id)
            if latest is None:
                out[proc_id] = tree
                continue
            version, info = latest
            if self.superseded(commit, info.commit):
                continue
            released = tags.release_tree(info.message, proc_id, version)
            if released is None:
                unknown.setdefault(info.commit, []).append(proc_id)
            elif released != tree:
                out[proc_id] = tree
        for tagged, ids in unknown.items():
            for proc_id, released_tree in self.store.subtree_ids(tagged, ids).items():
                if released_tree != trees[proc_id]:
                    out[proc_id] = trees[proc_id]
        return {proc_id: out[proc_id] for proc_id in trees if proc_id in out}


def _folder_messages(store: GitStore, since: Mapping[str, str], until: str) -> dict[str, list[str]]:
    """Per id, the messages of the commits in ``since[id]..until`` that changed its folder.

    Newest first; one walk of the commit graph for every id at once
    (:meth:`GitStore.folder_history`).
    """
    found = store.folder_history(dict(since), until)
    return {proc_id: [c.message for c in commits] for proc_id, commits in found.items()}


def _validation_config(store: GitStore, commit: str) -> ValidationSection:
    from registry.config import parse_config

    return parse_config(store.read_path(CONFIG_PATH, commit)).validation


# --- planning ------------------------------------------------------------------


def _plan_one(
    store: GitStore,
    proc_id: str,
    commit: str,
    new_tree: str,
    view: _View | None = None,
    messages: Sequence[str] | None = None,
) -> tuple[ReleasePlan, Snapshot] | None:
    """The release of ``proc_id`` at ``commit`` (folder tree ``new_tree``), or None if unchanged.

    ``messages`` are the commit messages since the latest release, when the
    caller already gathered them (:func:`_folder_messages`).
    """
    from registry.core.versioning import DiffStats, decide_bump, next_version

    view = view or _View(store, [proc_id])
    latest = view.latest(proc_id)
    new = store.read_tree(proc_id, new_tree, commit)
    if latest is None:
        added, removed, nfiles = store.diff_stats(None, new_tree)
        stats = DiffStats(lines_added=added, lines_removed=removed, files_changed=nfiles)
        decision = decide_bump(None, new, stats, [])
        previous, previous_tag = None, None
    else:
        previous, tag = latest
        previous_tag = tag.name
        old_tree = release_tree(store, proc_id, previous, tag)
        if old_tree == new_tree or view.superseded(commit, tag.commit):
            return None
        old = (
            store.read_tree(proc_id, old_tree, tag.commit)
            if old_tree is not None
            else Snapshot(proc_id, {}, None, tag.commit, store.folder)
        )
        added, removed, nfiles = store.diff_stats(old_tree, new_tree)
        stats = DiffStats(lines_added=added, lines_removed=removed, files_changed=nfiles)
        if messages is None:
            messages = _folder_messages(store, {proc_id: tag.commit}, commit)[proc_id]
        decision = decide_bump(old, new, stats, messages)
    if decision.bump == "none":
        return None
    version = next_version(previous, decision.bump)
    plan = ReleasePlan(
        id=proc_id,
        version=str(version),
        previous=str(previous) if previous is not None else None,
        bump=decision.bump,
        tag=tags.release_tag(proc_id, version),
        commit=commit,
        lines_added=stats.lines_added,
        lines_removed=stats.lines_removed,
        files_changed=stats.files_changed,
        reasons=list(decision.reasons),
        breaking=decision.breaking,
        tree_id=new_tree,
        previous_tag=previous_tag,
    )
    return plan, new


def _candidates(
    store: GitStore, ids: Sequence[str] | None, commit: str, all_changed: bool
) -> dict[str, str]:
    """``{id: folder tree}`` of the procedures to consider at ``commit``."""
    if ids and not all_changed:
        wanted = list(dict.fromkeys(ids))
        trees = store.subtree_ids(commit, wanted)
        unknown = [pid for pid in wanted if trees[pid] is None]
        if unknown:
            raise NotFoundError(
                f"{store.name}: no procedure {', '.join(map(repr, unknown))} at {commit[:12]} "
                f"(no folder under {store.folder}/); `procreg list` shows what there is",
                kind="procedure",
                name=unknown[0],
            )
        return {pid: tree for pid, tree in trees.items() if tree is not None}
    return dict(sorted(store.tree_ids(commit).items()))


def _validate(store: GitStore, snapshots: Iterable[Snapshot], commit: str) -> None:
    from registry.core.problems import Problem
    from registry.core.validation import validate_snapshot

    config = _validation_config(store, commit)
    problems: list[Problem] = []
    bad: list[str] = []
    for snap in snapshots:
        result = validate_snapshot(snap, config)
        if not result.ok:
            bad.append(snap.id)
            problems.extend(result.problems)
    if bad:
        first = problems[0].format() if problems else "invalid"
        raise ValidationFailed(
            problems,
            f"nothing released: {len(bad)} procedure{'s' * (len(bad) > 1)} invalid "
            f"({', '.join(bad)}); first: {first}. Fix them (`procreg check` lists every "
            "problem) or release the others by id.",
        )


def _plan(
    store: GitStore,
    ids: Sequence[str] | None,
    ref: str,
    all_changed: bool,
    *,
    validate: bool = True,
) -> list[tuple[ReleasePlan, Snapshot]]:
    commit = store.resolve(ref)
    candidates = _candidates(store, ids, commit, all_changed)
    view = _View(store, None if all_changed or not ids else candidates)
    changed = view.changed(commit, candidates)
    if validate:
        _validate(store, (store.read_tree(pid, t, commit) for pid, t in changed.items()), commit)
    since: dict[str, str] = {}
    for pid in changed:
        latest = view.latest(pid)
        if latest is not None:
            since[pid] = latest[1].commit
    messages = _folder_messages(store, since, commit)
    out = []
    for pid, tree in changed.items():
        planned = _plan_one(store, pid, commit, tree, view, messages.get(pid, []))
        if planned is not None:
            out.append(planned)
    return out


def plan_release(
    store: GitStore,
    ids: Sequence[str] | None = None,
    ref: str = "HEAD",
    all_changed: bool = False,
) -> list[ReleasePlan]:
    """What :func:`release` would tag at ``ref``, without tagging.

    With ``ids``, only those procedures (each must exist at ``ref``:
    :class:`NotFoundError`); without, or with ``all_changed``, every procedure
    whose folder differs from its latest release, and every one never released.
    Every candidate that changed is validated first: one invalid procedure
    refuses the whole call with :class:`ValidationFailed` listing every problem.
    """
    return [plan for plan, _ in _plan(store, ids, ref, all_changed)]


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
        plan.id, semver.Version.parse(plan.version), decision, stats, previous, plan.tree_id
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
    trailers. ``before_tag`` sees every plan before the first tag is made and
    may raise to refuse the release (the execution layer runs examples there).
    ``extra_reasons`` adds reasons per id (a rollback says what it restores).
    Tags are made under the release lock after re-planning with the tags as
    they are then: if another process released the same folder meanwhile, its
    release is returned with ``existing=True`` (nothing is tagged twice); if it
    released another version first, the version is recomputed. An existing tag
    is never overwritten.
    """
    planned = _plan(store, ids, ref, all_changed)
    extra = extra_reasons or {}
    planned = [
        (plan.model_copy(update={"reasons": [*extra.get(plan.id, ()), *plan.reasons]}), snap)
        for plan, snap in planned
    ]
    if dry_run:
        return [ReleaseResult(**plan.model_dump(), created=False) for plan, _ in planned]
    if before_tag is not None:
        for plan, snap in planned:
            before_tag(plan, snap)
    results: list[ReleaseResult] = []
    if not planned:
        return results
    with store.release_lock():
        latest_now = _latest_tag_names(store, [plan.id for plan, _ in planned])
        for done, (plan, snap) in enumerate(planned, start=1):
            reasons = extra.get(plan.id, ())
            if latest_now.get(plan.id) == plan.previous_tag:
                # nobody released it since it was planned: the plan still holds
                results.append(_tag_or_replan(store, plan, snap, before_tag, reasons))
            else:
                results.append(_create(store, plan, snap, before_tag, reasons))
            if on_progress is not None:
                on_progress(done, len(planned), plan.id)
    return results


def _latest_tag_names(store: GitStore, ids: Sequence[str]) -> dict[str, str]:
    """``{id: name of its highest release tag}``, read again (one listing, or one prefix each)."""
    if len(ids) <= _PREFIX_LOOKUPS:
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
    again = _plan_one(store, plan.id, plan.commit, plan.tree_id)
    if again is None:
        return _existing(store, plan)
    fresh, fresh_snap = again
    if fresh.version != plan.version or fresh.previous_tag != plan.previous_tag:
        plan = fresh.model_copy(update={"reasons": [*extra, *fresh.reasons]})
        if before_tag is not None:
            before_tag(plan, fresh_snap)
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


# --- check --base --------------------------------------------------------------


def check_base(store: GitStore, base_ref: str, ref: str = "HEAD") -> list[ReleasePlan]:
    """The release each procedure changed since ``base_ref`` would get if ``ref`` were merged.

    Procedures are those whose folder differs between the merge base of the
    two refs and ``ref`` (what a pull request changes); each is compared with
    its latest release (``initial`` if none). Deleted procedures are skipped.
    Nothing is validated here (``procreg check`` does that).
    """
    head = store.resolve(ref)
    base = store.resolve(base_ref)
    start = store.merge_base(base, head) or base
    changed = store.changed_procedures(start, head)
    ids = sorted(pid for pid, (_, new) in changed.items() if new is not None)
    if not ids:
        return []
    return [plan for plan, _ in _plan(store, ids, head, False, validate=False)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(plans: Sequence[ReleasePlan]) -> str:
    """A pull-request comment: the bump each changed procedure would get, and why."""
    if not plans:
        return "### procreg\n\nNo procedure would be released by this change.\n"
    lines = [
        "### procreg: releases this change would make",
        "",
        "| procedure | current | next | bump | lines |",
        "|---|---|---|---|---|",
    ]
    for p in plans:
        bump = f"**{p.bump}** (breaking)" if p.breaking else p.bump
        lines.append(
            f"| `{p.id}` | {p.previous or '—'} | **{p.version}** | {bump} "
            f"| +{p.lines_added} −{p.lines_removed} |"
        )
    for p in plans:
        lines += ["", f"**`{p.id}`** {p.previous or 'new'} → {p.version}:", ""]
        lines += [f"- {_cell(reason)}" for reason in p.reasons] or ["- (no reason recorded)"]
    return "\n".join(lines) + "\n"


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
        _validate(store, [target], tip)
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
    "ReleasePlan",
    "ReleaseResult",
    "check_base",
    "plan_release",
    "release",
    "render_markdown",
    "rollback",
]
