"""Sync: bring the SQL index in line with git, incrementally, in one transaction.

A sync compares the commit the index last saw with the tracked ref's commit,
diffs only the ``procedures/`` subtrees whose ids changed, validates just
those folders, lists the release and channel tags (skipping them entirely when
their digest is unchanged) and hands the difference, with the new sync state,
to :meth:`IndexBackend.apply` as one transaction. So a sync killed at any
point leaves the previous state, and the next one converges; running it twice
changes nothing.

Incremental work stays proportional to the change: the ``procedures/`` trees
are compared as raw bytes against the previous sync's tree (kept in memory with
its entry offsets, see :mod:`registry.git.trees`), and the tag set is skipped
while its stat fingerprint holds.
After a rebuild the process hands its freed memory back to the OS.

A commit that does not descend from the indexed one (force-push, reset), a
branch switch, an empty index or a change of the ``[validation]`` config
(read from ``procreg.toml`` *at the indexed commit*, so the index is a
function of git alone) rebuilds everything.

A procedure that fails validation is recorded as invalid with its problems and
keeps its last valid indexed content; it never stops the others. A rebuild
finds that last valid content in the folder's history.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from registry.config import Config, config_at, tracked_ref, worktree_config
from registry.core.snapshot import Snapshot
from registry.core.tags import (
    CHANNEL_TAG_PREFIX,
    RELEASE_TAG_PREFIX,
    parse_channel_message,
    parse_channel_tag,
    parse_release_message,
    parse_release_tag,
    release_tag_prefix,
)
from registry.core.validation import ValidationResult, validate_snapshot
from registry.errors import GitError, IndexNotSynced, NotFoundError
from registry.git.info import TagInfo
from registry.git.store import GitStore
from registry.index.contract import (
    ChangeSet,
    ChannelMoveRecord,
    IndexBackend,
    ProcedureRecord,
    SyncState,
    VersionRecord,
    canonical_snapshot,
    placeholder,
)
from registry.index.drift import Drift, snapshot_drift
from registry.index.memory import release_memory
from registry.index.plan import SyncInputs, plan_sync

log = logging.getLogger(__name__)

OFF_LOOP_ABOVE = 32
"""Above this many changed folders, an incremental sync validates in a worker thread."""

HISTORY_LIMIT = 200
"""How many past commits of an invalid folder a rebuild searches for its last valid state."""


# --------------------------------------------------------------------------- results


class SyncReport(BaseModel):
    """What one sync did. Ids are sorted; tags are full tag names."""

    ref: str
    commit: str | None
    previous: str | None = None
    rebuilt: bool = False
    added: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
    invalid: list[str] = Field(default_factory=list)
    tags_added: list[str] = Field(default_factory=list)
    tags_removed: list[str] = Field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def changed(self) -> bool:
        """True when the sync wrote anything."""
        return bool(
            self.rebuilt
            or self.added
            or self.updated
            or self.deleted
            or self.invalid
            or self.tags_added
            or self.tags_removed
            or self.commit != self.previous
        )


# --------------------------------------------------------------------------- git side


def _ref_targets(store: GitStore) -> dict[str, str]:
    # One pass over the refs with their targets: the digest must notice a tag
    # re-pointed under the same name.
    prefixes = (f"refs/tags/{RELEASE_TAG_PREFIX}", f"refs/tags/{CHANNEL_TAG_PREFIX}")
    targets = store.ref_targets(prefixes)
    return {name[len("refs/tags/") :]: target for name, target in targets.items()}


# git_dir -> (stat fingerprint of the tag storage, digest of the tags then)
_DIGESTS: dict[str, tuple[tuple[Any, ...], str]] = {}


def _tag_fingerprint(store: GitStore) -> tuple[Any, ...] | None:
    """Changes whenever a tag does, so an unchanged one lets a sync skip listing 30,000 tags."""
    return store.tags_fingerprint()


def current_tags_digest(store: GitStore) -> tuple[str, dict[str, str] | None]:
    """The digest of the registry's tags, and their targets if they had to be listed."""
    fingerprint = _tag_fingerprint(store)
    key = str(store.git_dir)
    cached = _DIGESTS.get(key)
    if fingerprint is not None and cached is not None and cached[0] == fingerprint:
        return cached[1], None
    targets = _ref_targets(store)
    digest = tags_digest(targets)
    if fingerprint is not None:
        _DIGESTS[key] = (fingerprint, digest)
    return digest, targets


