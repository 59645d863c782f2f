"""Run orchestration: the exact code of a version, validated again, run in the sandbox, recorded.

A run resolves ``ID[@SPEC]`` to a version (:func:`registry.releases.history.resolve`: an
exact version, a range, a channel, ``HEAD``; by default the latest release, else
the branch tip), reads that version's files from git objects (never a working tree
that may have drifted), validates them again with the config committed alongside,
checks the keyword arguments against the metadata, runs the entry point in a
:class:`~registry.sandbox.Sandbox` with the metadata's limits, and records the run.

What is recorded, and why:

- every run that reached the sandbox, whatever its outcome;
- a version that no longer validates (``InvalidProcedure``): it is the version's
  failure, not the caller's, and the health policy should see it (a release the
  current validator refuses is not fit for service);
- **not** arguments that do not fit the metadata (``ArgumentError`` found before a
  process starts): that is the caller's mistake, and counting it would let any
  caller drive a good release out of service.

Failures of the procedure are :class:`RunResult` values with ``ok=False``; only
problems that prevent a run (no such procedure or version, a broken sandbox) raise.

Checking and parsing the arguments lives in :mod:`registry.core.arguments`; contract
tests (a version's examples), which build on this module, in :mod:`registry.runs.examples`.
"""

from __future__ import annotations

import getpass
import logging
import math
import platform
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from registry.config import Config
from registry.core.arguments import ARGUMENT_ERROR, argument_problems
from registry.core.model import Metadata, parse_metadata
from registry.core.network import NetworkDenial
from registry.core.pylock import LOCK_FILE
from registry.core.snapshot import METADATA_FILE, Snapshot
from registry.errors import EnvironmentBuildError, ExecutionError, RegistryError, UsageError
from registry.index.contract import ExecutionRecord, IndexBackend, Metrics
from registry.runs.recorder import RunRecorder, spool_dir

if TYPE_CHECKING:
    from registry.git.store import GitStore
    from registry.releases.history import Resolved
    from registry.sandbox import RunOutcome, Sandbox

log = logging.getLogger(__name__)

INVALID_PROCEDURE = "InvalidProcedure"
ENVIRONMENT_BUILD = "EnvironmentBuildError"
MAX_ERROR_MESSAGE = 2000


# --------------------------------------------------------------------------- models


class ErrorInfo(BaseModel):
    """Why a run failed: a stable failure class or the procedure's exception class."""

    type: str
    message: str


class Usage(BaseModel):
    """Resources the run's process used (absent when no process ran)."""

    cpu_ms: float | None = None
    max_rss_kb: int | None = None


class RunResult(BaseModel):
    """The result of one run, successful or not (what ``procreg run --json`` prints)."""

    ok: bool
    result: Any = None
    error: ErrorInfo | None = None
    duration_ms: float
    id: str
    version: str | None
    commit: str | None
    stdout: str = ""
    stderr: str = ""
    tree_id: str | None = None
    run_id: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    usage: Usage = Field(default_factory=Usage)
    isolation: str | None = None
    """The isolation engine the run had: ``bubblewrap``, or ``none`` (see ``procreg doctor``)."""
    network_denied: list[NetworkDenial] = Field(default_factory=list)
    """Every request the run's network proxy refused: target (host:port), when, why."""
    record_error: str | None = None
    """Set when the run's record could be neither stored nor spooled (the run did happen)."""


class JobAttempt(BaseModel):
    """Which attempt of which queued job a run is; its record names them (``Registry.submit``)."""

    job_id: int
    attempt: int
    worker: str


# --------------------------------------------------------------------------- helpers


