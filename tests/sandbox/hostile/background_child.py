"""Double-forks a session leader that sleeps, then returns at once.

Expected: ProcessLimitExceeded when the audit hook refuses the fork; with the
hook off the run succeeds and the sandbox kills the sleeper (no process of the
run's uid remains).
"""

import os
import time


def main():
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(60)
        os._exit(0)
    os.waitpid(pid, 0)
    return os.getuid()
