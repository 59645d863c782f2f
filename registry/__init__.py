"""procreg: a git-native registry of executable procedures."""

from __future__ import annotations

from registry.errors import (
    ConfigError,
    ConflictError,
    ExecutionError,
    GitError,
    IndexUnavailable,
    MigrationError,
    NotFoundError,
    RegistryError,
    UsageError,
    ValidationFailed,
)
from registry.gitstore import GitStore
from registry.model import Metadata, json_schema
from registry.problems import Problem
from registry.snapshot import FileEntry, Snapshot
from registry.validation import ValidationResult, validate_snapshot
from registry.versioning import BumpDecision, DiffStats, decide_bump, next_version

__all__ = [
    "BumpDecision",
    "ConfigError",
    "ConflictError",
    "DiffStats",
    "ExecutionError",
    "FileEntry",
    "GitError",
    "GitStore",
    "IndexUnavailable",
    "Metadata",
    "MigrationError",
    "NotFoundError",
    "Problem",
    "RegistryError",
    "Snapshot",
    "UsageError",
    "ValidationFailed",
    "ValidationResult",
    "decide_bump",
    "json_schema",
    "next_version",
    "validate_snapshot",
]
