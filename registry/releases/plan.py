"""Release planning: which procedures changed since their latest release, and the bump each gets.

The impure half of :mod:`registry.core.versioning` (the bump decision): the
candidates' folders are compared with their latest release tags (one listing
of the tags, their ``Tree:`` trailers), the changed ones validated, and each
gets a :class:`ReleasePlan` from its diff and the messages of the commits
that touched its folder since (one walk for all of them,
:meth:`GitStore.folder_history`). Nothing is written here;
:mod:`registry.releases.release` tags the plans.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import semver
from pydantic import BaseModel, ConfigDict

from registry.core import tags
from registry.core.problems import Problem
from registry.core.snapshot import Snapshot
from registry.errors import NotFoundError, ValidationFailed
from registry.git.info import TagInfo
from registry.git.store import GitStore
from registry.releases.tagged import release_tree, releases

if TYPE_CHECKING:
    from registry.config import ValidationSection

# validation, versioning, specs and config are imported where they are used:
# `procreg log` and `procreg show` need none of them, and their pydantic
# models cost more to build than the rest of the command.

ReleaseBump = Literal["major", "minor", "patch", "initial"]
# Explicit ids up to this many are looked up by tag prefix; more (or
# --all-changed) list the release tags once.
PREFIX_LOOKUPS = 64


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
    lock: str | None = None
    """sha256 of the folder's ``pylock.toml`` (the tag's ``Lock:`` trailer), if it has one."""


class ReleaseView:
    """The latest release of each candidate, found with one listing of the tags.

    Planning 10,000 procedures would otherwise list 30,000 refs (or read
    every folder's tree) once per procedure.
    """

    def __init__(self, store: GitStore, ids: Collection[str] | None = None) -> None:
        self.store = store
        self._latest: dict[str, tuple[semver.Version, str]] = {}
        self._infos: dict[str, TagInfo | None] = {}
        self._ancestry: dict[tuple[str, str], bool] = {}
        self._targets: dict[str, str | None] = {}  # tag name -> ref target, when listed
        # the listing's highest tag name per id, and the tags' fingerprint before it
        self._listed: dict[str, str] | None = None
        self._fingerprint: tuple[object, ...] | None = None
        if ids is not None and len(ids) <= PREFIX_LOOKUPS:
            for proc_id in ids:
                found = releases(store, proc_id)
                if found:
                    version, info = found[0]
                    self._latest[proc_id] = (version, info.name)
                    self._infos[info.name] = info
        else:
            prefix = tags.TAGS_REF_PREFIX + tags.RELEASE_TAG_PREFIX
            self._fingerprint = store.tags_fingerprint()
            listed = store.refs_under(prefix)
            self._targets = {name.removeprefix(tags.TAGS_REF_PREFIX): t for name, t in listed}
            self._latest = tags.latest_release_tags(name for name, _ in listed)
            self._listed = {proc_id: name for proc_id, (_, name) in self._latest.items()}

    def latest(self, proc_id: str) -> tuple[semver.Version, TagInfo] | None:
        found = self._latest.get(proc_id)
        if found is None:
            return None
        if found[1] not in self._infos:
            self._infos[found[1]] = self._read_tag(found[1])
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

    def _read_tag(self, name: str) -> TagInfo | None:
        target = self._targets.get(name)
        return self.store.tag(name) if target is None else self.store.tag_at(name, target)

    def latest_names_now(self, ids: Sequence[str]) -> dict[str, str] | None:
        """``{id: its highest release tag name}`` as the tags are now, if no tag changed since
        this view listed them (the tags' fingerprint); ``None`` when that is not known."""
        if self._listed is None or self._fingerprint is None:
            return None
        if self.store.tags_fingerprint() != self._fingerprint:
            return None
        return {proc_id: self._listed[proc_id] for proc_id in ids if proc_id in self._listed}

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

    def _prime_ancestry(self, commit: str, released_at: Iterable[str]) -> None:
        """Answer :meth:`superseded` for many release commits with one walk from ``commit``.

        A release commit reachable from ``commit`` is its ancestor, so ``commit``
        cannot be a strict ancestor of it; the others are asked one by one later.
        """
        wanted = {r for r in released_at if r != commit and (commit, r) not in self._ancestry}
        if len(wanted) < 2:
            return
        for found in self.store.ancestors_among(commit, wanted):
            self._ancestry[(commit, found)] = False

    def _unchanged(self, trees: Mapping[str, str]) -> set[str]:
        """The candidates whose listed latest tag is a release of exactly their folder tree.

        The answer :meth:`changed` would reach for them, read from the raw tag
        objects (:meth:`GitStore.tag_messages`): no tagger, no commit parsed.
        Anything unusual is left out, for the full path.
        """
        targets: dict[str, str] = {}
        for proc_id in trees:
            found = self._latest.get(proc_id)
            if found is not None and found[1] not in self._infos:
                target = self._targets.get(found[1])
                if target is not None:
                    targets[proc_id] = target
        messages = self.store.tag_messages(targets.values())
        out = set()
        for proc_id, target in targets.items():
            quick = messages[target]
            if quick is None:
                continue
            if tags.release_tree(quick[1], proc_id, self._latest[proc_id][0]) == trees[proc_id]:
                out.add(proc_id)
        return out

    def changed(self, commit: str, trees: Mapping[str, str]) -> dict[str, str]:
        """The candidates whose folder differs from their latest release (or never released).

        Release trees come from the tags' ``Tree:`` trailers; only tags without
        one (hand-made) cost a tree read, one per tagged commit.
        """
        out: dict[str, str] = {}
        unknown: dict[str, list[str]] = {}
        differ: list[tuple[str, str, TagInfo, str | None]] = []
        unchanged = self._unchanged(trees)
        for proc_id, tree in trees.items():
            if proc_id in unchanged:
                continue  # the common case, without building the tag's TagInfo
            latest = self.latest(proc_id)
            if latest is None:
                out[proc_id] = tree
                continue
            version, info = latest
            released = tags.release_tree(info.message, proc_id, version)
            if released == tree:
                continue  # unchanged: no need to ask the commit graph about it
            differ.append((proc_id, tree, info, released))
        self._prime_ancestry(commit, (info.commit for _, _, info, _ in differ))
        for proc_id, tree, info, released in differ:
            if self.superseded(commit, info.commit):
                continue
            if released is None:
                unknown.setdefault(info.commit, []).append(proc_id)
            else:
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
    from registry.config import CONFIG_FILE, parse_config

    return parse_config(store.read_path(CONFIG_FILE, commit)).validation


# --- planning ------------------------------------------------------------------


def plan_one(
    store: GitStore,
    proc_id: str,
    commit: str,
    new_tree: str,
    view: ReleaseView | None = None,
    messages: Sequence[str] | None = None,
    snapshot: Snapshot | None = None,
) -> tuple[ReleasePlan, Snapshot] | None:
    """The release of ``proc_id`` at ``commit`` (folder tree ``new_tree``), or None if unchanged.

    ``messages`` are the commit messages since the latest release, and
    ``snapshot`` the folder at ``new_tree``, when the caller already has them
    (:func:`_folder_messages`, validation).
    """
    from registry.core.versioning import DiffStats, decide_bump, next_version

    view = view or ReleaseView(store, [proc_id])
    latest = view.latest(proc_id)
    new = snapshot if snapshot is not None else store.read_tree(proc_id, new_tree, commit)
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
        lock=_lock_hash(new),
    )
    return plan, new


def _lock_hash(snapshot: Snapshot) -> str | None:
    from registry.core.pylock import LOCK_FILE, lock_hash

    text = snapshot.text(LOCK_FILE)
    return lock_hash(text) if text is not None else None


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


def validate_snapshots(store: GitStore, snapshots: Iterable[Snapshot], commit: str) -> None:
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


def plan_changes(
    store: GitStore,
    ids: Sequence[str] | None,
    ref: str,
    all_changed: bool,
    *,
    validate: bool = True,
) -> list[tuple[ReleasePlan, Snapshot]]:
    return planned_changes(store, ids, ref, all_changed, validate=validate)[0]


def planned_changes(
    store: GitStore,
    ids: Sequence[str] | None,
    ref: str,
    all_changed: bool,
    *,
    validate: bool = True,
) -> tuple[list[tuple[ReleasePlan, Snapshot]], ReleaseView]:
    """:func:`plan_changes`, with the :class:`ReleaseView` of the tags it planned from."""
    commit = store.resolve(ref)
    candidates = _candidates(store, ids, commit, all_changed)
    view = ReleaseView(store, None if all_changed or not ids else candidates)
    changed = view.changed(commit, candidates)
    snapshots: dict[str, Snapshot] = {}
    if validate:
        snapshots = {pid: store.read_tree(pid, t, commit) for pid, t in changed.items()}
        validate_snapshots(store, snapshots.values(), commit)
    since: dict[str, str] = {}
    for pid in changed:
        latest = view.latest(pid)
        if latest is not None:
            since[pid] = latest[1].commit
    messages = _folder_messages(store, since, commit)
    out = []
    for pid, tree in changed.items():
        planned = plan_one(
            store, pid, commit, tree, view, messages.get(pid, []), snapshots.get(pid)
        )
        if planned is not None:
            out.append(planned)
    return out, view


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
    return [plan for plan, _ in plan_changes(store, ids, ref, all_changed)]


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
    return [plan for plan, _ in plan_changes(store, ids, head, False, validate=False)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(plans: Sequence[ReleasePlan] | None, problems: Sequence[Problem] = ()) -> str:
    """A pull-request comment: the bump each changed procedure would get and why, then
    the validation problems. Only those: no summary line (the exit code says it).
    """
    lines: list[str] = []
    if plans is not None:
        lines += _plans_markdown(plans)
    if problems:
        lines += ["" if lines else "### procreg", *([""] if lines else [])]
        lines += ["#### Validation problems", ""]
        for p in problems:
            where = f"{p.path}:{p.line}" if p.line is not None else p.path
            lines.append(f"- `{_code(where)}` **{p.rule}**: {_cell(p.message)}")
    return "\n".join(lines) + "\n" if lines else ""


def _plans_markdown(plans: Sequence[ReleasePlan]) -> list[str]:
    if not plans:
        return ["### procreg", "", "No procedure would be released by this change."]
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
    return lines


def _code(text: str) -> str:
    return text.replace("`", "'").replace("\n", " ")


__all__ = [
    "PREFIX_LOOKUPS",
    "ReleaseBump",
    "ReleasePlan",
    "check_base",
    "plan_changes",
    "plan_one",
    "plan_release",
    "planned_changes",
    "render_markdown",
    "validate_snapshots",
]
