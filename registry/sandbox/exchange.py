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
    start = time.monotonic()
    cap = bound * OUTPUT_HARD_CAP_FACTOR
    pending = memoryview(request)
    bufs = {"out": bytearray(), "err": bytearray(), "res": bytearray(instance.preread)}
    bufs["log"] = bytearray()
    seen = {"out": 0, "err": 0}
    limits = {"res": MAX_REPORT_BYTES, "log": MAX_LOG_BYTES}
    killed: tuple[str, str] | None = None
    finished: float | None = None
    os.set_blocking(instance.req_w, False)
    poller = select.poll()
    tags = {instance.out_r: "out", instance.err_r: "err", instance.res_r: "res"}
    tags[instance.log_r] = "log"
    for fd in tags:
        poller.register(fd, select.POLLIN)
    poller.register(instance.req_w, select.POLLOUT)
    writing = True
    deadline, kill_deadline, drain_deadline = start + timeout_s, 0.0, 0.0

    def kill(kind: str, message: str) -> None:
        nonlocal killed, kill_deadline
        if killed is None:
            killed = (kind, message)
            kill_deadline = time.monotonic() + KILL_GRACE_S
            instance.kill()

    while tags:
        now = time.monotonic()
        if finished is not None:
            if now >= drain_deadline:
                break
            wait = drain_deadline - now
        elif killed is not None:
            if now >= kill_deadline:
                log.warning("sandbox %s did not end after it was killed", instance.pid)
                break
            wait = kill_deadline - now
        else:
            wait = deadline - now
            if wait <= 0:
                kill(TIMEOUT, f"ran longer than its {timeout_s:g} s wall-clock limit")
                continue
        for fd, _event in poller.poll(max(0, math.ceil(wait * 1000))):
            if writing and fd == instance.req_w:
                try:
                    pending = pending[os.write(fd, pending) :]
                except BlockingIOError:
                    continue
                except OSError:  # the sandbox is gone; its reports say why
                    pending = pending[:0]
                if not pending:
                    writing = False
                    poller.unregister(fd)
                continue
            tag = tags.get(fd)
            if tag is None:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                poller.unregister(fd)
                del tags[fd]
                if tag == "res":  # the supervisor is gone: drain the streams, then stop
                    finished = time.monotonic()
                    drain_deadline = finished + DRAIN_S
                continue
            buf = bufs[tag]
            if tag in limits:
                if len(buf) + len(chunk) > limits[tag]:
                    if tag == "res":
                        kill(OUTPUT_LIMIT, "the sandbox sent more than the host accepts")
                    continue
                buf += chunk
                if tag == "res" and finished is None and reports_complete(buf):
                    # The procedure's process is gone: what it wrote is in the pipes now.
                    finished = time.monotonic()
                    drain_deadline = finished
                    _drain(instance, bufs, seen, bound)
                continue
            seen[tag] += len(chunk)
            if len(buf) < bound:
                buf += chunk[: bound - len(buf)]
            if seen[tag] > cap:
                name = "stdout" if tag == "out" else "stderr"
                kill(OUTPUT_LIMIT, f"wrote more than {cap} bytes to {name} (kept {bound})")
    if writing:
        with contextlib.suppress(KeyError, ValueError):
            poller.unregister(instance.req_w)
    end = finished or time.monotonic()
    truncated = (seen["out"] > bound, seen["err"] > bound)
    return Exchange(
        killed=killed,
        reports=bytes(bufs["res"]),
        stdout=bytes(bufs["out"]),
        stderr=bytes(bufs["err"]),
        truncated=truncated,
        engine_log=bytes(bufs["log"]),
        duration_ms=(end - start) * 1000,
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
