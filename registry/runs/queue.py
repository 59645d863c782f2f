"""Queued runs: jobs in PostgreSQL through procrastinate, run by workers in their own sandbox.

Submitting resolves ``ID@SPEC`` to a version, commit and tree *then*, and the job carries
them, so a worker runs exactly the commit the caller saw even if a release lands
meanwhile. A worker (``procreg worker``) is a procrastinate worker whose task reads that
commit from its own clone (fetching from the clone's remote when the commit is missing),
runs it through :func:`registry.runs.execution.run` like a local run (same validation,
environments, sandbox and limits) and records the run in the shared index with the job
id, the attempt and the worker's host name.

The queue's tables are procrastinate's own (index migration 7 applies its schema) and
``job_attempts``: one row an attempt, with the worker, the outcome and the
:class:`~registry.runs.execution.RunResult` that :meth:`Queue.result` returns. A trigger
NOTIFYs ``procreg_job_done`` when a job reaches a final state; ``result`` waits on that
(one LISTEN connection a :class:`Queue`), never by polling.

Exactly once, as far as a database can say it:

- procrastinate hands a job to one worker (``FOR UPDATE SKIP LOCKED``);
- a worker that dies mid-job (SIGKILL, a lost host) stops its heartbeat; after
  ``[queue] stalled_after_s`` any live worker's reaper puts the job back (one wins the
  row lock), marks the attempt ``lost`` and, in the same transaction, writes the lost
  attempt's own run record (error type ``WorkerLost``, its run id derived from the job id
  and the attempt, so a second reaper writes nothing); the next attempt is a new run
  record;
- a ``WorkerLost`` record is not the version's failure: counting it would let dying
  hosts drive a release out of service, so metrics, success rates and health skip it
  (both backends, their ``procedure_health`` triggers included) and count each job once,
  by the attempt that ran;
- a procedure's own failure ends the job (``failed``) unless its metadata says
  ``retries``; a worker that cannot run the job at all (its commit is nowhere) ends it
  ``failed`` with that error and no run record;
- an attempt's run record and the end of the attempt are one transaction, so a run is
  never recorded without its attempt saying so (and the next attempt, seeing a success,
  does not run it again). The health policy follows from the worker's housekeeping.

This is the only module that speaks to the queue (procrastinate and its psycopg
connector; procrastinate has no asyncpg connector). Nothing here prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, Field

from registry.core.arguments import ARGUMENT_ERROR
from registry.core.failures import WORKER_LOST
from registry.errors import (
    ExecutionError,
    JobError,
    NotFoundError,
    RegistryError,
    RegistryTimeout,
    UsageError,
)
from registry.index.contract import EXECUTION_COLUMNS, ExecutionRecord
from registry.index.sql import column_list
from registry.runs.execution import JobAttempt, RunResult

if TYPE_CHECKING:
    import procrastinate
    from procrastinate import job_context

    from registry.config import Config, ScheduleEntry
    from registry.git.store import GitStore
    from registry.index.contract import IndexBackend
    from registry.releases.history import Resolved
    from registry.sandbox import Sandbox

log = logging.getLogger(__name__)

RUN_TASK = "procreg.run"
"""The procrastinate task of a submitted run."""
SCHEDULED_TASK = "procreg.scheduled"
"""The procrastinate task of a ``[[schedule]]`` tick (resolved when it fires)."""
DONE_CHANNEL = "procreg_job_done"
"""The NOTIFY channel of jobs reaching a final state (payload: the job id)."""
DEFAULT_QUEUE = "default"
STATES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborted")
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "aborted"})
SAFETY_RECHECK_S = 5.0
"""A waiter re-reads the job this often in case its LISTEN connection dropped a NOTIFY."""
CONTEXT_KEY = "procreg"
LOST_RUNS = uuid.UUID("6f1d2c1e-5b0e-4d7a-9a51-70726f636c6f")
"""The uuid5 namespace of lost attempts' run ids (see :func:`lost_run_id`)."""
SNAPSHOTS_KEPT = 256
"""Procedure trees a worker keeps read (a job of a tree it has read needs no git read)."""


# --------------------------------------------------------------------------- models


class JobHandle(BaseModel):
    """A submitted job: what it will run, resolved when it was submitted."""

    job_id: int
    id: str
    version: str | None
    commit: str
    tree_id: str
    spec: str | None = None
    queue: str
    priority: int = 0