def default_caller() -> str:
    """``user@host`` of this process (what a run records when no caller is given)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def resolve(store: GitStore, proc_id: str, spec: str | None = None) -> Resolved:
    """What ``ID@SPEC`` names (see :func:`registry.releases.history.resolve`)."""
    from registry.releases import history

    return history.resolve(store, proc_id, spec)


def declared_metadata(resolved: Resolved) -> Metadata | None:
    """The metadata of a resolved version if it parses (for typing CLI arguments)."""
    return parse_metadata(resolved.snapshot.text(METADATA_FILE))


def validated_metadata(store: GitStore, resolved: Resolved) -> tuple[Metadata | None, str | None]:
    """The metadata of a resolved version that validates, or None and a one-line reason.

    Validated with the registry config committed alongside the version. The
    answer is a pure function of the version's tree and that config, so it is
    kept (bounded) for the next run of the same tree under the same rules.
    """
    from registry.config import config_at
    from registry.core.validation import validate_snapshot

    rules = config_at(store, resolved.commit).validation
    key = (resolved.tree_id, rules.model_dump_json()) if resolved.tree_id else None
    if key is not None:
        with _VALIDATED_LOCK:
            known = _VALIDATED.get(key)
        if known is not None:
            return known
    checked = validate_snapshot(resolved.snapshot, rules)
    answer = _validation_answer(checked, resolved)
    if key is not None:
        with _VALIDATED_LOCK:
            _VALIDATED[key] = answer
            while len(_VALIDATED) > _VALIDATED_MAX:
                _VALIDATED.pop(next(iter(_VALIDATED)))
    return answer


_VALIDATED: dict[tuple[str, str], tuple[Metadata | None, str | None]] = {}
_VALIDATED_LOCK = threading.Lock()
_VALIDATED_MAX = 1024


def _validation_answer(checked: Any, resolved: Resolved) -> tuple[Metadata | None, str | None]:
    if checked.ok and checked.metadata is not None:
        return checked.metadata, None
    first = checked.problems[0].format() if checked.problems else "invalid metadata"
    more = len(checked.problems) - 1
    suffix = f" (and {more} more problem{'s' * (more > 1)})" if more > 0 else ""
    at = f"{resolved.version or 'HEAD'} ({resolved.commit[:12]})"
    return None, f"{resolved.id} {at} does not validate: {first}{suffix}"


def _request_files(snapshot: Snapshot) -> dict[str, str]:
    files: dict[str, str] = {}
    for name in snapshot.files:
        text = snapshot.text(name)
        if text is not None:
            files[name] = text
    return files


def build_request(
    snapshot: Snapshot,
    meta: Metadata,
    kwargs: Mapping[str, Any],
    *,
    timeout_s: float | None = None,
    config: Config | None = None,
    env: str | None = None,
) -> Any:
    """The sandbox request for one call: files from git, the metadata's limits, overrides.

    ``env`` is the folder of the version's built environment (:func:`locked_environment`).
    """
    from registry.sandbox import RunRequest

    config = config or Config()
    return RunRequest(
        files=_request_files(snapshot),
        entry_point=meta.entry_point,
        kwargs=dict(kwargs),
        timeout_s=timeout_s if timeout_s is not None else meta.limits.timeout_s,
        memory_mb=meta.limits.memory_mb,
        max_output_bytes=config.sandbox.max_output_bytes,
        env=env,
        network_allow=list(meta.network.allow) if meta.network is not None else None,
    )


def locked_environment(snapshot: Snapshot, config: Config | None = None) -> str | None:
    """The environment folder of the version's ``pylock.toml``, built once; None without a lock.

    The lock is the version's own (read from git with the rest of its files),
    so a run of an old version gets that version's libraries. Raises
    :class:`~registry.errors.EnvironmentBuildError` when uv cannot build it.
    """
    from registry.sandbox import sandbox_python
    from registry.sandbox.envs import EnvCache

    text = snapshot.text(LOCK_FILE)
    if text is None:
        return None
    cache = EnvCache.default((config or Config()).envs)
    env, _built = cache.ensure(text, sandbox_python())
    return env.path


def _bounded(message: str) -> str:
    return message if len(message) <= MAX_ERROR_MESSAGE else message[:MAX_ERROR_MESSAGE] + "..."


def _result_from(outcome: RunOutcome, resolved: Resolved, run_id: str) -> RunResult:
    usage = Usage()
    if outcome.usage is not None:
        usage = Usage(
            cpu_ms=outcome.usage.cpu_user_ms + outcome.usage.cpu_system_ms,
            max_rss_kb=outcome.usage.max_rss_kb,
        )
    error = None
    if outcome.error is not None:
        error = ErrorInfo(type=outcome.error.type, message=_bounded(outcome.error.message))
    return RunResult(
        ok=outcome.ok,
        result=outcome.result if outcome.ok else None,
        error=error,
        duration_ms=outcome.duration_ms,
        id=resolved.id,
        version=resolved.version,
        commit=resolved.commit,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        tree_id=resolved.tree_id,
        run_id=run_id,
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        usage=usage,
        isolation=outcome.isolation,
        network_denied=outcome.network_denied,
    )


def _failed(resolved: Resolved, run_id: str, kind: str, message: str, t0: float) -> RunResult:
    return RunResult(
        ok=False,
        error=ErrorInfo(type=kind, message=_bounded(message)),
        duration_ms=(time.perf_counter() - t0) * 1000,
        id=resolved.id,
        version=resolved.version,
        commit=resolved.commit,
        tree_id=resolved.tree_id,
        run_id=run_id,
    )


def execution_record(
    result: RunResult, started_at: datetime, caller: str, job: JobAttempt | None = None
) -> ExecutionRecord:
    """The index row of a run (of a queued job's attempt, with ``job``)."""
    return ExecutionRecord(
        run_id=result.run_id,
        id=result.id,
        version=result.version,
        commit=result.commit,
        tree_id=result.tree_id,
        python_version=platform.python_version(),
        caller=caller,
        started_at=started_at,
        duration_ms=max(0.0, result.duration_ms),
        outcome="success" if result.ok else "failure",
        error_type=result.error.type if result.error else None,
        error_message=result.error.message if result.error else None,
        cpu_ms=result.usage.cpu_ms,
        max_rss_kb=result.usage.max_rss_kb,
        isolation=result.isolation,
        network_denied=result.network_denied,
        job_id=job.job_id if job else None,
        attempt=job.attempt if job else None,
        worker=job.worker if job else None,
    )


# --------------------------------------------------------------------------- runs


async def run(
    store: GitStore,
    recorder: RunRecorder | IndexBackend | None,
    proc_id: str,
    spec: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    timeout_s: float | None = None,
    caller: str | None = None,
    sandbox: Sandbox,
    config: Config | None = None,
    resolved: Resolved | None = None,
    job: JobAttempt | None = None,
) -> RunResult:
    """Run ``proc_id`` at ``spec`` with ``kwargs`` in ``sandbox`` and record the run.

    ``recorder`` is a :class:`RunRecorder` (batched; the caller closes it), an open
    index backend (the record is delivered, or spooled, before this returns), or
    ``None`` (nothing recorded). ``timeout_s`` overrides the metadata's wall-clock
    limit; ``resolved`` (from :func:`resolve`) skips resolving again; ``job`` names the
    queued job whose attempt this run is (:mod:`registry.runs.queue`). Raises
    :class:`~registry.errors.NotFoundError` / ``UsageError`` when ``ID@SPEC`` names
    nothing, :class:`~registry.errors.ExecutionError` when the sandbox cannot run at
    all; every failure of the procedure is a ``RunResult``.
    """
    import anyio

    from registry.config import worktree_config
    from registry.releases import history

    if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout_s}")
    kwargs = dict(kwargs or {})
    run_id = uuid.uuid4().hex
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    if resolved is None:
        resolved = history.resolve(store, proc_id, spec)
    meta, invalid = validated_metadata(store, resolved)
    if meta is None:
        result = _failed(resolved, run_id, INVALID_PROCEDURE, invalid or "", t0)
    else:
        problems = argument_problems(meta, kwargs)
        if problems:
            return _failed(resolved, run_id, ARGUMENT_ERROR, "; ".join(problems), t0)
        if config is None:
            config = worktree_config(store)
        try:
            # only a version with a lock leaves the loop for its environment
            env = (
                await anyio.to_thread.run_sync(locked_environment, resolved.snapshot, config)
                if LOCK_FILE in resolved.snapshot.files
                else None
            )
        except EnvironmentBuildError as exc:
            # The version's libraries could not be had: a failure of its own class, recorded.
            result = _failed(resolved, run_id, ENVIRONMENT_BUILD, str(exc), t0)
        else:
            request = build_request(
                resolved.snapshot, meta, kwargs, timeout_s=timeout_s, config=config, env=env
            )
            try:
                outcome = await anyio.to_thread.run_sync(sandbox.run, request)
            except ExecutionError as exc:
                # The engine refused the run (fail closed): still a run, still recorded.
                from registry.sandbox import unavailable

                refused = _result_from(unavailable(str(exc)), resolved, run_id)
                record = execution_record(refused, started_at, caller or default_caller(), job)
                await _record(store, recorder, record)
                raise
            result = _result_from(outcome, resolved, run_id)
    lost = await _record(
        store, recorder, execution_record(result, started_at, caller or default_caller(), job)
    )
    return result if lost is None else result.model_copy(update={"record_error": lost})


