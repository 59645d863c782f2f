"""What each page of the web view shows, read through :class:`~registry.api.AsyncRegistry`.

Every page is a pydantic model built from the API's own models (``ProcedureSummary``,
``ProcedureDetail``, ``VersionInfo``, ``ChannelReport``, ``ProcedureDiff``, ``Metrics``,
``ExecutionRecord``), so its JSON (``?format=json``) is what the Python API returns.
Nothing here writes: only queries of the registry are called.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field

from registry.api import (
    AsyncRegistry,
    ProcedureDetail,
    ProcedureDiff,
    ProcedureSummary,
    VersionInfo,
)
from registry.config import HealthSection
from registry.core.tags import check_id
from registry.errors import UsageError
from registry.git.store import GitStore
from registry.index.contract import ExecutionRecord, Metrics, VersionMetrics
from registry.releases.channels import ChannelMoveEntry, ChannelReport

PAGE_SIZE = 50
MAX_PAGE = 1000
RECENT_RUNS = 50
MAX_FAILING = 50
CHART_RUNS = 2000
ALL = 1_000_000
"""A search limit that means "every procedure" (for the filters the index cannot apply)."""

Health = Literal["", "healthy", "failing", "untried"]
Validity = Literal["", "valid", "invalid"]


class Filters(BaseModel):
    """What ``/`` was asked for: the query string, parsed."""

    q: str = ""
    category: str = ""
    tag: str = ""
    status: str = ""
    validity: Validity = ""
    health: Health = ""
    page: int = Field(default=1, ge=1, le=MAX_PAGE)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Filters:
        """From a query string; :class:`UsageError` names the parameter that is wrong."""
        values = {k: params.get(k, "").strip() for k in ("q", "category", "tag", "status")}
        validity = params.get("validity", "")
        if validity not in ("", "valid", "invalid"):
            raise UsageError(f"validity must be valid or invalid, not {validity!r}")
        health = params.get("health", "")
        if health not in ("", "healthy", "failing", "untried"):
            raise UsageError(f"health must be healthy, failing or untried, not {health!r}")
        try:
            page = int(params.get("page", "1") or "1")
        except ValueError:
            raise UsageError(f"page must be a number, not {params.get('page')!r}") from None
        if not 1 <= page <= MAX_PAGE:
            raise UsageError(f"page must be between 1 and {MAX_PAGE}")
        return cls(validity=validity, health=health, page=page, **values)

    def query(self, **changes: object) -> dict[str, str]:
        """The non-empty parameters, with ``changes`` applied (for links to other pages)."""
        data = self.model_dump() | changes
        return {k: str(v) for k, v in data.items() if v not in ("", None) and (k, v) != ("page", 1)}


class IndexPage(BaseModel):
    """``/``: the search form and one page of results."""

    filters: Filters
    page_size: int
    results: list[ProcedureSummary]
    has_next: bool
    threshold: float


def _health_of(hit: ProcedureSummary, threshold: float) -> Health:
    if not hit.runs or hit.success_rate is None:
        return "untried"
    return "healthy" if hit.success_rate >= threshold else "failing"


async def index_page(
    reg: AsyncRegistry, filters: Filters, policy: HealthSection, page_size: int = PAGE_SIZE
) -> IndexPage:
    """Search with every filter; ``failing`` and ``untried`` are applied to all hits here."""
    wanted = filters.page * page_size + 1
    exact = filters.health in ("", "healthy")
    hits = await reg.search(
        filters.q or None,
        category=filters.category or None,
        tags=[filters.tag] if filters.tag else [],
        status=filters.status or None,
        limit=wanted if exact else ALL,
        valid={"": None, "valid": True, "invalid": False}[filters.validity],
        min_success_rate=policy.threshold if filters.health == "healthy" else None,
    )
    if not exact:
        hits = [h for h in hits if _health_of(h, policy.threshold) == filters.health]
    start = (filters.page - 1) * page_size
    return IndexPage(
        filters=filters,
        page_size=page_size,
        results=hits[start : start + page_size],
        has_next=len(hits) > start + page_size,
        threshold=policy.threshold,
    )


class ProcedurePage(BaseModel):
    """``/p/<id>``: one procedure at the selected version, its releases and channels."""

    id: str
    selected: ProcedureDetail
    versions: list[VersionInfo] = Field(description="Newest first.")
    channels: list[ChannelReport]


async def procedure_page(reg: AsyncRegistry, proc_id: str, version: str | None) -> ProcedurePage:
    """The procedure at ``version`` (any spec ``get`` takes; default: the latest release)."""
    check_id(proc_id)
    detail = await reg.get(proc_id, version or None)  # NotFoundError for an unknown id
    versions = await reg.versions(proc_id)
    channels = await reg.channels(proc_id)
    return ProcedurePage(id=proc_id, selected=detail, versions=versions[::-1], channels=channels)


class FileText(BaseModel):
    """One file of the procedure's folder on both sides of a diff (None: absent there)."""

    name: str
    a: str | None
    b: str | None


