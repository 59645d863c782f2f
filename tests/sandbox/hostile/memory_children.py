"""Forks several children that each hold ``mb`` MB, so the run as a whole is far
over its limit while every process stays under it.

Expected: the run's cgroup stops it: MemoryLimitExceeded, or (when the kernel's
OOM killer took only children) those children died of SIGKILL; never a host OOM.
"""

import os
import time


def hold(mb, seconds):
    """Touch ``mb`` MB page by page, then keep it for ``seconds``."""
    hoard = bytearray(mb * 1024 * 1024)
    for i in range(0, len(hoard), 4096):
        hoard[i] = 1
    time.sleep(seconds)
    return len(hoard)


def main(children, mb, parent_mb, hold_s):
    """Fork ``children`` processes of ``mb`` MB each (the parent holds ``parent_mb``)."""
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            hold(mb, hold_s)
            os._exit(0)
        pids.append(pid)
    if parent_mb:
        hold(parent_mb, 0)
    statuses = [os.waitpid(pid, 0)[1] for pid in pids]
    return {"survived": True, "statuses": statuses}
