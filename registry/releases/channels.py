"""Channels: named pointers (``stable``, ``canary``...) from a procedure to a released version.

A channel move is a new annotated ``channel/<id>/<channel>/<seq>`` tag in the
channel's own namespace, recording who moved it, when and why; tags are never
moved or deleted, so the moves are the channel's history and the newest one is
its current version. Concurrent movers each get their own sequence number.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import semver
from pydantic import BaseModel, ConfigDict

from registry.core import tags
from registry.errors import ConflictError
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
    """The version ``channel`` points at now, or None if it was never set."""
    moves = channel_history(store, proc_id, channel)
    if not moves or moves[0].version is None:
        return None
    return semver.Version.parse(moves[0].version)


def channels(store: GitStore, proc_id: str) -> dict[str, semver.Version]:
    """``{channel: current version}`` for every channel of ``proc_id``."""
    out: dict[str, semver.Version] = {}
    for move in channel_history(store, proc_id):
        if move.channel not in out and move.version is not None:
            out[move.channel] = semver.Version.parse(move.version)
    return out


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
    movers each get their own sequence number.
    """
    target = parse_version(version)
    info = release_of(store, proc_id, target)
    for _ in range(attempts):
        moves = channel_history(store, proc_id, channel)
        if moves and moves[0].version == str(target):
            return moves[0].model_copy(update={"created": False})
        seq = moves[0].seq + 1 if moves else 1
        name = tags.channel_tag(proc_id, channel, seq)
        message = tags.format_channel_message(proc_id, channel, target, reason or "", action)
        try:
            created = store.create_tag(name, info.commit, message)
        except ConflictError:
            continue  # another mover took this number: re-read and take the next
        by_commit = {info.commit: target}
        move = _move(proc_id, created, by_commit)
        assert move is not None
        return move
    raise ConflictError(f"{store.name}: channel {channel} of {proc_id} kept moving; try again")
