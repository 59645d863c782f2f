"""Run statistics both backends agree on (pure): percentiles, success rates, error counts.

SQLite computes them here from the runs' facts; PostgreSQL computes the same in
SQL (``percentile_cont``), and the contract tests hold the two equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, field_validator

from registry.index.contract import (
    UNKNOWN_ERROR,
    UNVERSIONED,
    Metrics,
    Outcome,
    VersionMetrics,
    utc,
)


def percentile_cont(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Linear-interpolated percentile, computed exactly as PostgreSQL's percentile_cont."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    first = math.floor(position)
    second = math.ceil(position)
    low = sorted_values[first]
    if first == second:
        return float(low)
    high = sorted_values[second]
    return float(low + (position - first) * (high - low))


def success_rate(runs: int, successes: int) -> float | None:
    """``successes / runs`` as a float, or None without runs."""
    return successes / runs if runs else None


class RunFact(BaseModel):
    """The columns of one run that metrics need."""

    version: str | None
    duration_ms: float
    outcome: Outcome
    error_type: str | None
    started_at: datetime
    caller: str = ""

    @field_validator("started_at")
    @classmethod
    def _started_at_utc(cls, value: datetime) -> datetime:
        return utc(value)


def version_metrics(facts: Iterable[RunFact]) -> VersionMetrics:
    """Statistics of a group of runs (pure; SQLite uses it, PostgreSQL computes in SQL)."""
    facts = list(facts)
    durations = sorted(f.duration_ms for f in facts)
    errors: dict[str, int] = {}
    callers: dict[str, int] = {}
    for f in facts:
        callers[f.caller] = callers.get(f.caller, 0) + 1
        if f.outcome == "failure":
            key = f.error_type or UNKNOWN_ERROR
            errors[key] = errors.get(key, 0) + 1
    return VersionMetrics(
        runs=len(facts),
        success_rate=success_rate(len(facts), sum(f.outcome == "success" for f in facts)),
        p50_ms=percentile_cont(durations, 0.5),
        p95_ms=percentile_cont(durations, 0.95),
        last_run=max((f.started_at for f in facts), default=None),
        errors=dict(sorted(errors.items())),
        callers=dict(sorted(callers.items())),
    )


def compute_metrics(facts: Iterable[RunFact]) -> Metrics:
    """Statistics of all runs of a procedure, overall and per version."""
    facts = list(facts)
    groups: dict[str, list[RunFact]] = {}
    for f in facts:
        groups.setdefault(f.version or UNVERSIONED, []).append(f)
    overall = version_metrics(facts)
    return Metrics(
        **overall.model_dump(),
        versions={v: version_metrics(g) for v, g in sorted(groups.items())},
    )
