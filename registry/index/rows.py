"""What git says the index should hold: the rows of procedures, releases and channels.

Pure reading of git through :class:`~registry.git.store.GitStore`, no index access:
:func:`full_changes` is a rebuild's whole change set, :func:`evaluate` one folder's
row (or why it is invalid), :func:`tag_rows` the rows of release and channel tags.
:mod:`registry.index.sync` decides what to read and applies it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence

from registry.config import Config
from registry.core.snapshot import Snapshot
from registry.core.tags import (
    parse_channel_message,
    parse_channel_tag,
    parse_release_message,
    parse_release_tag,
    release_tag_prefix,
)
from registry.core.validation import ValidationResult, validate_snapshot
from registry.errors import NotFoundError
from registry.git.info import CommitInfo, TagInfo
from registry.git.store import GitStore
from registry.index.contract import (
    ChangeSet,
    ChannelMoveRecord,
    ProcedureRecord,
    VersionRecord,
    construct_trusted,
    utc,
)
from registry.index.objcache import ObjectCache

log = logging.getLogger(__name__)

HISTORY_LIMIT = 200
"""How many past commits of an invalid folder a rebuild searches for its last valid state."""


def tags_digest(targets: Mapping[str, str]) -> str:
    """sha1 of the sorted ``name target`` lines of the registry's tags."""
    h = hashlib.sha1(usedforsecurity=False)
    for name in sorted(targets):
        h.update(f"{name} {targets[name]}\n".encode())
    return h.hexdigest()


class Trees:
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