class AttemptInfo(BaseModel):
    """One attempt of a job: which worker, when, and how it ended (``None``: running)."""

    attempt: int
    worker: str
    pid: int | None = None
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str | None = None
    """``success`` / ``failure`` (the procedure's), ``error`` (not run), ``lost`` (worker died)."""
    run_id: str | None = None
    error: str | None = None


class JobInfo(BaseModel):
    """A job as ``procreg jobs`` / ``procreg job`` show it."""

    job_id: int
    id: str | None
    version: str | None = None
    commit: str | None = None
    spec: str | None = None
    schedule: str | None = None
    """The ``[[schedule]]`` entry that made the job, if a schedule did."""
    queue: str
    priority: int
    state: str
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: list[AttemptInfo] = Field(default_factory=list)
    result: RunResult | None = None
    """The last attempt's run result (``procreg job`` only)."""


class ScheduleInfo(BaseModel):
    """A ``[[schedule]]`` entry with its last tick (from the queue) and its next one."""

    schedule: str
    id: str
    spec: str | None
    cron: str
    args: dict[str, Any]
    queue: str
    last_run: datetime | None = None
    last_job_id: int | None = None
    last_state: str | None = None
    next_run: datetime


class ProcedureFailed(RegistryError):
    """Raised inside a worker's task when the run failed (so procrastinate may retry it)."""

    def __init__(self, result: RunResult, retries: int, failures: int) -> None:
        assert result.error is not None
        error = result.error
        super().__init__(f"{result.id}@{result.version}: {error.type}: {error.message}")
        self.retries = retries
        self.failures = failures


def schedule_key(entry: ScheduleEntry) -> str:
    """The periodic id of a schedule entry: its id and a digest of what it says."""
    said = json.dumps(entry.model_dump(mode="json"), sort_keys=True)
    return f"{entry.id}-{hashlib.sha256(said.encode()).hexdigest()[:12]}"


def job_caller(args: Mapping[str, Any], *, scheduled: bool) -> str | None:
    """Who a job's runs name as the caller: the submitter's, or ``schedule:KEY``."""
    caller = args.get("caller")
    if caller is None and scheduled:
        caller = f"schedule:{args.get('schedule')}"
    return cast("str | None", caller)


def lost_run_id(job_id: int, attempt: int) -> str:
    """The run id of a lost attempt's record: the same for every reaper (idempotent)."""
    return uuid.uuid5(LOST_RUNS, f"{job_id}:{attempt}").hex


def lost_record(
    job: Any, attempt: int, run_id: str, ended: Mapping[str, Any], silence: str
) -> ExecutionRecord:
    """The ``WorkerLost`` run record of ``job``'s ``attempt``, whose worker died.

    ``ended`` is the attempt's row as the reaper ended it (worker, start, end, and what a
    scheduled job had resolved); a submitted job carries its version, commit and tree.
    """
    from registry.runs import execution

    args = job.task_kwargs
    scheduled = job.task_name == SCHEDULED_TASK
    worker = None if ended["worker"] == "?" else str(ended["worker"])
    started_at: datetime = ended["started_at"]
    duration = max(0.0, (ended["finished_at"] - started_at).total_seconds() * 1000)
    where = f"on host {worker}" if worker else "(it had not said which host)"
    return ExecutionRecord(
        run_id=run_id,
        id=str(args["id"]),
        version=ended["version"] or args.get("version"),
        commit=ended["commit"] or args.get("commit"),
        tree_id=ended["tree_id"] or args.get("tree_id"),
        caller=job_caller(args, scheduled=scheduled) or execution.default_caller(),
        started_at=started_at,
        duration_ms=duration,
        outcome="failure",
        error_type=WORKER_LOST,
        error_message=(
            f"the worker running job {job.id} {where} stopped answering: no heartbeat for "
            f"{silence}; the job was put back and runs again as attempt {attempt + 1}"
        ),
        job_id=int(job.id),
        attempt=attempt,
        worker=worker,
    )


def worker_host() -> str:
    """What a run record names as the worker: this host's name."""
    return socket.gethostname()


# --------------------------------------------------------------------------- SQL

_JOB_COLUMNS = """j.id, j.queue_name, j.task_name, j.priority, j.args, j.status::text AS status,
    (SELECT min(e.at) FROM procrastinate_events e WHERE e.job_id = j.id) AS submitted_at,
    (SELECT max(e.at) FROM procrastinate_events e WHERE e.job_id = j.id
        AND e.type IN ('succeeded', 'failed', 'cancelled', 'aborted')) AS finished_at"""
