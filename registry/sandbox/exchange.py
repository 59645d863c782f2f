"""One run's exchange with its sandbox: the request in, reports and output out, under limits.

The host enforces the limits only it can: the wall-clock timeout and the hard
output cap (the whole sandbox is killed), and a bound on what is kept of each
stream, of the supervisor's reports and of the engine's own messages.
Everything read here is raw bytes from an untrusted process; decoding them is
:mod:`registry.sandbox.decode`'s job.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import time
from dataclasses import dataclass

import registry.sandbox.supervisor as sup
from registry.sandbox.decode import reports_complete
from registry.sandbox.instance import MAX_RESULT_BYTES, Instance
from registry.sandbox.models import OUTPUT_LIMIT, TIMEOUT

log = logging.getLogger("registry.sandbox")

OUTPUT_HARD_CAP_FACTOR = 256  # a stream past bound * factor bytes gets the run killed
MAX_REPORT_BYTES = MAX_RESULT_BYTES + 2 * sup.MAX_META_BYTES + 3 * sup.RESULT_HEADER
MAX_LOG_BYTES = 8192
KILL_GRACE_S = 5.0
DRAIN_S = 1.0


@dataclass
class Exchange:
    """What came back from a sandbox, raw."""

    killed: tuple[str, str] | None  # (failure type, message) when the host killed the run
    reports: bytes  # the supervisor's frames: ready, exit, result
    stdout: bytes
    stderr: bytes
    truncated: tuple[bool, bool]  # stdout, stderr longer than the bound
    engine_log: bytes  # what the engine process (bubblewrap) itself said
    duration_ms: float


def exchange(instance: Instance, request: bytes, timeout_s: float, bound: int) -> Exchange:
    """Send ``request`` to ``instance`` and collect everything until its supervisor is gone.

    ``bound`` is how many bytes of each stream are kept; past ``bound *
    OUTPUT_HARD_CAP_FACTOR`` the run is killed, as it is at ``timeout_s``.
    """
    session = _Session(instance, request, timeout_s, bound)
    session.run()
    return session.result()


# The channels whose every byte is kept, up to a limit (past it, the reports get the run killed).
_LIMITS = {"res": MAX_REPORT_BYTES, "log": MAX_LOG_BYTES}


class _Session:
    """One exchange in progress: the pipes polled, what was read, the deadlines."""

    def __init__(self, instance: Instance, request: bytes, timeout_s: float, bound: int) -> None:
        self.start = time.monotonic()
        self.instance = instance
        self.timeout_s = timeout_s
        self.bound = bound
        self.cap = bound * OUTPUT_HARD_CAP_FACTOR
        self.pending = memoryview(request)
        self.bufs = {"out": bytearray(), "err": bytearray(), "res": bytearray(instance.preread)}
        self.bufs["log"] = bytearray()
        self.seen = {"out": 0, "err": 0}
        self.killed: tuple[str, str] | None = None
        self.finished: float | None = None
        os.set_blocking(instance.req_w, False)
        self.poller = select.poll()
        self.tags = {instance.out_r: "out", instance.err_r: "err", instance.res_r: "res"}
        self.tags[instance.log_r] = "log"
        for fd in self.tags:
            self.poller.register(fd, select.POLLIN)
        self.poller.register(instance.req_w, select.POLLOUT)
        self.writing = True
        self.deadline, self.kill_deadline, self.drain_deadline = self.start + timeout_s, 0.0, 0.0

    def kill(self, kind: str, message: str) -> None:
        if self.killed is None:
            self.killed = (kind, message)
            self.kill_deadline = time.monotonic() + KILL_GRACE_S
            self.instance.kill()

    def run(self) -> None:
        while self.tags:
            wait = self._wait_s()
            if wait is None:
                break
            for fd, _event in self.poller.poll(max(0, math.ceil(wait * 1000))):
                if self.writing and fd == self.instance.req_w:
                    self._write(fd)
                else:
                    self._read(fd)

    def _wait_s(self) -> float | None:
        """How long to poll now, or ``None`` when the exchange is over."""
        now = time.monotonic()
        if self.finished is not None:
            return None if now >= self.drain_deadline else self.drain_deadline - now
        if self.killed is not None:
            if now >= self.kill_deadline:
                log.warning("sandbox %s did not end after it was killed", self.instance.pid)
                return None
            return self.kill_deadline - now
        if self.deadline - now <= 0:
            self.kill(TIMEOUT, f"ran longer than its {self.timeout_s:g} s wall-clock limit")
            return self._wait_s()
        return self.deadline - now

    def _write(self, fd: int) -> None:
        try:
            self.pending = self.pending[os.write(fd, self.pending) :]
        except BlockingIOError:
            return
        except OSError:  # the sandbox is gone; its reports say why
            self.pending = self.pending[:0]
        if not self.pending:
            self.writing = False
            self.poller.unregister(fd)

    def _read(self, fd: int) -> None:
        tag = self.tags.get(fd)
        if tag is None:
            return
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.poller.unregister(fd)
            del self.tags[fd]
            if tag == "res":  # the supervisor is gone: drain the streams, then stop
                self.finished = time.monotonic()
                self.drain_deadline = self.finished + DRAIN_S
        elif tag in _LIMITS:
            self._keep(tag, chunk)
        else:
            self._bound(tag, chunk)

    def _keep(self, tag: str, chunk: bytes) -> None:
        """A chunk of the reports or the engine's log: kept whole, up to its limit."""
        buf = self.bufs[tag]
        if len(buf) + len(chunk) > _LIMITS[tag]:
            if tag == "res":
                self.kill(OUTPUT_LIMIT, "the sandbox sent more than the host accepts")
            return
        buf += chunk
        if tag == "res" and self.finished is None and reports_complete(buf):
            # The procedure's process is gone: what it wrote is in the pipes now.
            self.finished = time.monotonic()
            self.drain_deadline = self.finished
            _drain(self.instance, self.bufs, self.seen, self.bound)

    def _bound(self, tag: str, chunk: bytes) -> None:
        """A chunk of stdout or stderr: ``bound`` bytes kept, the run killed past the cap."""
        buf = self.bufs[tag]
        self.seen[tag] += len(chunk)
        if len(buf) < self.bound:
            buf += chunk[: self.bound - len(buf)]
        if self.seen[tag] > self.cap:
            name = "stdout" if tag == "out" else "stderr"
            self.kill(
                OUTPUT_LIMIT, f"wrote more than {self.cap} bytes to {name} (kept {self.bound})"
            )

    def result(self) -> Exchange:
        if self.writing:
            with contextlib.suppress(KeyError, ValueError):
                self.poller.unregister(self.instance.req_w)
        end = self.finished or time.monotonic()
        truncated = (self.seen["out"] > self.bound, self.seen["err"] > self.bound)
        return Exchange(
            killed=self.killed,
            reports=bytes(self.bufs["res"]),
            stdout=bytes(self.bufs["out"]),
            stderr=bytes(self.bufs["err"]),
            truncated=truncated,
            engine_log=bytes(self.bufs["log"]),
            duration_ms=(end - self.start) * 1000,
        )


def _drain(
    instance: Instance, bufs: dict[str, bytearray], seen: dict[str, int], bound: int
) -> None:
    """Read what is already in the output pipes, without waiting for their writers to go."""
    for fd, tag in ((instance.out_r, "out"), (instance.err_r, "err")):
        os.set_blocking(fd, False)
        while True:
            try:
                chunk = os.read(fd, 65536)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            seen[tag] += len(chunk)
            buf = bufs[tag]
            if len(buf) < bound:
                buf += chunk[: bound - len(buf)]
