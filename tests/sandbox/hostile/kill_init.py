"""Kills pid 1 (the sandbox's supervisor), its parent, every process it may, and a host pid.

Expected: SandboxViolation with the audit hook; without it, ok: pid 1 ignores
signals from inside its namespace and the host pid does not exist in it.
"""

import os
import signal


def main(host_pid):
    """Send SIGKILL everywhere; report what each attempt did and who is still alive."""
    done = {}
    for label, pid in (("init", 1), ("parent", os.getppid()), ("host", host_pid)):
        try:
            os.kill(pid, signal.SIGKILL)
            done[label] = "sent"
        except OSError as exc:
            done[label] = type(exc).__name__
    try:
        os.kill(-1, signal.SIGKILL)  # every process it may signal, except itself and pid 1
        done["all"] = "sent"
    except OSError as exc:
        done["all"] = type(exc).__name__
    try:
        os.kill(1, 0)
        done["init_alive"] = True
    except OSError as exc:
        done["init_alive"] = type(exc).__name__
    done["ppid"] = os.getppid()
    return done