SELECT_JOBS = f"""SELECT {_JOB_COLUMNS} FROM procrastinate_jobs j
WHERE j.task_name IN ('procreg.run', 'procreg.scheduled')
  AND (%(status)s::text IS NULL OR j.status::text = %(status)s)
  AND (%(id)s::text IS NULL OR j.args->>'id' = %(id)s)
ORDER BY j.id DESC LIMIT %(limit)s"""
SELECT_JOB = f"""SELECT {_JOB_COLUMNS} FROM procrastinate_jobs j
WHERE j.id = %(job_id)s AND j.task_name IN ('procreg.run', 'procreg.scheduled')"""
SELECT_STATUS = "SELECT status::text AS status FROM procrastinate_jobs WHERE id = %(job_id)s"
SELECT_ATTEMPTS = """SELECT job_id, attempt, worker, pid, started_at, finished_at, outcome,
    run_id, error FROM job_attempts WHERE job_id = ANY(%(job_ids)s) ORDER BY job_id, attempt"""
SELECT_LAST_RESULT = """SELECT result, error, outcome FROM job_attempts WHERE job_id = %(job_id)s
ORDER BY attempt DESC LIMIT 1"""
COUNT_FAILURES = """SELECT count(*) AS n FROM job_attempts
WHERE job_id = %(job_id)s AND outcome = 'failure'"""
# one round trip: an attempt that already succeeded (its worker died before telling the
# queue) means the job is done; else this attempt is begun
BEGIN_ATTEMPT = """WITH done AS (
    SELECT attempt FROM job_attempts
    WHERE job_id = %(job_id)s AND outcome = 'success' AND attempt < %(attempt)s LIMIT 1
), begun AS (
    INSERT INTO job_attempts (job_id, attempt, worker, pid, started_at)
    SELECT %(job_id)s, %(attempt)s, %(worker)s, %(pid)s, now()
    WHERE NOT EXISTS (SELECT 1 FROM done)
    ON CONFLICT (job_id, attempt) DO UPDATE
        SET worker = excluded.worker, pid = excluded.pid, started_at = excluded.started_at
    RETURNING attempt
)
SELECT (SELECT attempt FROM done) AS done_attempt"""
END_ATTEMPT = """UPDATE job_attempts SET finished_at = now(), outcome = %(outcome)s,
    run_id = %(run_id)s, result = %(result)s, error = %(error)s
WHERE job_id = %(job_id)s AND attempt = %(attempt)s"""
INSERT_EXECUTION = (
    f"INSERT INTO executions ({column_list(EXECUTION_COLUMNS)}) VALUES ("
    + ", ".join(f"%({c})s" for c in EXECUTION_COLUMNS)
    + ") ON CONFLICT (run_id) DO NOTHING"
)
"""A run record, written in the transaction that ends its attempt (see :meth:`Worker._end`)."""


def _execution_values(record: ExecutionRecord) -> dict[str, Any]:
    """``INSERT_EXECUTION``'s parameters: the record's columns, dicts and lists as jsonb."""
    from psycopg.types.json import Jsonb

    return {
        c: Jsonb(v) if isinstance(v, dict | list) else v for c, v in record.model_dump().items()
    }


LOSE_ATTEMPT = """INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at,
    outcome, run_id, error)
VALUES (%(job_id)s, %(attempt)s, '?', now(), now(), 'lost', %(run_id)s, %(error)s)
ON CONFLICT (job_id, attempt) DO UPDATE SET finished_at = now(), outcome = 'lost',
    run_id = excluded.run_id, error = excluded.error
WHERE job_attempts.outcome IS NULL
RETURNING worker, started_at, finished_at, version, "commit", tree_id"""
"""The reaper's end of a lost attempt; a row back means this reaper ended it (then it
writes the attempt's ``WorkerLost`` run record in the same transaction)."""
RESOLVED_ATTEMPT = """UPDATE job_attempts SET version = %(version)s, "commit" = %(commit)s,
    tree_id = %(tree_id)s WHERE job_id = %(job_id)s AND attempt = %(attempt)s"""
"""What a scheduled job's attempt resolved (its job carries only ``ID@SPEC``)."""
SELECT_SILENCE = """SELECT extract(epoch FROM now() - w.last_heartbeat) AS silent_s
FROM procrastinate_jobs j JOIN procrastinate_workers w ON w.id = j.worker_id
WHERE j.id = %(job_id)s"""
SELECT_LAST_TICKS = """SELECT DISTINCT ON (d.periodic_id) d.periodic_id, d.defer_timestamp,
    d.job_id, j.status::text AS status
FROM procrastinate_periodic_defers d LEFT JOIN procrastinate_jobs j ON j.id = d.job_id
WHERE d.task_name = 'procreg.scheduled'
ORDER BY d.periodic_id, d.defer_timestamp DESC"""


