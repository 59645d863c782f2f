"""Connects to abstract Unix sockets (a NUL byte, then the name) for a while.

Expected: ok; every attempt is refused: the run has a network namespace of its own.
"""

import socket
import time


def main(names, retry_s):
    """Retry connecting to each abstract name until ``retry_s`` has passed."""
    attempts = {name: [] for name in names}
    deadline = time.monotonic() + retry_s
    while True:
        for name in names:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(1)
            try:
                sock.connect("\0" + name)
                sock.sendall(b"hello from the sandbox")
                attempts[name].append("connected")
            except OSError as exc:
                attempts[name].append(type(exc).__name__)
            finally:
                sock.close()
        if time.monotonic() > deadline:
            return {name: sorted(set(found)) for name, found in attempts.items()}
        time.sleep(0.05)
