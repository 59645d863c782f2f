"""The health policy: take a failing release out of service by moving its channel back.

The decision, :func:`evaluate`, is pure: the recent outcomes of each version, the
channel's state and the ``[health]`` config in, the actions out. :func:`apply_policy`
gathers those facts from git (channels, releases) and the index (run outcomes) and
carries the actions out with :func:`registry.releases.channels.promote` (``action="health"``),
so the reason lands in the channel tag's message and ``procreg health`` can list it.

The rule: the version the channel points at is *unhealthy* when its last ``window``
runs, at least ``min_runs`` of them, succeeded less often than ``threshold``. The
channel then moves to the most recent earlier release that is *proven healthy*: at
least ``min_runs`` runs in its own window, succeeding at least ``threshold`` of the
time. An earlier release with too few runs is not proven and is never chosen,
because moving production to untried code trades a known problem for an unknown one;
when no earlier release is proven, the channel stays and the action says so.

A move never crosses a breaking change: callers of the current version must
still be able to call the one the channel moves to, so the candidate must have
the same major version and no release after it, up to the current one, may
have been breaking (``Breaking: true`` in its tag; before 1.0.0 a breaking
change bumps only the minor version). When the only proven healthy earlier
releases are beyond a breaking change, the channel is taken *out of service*
instead (:func:`registry.releases.channels.take_out_of_service`): ``ID@channel``
then fails with a clear error until someone promotes a version to it, rather
than silently handing callers another signature. (With no proven healthy
earlier release at all, nothing is known to be better: the channel stays.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final, Literal

import semver
from pydantic import BaseModel, Field

from registry.config import Config, HealthSection
from registry.git.store import GitStore
from registry.index.contract import IndexBackend
from registry.releases.channels import (
    channel_history,
    current_channel,
    promote,
    take_out_of_service,
)
from registry.releases.history import history

log = logging.getLogger(__name__)

HEALTH_ACTION: Final = "health"
"""The ``Action`` trailer of a channel move made by this policy."""


class ChannelState(BaseModel):
    """Where a procedure's channel points now, and which versions are released."""

    id: str
    channel: str
    version: str | None
    released: list[str] = Field(default_factory=list)
    breaking: list[str] = Field(default_factory=list)
    """Released versions whose release was a breaking change from the one before."""


class HealthAction(BaseModel):
    """One decision of the policy (and, once applied, what happened)."""

    id: str
    channel: str
    kind: Literal["move", "stay", "out-of-service"]
    """``move``: the channel goes to ``to_version``; ``stay``: no healthy earlier release;
    ``out-of-service``: the healthy earlier releases are all beyond a breaking change, so
    the channel is taken out of service (``to_version`` is None)."""
    from_version: str
    to_version: str | None
    success_rate: float
    runs: int
    reason: str
    applied: bool = False
    tag: str | None = None


class HealthMove(BaseModel):
    """A channel move the policy made, as ``procreg health`` lists it (from the channel tag)."""

    id: str
    channel: str
    version: str | None
    tag: str
    reason: str | None
    date: datetime | None
    out_of_service: bool = False
    """The move took the channel out of service (``version`` is the one it left)."""


def rate(outcomes: Sequence[bool]) -> float | None:
    """The fraction of successes, or None without outcomes."""
    return sum(outcomes) / len(outcomes) if outcomes else None


def _proven_healthy(outcomes: Sequence[bool], config: HealthSection) -> bool:
    window = list(outcomes)[: config.window]
    value = rate(window)
    return len(window) >= config.min_runs and value is not None and value >= config.threshold