# --------------------------------------------------------------------------- the app


def _retry_strategy() -> Any:
    from procrastinate import retry

    class ProcedureRetry(retry.BaseRetryStrategy):
        """Retry a run that failed only as often as its metadata's ``retries`` says."""

        def get_retry_decision(
            self, *, exception: BaseException, job: procrastinate.jobs.Job
        ) -> retry.RetryDecision | None:
            if isinstance(exception, ProcedureFailed) and exception.failures <= exception.retries:
                return retry.RetryDecision(retry_in={"seconds": 0})
            return None

    return ProcedureRetry()


def _pool_without_check(**kwargs: Any) -> Any:
    # procrastinate asks the pool to check every connection it hands out (one more round
    # trip per query); a broken connection is discarded when it fails all the same. Its
    # queries are single statements, so they need no BEGIN and COMMIT around them
    # (autocommit); a transaction that needs one says so (``conn.transaction()``).
    from psycopg_pool import AsyncConnectionPool

    async def configure(conn: Any) -> None:
        await conn.set_autocommit(True)

    kwargs.pop("check", None)
    return AsyncConnectionPool(**kwargs, configure=configure)


def make_app(url: str, schedules: Sequence[ScheduleEntry] = (), *, pool_max: int = 10) -> Any:
    """The procrastinate App of the queue at ``url``, its tasks and periodic tasks registered."""
    import procrastinate

    connector = procrastinate.PsycopgConnector(
        conninfo=url,
        min_size=1,
        max_size=pool_max,
        kwargs={"application_name": "procreg"},
        pool_factory=_pool_without_check,
    )
    app = procrastinate.App(connector=connector)
    strategy = _retry_strategy()
    app.task(name=RUN_TASK, pass_context=True, retry=strategy)(_run_task)
    scheduled = app.task(name=SCHEDULED_TASK, pass_context=True, retry=strategy)(_scheduled_task)
    for entry in schedules:
        app.periodic(
            cron=entry.cron,
            periodic_id=schedule_key(entry),
            queue=entry.queue or DEFAULT_QUEUE,
            task_kwargs={
                "schedule": schedule_key(entry),
                "id": entry.id,
                "spec": entry.spec,
                "kwargs": dict(entry.args),
            },
        )(cast("Any", scheduled))  # its kwargs carry the tick's timestamp
    return app


async def _run_task(context: job_context.JobContext, **args: Any) -> None:
    worker: Worker = context.additional_context[CONTEXT_KEY]
    await worker.run_job(context.job, args, scheduled=False)


async def _scheduled_task(context: job_context.JobContext, **args: Any) -> None:
    worker: Worker = context.additional_context[CONTEXT_KEY]
    await worker.run_job(context.job, args, scheduled=True)


# --------------------------------------------------------------------------- client side


