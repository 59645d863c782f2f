"""One run's exchange with its worker: the request out, output and result in, under limits.

The host enforces the limits only it can: the wall-clock timeout and the
hard output cap (the worker's process group is killed through the zygote,
which then sweeps its uid), and a bound on what is kept of each stream and of
the result. It then waits, briefly, for the zygote's report of the exit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import time
from dataclasses import dataclass

from registry import _sandbox_child as child
from registry._sandbox_zygote import NotStarted, Worker

# The sandbox's one logger, whichever of its modules speaks.
log = logging.getLogger("registry.sandbox")

TIMEOUT = "Timeout"
OUTPUT_LIMIT = child.OUTPUT_LIMIT
OUTPUT_HARD_CAP_FACTOR = 256  # a stream past bound * factor bytes gets the run killed
MAX_RESULT_BYTES = 16 * 1024 * 1024
KILL_GRACE_S = 5.0
DRAIN_S = 1.0


@dataclass
class Exchange:
    """What came back from a worker, raw: the host's kill reason, frame and streams."""

    killed: tuple[str, str] | None  # (failure type, message) when the host killed the run
    result: bytearray  # the worker's length-prefixed result frame, possibly cut short
    stdout: bytes
    stderr: bytes
    truncated: tuple[bool, bool]  # stdout, stderr longer than the bound
    duration_ms: float


def exchange(worker: Worker, request_json: str, timeout_s: float, bound: int) -> Exchange:
    """Send ``request_json`` to ``worker`` and collect everything until it exited.

    ``bound`` is how many bytes of each stream are kept; past ``bound *
    OUTPUT_HARD_CAP_FACTOR`` the run is killed. Closes the worker's host side.
    Raises :class:`NotStarted` when a one-shot zygote died before its worker ran.
    """
    zygote = worker.zygote
    start = time.monotonic()
    with contextlib.suppress(OSError):  # a dead worker shows up as its exit
        worker.ctl.sendall(child._frame_text(request_json))
    cap = bound * OUTPUT_HARD_CAP_FACTOR
    bufs = {"out": bytearray(), "err": bytearray(), "ctl": bytearray()}
    seen = {"out": 0, "err": 0}
    killed: tuple[str, str] | None = None
    finished: float | None = None
    poller = select.poll()
    tags = {worker.out_r: "out", worker.err_r: "err", worker.ctl.fileno(): "ctl"}
    tags[worker.notify_r] = "exit"
    if zygote.one_shot:
        tags[zygote.sock.fileno()] = "zygote"
    for fd in tags:
        poller.register(fd, select.POLLIN)
    deadline, kill_deadline, drain_deadline = start + timeout_s, 0.0, 0.0
    exited = False

    def kill(kind: str, message: str) -> None:
        nonlocal killed, kill_deadline
        if killed is None:
            killed = (kind, message)
            kill_deadline = time.monotonic() + KILL_GRACE_S
            zygote.kill(worker)

    try:
        while True:
            now = time.monotonic()
            if exited:
                if not (tags.keys() - {zygote.sock.fileno()}) or now >= drain_deadline:
                    break
                wait = drain_deadline - now
            elif killed is not None:
                if now >= kill_deadline:  # the zygote is stuck: kill the group ourselves
                    if worker.pid is not None:
                        with contextlib.suppress(OSError):
                            os.killpg(worker.pid, signal.SIGKILL)
                    log.warning("sandbox zygote did not report worker %s", worker.pid)
                    break
                wait = kill_deadline - now
            else:
                wait = deadline - now
                if wait <= 0:
                    kill(TIMEOUT, f"ran longer than its {timeout_s:g} s wall-clock limit")
                    continue
            for fd, _ in poller.poll(max(0, math.ceil(wait * 1000))):
                tag = tags[fd]
                if tag == "zygote":
                    if not zygote.pump():
                        poller.unregister(fd)
                        del tags[fd]
                    continue
                if tag == "exit":
                    poller.unregister(fd)
                    del tags[fd]
                    exited = True
                    finished = finished or time.monotonic()
                    drain_deadline = time.monotonic() + DRAIN_S
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    poller.unregister(fd)
                    del tags[fd]
                    if tag == "ctl":
                        finished = time.monotonic()
                    continue
                buf = bufs[tag]
                if tag == "ctl":
                    if len(buf) + len(chunk) > MAX_RESULT_BYTES + child.RESULT_HEADER:
                        kill(OUTPUT_LIMIT, "the result is larger than the sandbox accepts")
                    else:
                        buf += chunk
                    continue
                seen[tag] += len(chunk)
                if len(buf) < bound:
                    buf += chunk[: bound - len(buf)]
                if seen[tag] > cap:
                    name = "stdout" if tag == "out" else "stderr"
                    kill(OUTPUT_LIMIT, f"wrote more than {cap} bytes to {name} (kept {bound})")
    finally:
        worker.close()
    if zygote.one_shot and zygote.dead and not zygote.info and not bufs["ctl"]:
        raise NotStarted("the sandbox zygote did not start (run `procreg doctor`)")
    end = finished or time.monotonic()
    return Exchange(
        killed=killed,
        result=bufs["ctl"],
        stdout=bytes(bufs["out"]),
        stderr=bytes(bufs["err"]),
        truncated=(seen["out"] > bound, seen["err"] > bound),
        duration_ms=(end - start) * 1000,
    )
