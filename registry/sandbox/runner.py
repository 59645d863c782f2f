"""The Sandbox: one run's orchestration over the engine, the uids and the warm pool.

A run takes a warm sandbox (or starts one), sets the run's memory limit on its
cgroup, sends the request, collects the reports under the host's limits,
decodes them as untrusted bytes and returns a :class:`RunOutcome`. Whatever
happens (a timeout, a crash, a malformed result, an exception in this code)
the sandbox is killed if it still runs, waited for, swept and its uid given
back; that part runs on a background thread, off the caller's path.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import weakref
from collections.abc import Callable

import registry.sandbox.decode as decode
import registry.sandbox.supervisor as sup
from registry.config import SandboxSection
from registry.core.network import NetworkAccess
from registry.errors import ExecutionError
from registry.sandbox.engine import Engine
from registry.sandbox.exchange import exchange
from registry.sandbox.instance import MAX_RESULT_BYTES, Instance, proxy_env, worker_env
from registry.sandbox.layers import probe
from registry.sandbox.models import (
    ARGUMENT_ERROR,
    INVALID_PROCEDURE,
    NPROC_LIMIT,
    SANDBOX_UNAVAILABLE,
    LayerStatus,
    RunOutcome,
    RunRequest,
    failure,
)
from registry.sandbox.policy import ENV_MOUNT, Ceilings, clamp_limits
from registry.sandbox.pool import WarmPool
from registry.sandbox.slots import Slots, slot_uids

log = logging.getLogger("registry.sandbox")

MAX_ENV_POOLS = 4  # environments with warm sandboxes at once


class Sandbox:
    """Runs procedures in sandboxes, one sandbox per run; owns the warm pool. Thread-safe.

    ``pool_size`` sandboxes are started ahead (``config.pool_size`` by default;
    0 makes every run cold). ``audit_hook=False`` leaves only the OS layers, to
    test them. Raises :class:`ExecutionError` when the isolation engine is
    missing and ``require_isolation`` is on (the default).
    """

    def __init__(
        self,
        config: SandboxSection | None = None,
        *,
        pool_size: int | None = None,
        audit_hook: bool = True,
        env_pool_size: int | None = None,
    ) -> None:
        self.config = config or SandboxSection()
        self.pool_size = self.config.pool_size if pool_size is None else pool_size
        self.audit_hook = audit_hook
        self.ceilings = Ceilings(self.config.max_timeout_s, self.config.max_memory_mb)
        self.engine = Engine(self.config)
        self.slots = Slots(slot_uids(self.config), wait_s=self.config.uid_wait_s)
        self._janitor = _Janitor()
        self._pool = WarmPool(self.pool_size, self.slots, self.engine.start, self._retire_later)
        # Warm sandboxes per environment (each has that environment mounted), most recent last.
        self.env_pool_size = self.pool_size if env_pool_size is None else env_pool_size
        self._env_pools: dict[tuple[str | None, bool], WarmPool] = {}
        self._env_lock = threading.Lock()
        self._layers: list[LayerStatus] | None = None
        self._closed = False
        self._finalizer = weakref.finalize(
            self, _shutdown, self._pool, self._env_pools, self._janitor, self.engine
        )

    @property
    def isolation(self) -> str:
        """``"bubblewrap"``, or ``"none"`` (only with ``require_isolation = false``)."""
        return self.engine.isolation

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the warm pool and wait until every sandbox is gone and its uid given back."""
        self._closed = True
        self._finalizer()

    def run(self, request: RunRequest, *, warm: bool = True) -> RunOutcome:
        """Run ``request`` in a sandbox of its own and report how it went.

        ``warm`` takes a sandbox started ahead when the pool has one; otherwise,
        or with ``warm=False``, one is started for the run. Failures of the
        procedure are outcomes, never exceptions; :class:`ExecutionError`
        means the sandbox itself could not run anything (a refused engine,
        no free uid).
        """
        isolation = self.isolation
        problem = _check_files(request)
        if problem is not None:
            return failure(INVALID_PROCEDURE, problem, isolation)
        try:
            kwargs = sup.dumps(request.kwargs)
        except (TypeError, ValueError, RecursionError) as exc:
            return failure(ARGUMENT_ERROR, f"the arguments are not JSON: {exc}", isolation)
        if self._closed:
            raise ExecutionError("this Sandbox is closed; create a new one")
        timeout_s, memory_mb = clamp_limits(request.timeout_s, request.memory_mb, self.ceilings)
        network = request.network_allow is not None
        if network:  # before a pool is made for a kind of sandbox this engine cannot start
            self.engine.require_network()
        # A cold run makes no pool: only warm runs start sandboxes ahead for their kind.
        pool = self._pool_for(request.env, network) if warm else None
        instance = pool.take() if pool is not None else None
        if instance is None:
            slot = self.slots.acquire()
            assert slot is not None  # a waiting acquire returns a slot or raises
            try:
                instance = self.engine.start(slot, env=request.env, network=network)
            except BaseException:
                self.slots.release(slot)
                raise
        try:
            return self._execute(instance, request, kwargs, timeout_s, memory_mb)
        finally:
            self._retire_later(instance)  # at once (a no-op if it is already on its way)
            if pool is not None:
                pool.refill()

    def _pool_for(self, env: str | None, network: bool) -> WarmPool:
        """The warm pool of sandboxes with ``env`` mounted and (or not) a network proxy.

        The plain pool is always there; of the others, the least recently used goes.
        """
        if env is None and not network:
            return self._pool
        key = (env, network)
        with self._env_lock:
            pool = self._env_pools.pop(key, None)
            if pool is None:
                pool = WarmPool(
                    self.env_pool_size,
                    self.slots,
                    lambda slot: self.engine.start(slot, env=env, network=network),
                    self._retire_later,
                )
            self._env_pools[key] = pool
            evicted = []
            while len(self._env_pools) > MAX_ENV_POOLS:
                evicted.append(self._env_pools.pop(next(iter(self._env_pools))))
        for old in evicted:
            self._janitor.submit(old.close)
        return pool

    def _execute(
        self, instance: Instance, request: RunRequest, kwargs: str, timeout_s: float, memory_mb: int
    ) -> RunOutcome:
        if instance.cgroup is not None:
            try:
                instance.cgroup.set_memory(memory_mb)
            except OSError as exc:  # the waiting sandbox already uses more: refuse, do not run
                raise ExecutionError(f"cannot set the run's memory limit: {exc}") from None
        env = worker_env(instance.scratch)
        if instance.proxy is not None:
            assert request.network_allow is not None
            instance.proxy.permit(NetworkAccess(allow=request.network_allow).endpoints())
            env.update(proxy_env())
        instance.release(timeout_s)
        cpu_s = math.ceil(request.cpu_s) if request.cpu_s else math.ceil(timeout_s) + 1
        payload = {
            "own_uid": instance.slot.uid is not None,
            "files": request.files,
            "entry_point": request.entry_point,
            "env": env,
            "audit": self.audit_hook,
            "max_result_bytes": MAX_RESULT_BYTES,
            "limits": {"memory_mb": memory_mb, "cpu_s": cpu_s, "nproc": NPROC_LIMIT},
            "site": None if request.env is None else (request.env if instance.plain else ENV_MOUNT),
        }
        text = sup.dumps(payload)
        # The arguments were encoded once, before a sandbox was taken: spliced in as they are.
        body = sup._frame_text(text[:-1] + ',"kwargs":' + kwargs + "}")
        raw = exchange(instance, body, timeout_s, request.max_output_bytes)
        denied = instance.proxy.denials() if instance.proxy is not None else []
        out_of_memory = instance.cgroup is not None and instance.cgroup.oom_kills() > 0
        # Everything is read: the sandbox and its uid can go before its bytes are decoded.
        self._retire_later(instance)
        reports = decode.split_reports(raw.reports)
        if reports.ready is None and raw.killed is None:
            said = raw.engine_log.decode("utf-8", "replace").strip()
            if said:  # the engine itself refused: fail closed, loudly
                raise ExecutionError(f"the isolation engine could not start the run: {said}")
        facts = decode.Facts(
            killed=raw.killed,
            memory_mb=memory_mb,
            cpu_s=cpu_s,
            out_of_memory=out_of_memory,
            stderr=raw.stderr.decode("utf-8", "replace"),
        )
        outcome = decode.outcome(
            reports,
            facts,
            duration_ms=raw.duration_ms,
            stdout=raw.stdout,
            stderr=raw.stderr,
            truncated=raw.truncated,
            isolation=self.isolation,
        )
        outcome.network_denied = denied
        return outcome

    def _retire_later(self, instance: Instance) -> None:
        """Kill (if needed), wait for, sweep and release ``instance`` in the background (once)."""
        if instance.claim_retirement():
            self._janitor.submit(lambda: self._retire(instance))

    def _retire(self, instance: Instance) -> None:
        try:
            if not instance.finish():
                log.warning("sandbox %s left processes in its cgroup", instance.pid)
        finally:
            instance.close()
            self.slots.release(instance.slot)

    def layers(self) -> list[LayerStatus]:
        """What is really in force on this machine (probed once, then cached)."""
        if self._layers is None:
            self._layers = probe(self, self._pool)  # only doctor and tests ask
        return list(self._layers)

    def wait_warm(
        self, timeout: float = 30.0, env: str | None = None, *, network: bool = False
    ) -> bool:
        """Wait until the warm pool (``env``'s, network's) is full (benchmarks and tests)."""
        return self._pool_for(env, network).wait_ready(timeout)


