"""Writes a result frame of ``n`` empty lists (a few MB, under the result cap) straight
into every descriptor, then exits: cheap for the sandbox, costly to decode.

Expected: the host decodes it within bounds (memory and time) or refuses it as
MalformedResult/OutputLimitExceeded; the host is not the one who pays.
"""

import os


def main(n):
    """Forge a wide frame on every descriptor, then leave."""
    body = ('{"ok":true,"result":[' + ",".join(["[]"] * n) + "]}").encode()
    frame = len(body).to_bytes(4, "big") + body
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:  # noqa: SIM105  (contextlib is not on the allowlist)
                os.write(fd, frame)
            except OSError:
                pass
    os._exit(0)
