"""The run-record writer: batched delivery to the index, with a local spool when it is down.

Every run produces one :class:`~registry.index.contract.ExecutionRecord`. A :class:`RunRecorder`
buffers them and delivers a batch in one transaction when the buffer is full, when
the oldest buffered record is ``flush_interval_s`` old, and on :meth:`RunRecorder.close`.

When the index cannot be reached (:class:`~registry.errors.IndexUnavailable`, or a
raw connection error), the batch is appended to a spool file instead: JSON lines
under ``.git/procreg/spool/``, one file per recorder, written under an exclusive
``flock`` and fsync'd before the call returns. The next flush that reaches the
index first delivers every spool file in the folder (its own and those that
crashed processes left behind) that was meant for this index, and deletes a file only
after the transaction
that stored its records committed. A crash between that commit and the delete
re-delivers the lines later; ``run_id`` is unique in the index, so nothing is
counted twice, and nothing is lost.

Each spool file is bound to the index it was meant for: its name starts with
``to-<fingerprint>-``, a digest of the target (the SQLite file's absolute path, or
a PostgreSQL URL's user, host, port and database, never its password; see
:func:`index_fingerprint`). A recorder delivers only the files of its own index
(and unbound files, of recorders that knew no target); the others wait for a
recorder of theirs (:func:`spool_counts` says how many, for ``procreg doctor``).

When the spool cannot be written either (a read-only or full disk), the records
stay in memory and every later flush tries again; :attr:`RunRecorder.unsaved`
counts them and :attr:`RunRecorder.unsaved_reason` says why, so the caller can
say that a run's record could not be kept (``procreg run`` exits 1 with
``the run's record could not be stored or spooled: ...``). Nothing is dropped
silently, and a recording problem never becomes an internal error.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from registry.errors import IndexRejected, IndexUnavailable
from registry.index.contract import ExecutionRecord, IndexBackend

log = logging.getLogger(__name__)

SPOOL_DIR = Path("procreg") / "spool"
"""The spool folder, relative to the repository's ``.git`` folder."""

SPOOL_SUFFIX = ".jsonl"
REJECTED_SUFFIX = ".rejected"

# Connection failures that reach us without the backend having wrapped them.
UNREACHABLE: tuple[type[BaseException], ...] = (
    IndexUnavailable,
    OSError,
    ConnectionError,
    TimeoutError,
)

Connect = Callable[[], Awaitable[IndexBackend]]
OnFlush = Callable[[set[str]], Awaitable[None]]


class FlushReport(BaseModel):
    """What one flush did: records stored in the index, spooled, re-delivered from the spool."""

    delivered: int = 0
    new: int = 0
    spooled: int = 0
    from_spool: int = 0
    undeliverable: int = 0
    """Records neither stored nor spooled by this flush (kept in memory for the next one)."""
    error: str | None = None


def spool_dir(git_dir: Path) -> Path:
    """The spool folder of the repository whose ``.git`` folder is ``git_dir``."""
    return git_dir / SPOOL_DIR


BOUND_PREFIX = "to-"
"""Spool files bound to one index are named ``to-<fingerprint>-<pid>-<random>.jsonl``."""


def index_fingerprint(target: str | os.PathLike[str] | None) -> str | None:
    """A short digest naming the index ``target`` is (None: no target known).

    A PostgreSQL URL counts by its user, host, port and database (the password and
    options may change, the database does not); a SQLite target by its absolute path.
    """
    if target is None:
        return None
    text = os.fspath(target)
    if text.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
        ident = f"postgresql://{parts.username or ''}@{host}:{parts.port or 5432}{parts.path}"
    else:
        ident = "sqlite:" + str(Path(text.removeprefix("sqlite://")).resolve())
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def backend_target(backend: object | None) -> str | Path | None:
    """The target an open index was opened at (``url``, ``path`` or ``target``), if it says."""
    if backend is None:
        return None
    own = getattr(backend, "__dict__", {})  # never __getattr__ (an OfflineIndex answers anything)
    for attr in ("url", "path", "target"):
        value = own.get(attr)
        if isinstance(value, str | Path):
            return value
    return None