def tags_digest(targets: Mapping[str, str]) -> str:
    """sha1 of the sorted ``name target`` lines of the registry's tags."""
    h = hashlib.sha1(usedforsecurity=False)
    for name in sorted(targets):
        h.update(f"{name} {targets[name]}\n".encode())
    return h.hexdigest()


class _Trees:
    """Per-commit cache of ``procedures/`` subtree ids (tags often share commits)."""

    def __init__(self, store: GitStore) -> None:
        self.store = store
        self._cache: dict[str, dict[str, str]] = {}

    def subtree(self, commit: str, proc_id: str) -> str | None:
        trees = self._cache.get(commit)
        if trees is None:
            try:
                trees = self.store.tree_ids(commit)
            except NotFoundError:
                trees = {}
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[commit] = trees
        return trees.get(proc_id)


def version_record(info: TagInfo, proc_id: str, version: str, trees: _Trees) -> VersionRecord:
    """The index row of one release tag, its trailers read back from the message.

    The folder's tree comes from the ``Tree:`` trailer when the registry wrote
    the tag, else from the tagged commit (a hand-made tag).
    """
    msg = parse_release_message(info.message)
    return VersionRecord(
        id=proc_id,
        version=version,
        tag=info.name,
        commit=info.commit,
        tree_id=msg.tree or trees.subtree(info.commit, proc_id),
        tagger_name=info.tagger.name if info.tagger else None,
        tagger_email=info.tagger.email if info.tagger else None,
        tagged_at=info.tagger.when if info.tagger else None,
        bump=msg.bump,
        breaking=msg.breaking,
        lines_added=msg.lines_added,
        lines_removed=msg.lines_removed,
        reasons=list(msg.reasons),
        message=info.message,
    )


def channel_move(
    store: GitStore, info: TagInfo, proc_id: str, channel: str, seq: int
) -> ChannelMoveRecord | None:
    """The index row of one channel tag; ``None`` if its version cannot be told.

    The version is the ``Version:`` trailer; a hand-made tag without one points
    at the version of ``proc_id`` released on the same commit.
    """
    msg = parse_channel_message(info.message)
    version = str(msg.version) if msg.version is not None else None
    if version is None:
        for release in store.tags(release_tag_prefix(proc_id)):
            parsed = parse_release_tag(release.name)
            if parsed is not None and parsed[0] == proc_id and release.commit == info.commit:
                version = str(parsed[1])
                break
    if version is None:
        log.warning("channel tag %s names no version (no Version: trailer); not indexed", info.name)
        return None
    moved_by = None
    if info.tagger is not None:
        moved_by = f"{info.tagger.name} <{info.tagger.email}>"
    return ChannelMoveRecord(
        id=proc_id,
        channel=channel,
        seq=seq,
        version=version,
        tag=info.name,
        commit=info.commit,
        moved_by=moved_by,
        moved_at=info.tagger.when if info.tagger else None,
        action=msg.action,
        reason=msg.reason,
        out_of_service=msg.out_of_service,
    )


def tag_rows(
    store: GitStore,
    names: Iterable[str],
    trees: _Trees,
    targets: Mapping[str, str] | None = None,
) -> tuple[list[VersionRecord], list[ChannelMoveRecord]]:
    """Version and channel rows for the tags ``names`` (names that do not parse are skipped).

    ``targets`` (tag name -> object id, from one pass over the refs) saves a ref
    lookup per tag; a name missing from it is looked up.
    """
    versions: list[VersionRecord] = []
    moves: list[ChannelMoveRecord] = []
    for name in sorted(names):
        release = parse_release_tag(name)
        chan = parse_channel_tag(name) if release is None else None
        if release is None and chan is None:
            log.warning("tag %s is neither a release nor a channel tag; not indexed", name)
            continue
        target = targets.get(name) if targets is not None else None
        info = store.tag_at(name, target) if target is not None else store.tag(name)
        if info is None:
            continue
        if release is not None:
            versions.append(version_record(info, release[0], str(release[1]), trees))
        elif chan is not None:
            move = channel_move(store, info, *chan)
            if move is not None:
                moves.append(move)
    return versions, moves


