"""SIGKILLs its parent, then the host. Expected: SandboxViolation; both survive."""

import os
import signal


def main(host_pid):
    os.kill(os.getppid(), signal.SIGKILL)
    os.kill(host_pid, signal.SIGTERM)
    return "killed"
