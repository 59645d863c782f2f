"""The sandbox's warm pool: pre-forked workers of one long-lived zygote.

Each worker serves exactly one run, so the pool is topped up after every run.
A zygote that died is replaced on the next take; one that cannot start leaves
the pool empty (every run is then cold) and says why in :attr:`WarmPool.error`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from registry._sandbox_zygote import Worker, Zygote
from registry.errors import ExecutionError

# The sandbox's one logger, whichever of its modules speaks.
log = logging.getLogger("registry.sandbox")


class WarmPool:
    """Up to ``size`` idle workers (none when ``size`` is 0). Thread-safe.

    :meth:`shutdown` takes no lock, so that a finalizer may call it; the
    owner calls :meth:`close` first so that nothing refills the pool.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.idle: deque[Worker] = deque()
        self.zygote: Zygote | None = None
        self.error: str | None = None  # why there is no zygote
        self.closed = False
        if size > 0:
            with self.lock:
                self._start()

    def _start(self) -> None:
        try:
            self.zygote = Zygote(one_shot=False)
            self.error = None
        except ExecutionError as exc:
            self.zygote, self.error = None, str(exc)
            log.warning("sandbox warm pool unavailable, runs will be cold: %s", exc)
            return
        for _ in range(self.size):
            self.idle.append(self.zygote.spawn())

    def take(self) -> Worker | None:
        """An idle worker (or a newly asked-for one); None when the pool is off or closed."""
        with self.lock:
            if self.closed or self.size <= 0:
                return None
            if self.zygote is None or not self.zygote.alive():
                self.shutdown()
                self._start()
            zygote = self.zygote
            if zygote is None:
                return None
            return self.idle.popleft() if self.idle else zygote.spawn()

    def refill(self) -> None:
        """Top the pool up again once a run is over, so forking competes with no run of ours."""
        with self.lock:
            zygote = self.zygote
            if self.closed or zygote is None or zygote.dead:
                return
            while len(self.idle) < self.size:
                self.idle.append(zygote.spawn())

    def close(self) -> None:
        """Take no more workers and ask for none; :meth:`shutdown` then stops the rest."""
        with self.lock:
            self.closed = True

    def shutdown(self) -> None:
        """Close the idle workers and stop the zygote with its workers (safe to repeat)."""
        while self.idle:
            self.idle.popleft().close()
        zygote, self.zygote = self.zygote, None
        if zygote is not None:
            zygote.close()
