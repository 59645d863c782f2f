"""Background clean-up for the sandbox: finished runs' scratch folders, exited zygotes."""

from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

# The sandbox's one logger, whichever of its modules speaks.
log = logging.getLogger("registry.sandbox")


class Janitor:
    """A thread for clean-up nobody has to wait for: scratch folders, exited zygotes.

    Removing a folder costs milliseconds on some file systems (ext4 with
    ``discard``), so a finished run's scratch folder is *renamed* into a trash
    folder on the same file system (microseconds: it is gone from the scratch
    folder at once) and removed here. :meth:`close` waits for all of it.
    """

    def __init__(self, scratch_base: Path, own_root: Path | None) -> None:
        self.trash = trash_folder(scratch_base, own_root)
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the janitor's thread (started on first use)."""
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._loop, name="sandbox-janitor", daemon=True
                )
                self.thread.start()
        self.jobs.put(job)

    def discard(self, folder: Path) -> None:
        """Take ``folder`` out of its parent now; delete it in the background."""
        if self.trash is not None:
            target = self.trash / folder.name
            try:
                folder.rename(target)
            except OSError:
                pass
            else:
                self.submit(lambda: shutil.rmtree(target, ignore_errors=True))
                return
        shutil.rmtree(folder, ignore_errors=True)

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # a failed clean-up must not stop the next ones
                log.exception("sandbox clean-up failed")

    def close(self) -> None:
        """Wait for every job submitted so far, then remove the trash folder."""
        with self.lock:
            thread, self.thread = self.thread, None
        if thread is not None:
            self.jobs.put(None)
            thread.join()
        if self.trash is not None:
            shutil.rmtree(self.trash, ignore_errors=True)


def trash_folder(scratch_base: Path, own_root: Path | None) -> Path | None:
    """A private folder on the scratch folder's file system (renames need one)."""
    if own_root is not None:
        trash = own_root / "trash"
        trash.mkdir(mode=0o700)
        return trash
    try:
        device = scratch_base.stat().st_dev
        for parent in (scratch_base.parent, Path(tempfile.gettempdir())):
            if parent != Path("/") and parent.stat().st_dev == device:
                return Path(tempfile.mkdtemp(prefix=".procreg-trash-", dir=parent))
    except OSError:
        pass
    return None
