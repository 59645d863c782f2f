"""The watcher: keep the index in step with git as refs move (``procreg watch``).

It watches the repository's refs (``HEAD``, ``refs/``, ``packed-refs`` in the
``.git`` folder) and the working tree's ``procedures/`` with watchfiles, and
treats each batch of events as a hint to run :func:`registry.index.sync.sync`. Two
details of watchfiles matter: its default filter drops everything under
``.git``, so a filter of our own selects the ref files; and git updates a ref
by renaming ``<ref>.lock`` over it, which arrives as added/deleted events,
not as a modification.

Sync reads commits and tags, never the working tree: an edit under
``procedures/`` that is not committed changes nothing in the index (the
event only triggers a cheap no-op sync); it shows up once committed.

Events are hints, not the source of truth: a full reconcile (a sync, which
compares the tracked ref's commit and the whole tag set with what was
indexed) runs at start-up and every ``reconcile_every`` seconds, so a missed
event costs latency, never correctness. A bad procedure is recorded as
invalid by sync and never stops the watcher; a lost database connection is
re-opened with exponential backoff (up to ``max_backoff`` seconds) while the
watcher keeps running. With PostgreSQL it ``NOTIFY``s
:data:`registry.index.contract.SYNC_CHANNEL` after each sync that changed something,
with a JSON payload (ref, commit, previous, rebuilt, counts).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from watchfiles import Change, awatch

from registry.errors import ConflictError, IndexUnavailable, RegistryError
from registry.git.store import GitStore
from registry.index.connect import open_backend
from registry.index.contract import IndexBackend
from registry.index.sync import SyncReport, sync

log = logging.getLogger(__name__)

BackendFactory = Callable[[], Awaitable[IndexBackend]]
"""Opens a connected index; called at start and again after a lost connection."""

TICK_S = 0.5
"""How often the watch loop wakes without events (to reconcile, reconnect or stop)."""

STEP_MS = 20
"""watchfiles: yield a batch once no new event came for this long."""

DEBOUNCE_MS = 300
"""watchfiles: yield a batch at the latest this long after its first event."""


class StopEvent(Protocol):
    """What ``stop_event`` must offer (``asyncio.Event`` and ``anyio.Event`` do)."""

    def is_set(self) -> bool: ...


class RefFilter:
    """A watchfiles filter: ref files in the git dir, and files under ``procedures/``.

    Lock files, objects, logs, the git index and the registry's own index
    (``.git/procreg/``) are dropped, so a sync's own writes never wake it.
    """

    def __init__(self, git_dir: Path, procedures: Path | None) -> None:
        self.git_dir = str(git_dir.resolve()).rstrip(os.sep) + os.sep
        self.procedures = str(procedures.resolve()).rstrip(os.sep) + os.sep if procedures else None

    def __call__(self, change: Change, path: str) -> bool:
        """True for an event that may mean the index is out of date."""
        if path.startswith(self.git_dir):
            rel = path[len(self.git_dir) :]
            if rel.endswith(".lock"):
                return False
            return rel in ("HEAD", "packed-refs") or rel.startswith("refs" + os.sep)
        if self.procedures is not None and path.startswith(self.procedures):
            return "__pycache__" not in path and not path.endswith((".pyc", "~", ".swp"))
        return False


def watch_paths(store: GitStore) -> list[Path]:
    """What the watcher watches: the git dir, and ``procedures/`` if there is a working tree."""
    paths = [store.git_dir]
    if store.workdir is not None:
        procedures = store.workdir / store.folder
        if procedures.is_dir():
            paths.append(procedures)
    return paths


def _connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, IndexUnavailable | OSError | ConnectionError):
        return True
    return type(exc).__module__.startswith("asyncpg")


def describe_error(exc: BaseException) -> str:
    """One line for an error: its message, with its type when it is not one of ours."""
    text = str(exc)
    return text if isinstance(exc, RegistryError) and text else f"{type(exc).__name__}: {text}"


def _payload(report: SyncReport) -> str:
    return json.dumps(
        {
            "ref": report.ref,
            "commit": report.commit,
            "previous": report.previous,
            "rebuilt": report.rebuilt,
            "added": len(report.added),
            "updated": len(report.updated),
            "deleted": len(report.deleted),
            "invalid": len(report.invalid),
            "tags_added": len(report.tags_added),
            "tags_removed": len(report.tags_removed),
        }
    )


class _Watcher:
    def __init__(
        self,
        store: GitStore,
        factory: BackendFactory,
        on_sync: Callable[[SyncReport], None] | None,
        on_error: Callable[[BaseException], None] | None,
        reconcile_every: float,
        max_backoff: float,
    ) -> None:
        self.store = store
        self.factory = factory
        self.on_sync = on_sync
        self.on_error = on_error
        self.reconcile_every = reconcile_every
        self.max_backoff = max_backoff
        self.backend: IndexBackend | None = None
        self.failures = 0
        self.retry_at = 0.0
        self.next_reconcile = 0.0  # due at once: the start-up reconcile
        self.dirty = True
        self.last_error: str | None = None

    def _report_error(self, exc: BaseException, retry_in: float | None) -> None:
        """Say what failed, once: the same error again (the server still down) is not repeated.

        The ``on_error`` callback, when given, is the one place it is said (the
        log then only gets it at debug level); otherwise one warning line, never
        a traceback: a watcher's errors are conditions of its environment.
        """
        text = f"{type(exc).__name__}: {exc}"
        if text == self.last_error:
            log.debug("still failing: %s", text)
            return
        self.last_error = text
        if self.on_error is not None:
            log.debug("sync failed: %s", text)
            try:
                self.on_error(exc)
            except Exception:
                log.exception("the on_error callback failed")
            return
        again = f"; retrying in {retry_in:.1f} s" if retry_in is not None else ""
        log.warning("procreg watch: %s%s", describe_error(exc), again)

    async def _drop_backend(self) -> None:
        backend, self.backend = self.backend, None
        if backend is not None:
            try:
                await backend.close()
            except Exception:  # a dead connection may fail to close; it is gone either way
                log.debug("closing the lost index connection failed", exc_info=True)

    def _backoff(self) -> float:
        delay: float = min(self.max_backoff, 0.5 * 2 ** min(self.failures, 16))
        self.failures += 1
        self.retry_at = time.monotonic() + delay
        return delay

    async def step(self) -> None:
        """Sync if a hint came, a reconcile is due or a retry is due; never raises."""
        now = time.monotonic()
        if now >= self.next_reconcile:
            self.dirty = True
        if not self.dirty or now < self.retry_at:
            return
        try:
            if self.backend is None:
                self.backend = await self.factory()
                log.info("index connected")
            report = await sync(self.store, self.backend)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if _connection_lost(exc):
                await self._drop_backend()
                self._report_error(exc, self._backoff())
            elif isinstance(exc, ConflictError):
                self.retry_at = now + 0.2  # another syncer holds the lock: try again soon
            else:
                self._report_error(exc, self._backoff())
                log.debug("sync failed", exc_info=True)
            return
        if self.last_error is not None:
            log.info("procreg watch: syncing again after: %s", self.last_error)
            self.last_error = None
        self.failures = 0
        self.dirty = False
        self.next_reconcile = time.monotonic() + self.reconcile_every
        if report.changed:
            try:
                await self.backend.notify(_payload(report))
            except Exception as exc:  # noqa: BLE001 - listeners are a courtesy; the sync succeeded
                log.warning("NOTIFY after sync failed: %s", exc)
        if self.on_sync is not None:
            try:
                self.on_sync(report)
            except Exception:
                log.exception("the on_sync callback failed")


async def watch(
    store: GitStore,
    backend_factory: BackendFactory,
    *,
    on_sync: Callable[[SyncReport], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    reconcile_every: float = 60.0,
    max_backoff: float = 30.0,
    stop_event: StopEvent | None = None,
) -> None:
    """Watch ``store`` and sync its index until ``stop_event`` is set (or cancelled).

    ``on_sync`` gets every :class:`SyncReport` (including no-op reconciles);
    ``on_error`` every exception a sync raised (the watcher carries on).
    The backend is opened with ``backend_factory`` and re-opened after a
    lost connection. Returns when ``stop_event`` is set.
    """
    w = _Watcher(store, backend_factory, on_sync, on_error, reconcile_every, max_backoff)
    # the start-up reconcile runs before the first event (git may have moved while we were away)
    await w.step()
    watch_filter = RefFilter(store.git_dir, store.workdir / store.folder if store.workdir else None)
    w.dirty = True  # and again at the first tick, for refs that moved before watching began
    try:
        async for changes in awatch(
            *watch_paths(store),
            watch_filter=watch_filter,
            stop_event=stop_event,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            rust_timeout=int(TICK_S * 1000),
            yield_on_timeout=True,
            recursive=True,
        ):
            if changes:
                log.debug("events: %s", sorted(p for _, p in changes)[:10])
                w.dirty = True
            await w.step()
            if stop_event is not None and stop_event.is_set():
                break
    finally:
        await w._drop_backend()


async def watch_repo(
    repo_path: str | os.PathLike[str] = ".",
    database_url: str | None = None,
    *,
    on_sync: Callable[[SyncReport], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    reconcile_every: float = 60.0,
    stop_event: StopEvent | None = None,
) -> None:
    """:func:`watch` for the repository at ``repo_path`` and its default (or given) index."""
    store = GitStore.open(repo_path)

    async def factory() -> IndexBackend:
        return await open_backend(store, database_url)

    await watch(
        store,
        factory,
        on_sync=on_sync,
        on_error=on_error,
        reconcile_every=reconcile_every,
        stop_event=stop_event,
    )
