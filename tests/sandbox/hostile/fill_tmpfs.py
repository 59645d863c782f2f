"""Writes into a folder until the write fails (a big file, or many small ones).

Expected: bounded by the tmpfs size: ok with the bytes written (ENOSPC), or
MemoryLimitExceeded / Timeout; never the host's disk.
"""

import os


def main(folder, files, chunk_kb):
    """Fill ``folder`` with ``files`` (0: one big file) files; report how far it got."""
    os.makedirs(folder, exist_ok=True)
    chunk = b"x" * (chunk_kb * 1024)
    written = 0
    count = 0
    error = None
    try:
        if files == 0:
            with open(os.path.join(folder, "big"), "wb", buffering=0) as fh:
                while True:
                    written += fh.write(chunk)
        else:
            for i in range(files):
                with open(os.path.join(folder, f"f{i}"), "wb", buffering=0) as fh:
                    written += fh.write(chunk)
                count += 1
    except OSError as exc:
        error = [type(exc).__name__, exc.errno]
    return {"written": written, "files": count, "error": error}
