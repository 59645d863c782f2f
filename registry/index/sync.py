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

A rebuild does not validate again a tree it validated before under the same rules
and code: the index keeps those outcomes by tree id (:mod:`registry.index.objcache`),
and :func:`verify` never reads them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from registry.config import Config, config_at, tracked_ref, worktree_config
from registry.core.tags import (
    CHANNEL_TAG_PREFIX,
    RELEASE_TAG_PREFIX,
)
from registry.errors import GitError, IndexNotSynced
from registry.git.store import GitStore
from registry.index.contract import (
    ChangeSet,
    IndexBackend,
    ProcedureRecord,
    SyncState,
    canonical_snapshot,
    placeholder,
)
from registry.index.drift import Drift, snapshot_drift
from registry.index.memory import collection_paused, release_memory
from registry.index.objcache import ObjectCache, fingerprint
from registry.index.plan import SyncInputs, plan_sync
from registry.index.rows import Trees, evaluate, full_changes, tag_rows, tags_digest

log = logging.getLogger(__name__)

OFF_LOOP_ABOVE = 32
"""Above this many changed folders, an incremental sync validates in a worker thread."""

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


def _fresh_store(store: GitStore) -> GitStore:
    # libgit2 objects must not be shared between threads: a worker gets its own.
    fresh = GitStore.open(store.git_dir)
    fresh.folder = store.folder
    return fresh


async def _full_changes_off_loop(
    store: GitStore,
    ref: str,
    commit: str,
    config: Config,
    targets: Mapping[str, str],
    cache: ObjectCache,
) -> ChangeSet:
    """:func:`full_changes` in a worker thread, so a rebuild never stalls the event loop."""

    def work() -> ChangeSet:
        fresh = _fresh_store(store)
        try:
            return full_changes(fresh, ref, commit, config, targets, cache)
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
            with collection_paused():
                changes = await _rebuild(store, backend, ref, commit, new_config, targets, report)
                await backend.apply(changes)
            del changes
            await release_memory()
        else:
            assert previous is not None
            changes = ChangeSet(ref=ref, commit=commit, tags_digest=digest)
            await _incremental(store, previous, commit, new_config, changes, report)
            if plan.tags_changed:
                targets = listed if listed is not None else _ref_targets(store)
                await _tag_changes(store, backend, targets, changes, report)
            await backend.apply(changes)
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
    proved = fingerprint(config.validation, store.folder)
    cache = ObjectCache(proved, await backend.object_cache(proved))
    changes = await _full_changes_off_loop(store, ref, commit, config, targets, cache)
    log.debug("rebuild: %d folders validated before, %d validated now", cache.hits, cache.misses)
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
        found = evaluate(store, proc_id, new, commit, config)
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
    versions, moves = tag_rows(store, new, Trees(store), targets)
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
        changes = full_changes(store, ref, commit, config or config_at(store, commit), targets)
        records = list(changes.upsert) + [placeholder(i, e, commit) for i, e in changes.invalid]
        state = SyncState(
            ref=ref, commit=commit, tags_digest=changes.tags_digest, synced_at=datetime.now(UTC)
        )
        expected = canonical_snapshot(
            records, changes.versions_upsert, changes.channels_upsert, [state]
        )
    return snapshot_drift(expected, actual)
