"""Channels: named pointers (``stable``, ``canary``...) from a procedure to a released version.

A channel move is a new annotated ``channel/<id>/<channel>/<seq>`` tag in the
channel's own namespace, recording who moved it, when and why; tags are never
moved or deleted, so the moves are the channel's history and the newest one is
its current version. Concurrent movers each get their own sequence number.

A move may take a channel *out of service* (:func:`take_out_of_service`, the
health policy's last resort): the tag points at the same commit as the move
before it and says ``Out-Of-Service: yes``, so the channel names no version
until the next :func:`promote` brings it back. History is kept either way.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Literal

import semver
from pydantic import BaseModel, ConfigDict

from registry.core import tags
from registry.errors import ConflictError, NotFoundError
from registry.git.info import TagInfo
from registry.git.store import GitStore
from registry.releases.tagged import parse_version, release_of, releases


class ChannelTag(BaseModel):
    """One move of a channel, as its tag records it: the version it points at from then on,
    who moved it, why (the index's row of it is :class:`registry.index.contract.ChannelMove`).
    """

    model_config = ConfigDict(defer_build=True)

    id: str
    channel: str
    seq: int
    version: str | None
    tag: str
    commit: str
    action: tags.ChannelAction
    reason: str | None
    date: datetime | None
    by_name: str | None
    by_email: str | None
    created: bool = True
    out_of_service: bool = False
    """This move took the channel out of service (``version`` is the one it left)."""


def _move(
    proc_id: str, info: TagInfo, by_commit: Mapping[str, semver.Version]
) -> ChannelTag | None:
    parsed = tags.parse_channel_tag(info.name)
    if parsed is None or parsed[0] != proc_id:
        return None
    _, channel, seq = parsed
    fields = tags.parse_channel_message(info.message)
    version = fields.version or by_commit.get(info.commit)
    return ChannelTag(
        id=proc_id,
        channel=channel,
        seq=seq,
        version=str(version) if version is not None else None,
        tag=info.name,
        commit=info.commit,
        action=fields.action or "promote",
        reason=fields.reason,
        date=info.tagger.when if info.tagger else None,
        by_name=info.tagger.name if info.tagger else None,
        by_email=info.tagger.email if info.tagger else None,
        out_of_service=fields.out_of_service,
    )


def channel_history(store: GitStore, proc_id: str, channel: str | None = None) -> list[ChannelTag]:
    """Every move of ``proc_id``'s channels (or one channel), newest first."""
    by_commit = {info.commit: v for v, info in reversed(releases(store, proc_id))}
    moves = []
    for info in store.tags(tags.channel_tag_prefix(proc_id, channel)):
        move = _move(proc_id, info, by_commit)
        if move is not None and (channel is None or move.channel == channel):
            moves.append(move)
    moves.sort(key=lambda m: (m.seq, m.date or datetime.min), reverse=True)
    return moves


def current_channel(store: GitStore, proc_id: str, channel: str) -> semver.Version | None:
    """The version ``channel`` points at now, or None if it was never set or is out of service."""
    moves = channel_history(store, proc_id, channel)
    if not moves or moves[0].version is None or moves[0].out_of_service:
        return None
    return semver.Version.parse(moves[0].version)


def current_moves(store: GitStore, proc_id: str) -> dict[str, ChannelTag]:
    """``{channel: its newest move}`` for every channel of ``proc_id`` (out of service too)."""
    out: dict[str, ChannelTag] = {}
    for move in channel_history(store, proc_id):
        out.setdefault(move.channel, move)
    return out


def channels(store: GitStore, proc_id: str) -> dict[str, semver.Version]:
    """``{channel: current version}`` for every channel of ``proc_id`` in service."""
    return {
        name: semver.Version.parse(move.version)
        for name, move in current_moves(store, proc_id).items()
        if move.version is not None and not move.out_of_service
    }


def out_of_service(store: GitStore, proc_id: str) -> dict[str, ChannelTag]:
    """``{channel: the move that took it out of service}`` for the channels out of service now."""
    return {
        name: move for name, move in current_moves(store, proc_id).items() if move.out_of_service
    }


def all_channel_history(store: GitStore, proc_id: str | None = None) -> list[ChannelTag]:
    """Every move of every channel (of ``proc_id``, or of every procedure), one listing of tags.

    Ordered by procedure, channel, then newest move first.
    """
    if proc_id is not None:
        moves = channel_history(store, proc_id)
        return sorted(moves, key=lambda m: (m.channel, -m.seq))
    by_id: dict[str, list[TagInfo]] = {}
    for info in store.tags(tags.CHANNEL_TAG_PREFIX):
        parsed = tags.parse_channel_tag(info.name)
        if parsed is not None:
            by_id.setdefault(parsed[0], []).append(info)
    out: list[ChannelTag] = []
    for ident in sorted(by_id):
        # the release map is needed only for hand-made tags without a Version: trailer
        untold = any(tags.parse_channel_message(i.message).version is None for i in by_id[ident])
        by_commit = (
            {info.commit: v for v, info in reversed(releases(store, ident))} if untold else {}
        )
        moves = [m for i in by_id[ident] if (m := _move(ident, i, by_commit)) is not None]
        out += sorted(moves, key=lambda m: (m.channel, -m.seq))
    return out


def _next_move(
    store: GitStore,
    proc_id: str,
    channel: str,
    commit: str,
    message: str,
    by_commit: Mapping[str, semver.Version],
    seq: int,
) -> ChannelTag | None:
    """Tag move ``seq`` of ``channel``; None when another mover took that number first."""
    name = tags.channel_tag(proc_id, channel, seq)
    try:
        created = store.create_tag(name, commit, message)
    except ConflictError:
        return None
    move = _move(proc_id, created, by_commit)
    assert move is not None
    return move


def take_out_of_service(
    store: GitStore,
    proc_id: str,
    channel: str,
    reason: str,
    action: tags.ChannelAction = "health",
    attempts: int = 20,
) -> ChannelTag:
    """Take ``channel`` of ``proc_id`` out of service: a new move that names no version.

    The tag points at the commit of the version the channel left (its
    ``Version:`` trailer names it) and carries ``Out-Of-Service: yes`` and
    ``reason``. Nothing is created when the channel is out of service already
    (``created=False``). :func:`promote` brings it back.
    """
    for _ in range(attempts):
        moves = channel_history(store, proc_id, channel)
        current = moves[0] if moves else None
        if current is None or current.version is None:
            raise NotFoundError(
                f"{proc_id}@{channel} points at no version, so it cannot be taken out of service",
                kind="channel",
                name=f"{proc_id}@{channel}",
            )
        if current.out_of_service:
            return current.model_copy(update={"created": False})
        version = semver.Version.parse(current.version)
        message = tags.format_channel_message(
            proc_id, channel, version, reason, action, out_of_service=True
        )
        by_commit = {current.commit: version}
        seq = current.seq + 1
        move = _next_move(store, proc_id, channel, current.commit, message, by_commit, seq)
        if move is not None:
            return move
    raise ConflictError(f"{store.name}: channel {channel} of {proc_id} kept moving; try again")


def promote(
    store: GitStore,
    proc_id: str,
    version: str | semver.Version,
    channel: str,
    reason: str | None = None,
    action: tags.ChannelAction = "promote",
    attempts: int = 20,
) -> ChannelTag:
    """Point ``channel`` at released ``version`` with the next ``channel/<id>/<channel>/<seq>`` tag.

    The tag records who moved it, when, and why (``reason``); earlier moves
    stay as history. If the channel already points at that version nothing is
    created (the current move is returned with ``created=False``). Concurrent
    movers each get their own sequence number. A channel out of service comes
    back by promoting any released version to it (the one it left too).
    """
    target = parse_version(version)
    info = release_of(store, proc_id, target)
    by_commit = {info.commit: target}
    for _ in range(attempts):
        moves = channel_history(store, proc_id, channel)
        if moves and moves[0].version == str(target) and not moves[0].out_of_service:
            return moves[0].model_copy(update={"created": False})
        seq = moves[0].seq + 1 if moves else 1
        message = tags.format_channel_message(proc_id, channel, target, reason or "", action)
        move = _next_move(store, proc_id, channel, info.commit, message, by_commit, seq)
        if move is not None:
            return move
        # another mover took this number: re-read and take the next
    raise ConflictError(f"{store.name}: channel {channel} of {proc_id} kept moving; try again")


# --- what `procreg channels` shows -----------------------------------------------

ChannelStatus = Literal["in-service", "out-of-service"]


class ChannelMoveEntry(BaseModel):
    """One move in a channel's history: the version it pointed at from then on, who, when, why."""

    model_config = ConfigDict(defer_build=True)

    seq: int
    version: str | None
    """The version the channel pointed at from this move on (out of service: the one it left)."""
    tagger_name: str | None
    """Who moved it (the channel tag's tagger), as every command names a tagger."""
    tagger_email: str | None
    date: datetime | None
    reason: str | None
    action: tags.ChannelAction
    by_health: bool
    """The health policy made this move."""
    out_of_service: bool
    tag: str


class ChannelReport(BaseModel):
    """A channel of a procedure: where it points now (or that it is out of service), every move."""

    model_config = ConfigDict(defer_build=True)

    id: str
    channel: str
    version: str | None
    """The version it points at now; None while out of service."""
    status: ChannelStatus
    moves: list[ChannelMoveEntry]
    """Newest first."""


def _entry(move: ChannelTag) -> ChannelMoveEntry:
    return ChannelMoveEntry(
        seq=move.seq,
        version=move.version,
        tagger_name=move.by_name,
        tagger_email=move.by_email,
        date=move.date,
        reason=move.reason,
        action=move.action,
        by_health=move.action == "health",
        out_of_service=move.out_of_service,
        tag=move.tag,
    )


def channel_reports(store: GitStore, proc_id: str | None = None) -> list[ChannelReport]:
    """Every channel (of ``proc_id``, or of every procedure) with its full move history.

    Ordered by procedure and channel; read from the channel tags (one listing).
    """
    grouped: dict[tuple[str, str], list[ChannelTag]] = {}
    for move in all_channel_history(store, proc_id):
        grouped.setdefault((move.id, move.channel), []).append(move)
    out = []
    for (ident, channel), moves in grouped.items():
        current = moves[0]
        out.append(
            ChannelReport(
                id=ident,
                channel=channel,
                version=None if current.out_of_service else current.version,
                status="out-of-service" if current.out_of_service else "in-service",
                moves=[_entry(m) for m in moves],
            )
        )
    return out


def current_channel_versions(
    store: GitStore, ids: Collection[str] | None = None
) -> dict[str, dict[str, str | None]]:
    """``{id: {channel: current version, or None while out of service}}``, one listing of tags.

    Only procedures with a channel appear; ``ids`` keeps those.
    """
    wanted = set(ids) if ids is not None else None
    only = next(iter(wanted)) if wanted is not None and len(wanted) == 1 else None
    out: dict[str, dict[str, str | None]] = {}
    for move in all_channel_history(store, only):
        if wanted is not None and move.id not in wanted:
            continue
        chans = out.setdefault(move.id, {})
        if move.channel not in chans:  # newest move first within a channel
            chans[move.channel] = None if move.out_of_service else move.version
    return out