def evaluate(
    outcomes_by_version: Mapping[str, Sequence[bool]],
    state: ChannelState,
    config: HealthSection,
) -> list[HealthAction]:
    """Decide what the policy does for one channel (pure).

    ``outcomes_by_version`` holds each version's recent success flags, newest first
    (more than ``window`` are ignored). Returns ``[]`` when the policy is off, the
    channel is unset, or its version is healthy or has fewer than ``min_runs`` runs.
    """
    if not config.enabled or state.version is None:
        return []
    current = state.version
    window = list(outcomes_by_version.get(current, ()))[: config.window]
    value = rate(window)
    if len(window) < config.min_runs or value is None or value >= config.threshold:
        return []
    reason = (
        f"success rate {value:.2f} over the last {len(window)} runs of {current} "
        f"is below {config.threshold:.2f}"
    )
    current_v = semver.Version.parse(current)
    earlier = sorted(
        (v for v in (semver.Version.parse(s) for s in state.released) if v < current_v),
        reverse=True,
    )
    breaking = [semver.Version.parse(v) for v in state.breaking]

    def action(
        kind: Literal["move", "stay", "out-of-service"], to_version: str | None, why: str
    ) -> list[HealthAction]:
        return [
            HealthAction(
                id=state.id,
                channel=state.channel,
                kind=kind,
                from_version=current,
                to_version=to_version,
                success_rate=value,
                runs=len(window),
                reason=reason + why,
            )
        ]

    beyond: str | None = None  # a healthy release callers could not call
    for candidate in earlier:
        if not _proven_healthy(outcomes_by_version.get(str(candidate), ()), config):
            continue
        crossed = _breaking_between(candidate, current_v, breaking)
        if crossed is not None:
            beyond = beyond or f"{candidate} is healthy but {crossed} after it"
            continue
        return action(
            "move",
            str(candidate),
            f"; back to {candidate}, the last healthy release "
            f"that callers of {current} can still call",
        )
    if beyond is not None:
        return action(
            "out-of-service",
            None,
            f", and the healthy earlier releases cannot be called by callers "
            f"of {current} ({beyond}), so {state.channel} is out of service rather than "
            "moved to another signature",
        )
    return action(
        "stay",
        None,
        f"; no earlier release that callers of {current} can still call "
        f"has {config.min_runs} or more recent runs at {config.threshold:.2f} or better, "
        f"so {state.channel} stays on {current}",
    )


def _breaking_between(
    old: semver.Version, new: semver.Version, breaking: Sequence[semver.Version]
) -> str | None:
    """How releases after ``old`` up to ``new`` broke callers, or None if none did."""
    if old.major != new.major:
        return f"the major version changed ({old.major} to {new.major})"
    crossed = sorted(v for v in breaking if old < v <= new)
    return f"{crossed[0]} was a breaking change" if crossed else None


async def apply_policy(
    store: GitStore,
    backend: IndexBackend,
    proc_id: str,
    config: Config | HealthSection,
    *,
    dry_run: bool = False,
) -> list[HealthAction]:
    """Evaluate the policy for ``proc_id`` and carry out its moves (unless ``dry_run``).

    Called after run records reach the index and by ``procreg health --apply``.
    Earlier versions' outcomes are only read when the current one is unhealthy.
    """
    health = config.health if isinstance(config, Config) else config
    if not health.enabled:
        return []
    current = current_channel(store, proc_id, health.channel)
    if current is None:
        return []
    state = ChannelState(id=proc_id, channel=health.channel, version=str(current))
    outcomes: dict[str, list[bool]] = {
        str(current): await backend.recent_outcomes(proc_id, str(current), health.window)
    }
    if not evaluate(outcomes, state, health):
        return []
    known = history(store, proc_id)
    state.released = [v.version for v in known]
    state.breaking = [v.version for v in known if v.breaking]
    for version in state.released:
        if semver.Version.parse(version) < current:
            outcomes[version] = await backend.recent_outcomes(proc_id, version, health.window)
    actions = evaluate(outcomes, state, health)
    if dry_run:
        return actions
    for action in actions:
        if action.kind == "out-of-service":
            taken = take_out_of_service(
                store, proc_id, action.channel, action.reason, action=HEALTH_ACTION
            )
            action.applied = taken.created
            action.tag = taken.tag
            log.warning("health: %s %s out of service: %s", proc_id, action.channel, action.reason)
        elif action.kind == "move" and action.to_version is not None:
            move = promote(
                store,
                proc_id,
                action.to_version,
                action.channel,
                reason=action.reason,
                action=HEALTH_ACTION,
            )
            action.applied = move.created
            action.tag = move.tag
            log.warning(
                "health: %s %s -> %s: %s", proc_id, action.channel, action.to_version, action.reason
            )
    return actions


def health_moves(store: GitStore, proc_id: str, channel: str | None = None) -> list[HealthMove]:
    """Every channel move the policy made for ``proc_id``, newest first (read from tags)."""
    return [
        HealthMove(
            id=m.id,
            channel=m.channel,
            version=m.version,
            tag=m.tag,
            reason=m.reason,
            date=m.date,
            out_of_service=m.out_of_service,
        )
        for m in channel_history(store, proc_id, channel)
        if m.action == HEALTH_ACTION
    ]
