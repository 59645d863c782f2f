"""The sandbox's unprivileged uids: one per live sandbox, held across processes.

When the host runs as root, each sandbox (a run, or a warm sandbox waiting
for one) runs as a uid of its own (``UID_BASE`` upwards, or the configured
``sandbox.user``), locked with ``flock`` in ``SLOT_LOCK_DIR``: the kernel
drops the lock when its holder dies, so a crashed host never keeps a uid.
The uid goes back the moment its sandbox is over and swept, whatever
process holds the ``Sandbox``; nobody keeps idle uids. The holder's pid is
written into the lock file, so a wait that times out says who holds them, and
a uid whose previous holder died mid-run is swept before it is used again.
Without root there is no uid drop and every slot is empty.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import signal
import threading
import time
from pathlib import Path

from registry.config import SandboxSection
from registry.errors import ExecutionError

log = logging.getLogger("registry.sandbox")

UID_BASE = 61000
UID_SLOTS = 64
SLOT_LOCK_DIR = Path("/run/procreg-sandbox")
ACQUIRE_WAIT_S = 60.0


class Slot:
    """One sandbox's uid and gid (None without uid drop) and the lock that holds them."""

    def __init__(self, uid: int | None, gid: int | None, lock_fd: int | None) -> None:
        self.uid, self.gid, self.lock_fd = uid, gid, lock_fd


class Slots:
    """Unprivileged uids, each held by one sandbox at a time across all processes."""

    def __init__(self, uids: list[tuple[int, int]] | None, wait_s: float = ACQUIRE_WAIT_S) -> None:
        self.uids = uids  # None: no uid drop (not root)
        self.wait_s = wait_s
        self.held: set[int] = set()
        self.lock = threading.Lock()
        self.freed = threading.Condition(self.lock)
        self.lock_dir = SLOT_LOCK_DIR
        self._next = 0
        if uids is not None:
            self.lock_dir.mkdir(mode=0o700, exist_ok=True)

    def acquire(self, *, wait: bool = True, spare: int = 0) -> Slot | None:
        """A free uid; waits (bounded) while all are busy, or returns None with ``wait=False``.

        ``spare`` (with ``wait=False``) takes one only if that many others are
        free too, so that warm sandboxes never take the last uids from runs.
        """
        if self.uids is None:
            return Slot(None, None, None)
        if spare:
            slots = [self.acquire(wait=False) for _ in range(spare + 1)]
            got = [slot for slot in slots if slot is not None]
            if len(got) <= spare:
                for slot in got:
                    self.release(slot)
                return None
            for extra in got[1:]:
                self.release(extra)
            return got[0]
        deadline = time.monotonic() + self.wait_s
        pause = 0.001
        while True:
            found = self._try_all()
            if found is not None or not wait:
                return found
            if time.monotonic() > deadline:
                raise ExecutionError(
                    f"all {len(self.uids)} sandbox uids are busy after {self.wait_s:g} s "
                    f"(held by {self.holders()}; locks in {self.lock_dir}); wait for those "
                    "runs to finish, or give procreg.toml [sandbox] more uids"
                )
            with self.freed:  # woken at once by a release in this process
                self.freed.wait(pause)
            pause = min(pause * 2, 0.05)  # other processes' releases are seen by polling

    def _try_all(self) -> Slot | None:
        assert self.uids is not None
        with self.lock:
            count = len(self.uids)
            for step in range(count):
                uid, gid = self.uids[(self._next + step) % count]
                if uid in self.held:
                    continue
                fd = os.open(self.lock_dir / f"slot-{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                self._next = (self._next + step + 1) % count
                self.held.add(uid)
                break
            else:
                return None
        previous = os.pread(fd, 32, 0).strip()
        if previous:  # its last holder died before releasing it: sweep what it left
            kill_uid(uid)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return Slot(uid, gid, fd)

    def release(self, slot: Slot) -> None:
        """Give ``slot`` back (its sandbox is over and swept)."""
        if slot.uid is None or slot.lock_fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(slot.lock_fd, 0)
        os.close(slot.lock_fd)
        slot.lock_fd = None
        with self.freed:
            self.held.discard(slot.uid)
            self.freed.notify_all()

    def holders(self) -> str:
        """Who holds the uids now, as ``pid N (command)`` counts."""
        counts: dict[str, int] = {}
        for uid, _ in self.uids or []:
            try:
                pid = (self.lock_dir / f"slot-{uid}.lock").read_text().strip()
            except OSError:
                continue
            if pid:
                counts[pid] = counts.get(pid, 0) + 1
        parts = [f"pid {pid} ({_command(pid)}): {n}" for pid, n in sorted(counts.items())]
        return ", ".join(parts) or "processes that did not say"


def _command(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    return " ".join(part.decode("utf-8", "replace") for part in raw.split(b"\0")[:3] if part)


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (a forked helper that becomes it)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def slot_uids(config: SandboxSection) -> list[tuple[int, int]] | None:
    """The (uid, gid) pairs sandboxes may use; None when the host is not root (no uid drop)."""
    if os.geteuid() != 0:
        return None
    if config.user:
        try:
            entry = pwd.getpwnam(config.user)
        except KeyError:
            raise ExecutionError(
                f"procreg.toml: sandbox.user {config.user!r} is not a user on this machine"
            ) from None
        if entry.pw_uid == 0:
            raise ExecutionError("procreg.toml: sandbox.user must not be root")
        return [(entry.pw_uid, entry.pw_gid)]
    return [(uid, uid) for uid in range(UID_BASE, UID_BASE + config.uids)]
