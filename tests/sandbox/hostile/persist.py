"""Leaves files behind for a later run (mode "write"), or looks for them (mode "look").

Expected: a later run finds none of them, and the host's /tmp and /dev/shm get nothing.
"""

import os

PLACES = ["/tmp", "/dev/shm", "/tmp/run", "/var/tmp", "/run", "/run/lock"]


def main(marker, mode):
    """Write ``marker`` files into every writable place, or report which exist."""
    report = {}
    for place in PLACES:
        path = os.path.join(place, marker)
        if mode == "write":
            try:
                os.makedirs(place, exist_ok=True)
                with open(path, "w") as fh:
                    fh.write("left by an earlier run")
                report[place] = "written"
            except OSError as exc:
                report[place] = type(exc).__name__
        else:
            try:
                listing = os.listdir(place)
            except OSError as exc:
                listing = ["error: " + type(exc).__name__]
            report[place] = {"exists": os.path.exists(path), "listing": sorted(listing)[:50]}
    return report