# --------------------------------------------------------------------------- procedures


def procedure_record(result: ValidationResult, snap: Snapshot, commit: str) -> ProcedureRecord:
    """The index row of a valid procedure (metadata plus the entry point's docstring)."""
    meta = result.metadata
    assert meta is not None
    return ProcedureRecord(
        id=snap.id,
        name=meta.name,
        description=meta.description,
        category=meta.category,
        tags=list(meta.tags),
        status=meta.status,
        entry_point=meta.entry_point,
        parameters=[p.model_dump(mode="json") for p in meta.parameters],
        docstring=result.signature.docstring if result.signature else None,
        metadata=meta.model_dump(mode="json", by_alias=True),
        tree_id=snap.tree_id or "",
        commit=commit,
        valid=True,
        errors=[],
    )


def _errors(result: ValidationResult) -> list[str]:
    return [p.format() for p in result.problems] or ["invalid procedure"]


def _evaluate(
    store: GitStore, proc_id: str, tree_id: str, commit: str, config: Config
) -> ProcedureRecord | list[str]:
    """A valid record, or the errors that make the folder invalid."""
    try:
        snap = store.read_tree(proc_id, tree_id, commit)
        result = validate_snapshot(snap, config.validation)
    except Exception as exc:
        log.exception("validating %s/%s failed", store.folder, proc_id)
        return [f"{store.folder}/{proc_id}: internal-error: {type(exc).__name__}: {exc}"]
    if result.ok and result.metadata is not None:
        return procedure_record(result, snap, commit)
    return _errors(result)


def _last_valid(
    store: GitStore, proc_id: str, bad_tree: str, commit: str, config: Config
) -> ProcedureRecord | None:
    """The newest valid state of a folder in the history of ``commit`` (rebuilds only)."""
    try:
        history = store.folder_commits(proc_id, commit)
    except Exception:
        log.exception("reading the history of %s failed", proc_id)
        return None
    seen = {bad_tree}
    for info in history[:HISTORY_LIMIT]:
        tree = _Trees(store).subtree(info.id, proc_id)
        if tree is None or tree in seen:
            continue
        seen.add(tree)
        found = _evaluate(store, proc_id, tree, info.id, config)
        if isinstance(found, ProcedureRecord):
            return found
    return None


def _invalid_row(
    store: GitStore, proc_id: str, tree: str, commit: str, config: Config, errors: list[str]
) -> ProcedureRecord | None:
    previous = _last_valid(store, proc_id, tree, commit, config)
    if previous is None:
        return None
    return previous.model_copy(update={"valid": False, "errors": errors})


# --------------------------------------------------------------------------- sync


def _full_changes(
    store: GitStore, ref: str, commit: str, config: Config, targets: Mapping[str, str]
) -> ChangeSet:
    """Everything git says the index should hold at ``commit`` (a rebuild's change set)."""
    changes = ChangeSet(ref=ref, commit=commit, tags_digest=tags_digest(targets), full=True)
    for proc_id, tree in sorted(store.tree_ids(commit).items()):
        found = _evaluate(store, proc_id, tree, commit, config)
        if isinstance(found, ProcedureRecord):
            changes.upsert.append(found)
            continue
        row = _invalid_row(store, proc_id, tree, commit, config, found)
        if row is not None:
            changes.upsert.append(row)
        else:
            changes.invalid.append((proc_id, found))
    versions, moves = tag_rows(store, targets, _Trees(store), targets)
    changes.versions_upsert = versions
    changes.channels_upsert = moves
    return changes


def _fresh_store(store: GitStore) -> GitStore:
    # libgit2 objects must not be shared between threads: a worker gets its own.
    fresh = GitStore.open(store.git_dir)
    fresh.folder = store.folder
    return fresh


async def _full_changes_off_loop(
    store: GitStore, ref: str, commit: str, config: Config, targets: Mapping[str, str]
) -> ChangeSet:
    """:func:`_full_changes` in a worker thread, so a rebuild never stalls the event loop."""

    def work() -> ChangeSet:
        fresh = _fresh_store(store)
        try:
            return _full_changes(fresh, ref, commit, config, targets)
        finally:
            # its object cache holds every tree and tag object just read: drop it now
            fresh.free()

    return await asyncio.to_thread(work)