class Queue:
    """The job queue in the PostgreSQL database at ``url``: submit, wait, list, cancel.

    Open it (``async with``); it holds a small psycopg pool and, once something waits
    for a result, one LISTEN connection.
    """

    def __init__(self, url: str, schedules: Sequence[ScheduleEntry] = (), *, pool_max: int = 10):
        self.url = url
        self.app = make_app(url, schedules, pool_max=pool_max)
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._listen_lock = asyncio.Lock()

    async def open(self) -> Queue:
        from procrastinate import exceptions

        try:
            await self.app.open_async()
        except (OSError, exceptions.ProcrastinateException) as exc:
            raise JobError(f"cannot reach the job queue at {_where(self.url)}: {exc}") from exc
        return self

    async def close(self) -> None:
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.app.close_async()

    async def __aenter__(self) -> Queue:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connector(self) -> Any:
        return self.app.connector

    # -- submit ---------------------------------------------------------------

    async def submit(
        self,
        resolved: Resolved,
        kwargs: Mapping[str, Any],
        *,
        spec: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        caller: str | None = None,
        timeout_s: float | None = None,
    ) -> JobHandle:
        """Queue one run of ``resolved`` (a version resolved now) with ``kwargs``."""
        name = queue or DEFAULT_QUEUE
        deferrer = self.app.configure_task(RUN_TASK, queue=name, priority=priority)
        job_id = await deferrer.defer_async(
            id=resolved.id,
            version=resolved.version,
            commit=resolved.commit,
            tree_id=resolved.tree_id,
            tag=resolved.tag,
            source=resolved.source,
            channel=resolved.channel,
            spec=spec,
            kwargs=dict(kwargs),
            caller=caller,
            timeout_s=timeout_s,
        )
        return JobHandle(
            job_id=job_id,
            id=resolved.id,
            version=resolved.version,
            commit=resolved.commit,
            tree_id=resolved.tree_id,
            spec=spec,
            queue=name,
            priority=priority,
        )

    # -- wait -----------------------------------------------------------------

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {DONE_CHANNEL}")
                    self._listening.set()
                    # a NOTIFY missed while reconnecting: everyone re-reads
                    self._wake_all()
                    async for note in conn.notifies():
                        with contextlib.suppress(ValueError):
                            for event in self._waiters.get(int(note.payload), ()):
                                event.set()
            except psycopg.Error as exc:
                log.warning("job queue listener reconnects: %s", exc)
                self._listening.clear()
                await asyncio.sleep(0.5)

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _ensure_listener(self) -> None:
        async with self._listen_lock:
            if self._listener is None:
                self._listener = asyncio.create_task(self._listen(), name="procreg job listener")
        await self._listening.wait()

    async def state(self, job_id: int) -> str:
        """The job's procrastinate status (``todo``, ``doing``, ``succeeded``, ...)."""
        rows = await self.connector.execute_query_all_async(SELECT_STATUS, job_id=job_id)
        if not rows:
            raise NotFoundError(f"no job {job_id} in the queue at {_where(self.url)}", kind="job")
        return str(rows[0]["status"])

    async def wait(self, job_id: int, timeout: float | None = None) -> str:  # noqa: ASYNC109
        """Wait until the job reaches a final state (woken by NOTIFY); that state."""
        await self._ensure_listener()
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                event.clear()
                state = await self.state(job_id)
                if state in FINAL_STATES:
                    return state
                left = SAFETY_RECHECK_S if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise RegistryTimeout(
                        f"job {job_id} is still {state} after {timeout} s; "
                        f"`procreg job {job_id}` shows where it is"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(left, SAFETY_RECHECK_S))
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    async def result(
        self,
        job_id: int,
        timeout: float | None = None,  # noqa: ASYNC109 - a caller deadline
    ) -> RunResult:
        """The run result of the job's last attempt, once the job is over.

        Raises :class:`JobError` for a job that ended without running (cancelled, or a
        worker could not run it) and :class:`RegistryTimeout` when ``timeout`` passes.
        """
        state = await self.wait(job_id, timeout)
        rows = await self.connector.execute_query_all_async(SELECT_LAST_RESULT, job_id=job_id)
        last = rows[0] if rows else None
        if last is not None and last["result"] is not None:
            return RunResult.model_validate(last["result"])
        why = last["error"] if last is not None and last["error"] else None
        if why is None and state == "cancelled":
            why = "cancelled before a worker took it"
        raise JobError(
            f"job {job_id} ended {state} without a run" + (f": {why}" if why else ""),
            job_id=job_id,
            state=state,
        )

    # -- inspect --------------------------------------------------------------

    async def jobs(
        self, state: str | None = None, *, proc_id: str | None = None, limit: int = 100
    ) -> list[JobInfo]:
        """Jobs, newest first, optionally only those in ``state`` or of ``proc_id``."""
        if state is not None and state not in STATES:
            raise UsageError(f"unknown job state {state!r}; one of: {', '.join(STATES)}")
        rows = await self.connector.execute_query_all_async(
            SELECT_JOBS, status=state, id=proc_id, limit=limit
        )
        return await self._infos(rows)

    async def job(self, job_id: int) -> JobInfo:
        """One job, its attempts and its last run result."""
        rows = await self.connector.execute_query_all_async(SELECT_JOB, job_id=job_id)
        if not rows:
            raise NotFoundError(
                f"no job {job_id} in the queue at {_where(self.url)}; `procreg jobs` lists them",
                kind="job",
                name=str(job_id),
            )
        (info,) = await self._infos(rows)
        last = await self.connector.execute_query_all_async(SELECT_LAST_RESULT, job_id=job_id)
        if last and last[0]["result"] is not None:
            info.result = RunResult.model_validate(last[0]["result"])
        return info

    async def _infos(self, rows: Sequence[Mapping[str, Any]]) -> list[JobInfo]:
        ids = [int(r["id"]) for r in rows]
        attempts: dict[int, list[AttemptInfo]] = {}
        if ids:
            for a in await self.connector.execute_query_all_async(SELECT_ATTEMPTS, job_ids=ids):
                attempts.setdefault(a["job_id"], []).append(AttemptInfo.model_validate(dict(a)))
        return [_job_info(r, attempts.get(int(r["id"]), [])) for r in rows]

    async def cancel(self, job_id: int) -> JobInfo:
        """Cancel a job that no worker has taken yet; a running or finished one is refused."""
        info = await self.job(job_id)
        if info.state == "todo":
            if await self.app.job_manager.cancel_job_by_id_async(job_id):
                return await self.job(job_id)
            info = await self.job(job_id)  # a worker took it meanwhile
        if info.state == "doing":
            where = info.attempts[-1].worker if info.attempts else "a worker"
            raise UsageError(
                f"job {job_id} is already running on {where}; a running job is not "
                "interrupted (its limits end it)"
            )
        if info.state == "cancelled":
            return info
        raise UsageError(f"job {job_id} is already {info.state}; there is nothing to cancel")

    async def schedules(self, entries: Sequence[ScheduleEntry]) -> list[ScheduleInfo]:
        """Each schedule entry with its last tick in the queue and its next one."""
        rows = await self.connector.execute_query_all_async(SELECT_LAST_TICKS)
        last = {r["periodic_id"]: r for r in rows}
        return [schedule_info(e, last.get(schedule_key(e))) for e in entries]


