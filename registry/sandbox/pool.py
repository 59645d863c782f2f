"""Warm sandboxes: started ahead of their run, so a run pays only for its own work.

Each warm sandbox is a whole sandbox (namespaces, cgroup, uid, supervisor and
a procedure process already waiting for the request) that serves exactly one
run, so isolation between runs is the same as for a cold one. A filler
thread keeps ``size`` of them; it takes a uid only when another one is free
too, so warm sandboxes never take the last uid a run is waiting for.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from registry.errors import ExecutionError
from registry.sandbox.instance import Instance
from registry.sandbox.slots import Slots

log = logging.getLogger("registry.sandbox")

RETRY_S = 0.05
BACKOFF_S = 2.0
READY_WAIT_S = 10.0


class WarmPool:
    """Up to ``size`` started sandboxes waiting for a run (none when ``size`` is 0)."""

    def __init__(
        self,
        size: int,
        slots: Slots,
        start: Callable[..., Instance],
        retire: Callable[[Instance], None],
    ) -> None:
        self.size = size
        self.slots = slots
        self._start = start
        self._retire = retire
        self.idle: deque[Instance] = deque()
        self.error: str | None = None  # why the last start failed
        self.closed = False
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        if size > 0:
            self.thread = threading.Thread(target=self._fill, name="sandbox-pool", daemon=True)
            self.thread.start()

    def take(self) -> Instance | None:
        """A started sandbox, or None (pool off, empty or closed): the run then starts its own."""
        with self.cond:
            while self.idle:
                instance = self.idle.popleft()
                if instance.alive():
                    return instance
                self._retire(instance)  # died while waiting (killed from outside)
            return None

    def _fill(self) -> None:
        while True:
            with self.cond:
                while not self.closed and len(self.idle) >= self.size:
                    self.cond.wait()
                if self.closed:
                    return
            slot = self.slots.acquire(wait=False, spare=1)
            if slot is None:  # (almost) every uid is busy: runs come first
                with self.cond:
                    self.cond.wait(RETRY_S)
                continue
            try:
                instance = self._start(slot)
            except ExecutionError as exc:
                self.slots.release(slot)
                self.error = str(exc)
                log.warning("sandbox warm pool: %s", exc)
                with self.cond:
                    self.cond.wait(BACKOFF_S)
                continue
            except BaseException:
                self.slots.release(slot)
                raise
            try:
                instance.release(READY_WAIT_S)
            except ExecutionError as exc:
                self._retire(instance)
                self.error = str(exc)
                with self.cond:
                    self.cond.wait(BACKOFF_S)
                continue
            if not instance.wait_ready(READY_WAIT_S) and not instance.alive():
                # The engine refused (its message is in its log): runs go cold and say why.
                self.error = f"a warm sandbox did not start: {instance.engine_said()}"
                log.warning("sandbox warm pool: %s", self.error)
                self._retire(instance)
                with self.cond:
                    self.cond.wait(BACKOFF_S)
                continue
            self.error = None
            with self.cond:
                if self.closed:
                    self._retire(instance)
                    return
                self.idle.append(instance)
                self.cond.notify_all()

    def refill(self) -> None:
        """Start replacing what runs took (after a run, so that starting competes with none)."""
        with self.cond:
            self.cond.notify_all()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the pool holds ``size`` sandboxes (benchmarks and tests)."""
        with self.cond:
            return self.cond.wait_for(lambda: len(self.idle) >= self.size, timeout)

    def close(self) -> None:
        """Stop filling and retire every waiting sandbox."""
        with self.cond:
            self.closed = True
            idle, self.idle = list(self.idle), deque()
            self.cond.notify_all()
        for instance in idle:
            instance.kill()
            self._retire(instance)
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=30)
