"""The blocking API: :class:`Registry`, every call run on an :class:`AsyncRegistry` core.

Why one anyio ``BlockingPortal`` per :class:`Registry`: the portal runs an event
loop in a background thread for the life of the object, and every call is
submitted to that loop (``run_coroutine_threadsafe``, one cross-thread hop) and
waited for with a timeout. So asyncpg pools stay bound to the loop they were
created on, and the API works the same with no event loop, with a loop that
exists but is not running, and from inside a running loop (an async
application, a Jupyter notebook), since the caller's loop is never touched or
re-entered. anyio is well kept and already a dependency (of watchfiles);
``nest_asyncio`` is unmaintained and patches the running loop; asgiref's
``async_to_sync`` does not keep one loop across calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar

import anyio.from_thread

from registry.api._core import AsyncRegistry
from registry.errors import RegistryError, RegistryTimeout

if TYPE_CHECKING:
    from registry.api._results import (
        HistoryEntry,
        ProcedureDetail,
        ProcedureDiff,
        ProcedureSummary,
        VersionInfo,
    )
    from registry.config import Config
    from registry.index.contract import Metrics, Order
    from registry.index.drift import Drift
    from registry.index.sync import SyncReport
    from registry.releases.channels import ChannelReport, ChannelTag
    from registry.releases.health import HealthAction, HealthMove
    from registry.releases.release import Progress, ReleaseResult
    from registry.runs.examples import ExamplesReport
    from registry.runs.execution import RunResult
    from registry.runs.queue import JobHandle, JobInfo, ScheduleInfo
    from registry.workspace.proposals import Proposal

DEFAULT_TIMEOUT = 30.0
"""Seconds a :class:`Registry` call may take before :class:`RegistryTimeout`."""

P = ParamSpec("P")
T = TypeVar("T")


class Registry:
    """The blocking API: each call runs on the :class:`AsyncRegistry` core in a background loop.

    Safe to call with no event loop, with a loop that is not running, and
    from inside a running loop (it never touches the caller's loop). Calls
    from several threads are serialised on the one loop. Every call takes
    ``timeout=`` (seconds; default the one given to :meth:`open`) and raises
    :class:`RegistryTimeout` after cancelling the work.
    """

    def __init__(
        self,
        core: AsyncRegistry,
        portal: anyio.from_thread.BlockingPortal,
        portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal],
        timeout: float | None,
    ) -> None:
        self._core = core
        self._portal = portal
        self._portal_cm = portal_cm
        # calls go straight to the portal's asyncio loop: anyio's start_task_soon waits
        # for the loop thread once to spawn the task and again for its result, and that
        # extra cross-thread round trip was a fifth of a get
        self._loop: asyncio.AbstractEventLoop = portal.call(asyncio.get_running_loop)
        self.timeout = timeout
        self._closed = False

    @classmethod
    def open(
        cls,
        repo_path: str | os.PathLike[str] = ".",
        database_url: str | None = None,
        *,
        auto_sync: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        open_timeout: float | None = None,
    ) -> Registry:
        """Open the registry (see :meth:`AsyncRegistry.open`) on a new background loop.

        ``timeout`` is the default per call; ``open_timeout`` bounds the open
        itself, whose first sync may build the index (default: no bound).
        """
        portal_cm = anyio.from_thread.start_blocking_portal(backend="asyncio")
        portal = portal_cm.__enter__()
        try:
            future = portal.start_task_soon(
                _open_core,
                repo_path,
                database_url,
                auto_sync,
            )
            core = _wait(future, open_timeout)
        except BaseException:
            portal_cm.__exit__(None, None, None)
            raise
        return cls(core, portal, portal_cm, timeout)

    @property
    def core(self) -> AsyncRegistry:
        """The async core (use it only on this registry's loop, e.g. via :meth:`call`)."""
        return self._core

    def call(
        self,
        func: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``await func(*args, **kwargs)`` on the background loop, with the default timeout."""
        return self._run(lambda: func(*args, **kwargs), None)

    def _run(self, make: Callable[[], Awaitable[T]], timeout: float | None) -> T:
        return self._submit(make, self.timeout if timeout is None else timeout)

    def _run_write(self, make: Callable[[], Awaitable[T]], timeout: float | None) -> T:
        # a write runs git and the sandbox in a worker thread, which a timeout cannot
        # stop halfway: unbounded unless the caller asks for a bound
        return self._submit(make, timeout)

    def _submit(self, make: Callable[[], Awaitable[T]], timeout: float | None) -> T:
        if self._closed:
            raise RegistryError("this Registry is closed; open a new one")

        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RegistryError(
                "a Registry call from inside its own background loop would wait for itself; "
                "await the AsyncRegistry (Registry.core) there instead"
            )

        async def runner() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(runner(), self._loop)
        return _wait(future, timeout)

    def close(self) -> None:
        """Close the index connection and stop the background loop (idempotent)."""
        if self._closed:
            return
        try:
            _wait(self._portal.start_task_soon(self._core.close), self.timeout)
        finally:
            self._closed = True
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the API, mirrored -----------------------------------------------------

    def sync(self, *, timeout: float | None = None) -> SyncReport:
        """See :meth:`AsyncRegistry.sync`."""
        return self._run(self._core.sync, timeout)

    def reindex(self, *, timeout: float | None = None) -> SyncReport:
        """See :meth:`AsyncRegistry.reindex`."""
        return self._run(self._core.reindex, timeout)

    def verify(self, *, timeout: float | None = None) -> list[Drift]:
        """See :meth:`AsyncRegistry.verify`."""
        return self._run(self._core.verify, timeout)

    def search(
        self,
        text: str | None = None,
        category: str | None = None,
        tags: Sequence[str] = (),
        status: str | None = None,
        limit: int = 50,
        *,
        valid: bool | None = None,
        min_success_rate: float | None = None,
        sort: Order | None = None,
        timeout: float | None = None,
    ) -> list[ProcedureSummary]:
        """See :meth:`AsyncRegistry.search`."""
        return self._run(
            lambda: self._core.search(
                text,
                category,
                tags,
                status,
                limit,
                valid=valid,
                min_success_rate=min_success_rate,
                sort=sort,
            ),
            timeout,
        )

    def run(
        self,
        proc_id: str,
        spec: str | None = None,
        /,
        *,
        timeout_s: float | None = None,
        caller: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """See :meth:`AsyncRegistry.run`; ``timeout`` bounds the call (default: limit + 10 s)."""
        merged = {**(arguments or {}), **kwargs}
        wait = (
            timeout if timeout is not None else max(self.timeout or 0.0, (timeout_s or 60.0) + 10.0)
        )
        return self._run(
            lambda: self._core.run(
                proc_id, spec, timeout_s=timeout_s, caller=caller, arguments=merged
            ),
            wait,
        )

    def submit(
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
        timeout: float | None = None,
        **kwargs: Any,
    ) -> JobHandle:
        """See :meth:`AsyncRegistry.submit` (``timeout`` bounds the call)."""
        merged = {**(arguments or {}), **kwargs}
        return self._run(
            lambda: self._core.submit(
                proc_id,
                spec,
                queue=queue,
                priority=priority,
                timeout_s=timeout_s,
                caller=caller,
                arguments=merged,
            ),
            timeout,
        )

    def result(self, job_id: int, *, timeout: float | None = None) -> RunResult:
        """See :meth:`AsyncRegistry.result`: waits up to ``timeout`` s (None: until it ends)."""
        return self._submit(
            lambda: self._core.result(job_id, timeout=timeout),
            None if timeout is None else timeout + 5.0,
        )

    def jobs(
        self,
        state: str | None = None,
        *,
        proc_id: str | None = None,
        limit: int = 100,
        timeout: float | None = None,
    ) -> list[JobInfo]:
        """See :meth:`AsyncRegistry.jobs`."""
        return self._run(lambda: self._core.jobs(state, proc_id=proc_id, limit=limit), timeout)

    def job(self, job_id: int, *, timeout: float | None = None) -> JobInfo:
        """See :meth:`AsyncRegistry.job`."""
        return self._run(lambda: self._core.job(job_id), timeout)

    def cancel_job(self, job_id: int, *, timeout: float | None = None) -> JobInfo:
        """See :meth:`AsyncRegistry.cancel_job`."""
        return self._run(lambda: self._core.cancel_job(job_id), timeout)

    def schedules(self, *, timeout: float | None = None) -> list[ScheduleInfo]:
        """See :meth:`AsyncRegistry.schedules`."""
        return self._run(lambda: self._core.schedules(), timeout)

    def metrics(self, proc_id: str, *, timeout: float | None = None) -> Metrics:
        """See :meth:`AsyncRegistry.metrics`."""
        return self._run(lambda: self._core.metrics(proc_id), timeout)

    def propose(
        self,
        proc_id: str,
        main_py: str,
        metadata: Mapping[str, Any] | str,
        message: str | None = None,
        *,
        proposer: str | None = None,
        timeout: float | None = None,
    ) -> Proposal:
        """See :meth:`AsyncRegistry.propose`."""
        return self._run(
            lambda: self._core.propose(proc_id, main_py, metadata, message, proposer=proposer),
            timeout,
        )

    @property
    def config(self) -> Config:
        """See :attr:`AsyncRegistry.config` (read on the background loop, like every call)."""

        async def read() -> Config:
            return self._core.config

        return self._run(read, None)

    def release(
        self,
        ids: Sequence[str] | None = None,
        *,
        ref: str = "HEAD",
        all_changed: bool = False,
        dry_run: bool = False,
        run_examples: bool = True,
        on_progress: Progress | None = None,
        timeout: float | None = None,
    ) -> list[ReleaseResult]:
        """See :meth:`AsyncRegistry.release`; ``timeout`` bounds the wait (default: none)."""
        return self._run_write(
            lambda: self._core.release(
                ids,
                ref=ref,
                all_changed=all_changed,
                dry_run=dry_run,
                run_examples=run_examples,
                on_progress=on_progress,
            ),
            timeout,
        )

    def rollback(
        self,
        proc_id: str,
        to_version: str,
        *,
        branch: str | None = None,
        reason: str | None = None,
        on_left_alone: Callable[[list[str]], None] | None = None,
        timeout: float | None = None,
    ) -> ReleaseResult:
        """See :meth:`AsyncRegistry.rollback`; ``timeout`` bounds the wait (default: none)."""
        return self._run_write(
            lambda: self._core.rollback(
                proc_id, to_version, branch=branch, reason=reason, on_left_alone=on_left_alone
            ),
            timeout,
        )

    def promote(
        self,
        proc_id: str,
        version: str,
        channel: str,
        *,
        reason: str | None = None,
        timeout: float | None = None,
    ) -> ChannelTag:
        """See :meth:`AsyncRegistry.promote`; ``timeout`` bounds the wait (default: none)."""
        return self._run_write(
            lambda: self._core.promote(proc_id, version, channel, reason=reason), timeout
        )

    def channels(
        self, proc_id: str | None = None, *, timeout: float | None = None
    ) -> list[ChannelReport]:
        """See :meth:`AsyncRegistry.channels`."""
        return self._run(lambda: self._core.channels(proc_id), timeout)

    def health(
        self,
        ids: Sequence[str] | None = None,
        *,
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> list[HealthAction]:
        """See :meth:`AsyncRegistry.health`; ``timeout`` bounds the wait (default: none)."""
        return self._run_write(lambda: self._core.health(ids, dry_run=dry_run), timeout)

    def health_moves(
        self, ids: Sequence[str] | None = None, *, timeout: float | None = None
    ) -> list[HealthMove]:
        """See :meth:`AsyncRegistry.health_moves`."""
        return self._run(lambda: self._core.health_moves(ids), timeout)

    def test(
        self,
        proc_id: str,
        spec: str | None = None,
        *,
        timeout_s: float | None = None,
        timeout: float | None = None,
    ) -> ExamplesReport:
        """See :meth:`AsyncRegistry.test`; ``timeout`` bounds the wait (default: none)."""
        return self._run_write(lambda: self._core.test(proc_id, spec, timeout_s=timeout_s), timeout)

    def get(
        self, proc_id: str, spec: str | None = None, *, timeout: float | None = None
    ) -> ProcedureDetail:
        """See :meth:`AsyncRegistry.get`."""
        return self._run(lambda: self._core.get(proc_id, spec), timeout)

    def source(self, proc_id: str, spec: str | None = None, *, timeout: float | None = None) -> str:
        """See :meth:`AsyncRegistry.source`."""
        return self._run(lambda: self._core.source(proc_id, spec), timeout)

    def versions(self, proc_id: str, *, timeout: float | None = None) -> list[VersionInfo]:
        """See :meth:`AsyncRegistry.versions`."""
        return self._run(lambda: self._core.versions(proc_id), timeout)

    def history(self, proc_id: str, *, timeout: float | None = None) -> list[HistoryEntry]:
        """See :meth:`AsyncRegistry.history`."""
        return self._run(lambda: self._core.history(proc_id), timeout)

    def diff(
        self,
        proc_id: str,
        a: str | None,
        b: str | None = "HEAD",
        *,
        timeout: float | None = None,
    ) -> ProcedureDiff:
        """See :meth:`AsyncRegistry.diff`."""
        return self._run(lambda: self._core.diff(proc_id, a, b), timeout)


async def _open_core(
    repo_path: str | os.PathLike[str], database_url: str | None, auto_sync: bool
) -> AsyncRegistry:
    return await AsyncRegistry.open(repo_path, database_url, auto_sync=auto_sync)


def _wait(future: concurrent.futures.Future[T], timeout: float | None) -> T:
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise RegistryTimeout(
            f"the registry call did not finish within {timeout} s and was cancelled; "
            "pass a larger timeout= (or check that the database is reachable)"
        ) from None
    except concurrent.futures.CancelledError:
        raise RegistryTimeout("the registry call was cancelled") from None