def unavailable(message: str, isolation: str | None = None) -> RunOutcome:
    """The outcome recorded for a run the isolation engine refused."""
    return failure(SANDBOX_UNAVAILABLE, message, isolation)


def probe_layers(config: SandboxSection | None = None) -> list[LayerStatus]:
    """Probe every sandbox layer on this machine (for ``procreg doctor``)."""
    try:
        with Sandbox(config, pool_size=1) as sandbox:
            return sandbox.layers()
    except ExecutionError as exc:
        return [LayerStatus(name="isolation-engine", active=False, detail=str(exc))]


class _Janitor:
    """A thread for clean-up nobody has to wait for; :meth:`close` waits for all of it."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._loop, name="sandbox-janitor", daemon=True
                )
                self.thread.start()
            self.jobs.put(job)

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # a failed clean-up must not stop the next ones
                log.exception("sandbox clean-up failed")

    def close(self) -> None:
        with self.lock:
            thread, self.thread = self.thread, None
            if thread is not None:
                self.jobs.put(None)
        if thread is not None:
            thread.join()


def _shutdown(
    pool: WarmPool,
    env_pools: dict[tuple[str | None, bool], WarmPool],
    janitor: _Janitor,
    engine: Engine,
) -> None:
    pool.close()
    for env_pool in list(env_pools.values()):
        env_pool.close()
    janitor.close()
    engine.close()


def _check_files(request: RunRequest) -> str | None:
    if "main.py" not in request.files:
        return "the procedure has no main.py"
    if not request.entry_point.isidentifier():
        return f"entry point {request.entry_point!r} is not a Python identifier"
    for name in request.files:
        # Split by hand (PurePosixPath costs the hot path ~20 us a file): an
        # empty part is a leading, doubled or trailing slash.
        parts = name.split("/")
        if "\\" in name or "\0" in name or any(p in ("", ".", "..") for p in parts):
            return f"file name {name!r} must be a plain relative path inside the procedure folder"
    return None