def spool_fingerprint(path: Path) -> str | None:
    """The fingerprint a spool file is bound to, or None for an unbound file."""
    name = path.name
    if not name.startswith(BOUND_PREFIX):
        return None
    fingerprint = name[len(BOUND_PREFIX) :].split("-", 1)[0]
    return fingerprint or None


def spool_counts(spool: Path, target: str | os.PathLike[str] | None) -> tuple[int, int]:
    """Records waiting in ``spool``: (for the index ``target`` names, for other indexes)."""
    mine = other = 0
    wanted = index_fingerprint(target)
    if spool.is_dir():
        for path in sorted(spool.glob(f"*{SPOOL_SUFFIX}")):
            bound = spool_fingerprint(path)
            with path.open(encoding="utf-8") as handle:
                count = len(_read_spool(handle, path)[0])
            if bound is None or bound == wanted:
                mine += count
            else:
                other += count
    return mine, other


class RunRecorder:
    """Buffers run records and delivers them to the index, spooling while it is unreachable.

    Give either ``backend`` (an open index, not closed by the recorder) or ``connect``
    (a factory the recorder calls whenever it has no working connection, and whose
    result it closes). ``on_flush`` is awaited with the procedure ids of every batch
    that reached the index (the health policy hooks in there); its errors are logged,
    never raised, so recording never fails because of it. ``target`` is where the
    index is (a SQLite path or a PostgreSQL URL; default: what ``backend`` was opened
    at): what it spools is bound to it, and it delivers only what was meant for it.
    """

    def __init__(
        self,
        spool: Path,
        backend: IndexBackend | None = None,
        *,
        connect: Connect | None = None,
        batch_size: int = 100,
        flush_interval_s: float = 1.0,
        on_flush: OnFlush | None = None,
        target: str | os.PathLike[str] | None = None,
    ) -> None:
        if backend is None and connect is None:
            raise ValueError("RunRecorder needs a backend or a connect factory")
        self.spool = spool
        self.batch_size = max(1, batch_size)
        self.flush_interval_s = flush_interval_s
        self.on_flush = on_flush
        self._backend = backend
        self._connect = connect
        self._owns_backend = backend is None
        self._buffer: list[ExecutionRecord] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._closed = False
        self.fingerprint = index_fingerprint(
            target if target is not None else backend_target(backend)
        )
        """The index this recorder's spool files are bound to (None: unbound)."""
        bound = f"{BOUND_PREFIX}{self.fingerprint}-" if self.fingerprint else ""
        self.spool_file = spool / f"{bound}{os.getpid()}-{uuid.uuid4().hex[:12]}{SPOOL_SUFFIX}"
        self.totals = FlushReport()
        self._spool_ids: set[str] = set()
        self.unsaved_reason: str | None = None
        """Why the records counted by :attr:`unsaved` could be neither stored nor spooled."""
        self.events: list[BaseModel] = []
        """What ``on_flush`` hooks did (e.g. health actions), for the caller to report."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def backend(self) -> IndexBackend | None:
        """The index connection in use, or None while there is none (unreachable)."""
        return self._backend

    @property
    def pending(self) -> int:
        """Records buffered in memory, not yet delivered nor spooled."""
        return len(self._buffer)

    @property
    def unsaved(self) -> int:
        """Records that the last flush could neither store nor spool (after :meth:`close`: lost)."""
        return len(self._buffer) if self.unsaved_reason is not None else 0

    async def record(self, record: ExecutionRecord) -> None:
        """Buffer one record; flush now if the batch is full, else within the interval."""
        await self.record_many([record])

    async def record_many(self, records: Sequence[ExecutionRecord]) -> None:
        """Buffer several records (same rules as :meth:`record`)."""
        if self._closed:
            raise IndexUnavailable("the run recorder is closed; records can no longer be taken")
        self._buffer.extend(records)
        if len(self._buffer) >= self.batch_size or self.flush_interval_s <= 0:
            await self.flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_interval_s)
        try:
            # shielded: close() cancelling the timer must not cut a delivery in half
            await asyncio.shield(self.flush())
        except Exception:  # a background flush has no caller to raise to
            log.exception("flushing run records in the background failed")

    async def flush(self) -> FlushReport:
        """Deliver the spool and the buffer now; spool the buffer if the index is down."""
        async with self._lock:
            batch, self._buffer = self._buffer, []
            try:
                report = await self._deliver(batch)
            except BaseException:
                # cancelled mid-delivery: keep the batch; if it did commit, the
                # re-delivery is a duplicate that run_id absorbs
                self._buffer[:0] = batch
                raise
            if report.undeliverable:
                self._buffer[:0] = batch  # kept for the next flush; never dropped silently
            else:
                self.unsaved_reason = None
            ids = ({r.id for r in batch} | self._spool_ids) if report.error is None else set()
        self._add(report)
        if ids and self.on_flush is not None:
            try:
                await self.on_flush(ids)
            except Exception:  # the hook must never make a recorded run fail
                log.exception("the after-recording hook failed for %s", sorted(ids))
        return report

    async def deliver_spool(self) -> FlushReport:
        """Deliver whatever the spool holds (e.g. at start-up), without buffered records."""
        async with self._lock:
            report = await self._deliver([])
        self._add(report)
        return report

    async def close(self) -> None:
        """Flush what is buffered (spooling it if need be) and release the connection."""
        if self._closed:
            return
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        try:
            await self.flush()
        finally:
            self._closed = True
            await self._drop_backend()
        if self.unsaved:
            log.warning(
                "%d run records are lost (the recorder is closed): %s",
                self.unsaved,
                self.unsaved_reason,
            )

    # -- delivery ------------------------------------------------------------

    def _add(self, report: FlushReport) -> None:
        t = self.totals
        t.delivered += report.delivered
        t.new += report.new
        t.spooled += report.spooled
        t.from_spool += report.from_spool
        t.undeliverable = report.undeliverable
        t.error = report.error

    async def _deliver(self, batch: list[ExecutionRecord]) -> FlushReport:
        report = FlushReport()
        self._spool_ids = set()
        try:
            backend = await self._ensure_backend()
            report.from_spool, report.new = await self._deliver_spool_files(backend)
            if batch:
                report.new += await backend.record_executions(batch)
            report.delivered = len(batch) + report.from_spool
        except IndexRejected as exc:
            # The index refuses this batch for good: keep it aside rather than block every
            # later flush behind it.
            report.error = str(exc)
            if batch:
                rejected = self.spool / f"{self.spool_file.stem}{REJECTED_SUFFIX}"
                if self._spool_or_keep(rejected, batch, report, str(exc)):
                    report.spooled = 0
            log.error("the index rejected %d run records: %s", len(batch), exc)
        except UNREACHABLE as exc:
            report.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            await self._drop_backend()
            if batch and self._spool_or_keep(self.spool_file, batch, report, report.error):
                log.warning(
                    "index unreachable (%s); %d run records spooled to %s",
                    report.error,
                    len(batch),
                    self.spool_file,
                )
        return report

    def _spool_or_keep(
        self, path: Path, batch: list[ExecutionRecord], report: FlushReport, why: str
    ) -> bool:
        """Append ``batch`` to ``path``; if the disk refuses, mark it undeliverable (False)."""
        try:
            self._append(path, batch)
        except OSError as exc:
            report.undeliverable = len(batch)
            self.unsaved_reason = (
                f"the index could not take it ({why}) and the spool {path} cannot be written "
                f"({exc.strerror or exc})"
            )
            report.error = self.unsaved_reason
            # a warning: the caller reads `unsaved` and says it (procreg run does, exit 1)
            log.warning("%d run records kept in memory only: %s", len(batch), self.unsaved_reason)
            return False
        report.spooled = len(batch)
        return True

    async def _ensure_backend(self) -> IndexBackend:
        if self._backend is None:
            assert self._connect is not None
            self._backend = await self._connect()
        return self._backend

    async def _drop_backend(self) -> None:
        if self._owns_backend and self._backend is not None:
            backend, self._backend = self._backend, None
            with contextlib.suppress(Exception):
                await backend.close()

    async def _deliver_spool_files(self, backend: IndexBackend) -> tuple[int, int]:
        """Deliver every spool file meant for this index (or for none in particular).

        Each is deleted only after its records committed; files bound to another
        index are left for it.
        """
        if not self.spool.is_dir():
            return 0, 0
        delivered = new = 0
        for path in sorted(self.spool.glob(f"*{SPOOL_SUFFIX}")):
            bound = spool_fingerprint(path)
            if bound is not None and bound != self.fingerprint:
                continue
            try:
                got = await self._deliver_spool_file(backend, path)
            except OSError as exc:  # a read-only or full spool: the file stays for later
                log.error("cannot deliver the spool file %s now: %s", path, exc)
                continue
            delivered += got[0]
            new += got[1]
        return delivered, new

    async def _deliver_spool_file(self, backend: IndexBackend, path: Path) -> tuple[int, int]:
        with _locked(path, create=False) as handle:
            if handle is None:
                return 0, 0
            records, bad = _read_spool(handle, path)
            if bad:
                self._keep_bad(path, bad)
            new = 0
            if records:
                try:
                    new = await backend.record_executions(records)
                except IndexRejected as exc:
                    log.error("the index rejected spool file %s: %s", path, exc)
                    _set_aside(path)
                    return 0, 0
                self._spool_ids |= {r.id for r in records}
            _remove_delivered(path)
        return len(records), new

    def _keep_bad(self, path: Path, lines: list[str]) -> None:
        bad_path = path.with_suffix(REJECTED_SUFFIX)
        with bad_path.open("a", encoding="utf-8") as out:
            out.writelines(line + "\n" for line in lines)
            out.flush()
            os.fsync(out.fileno())
        log.error("%d unreadable lines of %s kept in %s", len(lines), path, bad_path)

    def _append(self, path: Path, records: Sequence[ExecutionRecord]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(r.model_dump_json() + "\n" for r in records)
        with _locked(path, create=True) as handle:
            assert handle is not None
            handle.seek(0, os.SEEK_END)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def _set_aside(path: Path) -> None:
    path.rename(path.with_suffix(REJECTED_SUFFIX))


def _remove_delivered(path: Path) -> None:
    try:
        path.unlink()
    except OSError as exc:  # stored; run_id makes the later re-delivery a no-op
        log.warning("delivered %s but cannot remove it: %s", path, exc)


def spooled_records(spool: Path) -> list[ExecutionRecord]:
    """Every record waiting in the spool folder (for ``doctor`` and tests)."""
    found: list[ExecutionRecord] = []
    if spool.is_dir():
        for path in sorted(spool.glob(f"*{SPOOL_SUFFIX}")):
            with path.open(encoding="utf-8") as handle:
                found += _read_spool(handle, path)[0]
    return found


def _read_spool(handle: IO[str], path: Path) -> tuple[list[ExecutionRecord], list[str]]:
    handle.seek(0)
    records: list[ExecutionRecord] = []
    bad: list[str] = []
    for number, line in enumerate(handle.read().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(ExecutionRecord.model_validate_json(line))
        except ValidationError as exc:
            # A torn last line (a crash mid-write) or a hand-edited file: keep, don't drop.
            log.error("%s:%d: not a run record (%s)", path, number, exc.errors()[0]["msg"])
            bad.append(line)
    return records, bad


@contextlib.contextmanager
def _locked(path: Path, *, create: bool) -> Iterator[IO[str] | None]:
    """Open ``path`` under an exclusive flock; ``None`` if it vanished (already delivered).

    After taking the lock the file may have been delivered and unlinked by another
    process; writing to that orphan would lose the lines, so the inode is re-checked.
    """
    while True:
        try:
            handle = path.open("a+" if create else "r+", encoding="utf-8")
        except FileNotFoundError:
            if create:
                raise
            yield None
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                same = path.stat().st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield handle
                return
            if not create:
                yield None
                return
        finally:
            handle.close()
        time.sleep(0)
