"""Release history: a procedure's releases as read from its tags, and what ``ID@SPEC`` names.

:func:`history` lists the releases newest first, :func:`resolve` turns a spec
(exact version, range, channel, ``HEAD`` or nothing) into a version and its
files, and :func:`diff` compares two specs. Everything is read from tags and
trees through the git store; nothing is written.

:func:`release_spec` and :func:`pick_release` are the resolution itself, pure,
with its error messages: :func:`resolve` applies them to the tags, and
:meth:`registry.api.AsyncRegistry.get` to the index's rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, TypeVar

import semver
from pydantic import BaseModel, ConfigDict, Field

from registry.core import tags
from registry.core.snapshot import Snapshot
from registry.errors import NotFoundError
from registry.git.info import TagInfo
from registry.git.store import GitStore
from registry.releases.tagged import release_tree, releases, require_procedure

if TYPE_CHECKING:
    from registry.core.specs import Spec

# specs and channels are imported where they are used: `procreg log` needs neither.

T = TypeVar("T")


class TaggedRelease(BaseModel):
    """One release of a procedure, as its tag records it.

    (The public :class:`registry.VersionInfo` is the index's view of a release.)
    """

    model_config = ConfigDict(defer_build=True)

    id: str
    version: str
    tag: str
    commit: str
    date: datetime | None
    tagger_name: str | None
    tagger_email: str | None
    bump: str | None
    breaking: bool | None
    reasons: list[str]
    lines_added: int | None
    lines_removed: int | None
    previous: str | None = None
    message: str


def _version_info(proc_id: str, version: semver.Version, info: TagInfo) -> TaggedRelease:
    fields = tags.parse_release_message(info.message)
    return TaggedRelease(
        id=proc_id,
        version=str(version),
        tag=info.name,
        commit=info.commit,
        date=info.tagger.when if info.tagger else None,
        tagger_name=info.tagger.name if info.tagger else None,
        tagger_email=info.tagger.email if info.tagger else None,
        bump=fields.bump,
        breaking=fields.breaking,
        reasons=list(fields.reasons),
        lines_added=fields.lines_added,
        lines_removed=fields.lines_removed,
        previous=str(fields.previous) if fields.previous is not None else None,
        message=info.message,
    )


def history(store: GitStore, proc_id: str) -> list[TaggedRelease]:
    """Every release of ``proc_id``, newest version first (read from its tags)."""
    return [_version_info(proc_id, v, info) for v, info in releases(store, proc_id)]


class Resolved(BaseModel):
    """What ``ID@SPEC`` names: a version (or the branch tip) and its files."""

    model_config = ConfigDict(arbitrary_types_allowed=True, defer_build=True)

    id: str
    version: str | None
    commit: str
    tree_id: str
    tag: str | None = None
    source: Literal["release", "channel", "head"]
    channel: str | None = None
    fallback_to_head: bool = False
    """True when no spec was given and the procedure was never released."""
    snapshot: Snapshot = Field(exclude=True, repr=False)


def _head(store: GitStore, proc_id: str, ref: str, fallback: bool = False) -> Resolved:
    snap = store.read(proc_id, ref)
    assert snap.tree_id is not None and snap.commit is not None
    version: str | None = None
    tag: str | None = None
    for v, info in releases(store, proc_id):
        if release_tree(store, proc_id, v, info) == snap.tree_id:
            version, tag = str(v), info.name
            break
    return Resolved(
        id=proc_id,
        version=version,
        commit=snap.commit,
        tree_id=snap.tree_id,
        tag=tag,
        source="head",
        fallback_to_head=fallback,
        snapshot=snap,
    )


def _at_release(store: GitStore, proc_id: str, info: TagInfo, version: semver.Version) -> Resolved:
    snap = store.read(proc_id, info.commit)
    assert snap.tree_id is not None
    return Resolved(
        id=proc_id,
        version=str(version),
        commit=info.commit,
        tree_id=snap.tree_id,
        tag=info.name,
        source="release",
        snapshot=snap,
    )


def resolve(store: GitStore, proc_id: str, spec: str | None = None, ref: str = "HEAD") -> Resolved:
    """The procedure named by ``ID@SPEC``.

    ``spec`` is an exact version (``1.2.0``), a range (``^1.2``, ``~1.2``,
    ``>=1.0,<2``), a channel (``stable``), ``HEAD`` (the folder at ``ref``,
    with the version whose tree it equals, if any) or ``None``: the latest
    release, falling back to ``HEAD`` when never released (``fallback_to_head``).
    """
    found = releases(store, proc_id)
    if not found:
        require_procedure(store, proc_id, ref)
    if not found and (spec is None or not spec.strip()):
        return _head(store, proc_id, ref, fallback=True)
    parsed = release_spec(proc_id, spec, bool(found))
    if parsed.kind == "head":
        return _head(store, proc_id, ref)
    chans: dict[str, semver.Version] = {}
    closed: dict[str, str] = {}
    if parsed.kind == "channel":
        from registry.releases.channels import current_moves

        for name, move in current_moves(store, proc_id).items():
            if move.out_of_service:
                closed[name] = out_of_service_message(
                    proc_id, name, move.version, move.date, move.reason
                )
            elif move.version is not None:
                chans[name] = semver.Version.parse(move.version)
    version, info = pick_release(proc_id, spec, parsed, found, chans, closed)
    resolved = _at_release(store, proc_id, info, version)
    if parsed.kind == "channel":
        return resolved.model_copy(update={"source": "channel", "channel": parsed.channel})
    return resolved


def release_spec(proc_id: str, spec: str | None, released: bool) -> Spec:
    """The parsed ``spec`` of ``proc_id@spec``; no spec names the latest release.

    A procedure never ``released`` has only ``HEAD`` (which no spec also names
    then); asking it for a release is a :class:`NotFoundError`.
    """
    from registry.core import specs

    if spec is None or not spec.strip():
        return specs.parse_spec("latest" if released else "HEAD")
    parsed = specs.parse_spec(spec)
    if parsed.kind != "head" and not released:
        raise NotFoundError(
            f"{proc_id} has no release yet, so {proc_id}@{spec} names nothing; "
            f"use {proc_id}@HEAD or run `procreg release {proc_id}`",
            kind="version",
            name=f"{proc_id}@{spec}",
        )
    return parsed


def pick_release(
    proc_id: str,
    spec: str | None,
    parsed: Spec,
    released: Sequence[tuple[semver.Version, T]],
    channels: Mapping[str, semver.Version],
    out_of_service: Mapping[str, str] | None = None,
) -> tuple[semver.Version, T]:
    """The release ``parsed`` (not ``HEAD``) picks among ``released`` and ``channels``.

    ``released`` pairs each version with what the caller keeps of it (a tag, an
    index row); the pair picked is returned. Raises :class:`NotFoundError`
    naming the spec and what exists (see :func:`registry.core.specs.resolve`).
    ``out_of_service`` maps each channel out of service to what to say when it is
    asked for (:func:`out_of_service_message`): a :class:`NotFoundError` of kind
    ``channel``.
    """
    from registry.core import specs

    closed = (out_of_service or {}).get(parsed.channel or "") if parsed.kind == "channel" else None
    if closed is not None:
        raise NotFoundError(closed, kind="channel", name=f"{proc_id}@{parsed.channel}")

    # Keyed by text: semver's == and hash ignore build metadata, so 1.2.3+a
    # and 1.2.3+b would share one key.
    by_version = {str(v): (v, item) for v, item in released}
    version = specs.resolve(parsed, [v for v, _ in by_version.values()], channels)
    found = by_version.get(str(version))
    if found is None:
        shown = spec if spec and spec.strip() else "latest"
        raise NotFoundError(
            f"{proc_id}@{shown} names {version}, which has no release tag",
            kind="version",
            name=f"{proc_id}@{version}",
        )
    return version, found[1]


def out_of_service_message(
    proc_id: str,
    channel: str,
    version: str | None,
    since: datetime | None,
    reason: str | None,
) -> str:
    """What asking for ``proc_id@channel`` says while the channel is out of service.

    One line: since when, because of what, and how to bring it back (the part
    before the first ``"; "`` is the message, the rest the hint).
    """
    when = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if since else "an unknown time"
    why = " ".join((reason or "no reason recorded").replace("; ", ", ").split())
    was = f" (it was on {version})" if version else ""
    return (
        f"{proc_id}@{channel} is out of service since {when}{was} because {why}; "
        f"restore it with `procreg promote {proc_id} VERSION --channel {channel}` "
        f"(`procreg channels {proc_id}` shows its history), or ask for a version"
    )


def diff(store: GitStore, proc_id: str, a: str | None, b: str | None = "HEAD") -> str:
    """A unified diff of ``procedures/<id>/`` from spec ``a`` to spec ``b``."""
    left = resolve(store, proc_id, a)
    right = resolve(store, proc_id, b)
    return store.diff_text(left.tree_id, right.tree_id, f"{store.folder}/{proc_id}")