async def _record(
    store: GitStore, recorder: RunRecorder | IndexBackend | None, record: ExecutionRecord
) -> str | None:
    """Record ``record``; why it could be neither stored nor spooled, if it could not.

    A batching :class:`RunRecorder` reports that itself (``unsaved``), later.
    """
    if recorder is None:
        return None
    if isinstance(recorder, RunRecorder):
        await recorder.record(record)
        return None
    once = RunRecorder(spool_dir(store.git_dir), recorder, batch_size=1)
    await once.record(record)
    reason = once.unsaved_reason if once.unsaved else None
    await once.close()
    return reason


async def deliver_records(
    store: GitStore, records: list[ExecutionRecord], database_url: str | None = None
) -> None:
    """Deliver ``records`` to ``store``'s index now (spooled if it is unreachable)."""
    from registry.index.connect import index_target, open_backend

    recorder = RunRecorder(
        spool_dir(store.git_dir),
        None,
        connect=lambda: open_backend(store, database_url),
        batch_size=max(1, len(records)),
        target=index_target(store, database_url),
    )
    try:
        for record in records:
            await recorder.record(record)
    finally:
        await recorder.close()


def open_recorder(
    store: GitStore,
    backend: IndexBackend | None = None,
    *,
    database_url: str | None = None,
    config: Config | None = None,
    health: bool = True,
    batch_size: int = 100,
    flush_interval_s: float = 1.0,
) -> RunRecorder:
    """A recorder for ``store``'s index that applies the health policy after each delivery.

    Without ``backend`` the recorder connects (``database_url``, else
    ``$PROCREG_DATABASE_URL``, else the SQLite index in ``.git``) when it first
    flushes, and reconnects after the index was unreachable.
    """
    from registry.config import worktree_config
    from registry.index.connect import index_target, open_backend
    from registry.releases import health as health_mod

    cfg = config or worktree_config(store)

    async def connect() -> IndexBackend:
        return await open_backend(store, database_url)

    recorder = RunRecorder(
        spool_dir(store.git_dir),
        backend,
        connect=None if backend is not None else connect,
        batch_size=batch_size,
        flush_interval_s=flush_interval_s,
        # what it spools waits for this index, never another's
        target=None if backend is not None else index_target(store, database_url),
    )

    async def after_flush(ids: set[str]) -> None:
        index = recorder.backend
        if index is None:
            return
        for proc_id in sorted(ids):
            try:
                recorder.events += await health_mod.apply_policy(store, index, proc_id, cfg)
            except RegistryError as exc:
                log.warning("health policy for %s not applied: %s", proc_id, exc)

    if health and cfg.health.enabled:
        recorder.on_flush = after_flush
    return recorder


