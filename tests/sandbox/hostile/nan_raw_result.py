"""Writes a raw result frame the worker itself would refuse (NaN, Infinity, 1e999, a
5000-digit number) straight into every descriptor, then exits.

Expected: not ok (ResultNotSerializable or MalformedResult): the host accepts only
what the worker's own encoder could have produced.
"""

import os


def main(value):
    """Forge ``{"ok": true, "result": <value>}`` on every descriptor, then leave."""
    body = ('{"ok":true,"result":' + value + "}").encode()
    frame = len(body).to_bytes(4, "big") + body
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:  # noqa: SIM105  (contextlib is not on the allowlist)
                os.write(fd, frame)
            except OSError:
                pass
    os._exit(0)
