"""The sandbox's unprivileged uids: one per concurrent run, held across processes.

When the host runs as root, each run gets a uid of its own (``UID_BASE``
upwards, or the configured ``sandbox.user``), locked with ``flock`` in
``SLOT_LOCK_DIR`` so that two hosts on one machine never share one. A uid of
its own makes the sweep after a run (kill every process of the uid) and
RLIMIT_NPROC exact. Without root there is no uid drop and every slot is empty.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import signal
import threading
import time
from pathlib import Path
from typing import Any

from registry.config import SandboxSection
from registry.errors import ExecutionError

# The sandbox's one logger, whichever of its modules speaks.
log = logging.getLogger("registry.sandbox")

UID_BASE = 61000
UID_SLOTS = 64
SLOT_LOCK_DIR = Path("/run/procreg-sandbox")
ACQUIRE_WAIT_S = 60


class Slot:
    """One run's uid and gid (None without uid drop) and the lock that holds them."""

    def __init__(self, uid: int | None, gid: int | None, lock_fd: int | None) -> None:
        self.uid, self.gid, self.lock_fd = uid, gid, lock_fd

    def assignment(self) -> dict[str, Any] | None:
        """What the zygote needs to check and sweep after this slot's worker exits."""
        return None if self.uid is None else {"uid": self.uid}


class Slots:
    """Unprivileged uids, each held by one run at a time across all processes (flock).

    A slot goes back to the free list only once its worker's exit was reported
    swept (nothing of the uid left); until then no other run can get its uid.
    """

    def __init__(self, uids: list[tuple[int, int]] | None) -> None:
        self.uids = uids  # None: no uid drop (not root)
        self.free: list[Slot] = []
        self.held: set[int] = set()
        self.lock = threading.Lock()
        self.lock_dir = SLOT_LOCK_DIR
        if uids is not None:
            self.lock_dir.mkdir(mode=0o700, exist_ok=True)

    def acquire(self) -> Slot:
        """A free slot; waits while every uid is busy, raises after a minute."""
        if self.uids is None:
            return Slot(None, None, None)
        deadline = time.monotonic() + ACQUIRE_WAIT_S
        while True:
            with self.lock:
                if self.free:
                    return self.free.pop()
                for uid, gid in self.uids:
                    if uid in self.held:
                        continue
                    fd = os.open(self.lock_dir / f"slot-{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(fd)
                        continue
                    self.held.add(uid)
                    kill_uid(uid)  # leftovers of a host that died mid-run
                    return Slot(uid, gid, fd)
            if time.monotonic() > deadline:
                raise ExecutionError(
                    f"all {len(self.uids)} sandbox uids are busy (locks in {self.lock_dir}); "
                    "wait for other runs to finish or raise UID_SLOTS"
                )
            time.sleep(0.01)

    def release(self, slot: Slot, clean: bool) -> None:
        """Give ``slot`` back; one whose sweep did not finish stays locked until close."""
        if slot.uid is None:
            return
        with self.lock:
            if clean:
                self.free.append(slot)
            else:  # keep it locked (unused) until close: its processes may linger
                log.warning("sandbox uid %s is quarantined: its sweep did not finish", slot.uid)

    def close(self) -> None:
        """Unlock every free slot (quarantined ones stay held by this process)."""
        with self.lock:
            for slot in self.free:
                if slot.lock_fd is not None and slot.uid is not None:
                    os.close(slot.lock_fd)
                    self.held.discard(slot.uid)
            self.free.clear()


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
    """The (uid, gid) pairs runs may use; None when the host is not root (no uid drop)."""
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
    return [(uid, uid) for uid in range(UID_BASE, UID_BASE + UID_SLOTS)]
