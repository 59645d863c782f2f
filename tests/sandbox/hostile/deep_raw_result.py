"""Writes a result frame nested ``depth`` deep straight into every descriptor, then exits
before the worker can answer, so the host's decoder gets it raw.

Expected: MalformedResult (the host's decoder refuses it); the run is recorded.
"""

import os


def main(depth):
    """Forge a deep frame on every descriptor, then leave."""
    body = ('{"ok":true,"result":' + "[" * depth + "]" * depth + "}").encode()
    frame = len(body).to_bytes(4, "big") + body
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:  # noqa: SIM105  (contextlib is not on the allowlist)
                os.write(fd, frame)
            except OSError:
                pass
    os._exit(0)