def schedule_info(entry: ScheduleEntry, last: Mapping[str, Any] | None = None) -> ScheduleInfo:
    """What ``procreg schedules`` shows of one entry (``last``: its latest tick, if any)."""
    from croniter import croniter

    now = datetime.now(UTC)
    nxt = croniter(entry.cron, now).get_next(datetime)
    return ScheduleInfo(
        schedule=schedule_key(entry),
        id=entry.id,
        spec=entry.spec,
        cron=entry.cron,
        args=dict(entry.args),
        queue=entry.queue or DEFAULT_QUEUE,
        last_run=(
            datetime.fromtimestamp(last["defer_timestamp"], UTC)
            if last is not None and last["defer_timestamp"] is not None
            else None
        ),
        last_job_id=last["job_id"] if last is not None else None,
        last_state=last["status"] if last is not None else None,
        next_run=nxt,
    )


def _job_info(row: Mapping[str, Any], attempts: list[AttemptInfo]) -> JobInfo:
    args = row["args"] or {}
    return JobInfo(
        job_id=row["id"],
        id=args.get("id"),
        version=args.get("version"),
        commit=args.get("commit"),
        spec=args.get("spec"),
        schedule=args.get("schedule"),
        queue=row["queue_name"],
        priority=row["priority"],
        state=row["status"],
        submitted_at=row["submitted_at"],
        finished_at=row["finished_at"],
        attempts=attempts,
    )


def _where(url: str) -> str:
    from registry.index.postgres import describe_url

    return describe_url(url)


# --------------------------------------------------------------------------- worker side


