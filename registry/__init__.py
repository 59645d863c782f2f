"""procreg: a git-native registry of executable procedures.

The public API is what ``__all__`` lists. Names are imported on first use
(PEP 562), so ``import registry`` and ``procreg --version`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # errors
    "RegistryError": "registry.errors",
    "UsageError": "registry.errors",
    "ConfigError": "registry.errors",
    "GitError": "registry.errors",
    "HistoryIncomplete": "registry.errors",
    "EnvironmentBuildError": "registry.errors",
    "LockError": "registry.errors",
    "NotFoundError": "registry.errors",
    "ConflictError": "registry.errors",
    "LockedError": "registry.errors",
    "ValidationFailed": "registry.errors",
    "IndexUnavailable": "registry.errors",
    "ExecutionError": "registry.errors",
    "MigrationError": "registry.errors",
    # the Python API
    "Registry": "registry.api",
    "AsyncRegistry": "registry.api",
    "RegistryTimeout": "registry.errors",
    "ExamplesFailed": "registry.errors",
    "IndexRejected": "registry.errors",
    "IndexCorrupt": "registry.errors",
    "IndexNotSynced": "registry.errors",
    "PermissionDenied": "registry.errors",
    "QueueUnavailable": "registry.errors",
    "JobError": "registry.errors",
    "JobHandle": "registry.runs.queue",
    "JobInfo": "registry.runs.queue",
    "ProcedureSummary": "registry.api",
    "ProcedureDetail": "registry.api",
    "VersionInfo": "registry.api",
    "HistoryEntry": "registry.api",
    "ProcedureDiff": "registry.api",
    "RunResult": "registry.runs.execution",
    "ReleasePlan": "registry.releases.plan",
    "ReleaseResult": "registry.releases.release",
    "ChannelTag": "registry.releases.channels",
    "HealthAction": "registry.releases.health",
    "HealthMove": "registry.releases.health",
    "ExamplesReport": "registry.runs.examples",
    "ExampleResult": "registry.runs.examples",
    "Proposal": "registry.workspace.proposals",
    "Metrics": "registry.index.contract",
    "SyncReport": "registry.index.sync",
    "Drift": "registry.index.drift",
    # building blocks
    "Config": "registry.config",
    "GitStore": "registry.git.store",
    "Metadata": "registry.core.model",
    "json_schema": "registry.core.model",
    "Problem": "registry.core.problems",
    "Reason": "registry.core.reasons",
    "ReasonKind": "registry.core.reasons",
    "FileEntry": "registry.core.snapshot",
    "Snapshot": "registry.core.snapshot",
    "ValidationResult": "registry.core.validation",
    "validate_snapshot": "registry.core.validation",
    "BumpDecision": "registry.core.versioning",
    "DiffStats": "registry.core.versioning",
    "decide_bump": "registry.core.versioning",
    "next_version": "registry.core.versioning",
}

__all__ = [
    "AsyncRegistry",
    "BumpDecision",
    "ChannelTag",
    "Config",
    "ConfigError",
    "ConflictError",
    "DiffStats",
    "Drift",
    "EnvironmentBuildError",
    "ExampleResult",
    "ExamplesFailed",
    "ExamplesReport",
    "ExecutionError",
    "FileEntry",
    "GitError",
    "GitStore",
    "HealthAction",
    "HealthMove",
    "HistoryEntry",
    "HistoryIncomplete",
    "IndexCorrupt",
    "IndexNotSynced",
    "IndexRejected",
    "IndexUnavailable",
    "JobError",
    "JobHandle",
    "JobInfo",
    "LockError",
    "LockedError",
    "Metadata",
    "Metrics",
    "MigrationError",
    "NotFoundError",
    "PermissionDenied",
    "Problem",
    "ProcedureDetail",
    "ProcedureDiff",
    "ProcedureSummary",
    "Proposal",
    "QueueUnavailable",
    "Reason",
    "ReasonKind",
    "Registry",
    "RegistryError",
    "RegistryTimeout",
    "ReleasePlan",
    "ReleaseResult",
    "RunResult",
    "Snapshot",
    "SyncReport",
    "UsageError",
    "ValidationFailed",
    "ValidationResult",
    "VersionInfo",
    "decide_bump",
    "json_schema",
    "next_version",
    "validate_snapshot",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'registry' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from registry.api import (
        AsyncRegistry,
        HistoryEntry,
        ProcedureDetail,
        ProcedureDiff,
        ProcedureSummary,
        Registry,
        VersionInfo,
    )
    from registry.config import Config
    from registry.core.model import Metadata, json_schema
    from registry.core.problems import Problem
    from registry.core.reasons import Reason, ReasonKind
    from registry.core.snapshot import FileEntry, Snapshot
    from registry.core.validation import ValidationResult, validate_snapshot
    from registry.core.versioning import BumpDecision, DiffStats, decide_bump, next_version
    from registry.errors import (
        ConfigError,
        ConflictError,
        EnvironmentBuildError,
        ExamplesFailed,
        ExecutionError,
        GitError,
        HistoryIncomplete,
        IndexCorrupt,
        IndexNotSynced,
        IndexRejected,
        IndexUnavailable,
        JobError,
        LockedError,
        LockError,
        MigrationError,
        NotFoundError,
        PermissionDenied,
        QueueUnavailable,
        RegistryError,
        RegistryTimeout,
        UsageError,
        ValidationFailed,
    )
    from registry.git.store import GitStore
    from registry.index.contract import Metrics
    from registry.index.drift import Drift
    from registry.index.sync import SyncReport
    from registry.releases.channels import ChannelTag
    from registry.releases.health import HealthAction, HealthMove
    from registry.releases.plan import ReleasePlan
    from registry.releases.release import ReleaseResult
    from registry.runs.examples import ExampleResult, ExamplesReport
    from registry.runs.execution import RunResult
    from registry.runs.queue import JobHandle, JobInfo
    from registry.workspace.proposals import Proposal