async def _procedure_trees(backend: IndexBackend) -> dict[str, str]:
    getter = getattr(backend, "procedure_trees", None)
    if getter is not None:
        return dict(await getter())
    return {p.id: p.tree_id for p in await backend.list_procedures()}


async def _indexed_channel_tags(backend: IndexBackend) -> set[str]:
    getter = getattr(backend, "all_channel_tags", None)
    if getter is not None:
        return set(await getter())
    dump = await backend.snapshot()
    return {c["tag"] for c in dump.get("channels", [])}


def _resolve(store: GitStore, ref: str) -> str | None:
    if (ref == "HEAD" or ref == store.current_branch()) and store.is_unborn():
        return None
    return store.try_resolve(ref)


def _full_ref(store: GitStore, ref: str | None, config: Config | None) -> str:
    """The full ref a sync follows: ``ref`` as a branch, else the tracked ref."""
    wt_config = config or worktree_config(store)
    return (
        store.branch_ref(ref) if ref and ref != "HEAD" else (ref or tracked_ref(store, wt_config))
    )


async def sync(
    store: GitStore,
    backend: IndexBackend,
    ref: str | None = None,
    *,
    full: bool = False,
    config: Config | None = None,
) -> SyncReport:
    """Bring the index up to date with ``ref`` (default: the tracked branch).

    Incremental unless ``full``, the index is empty, the ref was rewritten or
    the validation config changed. Holds the backend's sync lock, so one
    syncer runs at a time. ``config`` overrides ``procreg.toml`` (tests).
    """
    started = time.perf_counter()
    ref = _full_ref(store, ref, config)
    async with backend.sync_lock():
        state = await backend.sync_state(ref)
        previous = state.commit if state else None
        commit = _resolve(store, ref)
        report = SyncReport(ref=ref, commit=commit, previous=previous)
        if commit is None:
            if store.try_resolve(ref) is None and not store.is_unborn() and ref != "HEAD":
                raise GitError(
                    f"{store.name}: the tracked ref {ref} does not exist", path=store.name, ref=ref
                )
            log.info("%s has no commits yet; nothing to index", ref)
            return report
        digest, listed = current_tags_digest(store)
        new_config = config or config_at(store, commit)
        old_config = config or config_at(store, previous)
        plan = plan_sync(
            SyncInputs(
                state=state,
                commit=commit,
                tags_digest=digest,
                # (not asked when rebuilding anyway: across rewritten history it walks far)
                descends=None if previous is None or full else store.is_ancestor(previous, commit),
                rules_before=old_config.validation,
                rules_now=new_config.validation,
                full=full,
            )
        )
        log.debug("sync %s: %s (%s)", ref, plan.kind, plan.reason)
        if plan.kind == "noop":
            report.duration_ms = (time.perf_counter() - started) * 1000
            return report
        if plan.kind == "rebuild":
            targets = listed if listed is not None else _ref_targets(store)
            changes = await _rebuild(store, backend, ref, commit, new_config, targets, report)
        else:
            assert previous is not None
            changes = ChangeSet(ref=ref, commit=commit, tags_digest=digest)
            await _incremental(store, previous, commit, new_config, changes, report)
            if plan.tags_changed:
                targets = listed if listed is not None else _ref_targets(store)
                await _tag_changes(store, backend, targets, changes, report)
        await backend.apply(changes)
        if plan.kind == "rebuild":
            del changes
            await release_memory()
    report.duration_ms = (time.perf_counter() - started) * 1000
    _log_report(report)
    return report


async def _incremental(
    store: GitStore,
    previous: str,
    commit: str,
    config: Config,
    changes: ChangeSet,
    report: SyncReport,
) -> None:
    """The procedure rows that changed between ``previous`` and ``commit``, into ``changes``."""
    changed = store.changed_procedures(previous, commit)
    if len(changed) > OFF_LOOP_ABOVE:
        await asyncio.to_thread(
            _procedure_changes, _fresh_store(store), commit, changed, config, changes, report
        )
    else:
        _procedure_changes(store, commit, changed, config, changes, report)