class Runner:
    """Runs for a long-lived owner (``AsyncRegistry``): a warm sandbox and a batched recorder.

    Both are created on the first run, so an owner that never runs anything pays
    nothing. Records are delivered in batches (``batch_size`` runs or
    ``flush_interval_s`` seconds, and on :meth:`close`), spooled while the index is
    unreachable, and the health policy is applied after each delivery. Close it
    before closing ``backend``.
    """

    def __init__(
        self,
        store: GitStore,
        backend: IndexBackend,
        *,
        config: Config | None = None,
        batch_size: int = 100,
        flush_interval_s: float = 0.5,
        pool_size: int | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.config = config
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.pool_size = pool_size
        self._sandbox: Sandbox | None = None
        self._recorder: RunRecorder | None = None

    def _ensure(self) -> tuple[Sandbox, RunRecorder, Config]:
        from registry.config import worktree_config
        from registry.sandbox import Sandbox

        if self.config is None:
            self.config = worktree_config(self.store)
        if self._sandbox is None:
            self._sandbox = Sandbox(self.config.sandbox, pool_size=self.pool_size)
        if self._recorder is None:
            self._recorder = open_recorder(
                self.store,
                self.backend,
                config=self.config,
                batch_size=self.batch_size,
                flush_interval_s=self.flush_interval_s,
            )
        return self._sandbox, self._recorder, self.config

    async def run(
        self,
        proc_id: str,
        spec: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        caller: str | None = None,
    ) -> RunResult:
        """Run ``proc_id@spec`` with ``kwargs`` (see :func:`run`)."""
        sandbox, recorder, config = self._ensure()
        return await run(
            self.store,
            recorder,
            proc_id,
            spec,
            kwargs,
            timeout_s=timeout_s,
            caller=caller,
            sandbox=sandbox,
            config=config,
        )

    async def flush(self) -> None:
        """Deliver (or spool) the buffered run records now."""
        if self._recorder is not None:
            await self._recorder.flush()

    async def close(self) -> None:
        """Flush the records and stop the warm pool (the backend stays open)."""
        recorder, self._recorder = self._recorder, None
        sandbox, self._sandbox = self._sandbox, None
        try:
            if recorder is not None:
                await recorder.close()
        finally:
            if sandbox is not None:
                sandbox.close()


async def metrics(backend: IndexBackend, proc_id: str) -> Metrics:
    """Run statistics of ``proc_id``, overall and per version (``Registry.metrics``)."""
    return await backend.metrics(proc_id)


def spool_path(store: GitStore) -> Path:
    """Where this repository's undelivered run records wait."""
    return spool_dir(store.git_dir)
