"""Connects to host file-system Unix sockets (a planted one, PostgreSQL's).

Expected: ok; every path is absent in the sandbox and every connect fails.
"""

import os
import socket


def main(paths):
    """Try each socket path; report what happened."""
    seen = {}
    for path in paths:
        entry = {"exists": os.path.exists(path)}
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2)
        try:
            sock.connect(path)
            sock.sendall(b"hello from the sandbox")
            entry["connect"] = "connected"
        except OSError as exc:
            entry["connect"] = type(exc).__name__
        finally:
            sock.close()
        seen[path] = entry
    return seen
