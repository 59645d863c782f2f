"""Run the procreg CLI and SIGKILL it at a chosen point (a helper of test_integrity_e2e.py).

``python -m tests.integrity_killer MODE N ARGS...`` runs ``procreg ARGS...`` and kills
itself with SIGKILL (no cleanup of any kind, as a power cut or the OOM killer would):

- ``ref-locked``: right after the Nth ref lock is taken, before the ref is written
  (leaves ``refs/tags/<tag>.lock`` or the branch's lock behind);
- ``ref-written``: right after the Nth ref (tag or new branch) is written;
- ``commit``: right after the Nth commit the registry writes, before the checkout is updated;
- ``checkout``: in the middle of updating the checkout, at the Nth index entry;
- ``time``: after N milliseconds, wherever it is.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after_nth(owner: Any, name: str, n: int, *, before: bool = False) -> None:
    original = getattr(owner, name)
    calls = [0]

    def hooked(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if before and calls[0] == n:
            _die()
        out = original(*args, **kwargs)
        if not before and calls[0] == n:
            _die()
        return out

    setattr(owner, name, hooked)


def main() -> int:
    mode, n, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    import pygit2
    import pygit2.transaction

    from registry.git.store import GitStore

    if mode == "ref-locked":
        _after_nth(pygit2.transaction.ReferenceTransaction, "lock_ref", n)
    elif mode == "ref-written":
        _after_nth(GitStore, "_create_ref", n)
    elif mode == "commit":
        _after_nth(GitStore, "write", n)
    elif mode == "checkout":
        _after_nth(pygit2.Index, "add", n, before=True)
    elif mode == "time":
        timer = threading.Timer(n / 1000, _die)
        timer.daemon = True
        timer.start()
    else:
        raise SystemExit(f"unknown mode {mode}")
    from registry.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
