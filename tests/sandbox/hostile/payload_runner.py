"""Runs a payload kept in a data file of its own folder (``payload.txt``, never parsed by
validation) with the sandbox's interpreter, in a child process.

Expected: ProcessLimitExceeded with the audit hook; without it, the payload runs
but inside the same sandbox: its findings show nothing of the host.
"""

import subprocess
import sys


def main(payload):
    """Run ``payload`` as a Python script; return its exit code and output."""
    done = subprocess.run([sys.executable, payload], capture_output=True, timeout=20)
    return {
        "returncode": done.returncode,
        "stdout": done.stdout.decode("utf-8", "replace")[-20000:],
        "stderr": done.stderr.decode("utf-8", "replace")[-4000:],
    }
