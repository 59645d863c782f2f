"""Lock files and failed writes: who holds a lock, clearing stale ones, waiting, the release lock.

git (and libgit2) take a ref or the index by creating ``<file>.lock``
exclusively; a process killed while holding one leaves it behind. A lock no
process has open, older than a short grace period, is removed; a live one is
waited for, then reported with its holders (:class:`LockedError`). The release
lock is an ``flock`` on one file, which the kernel drops when its holder exits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

from registry.errors import GitError, LockedError

log = logging.getLogger(__name__)

LOCK_GRACE_S = 2.0
"""A ``*.lock`` file older than this that no process holds open was left by a dead one."""
LOCK_WAIT_S = 10.0
"""How long a write waits for a live lock on a ref (or the git index) before giving up
(``$PROCREG_LOCK_WAIT`` overrides it)."""
RELEASE_LOCK_WAIT_S = 120.0
"""How long a release waits for another release in the same repository to finish."""
RELEASE_LOCK = Path("procreg") / "release.lock"
"""The release lock, relative to the common git dir (shared by every worktree)."""

_LOCK_IN_MESSAGE = re.compile(r"'([^']+\.lock)'")


def lock_wait() -> float:
    """Seconds a write waits for a live lock (``$PROCREG_LOCK_WAIT``, else :data:`LOCK_WAIT_S`)."""
    try:
        return float(os.environ.get("PROCREG_LOCK_WAIT", LOCK_WAIT_S))
    except ValueError:
        return LOCK_WAIT_S


def is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "failed to lock" in text or "locked" in text or ".lock'" in text


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "no space left" in text or "disk quota exceeded" in text


def write_error(
    name: str, exc: BaseException, doing: str, where: Path, *, ref: str | None = None
) -> GitError:
    """A libgit2 or OS error as a :class:`GitError` naming the repository and what failed."""
    if is_disk_full(exc):
        return GitError(
            f"{name}: {doing}: the disk holding {where} is full ({exc}); free some "
            "space and run the command again (what was done is kept)",
            path=str(where),
            ref=ref,
        )
    return GitError(f"{name}: {doing}: {exc}", path=str(where), ref=ref)


def lock_path(exc: BaseException, default: Path) -> Path:
    """The lock file a libgit2 lock error names (else ``default``)."""
    found = _LOCK_IN_MESSAGE.search(str(exc))
    return Path(found.group(1)) if found else default


def wait_for_lock(lock: Path, what: str, deadline: float) -> None:
    """After a write found ``lock`` taken: clear it if its holder is dead, else wait a bit.

    Raises :class:`LockedError` naming the lock (and who holds it) at ``deadline``.
    """
    cleared, holders = clear_stale_lock(lock)
    if cleared:
        return
    if time.monotonic() > deadline:
        raise LockedError(locked_message(lock, what, holders), path=str(lock), holders=holders)
    time.sleep(random.uniform(0.01, 0.05))  # noqa: S311 - jitter, not crypto


def lock_holders(path: Path) -> list[int]:
    """Ids of the processes that have ``path`` open (read from ``/proc``; may be incomplete).

    libgit2 keeps a lock file open while it holds it; a process whose ``/proc``
    entry cannot be read (another user's) is not seen.
    """
    target = Path(os.path.realpath(path))
    try:
        procs = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return []
    return [int(proc.name) for proc in procs if _has_open(proc, target)]


def _has_open(proc: Path, target: Path) -> bool:
    try:
        fds = list((proc / "fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if fd.readlink() == target:
                return True
        except OSError:
            continue
    return False


def clear_stale_lock(path: Path, grace_s: float = LOCK_GRACE_S) -> tuple[bool, list[int]]:
    """Remove ``path`` if it is a lock its holder left behind; ``(gone now, live holders)``.

    Stale means: no process has it open and it is older than ``grace_s`` (git
    closes a ref lock just before it renames it into place, for microseconds).
    """
    try:
        before = path.stat()
    except FileNotFoundError:
        return True, []
    holders = lock_holders(path)
    if holders:
        return False, holders
    if time.time() - before.st_mtime < grace_s:
        return False, []
    try:
        now = path.stat()
    except FileNotFoundError:
        return True, []
    if (now.st_ino, now.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
        return False, []  # a new writer took it meanwhile
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    log.warning("procreg: removed the stale lock %s (the process that took it is gone)", path)
    return True, []


def locked_message(lock: Path, what: str, holders: list[int]) -> str:
    if holders:
        who = ", ".join(f"pid {pid} ({_command_of(pid)})" for pid in holders)
        return (
            f"{lock} is held by {who}, which is writing {what}; wait for it to finish "
            "(or stop it), then retry"
        )
    return (
        f"{lock} keeps being recreated: another git command is writing {what}; wait for it "
        "to finish, then retry"
    )


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "unknown command"
    text = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return text[:80] or "unknown command"


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def hold_release_lock(path: Path, name: str, wait_s: float) -> Iterator[None]:
    """Hold the ``flock`` on ``path`` (the release lock of repository ``name``).

    One open file locked with ``flock``: exclusive by construction, and the
    kernel drops it when its holder exits, however it exits, so a killed
    release never blocks the next one. The holder writes its pid into the file
    so a waiter that gives up can say who holds it.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise write_error(name, exc, "cannot open the release lock", path) from exc
    try:
        _flock(fd, path, name, wait_s)
        with contextlib.suppress(OSError):  # informative only: a full disk must not stop us
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _flock(fd: int, path: Path, name: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                holder = _read_pid(fd)
                raise LockedError(
                    f"{name}: another release holds {path}"
                    + (f" (pid {holder})" if holder else "")
                    + f" after {wait_s:.0f} s; wait for it to finish, then retry",
                    path=str(path),
                    holders=[holder] if holder else [],
                ) from None
            time.sleep(random.uniform(0.005, 0.03))  # noqa: S311 - jitter
