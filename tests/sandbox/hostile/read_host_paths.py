"""Lists and reads host paths passed in: the repository, its .git, the index, /etc/passwd.

Expected: ok; each path is reported missing (the sandbox's root has none of them).
"""

import os


def main(paths):
    """For each path: whether it exists, its listing or its first bytes, or the error."""
    seen = {}
    for path in paths:
        entry = {"exists": os.path.exists(path)}
        try:
            if os.path.isdir(path):
                entry["listing"] = sorted(os.listdir(path))[:50]
            else:
                with open(path, "rb") as fh:
                    entry["data"] = fh.read(4096).decode("utf-8", "replace")
        except OSError as exc:
            entry["error"] = type(exc).__name__
        seen[path] = entry
    return seen
