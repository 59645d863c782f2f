"""Binds an abstract Unix socket and waits (bounded) for another run to connect.

Expected: ok with {"bound": true, "accepted": 0}: no other run can reach it.
"""

import socket


def main(name, wait_s):
    """Listen on the abstract ``name`` for ``wait_s`` seconds; count connections."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("\0" + name)
    sock.listen(8)
    sock.settimeout(wait_s)
    accepted = 0
    try:
        conn, _ = sock.accept()
        accepted += 1
        conn.close()
    except TimeoutError:
        pass
    finally:
        sock.close()
    return {"bound": True, "accepted": accepted}
