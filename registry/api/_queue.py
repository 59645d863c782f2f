"""Queued runs in the API: submit, result, jobs, job, cancel_job, schedules.

A mixin of :class:`~registry.api._core.AsyncRegistry`. The queue lives in the PostgreSQL
index's database (procrastinate's tables, see :mod:`registry.runs.queue`); with the
embedded SQLite index every call here raises :class:`~registry.errors.QueueUnavailable`
saying how to point procreg at PostgreSQL. The queue's connections are opened on first
use and closed with the registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from registry.errors import QueueUnavailable, UsageError

if TYPE_CHECKING:
    from registry.git.store import GitStore
    from registry.index.contract import IndexBackend
    from registry.releases.history import Resolved
    from registry.runs.execution import RunResult
    from registry.runs.queue import JobHandle, JobInfo, Queue, ScheduleInfo

NEEDS_POSTGRES = (
    "queued runs need a PostgreSQL index (the job queue lives in its database); this "
    "registry uses the embedded SQLite index. Pass --database-url postgresql://USER@HOST/DB "
    "(or set PROCREG_DATABASE_URL, or database_url= in the API), and start workers on the "
    "same database with `procreg worker --database-url URL`"
)


class QueueSide:
    """Submit runs as jobs for workers, and wait for, list and cancel them."""

    store: GitStore
    backend: IndexBackend
    ref: str
    _queue: Queue | None = None
    _queue_lock: asyncio.Lock | None = None

    def queue_url(self) -> str:
        """The database URL of the job queue (the PostgreSQL index's); else QueueUnavailable."""
        from registry.index.postgres import PostgresIndex

        if not isinstance(self.backend, PostgresIndex):
            raise QueueUnavailable(NEEDS_POSTGRES)
        return self.backend.url

    async def job_queue(self) -> Queue:
        """The open :class:`~registry.runs.queue.Queue` of this registry's database."""
        from registry.runs.queue import Queue

        url = self.queue_url()
        if self._queue_lock is None:
            self._queue_lock = asyncio.Lock()
        async with self._queue_lock:
            if self._queue is None:
                self._queue = await Queue(url).open()
        return self._queue

    async def close_queue(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            await queue.close()

    async def submit(
        self,
        proc_id: str,
        spec: str | None = None,
        /,
        *,
        queue: str | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
        caller: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> JobHandle:
        """Queue a run of ``proc_id`` at ``spec`` for a worker; the job's handle.

        The version is resolved now (its commit and tree go with the job), so a worker
        runs exactly what this call saw. Keyword arguments are the procedure's, checked
        against its metadata now (:class:`UsageError` if they do not fit). ``queue``
        (default ``"default"``) is the worker queue, ``priority`` higher first.
        """
        from registry.runs import execution

        await self.job_queue()  # no PostgreSQL index, or unreachable: say so first
        resolved = await asyncio.to_thread(execution.resolve, self.store, proc_id, spec)
        return await self.submit_resolved(
            resolved,
            spec,
            {**(arguments or {}), **kwargs},
            queue=queue,
            priority=priority,
            timeout_s=timeout_s,
            caller=caller,
        )

    async def submit_resolved(
        self,
        resolved: Resolved,
        spec: str | None,
        merged: Mapping[str, Any],
        *,
        queue: str | None = None,
        priority: int = 0,
        timeout_s: float | None = None,
        caller: str | None = None,
    ) -> JobHandle:
        """:meth:`submit` of a version already resolved (``procreg run --queue`` has one)."""
        from registry.core.arguments import argument_problems
        from registry.runs import execution

        jobs = await self.job_queue()
        meta, _invalid = await asyncio.to_thread(execution.validated_metadata, self.store, resolved)
        if meta is not None:
            problems = argument_problems(meta, merged)
            if problems:
                where = f"{resolved.id}@{resolved.version or 'HEAD'}"
                raise UsageError(f"{where}: {'; '.join(problems)}")
        return await jobs.submit(
            resolved,
            merged,
            spec=spec,
            queue=queue,
            priority=priority,
            caller=caller or execution.default_caller(),
            timeout_s=timeout_s,
        )

    async def result(
        self,
        job_id: int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the API asks for it
    ) -> RunResult:
        """The run result of job ``job_id`` (as :meth:`run` returns), waiting for it.

        Woken by the database's NOTIFY when the job ends. Raises :class:`JobError` when
        the job ended without a run (cancelled; no worker could run it) and
        :class:`RegistryTimeout` after ``timeout`` seconds.
        """
        return await (await self.job_queue()).result(job_id, timeout)

    async def jobs(
        self, state: str | None = None, *, proc_id: str | None = None, limit: int = 100
    ) -> list[JobInfo]:
        """Jobs, newest first: all, or those in ``state`` (``todo``, ``doing``, ...)."""
        return await (await self.job_queue()).jobs(state, proc_id=proc_id, limit=limit)

    async def job(self, job_id: int) -> JobInfo:
        """Job ``job_id`` with its attempts (worker, outcome) and its last run result."""
        return await (await self.job_queue()).job(job_id)

    async def cancel_job(self, job_id: int) -> JobInfo:
        """Cancel job ``job_id`` if no worker has taken it yet (else :class:`UsageError`)."""
        return await (await self.job_queue()).cancel(job_id)

    async def schedules(self) -> list[ScheduleInfo]:
        """The ``[[schedule]]`` entries of ``procreg.toml``, with their last and next run."""
        from registry.config import worktree_config

        entries = worktree_config(self.store).schedule
        return await (await self.job_queue()).schedules(entries)