def version_record(info: TagInfo, proc_id: str, version: str, trees: Trees) -> VersionRecord:
    """The index row of one release tag, its trailers read back from the message.

    The folder's tree comes from the ``Tree:`` trailer when the registry wrote
    the tag, else from the tagged commit (a hand-made tag).
    """
    msg = parse_release_message(info.message)
    tagger = info.tagger
    # Every value already has its field's type (``version`` is the strict semver the tag
    # name parsed to), so the row is built without validating 30,000 of them again.
    return construct_trusted(
        VersionRecord,
        {
            "id": proc_id,
            "version": version,
            "tag": info.name,
            "commit": info.commit,
            "tree_id": msg.tree or trees.subtree(info.commit, proc_id),
            "tagger_name": tagger.name if tagger else None,
            "tagger_email": tagger.email if tagger else None,
            "tagged_at": utc(tagger.when) if tagger else None,
            "bump": msg.bump,
            "breaking": msg.breaking,
            "lines_added": msg.lines_added,
            "lines_removed": msg.lines_removed,
            "reasons": list(msg.reasons),
            "message": info.message,
        },
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
    return construct_trusted(
        ChannelMoveRecord,
        {
            "id": proc_id,
            "channel": channel,
            "seq": seq,
            "version": version,
            "tag": info.name,
            "commit": info.commit,
            "moved_by": moved_by,
            "moved_at": utc(info.tagger.when) if info.tagger else None,
            "action": msg.action,
            "reason": msg.reason,
            "out_of_service": msg.out_of_service,
        },
    )


def tag_rows(
    store: GitStore,
    names: Iterable[str],
    trees: Trees,
    targets: Mapping[str, str] | None = None,
    cache: ObjectCache | None = None,
) -> tuple[list[VersionRecord], list[ChannelMoveRecord]]:
    """Version and channel rows for the tags ``names`` (names that do not parse are skipped).

    ``targets`` (tag name -> object id, from one pass over the refs) saves a ref
    lookup per tag; a name missing from it is looked up. With a ``cache``, a release
    tag whose object was read before is not read again.
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
        if release is not None and cache is not None and target is not None:
            known = cache.version(name, target)
            if known is not None:
                versions.append(known)
                continue
        info = store.tag_at(name, target) if target is not None else store.tag(name)
        if info is None:
            continue
        if release is not None:
            record = version_record(info, release[0], str(release[1]), trees)
            if cache is not None and target is not None:
                cache.put_version(target, record)
            versions.append(record)
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
    # built from a validated model and its JSON dumps: nothing left to validate
    return construct_trusted(
        ProcedureRecord,
        {
            "id": snap.id,
            "name": meta.name,
            "description": meta.description,
            "category": meta.category,
            "tags": list(meta.tags),
            "status": meta.status,
            "entry_point": meta.entry_point,
            "parameters": [p.model_dump(mode="json") for p in meta.parameters],
            "docstring": result.signature.docstring if result.signature else None,
            "metadata": meta.model_dump(mode="json", by_alias=True),
            "tree_id": snap.tree_id or "",
            "commit": commit,
            "valid": True,
            "errors": [],
        },
    )


def _errors(result: ValidationResult) -> list[str]:
    return [p.format() for p in result.problems] or ["invalid procedure"]


def evaluate(
    store: GitStore,
    proc_id: str,
    tree_id: str,
    commit: str,
    config: Config,
    cache: ObjectCache | None = None,
) -> ProcedureRecord | list[str]:
    """A valid record, or the errors that make the folder invalid.

    With a ``cache`` (a rebuild's), a tree validated before under the same rules and
    code is not read or validated again; what a new one gives is added to it.
    """
    if cache is not None:
        known = cache.procedure(proc_id, tree_id, commit)
        if known is not None:
            return known
    try:
        snap = store.read_tree(proc_id, tree_id, commit)
        result = validate_snapshot(snap, config.validation)
    except Exception as exc:
        log.exception("validating %s/%s failed", store.folder, proc_id)
        return [f"{store.folder}/{proc_id}: internal-error: {type(exc).__name__}: {exc}"]
    found = (
        procedure_record(result, snap, commit)
        if result.ok and result.metadata is not None
        else _errors(result)
    )
    if cache is not None:
        cache.put_procedure(proc_id, tree_id, found)
    return found


def _folder_tree(store: GitStore, commit: str, proc_id: str) -> str | None:
    try:
        return store.subtree_ids(commit, [proc_id])[proc_id]
    except NotFoundError:
        return None


def _last_valid(
    store: GitStore,
    proc_id: str,
    bad_tree: str,
    history: Sequence[CommitInfo],
    config: Config,
    cache: ObjectCache | None,
) -> ProcedureRecord | None:
    """The newest valid state of a folder in ``history`` (its commits, newest first)."""
    seen = {bad_tree}
    for info in history[:HISTORY_LIMIT]:
        # one entry of one tree, not a dict of every folder at each of 200 commits
        tree = _folder_tree(store, info.id, proc_id)
        if tree is None or tree in seen:
            continue
        seen.add(tree)
        found = evaluate(store, proc_id, tree, info.id, config, cache)
        if isinstance(found, ProcedureRecord):
            return found
    return None


def _histories(
    store: GitStore, ids: Iterable[str], commit: str
) -> dict[str, list[CommitInfo]] | None:
    """The folder history of every id in ``ids`` up to ``commit``, in one walk (rebuilds only)."""
    try:
        return store.folder_history(dict.fromkeys(ids), commit)
    except Exception:
        log.exception("reading the history of %s failed", ", ".join(sorted(ids)))
        return None


def full_changes(
    store: GitStore,
    ref: str,
    commit: str,
    config: Config,
    targets: Mapping[str, str],
    cache: ObjectCache | None = None,
) -> ChangeSet:
    """Everything git says the index should hold at ``commit`` (a rebuild's change set).

    With a ``cache``, unchanged trees are not validated again (see
    :mod:`registry.index.objcache`) and the change set replaces the cache with the
    entries this rebuild used; without one, every folder is validated.
    """
    changes = ChangeSet(ref=ref, commit=commit, tags_digest=tags_digest(targets), full=True)
    found: dict[str, ProcedureRecord | list[str]] = {}
    trees = sorted(store.tree_ids(commit).items())
    for proc_id, tree in trees:
        found[proc_id] = evaluate(store, proc_id, tree, commit, config, cache)
    bad = [proc_id for proc_id, row in found.items() if not isinstance(row, ProcedureRecord)]
    histories = _histories(store, bad, commit) if bad else {}
    for proc_id, tree in trees:
        row = found[proc_id]
        if isinstance(row, ProcedureRecord):
            changes.upsert.append(row)
            continue
        previous = (
            _last_valid(store, proc_id, tree, histories.get(proc_id, []), config, cache)
            if histories is not None
            else None
        )
        if previous is not None:
            changes.upsert.append(previous.model_copy(update={"valid": False, "errors": row}))
        else:
            changes.invalid.append((proc_id, row))
    versions, moves = tag_rows(store, targets, Trees(store), targets, cache)
    changes.versions_upsert = versions
    changes.channels_upsert = moves
    if cache is not None:
        changes.object_cache = cache.update()
    return changes
