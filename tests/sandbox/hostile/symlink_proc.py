"""Reads /proc/1/environ and host paths through symlinks planted in the scratch folder.

Expected: ok; pid 1 is the sandbox's supervisor (unreadable, not dumpable) and
host paths do not exist, so nothing of the host comes back.
"""

import os


def main(targets):
    """Link each target from the scratch folder and read through the link."""
    seen = {}
    for i, target in enumerate(targets):
        link = f"link-{i}"
        entry = {}
        try:
            os.symlink(target, link)
            entry["linked"] = True
        except OSError as exc:
            entry["linked"] = type(exc).__name__
        try:
            with open(link, "rb") as fh:
                entry["data"] = fh.read(65536).decode("utf-8", "replace")
        except OSError as exc:
            entry["error"] = type(exc).__name__
        seen[target] = entry
    return seen