class DiffPage(BaseModel):
    """``/p/<id>/diff/<a>..<b>``: the API's diff, and each file's text on both sides."""

    id: str
    diff: ProcedureDiff
    files: list[FileText]
    view: Literal["split", "unified"]


def split_range(spec: str) -> tuple[str, str]:
    """``a..b`` into its two specs; :class:`UsageError` without both."""
    a, sep, b = spec.partition("..")
    if not sep or not a or not b:
        raise UsageError(f"a diff is /p/ID/diff/A..B (two versions), not {spec!r}")
    return a, b


async def diff_page(
    reg: AsyncRegistry, proc_id: str, spec: str, view: Literal["split", "unified"]
) -> DiffPage:
    """The diff between two specs, with the files' texts read from git by tree id.

    ``reg.diff`` resolves both specs; its tree ids are all the texts need (no second
    ``get`` of each side), read off the event loop.
    """
    check_id(proc_id)
    a, b = split_range(spec)
    diff = await reg.diff(proc_id, a, b)
    files = await asyncio.to_thread(_changed_files, reg.store, proc_id, diff.a_tree, diff.b_tree)
    return DiffPage(id=proc_id, diff=diff, files=files, view=view)


def _changed_files(store: GitStore, proc_id: str, a_tree: str, b_tree: str) -> list[FileText]:
    left = store.read_tree(proc_id, a_tree)
    right = store.read_tree(proc_id, b_tree)
    files = [
        FileText(name=name, a=left.text(name), b=right.text(name))
        for name in sorted(set(left.files) | set(right.files))
    ]
    return [f for f in files if f.a != f.b]


class PolicyMove(BaseModel):
    """A channel move the health policy made (from the channel's tags)."""

    id: str
    channel: str
    move: ChannelMoveEntry


class RunsPage(BaseModel):
    """``/p/<id>/runs``: recent runs, run statistics and the health policy's moves."""

    id: str
    metrics: Metrics
    runs: list[ExecutionRecord] = Field(description="Newest first.")
    chart_runs: int = Field(description="How many of the latest runs the charts show.")
    policy: HealthSection
    moves: list[PolicyMove]


def health_moves(channels: list[ChannelReport]) -> list[PolicyMove]:
    """The moves made by the health policy, newest first."""
    moves = [
        PolicyMove(id=c.id, channel=c.channel, move=m)
        for c in channels
        for m in c.moves
        if m.by_health
    ]
    return sorted(moves, key=lambda p: p.move.date.timestamp() if p.move.date else 0, reverse=True)


async def runs_page(
    reg: AsyncRegistry, proc_id: str, policy: HealthSection
) -> tuple[RunsPage, list[ExecutionRecord]]:
    """The page, and the runs its charts are drawn from (oldest first)."""
    check_id(proc_id)
    metrics = await reg.metrics(proc_id)  # delivers buffered and spooled records first
    if not metrics.runs and not await reg.versions(proc_id):
        await reg.get(proc_id)  # NotFoundError for an unknown id
    recent = await reg.backend.executions(proc_id, limit=CHART_RUNS)
    page = RunsPage(
        id=proc_id,
        metrics=metrics,
        runs=recent[:RECENT_RUNS],
        chart_runs=len(recent),
        policy=policy,
        moves=health_moves(await reg.channels(proc_id)),
    )
    return page, recent[::-1]


class Failing(BaseModel):
    """A procedure whose runs succeed less often than the threshold, and its failing versions."""

    procedure: ProcedureSummary
    versions: dict[str, VersionMetrics] = Field(
        description="The versions whose runs succeed less often than the threshold."
    )


class HealthPage(BaseModel):
    """``/health``: what the policy did, and what is failing now."""

    policy: HealthSection
    moves: list[PolicyMove]
    out_of_service: list[ChannelReport]
    failing: list[Failing] = Field(
        description=f"Procedures whose recorded runs succeed less often than the threshold "
        f"(the worst {MAX_FAILING})."
    )


async def health_page(reg: AsyncRegistry, policy: HealthSection) -> HealthPage:
    """Every channel's policy moves (one listing of the tags) and the failing procedures."""
    channels = await reg.channels()
    everything = await reg.search(limit=ALL, sort="health")
    worst = [h for h in everything if _health_of(h, policy.threshold) == "failing"]
    worst.sort(key=lambda h: (h.success_rate or 0.0, h.id))
    failing = []
    for hit in worst[:MAX_FAILING]:
        metrics = await reg.metrics(hit.id)
        bad = {
            v: m
            for v, m in metrics.versions.items()
            if m.success_rate is not None and m.success_rate < policy.threshold
        }
        failing.append(Failing(procedure=hit, versions=bad))
    return HealthPage(
        policy=policy,
        moves=health_moves(channels),
        out_of_service=[c for c in channels if c.status == "out-of-service"],
        failing=failing,
    )
