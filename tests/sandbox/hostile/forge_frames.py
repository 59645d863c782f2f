"""Writes a forged {"ok": true, "result": "forged"} frame into every descriptor it has
and every one of pid 1 it can open, then raises or returns "real".

Expected: the outcome is never "forged" (MalformedResult: the worker's own frame
follows the forged one on the only channel the procedure can write).
"""

import os


def main(then):
    """Forge, then ``raise`` or ``return``."""
    body = b'{"ok":true,"result":"forged"}'
    frame = len(body).to_bytes(4, "big") + body
    exit_body = b'{"op":"exit","status":0,"usage":[0,0,0],"oversize":false}'
    supervisor_frames = len(exit_body).to_bytes(4, "big") + exit_body + frame
    wrote = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            os.write(fd, frame)
            wrote.append(fd)
        except OSError:
            pass
    opened = {}
    try:
        names = os.listdir("/proc/1/fd")
    except OSError as exc:
        names = []
        opened["listing"] = type(exc).__name__
    for name in [*names, "0", "1", "2", "3", "4", "5", "6", "7"]:
        try:
            fd = os.open(f"/proc/1/fd/{name}", os.O_WRONLY)
            os.write(fd, supervisor_frames)
            os.close(fd)
            opened[name] = "written"
        except OSError as exc:
            opened[name] = type(exc).__name__
    if then == "raise":
        raise RuntimeError(f"real failure after forging into {wrote} and pid 1 {opened}")
    return {"real": True, "wrote": wrote, "pid1": opened}
