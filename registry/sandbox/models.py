"""What goes into a sandboxed run and what comes out of it, and the stable failure classes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

import registry.sandbox.supervisor as sup
from registry.core.failures import WORKER_LOST
from registry.core.network import NetworkAccess, NetworkDenial

TIMEOUT = "Timeout"
CPU_LIMIT = "CpuLimitExceeded"
MEMORY_LIMIT = sup.MEMORY_LIMIT
OUTPUT_LIMIT = sup.OUTPUT_LIMIT
PROCESS_LIMIT = sup.PROCESS_LIMIT
SANDBOX_VIOLATION = sup.SANDBOX_VIOLATION
CRASHED = "Crashed"
MALFORMED_RESULT = "MalformedResult"
ARGUMENT_ERROR = sup.ARGUMENT_ERROR
NOT_SERIALIZABLE = sup.NOT_SERIALIZABLE
INVALID_PROCEDURE = sup.INVALID_PROCEDURE
SANDBOX_UNAVAILABLE = "SandboxUnavailable"
ENVIRONMENT_BUILD = "EnvironmentBuildError"

FAILURE_TYPES: dict[str, str] = {
    TIMEOUT: "ran longer than its wall-clock limit; every process of the run was killed",
    CPU_LIMIT: "used more CPU time than its limit (RLIMIT_CPU)",
    MEMORY_LIMIT: "ran out of memory: the run's cgroup limit (all its processes and its "
    "tmpfs) or its address-space limit",
    OUTPUT_LIMIT: "wrote more than the hard output cap, or returned a result too large "
    "(output over max_output_bytes is only truncated and flagged)",
    PROCESS_LIMIT: "tried to start a process, or hit the run's process limit (fork bomb)",
    SANDBOX_VIOLATION: "did something the sandbox forbids: a write outside its private "
    "folders, network, a refused system call, or an OS permission denial",
    CRASHED: "died of a signal or exited without a result",
    MALFORMED_RESULT: "sent back something that is not a well-formed result (bad framing, "
    "not JSON, nested deeper than the sandbox accepts)",
    ARGUMENT_ERROR: "the keyword arguments do not fit the entry point, or are not JSON",
    NOT_SERIALIZABLE: "the result is not JSON (NaN and infinities included)",
    INVALID_PROCEDURE: "no main.py, a syntax error in it, or no such entry point",
    SANDBOX_UNAVAILABLE: "the isolation engine could not start the run (see procreg doctor)",
    ENVIRONMENT_BUILD: "the environment of the version's pylock.toml could not be built "
    "(the message names the requirement); nothing ran",
    WORKER_LOST: "the worker running a queued job died (no heartbeat); the job was put back "
    "and ran again as its next attempt. Not the version's failure: metrics and health "
    "do not count it",
}
"""Stable ``RunError.type`` values; any other type is the procedure's own exception class."""

NPROC_LIMIT = 32
NOFILE_LIMIT = sup.NOFILE_LIMIT
FSIZE_MB = sup.FSIZE_MB


class RunRequest(BaseModel):
    """One run: the procedure's files, the entry point, its arguments and limits."""

    model_config = ConfigDict(extra="forbid")

    files: dict[str, str]
    entry_point: str = "main"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)
    memory_mb: int = Field(default=256, ge=16)
    cpu_s: float | None = Field(default=None, gt=0)
    max_output_bytes: int = Field(default=65536, gt=0)
    env: str | None = None
    """A built environment's folder (:mod:`registry.sandbox.envs`): bind-mounted read-only
    into the sandbox and put on the procedure's ``sys.path``, after the standard library."""
    network_allow: list[str] | None = None
    """``metadata.json`` ``network.allow``: the host:port pairs the run may reach through the
    filtering proxy (:mod:`registry.sandbox.netproxy`). None: no network at all."""

    @field_validator("network_allow")
    @classmethod
    def _endpoints(cls, allow: list[str] | None) -> list[str] | None:
        if allow is not None:
            NetworkAccess(allow=allow)
        return allow


class RunError(BaseModel):
    """Why a run failed: ``type`` is one of ``FAILURE_TYPES`` or an exception class."""

    type: str
    message: str


class ResourceUsage(BaseModel):
    """What the procedure's process consumed."""

    cpu_user_ms: float
    cpu_system_ms: float
    max_rss_kb: int


class RunOutcome(BaseModel):
    """The result of a run, successful or not.

    ``isolation`` names the engine the run had: ``"bubblewrap"``, or ``"none"``
    when ``procreg.toml`` says ``[sandbox] require_isolation = false`` and
    bubblewrap could not be used.
    """

    ok: bool
    result: Any = None
    error: RunError | None = None
    duration_ms: float
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    usage: ResourceUsage | None = None
    isolation: str | None = None
    network_denied: list[NetworkDenial] = Field(default_factory=list)
    """Every request of the run the network proxy refused (a run with ``network`` only)."""


class LayerStatus(BaseModel):
    """One isolation layer and whether it is really in force here."""

    name: str
    active: bool
    detail: str


def failure(kind: str, message: str, isolation: str | None = None) -> RunOutcome:
    """An outcome for a run that failed before (or without) a process."""
    return RunOutcome(
        ok=False, error=RunError(type=kind, message=message), duration_ms=0.0, isolation=isolation
    )