class Worker:
    """What a worker's tasks share: its clone, the shared index, a warm sandbox, the queue."""

    def __init__(
        self,
        store: GitStore,
        backend: IndexBackend,
        sandbox: Sandbox,
        config: Config,
        queue: Queue,
        *,
        remote: str | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.sandbox = sandbox
        self.config = config
        self.queue = queue
        self.remote = remote
        self.host = worker_host()
        self.pid = os.getpid()
        self._fetch_lock = asyncio.Lock()
        self._snapshots: dict[tuple[str, str, str], Any] = {}
        self._health_due: set[str] = set()

    async def run_job(self, job: Any, args: Mapping[str, Any], *, scheduled: bool) -> None:
        """Run one attempt of ``job`` and record it; raise when it failed (retry decides)."""
        from registry.runs import execution

        attempt = int(job.attempts) + 1
        connector = self.queue.connector
        (begun,) = await connector.execute_query_all_async(
            BEGIN_ATTEMPT, job_id=job.id, attempt=attempt, worker=self.host, pid=self.pid
        )
        if begun["done_attempt"] is not None:
            # an earlier attempt succeeded and recorded, then its worker died before
            # telling the queue: the job is done, not run again
            log.info("job %s: attempt %s already ran", job.id, begun["done_attempt"])
            return
        try:
            resolved = await self._resolve(job.id, args, scheduled=scheduled)
        except RegistryError as exc:
            await self._end(job.id, attempt, "error", None, None, str(exc))
            raise JobError(str(exc), job_id=job.id, state="failed") from exc
        if scheduled:  # what ran, should this worker die: the lost run record names it
            await connector.execute_query_async(
                RESOLVED_ATTEMPT,
                job_id=job.id,
                attempt=attempt,
                version=resolved.version,
                commit=resolved.commit,
                tree_id=resolved.tree_id,
            )
        caller = job_caller(args, scheduled=scheduled)
        who = JobAttempt(job_id=job.id, attempt=attempt, worker=self.host)
        started_at = datetime.now(UTC)
        # recorded below, in the transaction that ends the attempt: never one without the other
        try:
            result = await execution.run(
                self.store,
                None,
                resolved.id,
                args.get("spec"),
                args.get("kwargs") or {},
                timeout_s=args.get("timeout_s"),
                caller=caller,
                sandbox=self.sandbox,
                config=self.config,
                resolved=resolved,
            )
        except ExecutionError as exc:  # this worker's sandbox refused: not the version's fault
            await self._end(job.id, attempt, "error", None, None, str(exc))
            raise JobError(str(exc), job_id=job.id, state="failed") from exc
        refused = result.error is not None and result.error.type == ARGUMENT_ERROR
        record = (
            None
            if refused  # the caller's mistake, not a run (as for local runs)
            else execution.execution_record(
                result, started_at, caller or execution.default_caller(), who
            )
        )
        await self._end(job.id, attempt, "success" if result.ok else "failure", result, record)
        self._health_due.add(resolved.id)
        if not result.ok:
            meta = execution.declared_metadata(resolved)
            retries = meta.retries if meta is not None else 0
            rows = await connector.execute_query_all_async(COUNT_FAILURES, job_id=job.id)
            raise ProcedureFailed(result, retries, int(rows[0]["n"]))

    async def _end(
        self,
        job_id: int,
        attempt: int,
        outcome: str,
        result: RunResult | None,
        record: ExecutionRecord | None,
        error: str | None = None,
    ) -> None:
        """End the attempt and store its run record, in one transaction."""
        from psycopg.types.json import Jsonb

        ended = {
            "job_id": job_id,
            "attempt": attempt,
            "outcome": outcome,
            "run_id": result.run_id if result else None,
            "result": Jsonb(result.model_dump(mode="json")) if result else None,
            "error": error,
        }
        async with self.queue.connector.pool.connection() as conn, conn.transaction():
            if record is not None:
                await conn.execute(INSERT_EXECUTION, _execution_values(record))
            await conn.execute(END_ATTEMPT, ended)

    async def _resolve(self, job_id: int, args: Mapping[str, Any], *, scheduled: bool) -> Resolved:
        from registry.releases.history import Resolved
        from registry.runs import execution

        if scheduled:
            return await asyncio.to_thread(
                execution.resolve, self.store, args["id"], args.get("spec")
            )
        commit = str(args["commit"])
        key = (str(args["id"]), str(args["tree_id"]), commit)
        snapshot = self._snapshots.get(key)
        if snapshot is None:
            if not await asyncio.to_thread(self._has, commit):
                await self._fetch(job_id, commit)
            snapshot = await asyncio.to_thread(self.store.read_tree, *key)
            self._snapshots[key] = snapshot  # a tree never changes: keep a few
            while len(self._snapshots) > SNAPSHOTS_KEPT:
                self._snapshots.pop(next(iter(self._snapshots)))
        return Resolved(
            id=args["id"],
            version=args.get("version"),
            commit=commit,
            tree_id=args["tree_id"],
            tag=args.get("tag"),
            source=args.get("source") or "release",
            channel=args.get("channel"),
            snapshot=snapshot,
        )

    async def apply_health(self) -> None:
        """Apply the health policy to the procedures that ran since the last time."""
        from registry.releases import health

        due, self._health_due = self._health_due, set()
        if not self.config.health.enabled:
            return
        for proc_id in sorted(due):
            try:
                await health.apply_policy(self.store, self.backend, proc_id, self.config)
            except RegistryError as exc:
                log.warning("health policy for %s not applied: %s", proc_id, exc)

    def _has(self, commit: str) -> bool:
        return self.store.has_commit(commit)

    async def _fetch(self, job_id: int, commit: str) -> None:
        from registry.git import remotes

        async with self._fetch_lock:
            if await asyncio.to_thread(self._has, commit):
                return
            try:
                name = await asyncio.to_thread(remotes.fetch, self.store, self.remote)
            except RegistryError as exc:
                raise JobError(
                    f"job {job_id} runs commit {commit[:12]}, which the worker's clone "
                    f"{self.store.name} does not have, and fetching failed: {exc}",
                    job_id=job_id,
                ) from exc
            if not await asyncio.to_thread(self._has, commit):
                raise JobError(
                    f"job {job_id} runs commit {commit[:12]}, which neither the worker's "
                    f"clone {self.store.name} nor its remote {name!r} has; push it there",
                    job_id=job_id,
                )

    # -- stalled jobs ---------------------------------------------------------

    async def reap_stalled(self) -> list[int]:
        """Put back the jobs of workers silent for ``stalled_after_s``; the ids put back."""
        from procrastinate import exceptions

        manager = self.queue.app.job_manager
        stalled = await manager.get_stalled_jobs(
            seconds_since_heartbeat=self.config.queue.stalled_after_s
        )
        back: list[int] = []
        for job in stalled:
            if job.task_name not in (RUN_TASK, SCHEDULED_TASK):
                continue
            silent = await self.queue.connector.execute_query_all_async(
                SELECT_SILENCE, job_id=job.id
            )
            try:
                await manager.retry_job(job)
            except exceptions.ConnectorException:
                continue  # another worker put it back first
            back.append(job.id)
            silent_s = silent[0]["silent_s"] if silent else None
            await self._lose(job, int(job.attempts) + 1, silent_s)
        return back

    async def _lose(self, job: Any, attempt: int, silent_s: Any) -> None:
        """End a lost attempt and write its ``WorkerLost`` run record, in one transaction.

        The run id is derived from (job id, attempt), so two reapers write it once.
        """
        from psycopg.rows import dict_row

        run_id = lost_run_id(job.id, attempt)
        silence = (
            f"{float(silent_s):.0f} s"
            if silent_s is not None
            else f"over {self.config.queue.stalled_after_s:g} s"
        )
        async with self.queue.connector.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                LOSE_ATTEMPT,
                {
                    "job_id": job.id,
                    "attempt": attempt,
                    "run_id": run_id,
                    "error": f"the worker stopped answering (no heartbeat for {silence}); "
                    f"the job runs again as attempt {attempt + 1}",
                },
            )
            ended = await cur.fetchone()
            if ended is None:
                return  # the attempt had ended (another reaper, or its worker, said so)
            record = lost_record(job, attempt, run_id, ended, silence)
            await conn.execute(INSERT_EXECUTION, _execution_values(record))

    async def housekeeping(self) -> None:
        """Forever: put stalled jobs back, apply the health policy to what ran."""
        while True:
            try:
                back = await self.reap_stalled()
                if back:
                    log.warning("stalled jobs put back in the queue: %s", back)
                await self.apply_health()
            except Exception as exc:  # noqa: BLE001 - housekeeping must outlive a bad moment
                log.warning("worker housekeeping failed: %s", exc)
            await asyncio.sleep(self.config.queue.heartbeat_s)