def _log_report(report: SyncReport) -> None:
    log.info(
        "synced %s to %s: +%d ~%d -%d invalid %d, tags +%d -%d%s in %.1f ms",
        report.ref,
        (report.commit or "")[:12],
        len(report.added),
        len(report.updated),
        len(report.deleted),
        len(report.invalid),
        len(report.tags_added),
        len(report.tags_removed),
        " (rebuilt)" if report.rebuilt else "",
        report.duration_ms,
    )


async def _rebuild(
    store: GitStore,
    backend: IndexBackend,
    ref: str,
    commit: str,
    config: Config,
    targets: Mapping[str, str],
    report: SyncReport,
) -> ChangeSet:
    changes = await _full_changes_off_loop(store, ref, commit, config, targets)
    before = await _procedure_trees(backend)
    indexed_tags = await backend.all_version_tags() | await _indexed_channel_tags(backend)
    now = {r.id: r.tree_id for r in changes.upsert} | {pid: "" for pid, _ in changes.invalid}
    report.rebuilt = True
    report.added = sorted(set(now) - set(before))
    report.updated = sorted(pid for pid in set(now) & set(before) if now[pid] != before[pid])
    report.deleted = sorted(set(before) - set(now))
    report.invalid = sorted(
        [pid for pid, _ in changes.invalid] + [r.id for r in changes.upsert if not r.valid]
    )
    report.tags_added = sorted(set(targets) - indexed_tags)
    report.tags_removed = sorted(indexed_tags - set(targets))
    return changes


def _procedure_changes(
    store: GitStore,
    commit: str,
    changed: Mapping[str, tuple[str | None, str | None]],
    config: Config,
    changes: ChangeSet,
    report: SyncReport,
) -> None:
    for proc_id, (old, new) in sorted(changed.items()):
        if new is None:
            changes.delete.append(proc_id)
            report.deleted.append(proc_id)
            continue
        found = _evaluate(store, proc_id, new, commit, config)
        if isinstance(found, ProcedureRecord):
            changes.upsert.append(found)
            (report.added if old is None else report.updated).append(proc_id)
        else:
            changes.invalid.append((proc_id, found))
            report.invalid.append(proc_id)


async def _tag_changes(
    store: GitStore,
    backend: IndexBackend,
    targets: Mapping[str, str],
    changes: ChangeSet,
    report: SyncReport,
) -> None:
    indexed_versions = await backend.all_version_tags()
    indexed_channels = await _indexed_channel_tags(backend)
    indexed = indexed_versions | indexed_channels
    new = set(targets) - indexed
    gone = indexed - set(targets)
    versions, moves = tag_rows(store, new, _Trees(store), targets)
    changes.versions_upsert = versions
    changes.channels_upsert = moves
    changes.versions_delete = sorted(gone & indexed_versions)
    changes.channels_delete = sorted(gone & indexed_channels)
    report.tags_added = sorted(new)
    report.tags_removed = sorted(gone)


# --------------------------------------------------------------------------- verify


async def verify(
    store: GitStore, backend: IndexBackend, ref: str | None = None, *, config: Config | None = None
) -> list[Drift]:
    """Compare the index with a rebuild from git computed in memory; no writes.

    An empty list means no drift. An index never synced for ``ref`` (a fresh
    clone) is :class:`IndexNotSynced`, not every procedure missing. Invalid
    procedures are compared on their validity and errors only (the content they
    keep is their last valid state, which depends on when syncs ran).
    """
    ref = _full_ref(store, ref, config)
    commit = _resolve(store, ref)
    if commit is not None and await backend.sync_state(ref) is None:
        raise IndexNotSynced(
            f"no index of {ref} here yet (a fresh clone, or never synced); "
            "run `procreg sync` to build it",
            ref=ref,
        )
    actual = await backend.snapshot()
    if commit is None:
        expected = canonical_snapshot([], [], [], [])
    else:
        targets = _ref_targets(store)
        changes = _full_changes(store, ref, commit, config or config_at(store, commit), targets)
        records = list(changes.upsert) + [placeholder(i, e, commit) for i, e in changes.invalid]
        state = SyncState(
            ref=ref, commit=commit, tags_digest=changes.tags_digest, synced_at=datetime.now(UTC)
        )
        expected = canonical_snapshot(
            records, changes.versions_upsert, changes.channels_upsert, [state]
        )
    return snapshot_drift(expected, actual)