async def run_worker(
    store: GitStore,
    url: str,
    *,
    concurrency: int = 1,
    queues: Iterable[str] = (),
    remote: str | None = None,
    config: Config | None = None,
) -> None:
    """Run a worker on the queue at ``url`` until SIGTERM or SIGINT; it finishes its jobs."""
    from registry.config import worktree_config
    from registry.index.connect import open_backend
    from registry.sandbox import Sandbox

    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    cfg = config or worktree_config(store)
    backend = await open_backend(store, url)
    try:
        with Sandbox(cfg.sandbox, pool_size=min(concurrency, 8)) as sandbox:
            async with Queue(url, cfg.schedule, pool_max=concurrency + 4) as queue:
                worker = Worker(store, backend, sandbox, cfg, queue, remote=remote)
                reaper = asyncio.create_task(worker.housekeeping(), name="procreg housekeeping")
                try:
                    await queue.app.run_worker_async(
                        concurrency=concurrency,
                        queues=list(queues) or None,
                        name=f"procreg@{worker.host}:{worker.pid}",
                        additional_context={CONTEXT_KEY: worker},
                        update_heartbeat_interval=cfg.queue.heartbeat_s,
                        stalled_worker_timeout=cfg.queue.stalled_after_s,
                        install_signal_handlers=True,
                    )
                finally:
                    reaper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reaper
                    await worker.apply_health()
    finally:
        await backend.close()
