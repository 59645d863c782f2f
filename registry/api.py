"""The Python query API: :class:`AsyncRegistry` (the async core) and :class:`Registry` (sync).

.. code-block:: python

    from registry.api import Registry

    with Registry.open("path/to/repo") as reg:           # or database_url="postgresql://..."
        hits = reg.search("csv", category="data")
        proc = reg.get("slugify", "^1.2")                 # exact, range, channel or "HEAD"
        print(proc.version, proc.source)

    async with await AsyncRegistry.open("path/to/repo") as reg:
        hits = await reg.search("csv")

Queries are served by the index (SQLite in ``.git`` or PostgreSQL), so they
are fast; source code is read from git objects by tree id, never from the
working tree. The index follows git through :func:`registry.index.sync.sync`: run
by ``open`` (``auto_sync=True``, an incremental sync that costs milliseconds
once the index exists), by :meth:`AsyncRegistry.sync`, by ``procreg watch``
or by git hooks.

Why the sync facade uses one anyio ``BlockingPortal`` per :class:`Registry`:
the portal runs an event loop in a background thread for the life of the
object, and every call is submitted to that loop (``run_coroutine_threadsafe``,
one cross-thread hop) and waited for with a timeout. So
asyncpg pools stay bound to the loop they were created on, and the API works
the same with no event loop, with a loop that exists but is not running, and
from inside a running loop (an async application, a Jupyter notebook), since
the caller's loop is never touched or re-entered. anyio is well kept and
already a dependency (of watchfiles); ``nest_asyncio`` is unmaintained and
patches the running loop; asgiref's ``async_to_sync`` does not keep one loop
across calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

import anyio.from_thread
import semver
from pydantic import BaseModel, Field, ValidationError

from registry.config import tracked_ref
from registry.core import specs
from registry.core.model import Metadata
from registry.core.snapshot import MAIN_FILE, METADATA_FILE, Snapshot
from registry.core.tags import check_id
from registry.errors import NotFoundError, RegistryError, RegistryTimeout
from registry.git.store import GitStore
from registry.index.connect import open_backend
from registry.index.contract import (
    IndexBackend,
    Metrics,
    Order,
    ProcedureRow,
    SearchQuery,
    VersionRecord,
    construct_trusted,
)
from registry.index.drift import Drift
from registry.index.sync import SyncReport, sync, verify
from registry.runs import execution
from registry.runs.execution import RunResult
from registry.workspace import proposals
from registry.workspace.proposals import Proposal

DEFAULT_TIMEOUT = 30.0
"""Seconds a :class:`Registry` call may take before :class:`RegistryTimeout`."""

P = ParamSpec("P")
T = TypeVar("T")


# --------------------------------------------------------------------------- results


class ProcedureSummary(BaseModel):
    """One search hit: what a list of procedures shows."""

    id: str
    name: str
    description: str
    category: str
    tags: list[str]
    status: str
    version: str | None = Field(description="The latest release, or None if never released.")
    valid: bool
    errors: list[str] = Field(default_factory=list)
    runs: int = 0
    success_rate: float | None = None


class ProcedureDetail(BaseModel):
    """One procedure at one version: metadata, where it came from, and its code."""

    id: str
    version: str | None = Field(description="The release, or None for an unreleased HEAD.")
    spec: str | None = Field(description="What was asked for (None: the latest release).")
    resolved_from: str = Field(description="'release', 'channel' or 'head'.")
    channel: str | None = None
    tag: str | None = None
    commit: str
    tree_id: str
    metadata: Metadata | None = Field(description="None when metadata.json does not validate.")
    source: str = Field(description=f"The text of {MAIN_FILE}.")
    files: list[str] = Field(default_factory=list)
    valid: bool = True
    errors: list[str] = Field(default_factory=list)


class VersionInfo(BaseModel):
    """One release as the index holds it, with the channels pointing at it now."""

    id: str
    version: str
    tag: str
    commit: str
    tree_id: str | None
    tagged_at: datetime | None
    tagger: str | None
    bump: str | None
    breaking: bool | None
    lines_added: int | None
    lines_removed: int | None
    reasons: list[str]
    channels: list[str] = Field(default_factory=list)


class HistoryEntry(BaseModel):
    """A commit that changed the procedure's folder, with the releases made from it."""

    commit: str
    message: str
    author: str
    date: datetime
    versions: list[str] = Field(default_factory=list)


class ProcedureDiff(BaseModel):
    """A unified diff of a procedure folder between two specs."""

    id: str
    a: str | None
    b: str | None
    a_version: str | None
    b_version: str | None
    a_tree: str
    b_tree: str
    patch: str


def _summary(row: ProcedureRow) -> ProcedureSummary:
    return ProcedureSummary(
        id=row.id,
        name=row.name,
        description=row.description,
        category=row.category,
        tags=list(row.tags),
        status=row.status,
        version=row.latest_version,
        valid=row.valid,
        errors=list(row.errors),
        runs=row.runs,
        success_rate=row.success_rate,
    )


def _trusted_summary(hit: dict[str, Any]) -> ProcedureSummary:
    # the values come from our own index (written from validated records): building the
    # model without re-validating is most of what makes listing 10,000 cheap
    return construct_trusted(
        ProcedureSummary,
        {
            "id": hit["id"],
            "name": hit["name"],
            "description": hit["description"],
            "category": hit["category"],
            "tags": hit["tags"],
            "status": hit["status"],
            "version": hit["latest_version"],
            "valid": hit["valid"],
            "errors": hit["errors"],
            "runs": hit["runs"],
            "success_rate": hit["success_rate"],
        },
    )


def _version_info(v: VersionRecord, channels: Sequence[str]) -> VersionInfo:
    tagger = None
    if v.tagger_name or v.tagger_email:
        tagger = f"{v.tagger_name or ''} <{v.tagger_email or ''}>".strip()
    return VersionInfo(
        id=v.id,
        version=v.version,
        tag=v.tag,
        commit=v.commit,
        tree_id=v.tree_id,
        tagged_at=v.tagged_at,
        tagger=tagger,
        bump=v.bump,
        breaking=v.breaking,
        lines_added=v.lines_added,
        lines_removed=v.lines_removed,
        reasons=list(v.reasons),
        channels=sorted(channels),
    )


def _metadata_of(snap: Snapshot) -> Metadata | None:
    text = snap.text(METADATA_FILE)
    if text is None:
        return None
    try:
        return Metadata.model_validate_json(text)
    except ValidationError:
        return None


# --------------------------------------------------------------------------- async core


class AsyncRegistry:
    """The registry's query API, async. Open with :meth:`open`; use ``async with``.

    One object owns one index connection (pool) and one git store; it is not
    meant to be shared between event loops (use :class:`Registry` for that).
    Further capabilities (runs, metrics) are methods on this class that use
    :attr:`store`, :attr:`backend` and :attr:`ref`.
    """

    def __init__(self, store: GitStore, backend: IndexBackend, ref: str) -> None:
        self.store = store
        self.backend = backend
        self.ref = ref
        # Cheap: the warm sandbox pool and the batched recorder start on the first run.
        self.runner = execution.Runner(store, backend)

    @classmethod
    async def open(
        cls,
        repo_path: str | os.PathLike[str] = ".",
        database_url: str | None = None,
        *,
        auto_sync: bool = True,
        set_aside_corrupt: bool = False,
    ) -> Self:
        """Open the registry at ``repo_path`` and its index.

        The index is SQLite in ``.git/procreg/`` unless ``database_url`` (or
        ``$PROCREG_DATABASE_URL``) names PostgreSQL. With ``auto_sync`` the
        index is brought up to date first: milliseconds when it is current,
        a full build (seconds for thousands of procedures) the first time.
        ``set_aside_corrupt`` moves a corrupt SQLite index aside and starts a new
        one (``reindex`` then rebuilds it); run records live apart and are kept.
        """
        store = GitStore.open(repo_path)
        backend = await open_backend(store, database_url, set_aside_corrupt=set_aside_corrupt)
        try:
            self = cls(store, backend, tracked_ref(store))
            if auto_sync:
                await self.sync()
        except BaseException:
            await backend.close()
            raise
        return self

    async def close(self) -> None:
        """Deliver buffered run records, stop the sandbox pool, release the index."""
        try:
            await self.runner.close()
        finally:
            await self.backend.close()

    async def run(
        self,
        proc_id: str,
        spec: str | None = None,
        /,
        *,
        timeout_s: float | None = None,
        caller: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """Run ``proc_id`` at ``spec`` (default: the latest release) in the sandbox.

        Keyword arguments are the procedure's arguments (JSON values); a
        procedure parameter named like one of this method's own keywords
        (``timeout_s``, ``caller``, ``arguments``) goes in ``arguments``.
        The run is recorded; a failure of the procedure is a result with
        ``ok=False``, not an exception.
        """
        merged = {**(arguments or {}), **kwargs}
        return await self.runner.run(proc_id, spec, merged, timeout_s=timeout_s, caller=caller)

    async def metrics(self, proc_id: str) -> Metrics:
        """Runs, success rate, p50/p95 duration, last run and error classes, per version too."""
        return await execution.metrics(self.backend, proc_id)

    async def propose(
        self,
        proc_id: str,
        main_py: str,
        metadata: Mapping[str, Any] | str,
        message: str | None = None,
        *,
        proposer: str | None = None,
    ) -> Proposal:
        """Propose ``proc_id``'s files for review on a new branch ``proposals/<id>/<n>``.

        Validated first (:class:`ValidationFailed`, nothing written); committed
        off the tracked branch's tip, never on it. See :mod:`registry.workspace.proposals`.
        """
        return await asyncio.to_thread(
            proposals.propose,
            self.store,
            proc_id,
            main_py,
            metadata,
            message,
            ref=self.ref,
            proposer=proposer,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- index maintenance ---------------------------------------------------

    async def sync(self) -> SyncReport:
        """Incrementally bring the index up to date with the tracked branch."""
        return await sync(self.store, self.backend, self.ref)

    async def reindex(self) -> SyncReport:
        """Rebuild the index from git alone (executions are kept)."""
        return await sync(self.store, self.backend, self.ref, full=True)

    async def verify(self) -> list[Drift]:
        """Differences between the index and git (empty: no drift)."""
        return await verify(self.store, self.backend, self.ref)

    # -- queries -------------------------------------------------------------

    async def search(
        self,
        text: str | None = None,
        category: str | None = None,
        tags: Sequence[str] = (),
        status: str | None = None,
        limit: int = 50,
        *,
        valid: bool | None = None,
        min_success_rate: float | None = None,
        sort: Order | None = None,
    ) -> list[ProcedureSummary]:
        """Procedures matching every given filter, best match first.

        ``text`` is full-text over name, id, description, tags, parameters and
        docstring (every word must match, the last as a prefix; punctuation is
        never a syntax error). ``tags`` must all be present. ``sort`` is
        ``relevance`` (the default with text), ``name`` (without) or
        ``health`` (highest success rate first); ``min_success_rate`` keeps
        only procedures whose recorded runs succeed at least that often.
        """
        order: Order = sort or ("relevance" if text and text.strip() else "name")
        query = SearchQuery(
            text=text,
            category=category,
            tags=tuple(tags),
            status=status,
            valid=valid,
            limit=limit,
            order=order,
            min_success_rate=min_success_rate,
        )
        lean = getattr(self.backend, "search_summaries", None)
        if lean is not None:
            return [_trusted_summary(h) for h in await lean(query)]
        return [_summary(r) for r in await self.backend.search(query)]

    async def _row(self, proc_id: str) -> ProcedureRow | None:
        return await self.backend.get_procedure(check_id(proc_id))

    async def _row_and_versions(
        self, proc_id: str
    ) -> tuple[ProcedureRow | None, list[VersionRecord]]:
        both = getattr(self.backend, "procedure_and_versions", None)
        if both is not None:
            row, versions = await both(check_id(proc_id))
            return row, list(versions)
        return await self._row(proc_id), await self.backend.versions(proc_id)

    async def get(self, proc_id: str, spec: str | None = None) -> ProcedureDetail:
        """``proc_id`` at ``spec``: an exact version, a range (``^1.2``), a channel or ``HEAD``.

        Without ``spec``: the latest release, or ``HEAD`` if never released.
        Raises :class:`NotFoundError` naming what exists.
        """
        row, versions = await self._row_and_versions(proc_id)
        if row is None and not versions:
            raise NotFoundError(
                f"no procedure {proc_id!r} in the index of {self.store.name}; "
                "`procreg search` lists them (run `procreg sync` if it was just committed)"
            )
        if spec is None or not spec.strip():
            parsed = specs.parse_spec("latest" if versions else "HEAD")
        else:
            parsed = specs.parse_spec(spec)
        if parsed.kind == "head":
            return await self._head(proc_id, row, versions, spec)
        # Keyed by text: semver's == and hash ignore build metadata.
        by_version = {str(semver.Version.parse(v.version)): v for v in versions}
        channels: dict[str, semver.Version] = {}
        if parsed.kind == "channel":
            current = await self.backend.current_channels(proc_id)
            channels = {name: semver.Version.parse(m.version) for name, m in current.items()}
        if not by_version and parsed.kind != "channel":
            raise NotFoundError(
                f"{proc_id} has no release yet, so {proc_id}@{spec} names nothing; "
                f"use {proc_id}@HEAD or run `procreg release {proc_id}`"
            )
        chosen = specs.resolve(parsed, [semver.Version.parse(v) for v in by_version], channels)
        record = by_version.get(str(chosen))
        if record is None:
            raise NotFoundError(f"{proc_id}@{spec} names {chosen}, which has no release tag")
        tree_id = record.tree_id or self.store.read(proc_id, record.commit).tree_id
        assert tree_id is not None
        snap = self.store.read_tree(proc_id, tree_id, record.commit)
        # the index holds the metadata of the tracked tree; others are parsed from git
        metadata = (
            Metadata.model_validate(row.metadata)
            if row is not None and row.valid and row.tree_id == tree_id
            else _metadata_of(snap)
        )
        return ProcedureDetail(
            id=proc_id,
            version=record.version,
            spec=spec,
            resolved_from="channel" if parsed.kind == "channel" else "release",
            channel=parsed.channel,
            tag=record.tag,
            commit=record.commit,
            tree_id=tree_id,
            metadata=metadata,
            source=snap.text(MAIN_FILE) or "",
            files=sorted(snap.files),
        )

    async def _head(
        self,
        proc_id: str,
        row: ProcedureRow | None,
        versions: Sequence[VersionRecord],
        spec: str | None,
    ) -> ProcedureDetail:
        if row is None:
            raise NotFoundError(
                f"{proc_id} is not on the tracked branch {self.ref} (deleted?); ask for a "
                f"released version, e.g. {proc_id}@{versions[-1].version}"
                if versions
                else f"no procedure {proc_id!r} on {self.ref}"
            )
        state = await self.backend.sync_state(self.ref)
        commit = state.commit if state and state.commit else row.commit
        snap = self.store.read_tree(proc_id, row.tree_id, commit) if row.tree_id else None
        released = next((v for v in reversed(versions) if v.tree_id == row.tree_id), None)
        return ProcedureDetail(
            id=proc_id,
            version=released.version if released else None,
            spec=spec,
            resolved_from="head",
            tag=released.tag if released else None,
            commit=commit,
            tree_id=row.tree_id,
            metadata=Metadata.model_validate(row.metadata) if row.metadata else None,
            source=(snap.text(MAIN_FILE) or "") if snap else "",
            files=sorted(snap.files) if snap else [],
            valid=row.valid,
            errors=list(row.errors),
        )

    async def source(self, proc_id: str, spec: str | None = None) -> str:
        """The text of ``main.py`` at ``spec`` (see :meth:`get`)."""
        return (await self.get(proc_id, spec)).source

    async def versions(self, proc_id: str) -> list[VersionInfo]:
        """Releases of ``proc_id``, oldest first, with the channels pointing at each now."""
        records = await self.backend.versions(check_id(proc_id))
        current = await self.backend.current_channels(proc_id)
        by_version: dict[str, list[str]] = {}
        for name, move in current.items():
            by_version.setdefault(move.version, []).append(name)
        return [_version_info(v, by_version.get(v.version, [])) for v in records]

    async def history(self, proc_id: str) -> list[HistoryEntry]:
        """Commits on the tracked branch that changed the folder, newest first.

        Each names the releases tagged on that commit. Read from git (the
        index has no per-commit rows), so it costs a walk of the history.
        """
        check_id(proc_id)
        state = await self.backend.sync_state(self.ref)
        until = state.commit if state and state.commit else self.ref
        commits = self.store.folder_commits(proc_id, until)
        released: dict[str, list[str]] = {}
        for v in await self.backend.versions(proc_id):
            released.setdefault(v.commit, []).append(v.version)
        if not commits and not released and await self._row(proc_id) is None:
            raise NotFoundError(f"no procedure {proc_id!r} in {self.store.name}")
        return [
            HistoryEntry(
                commit=c.id,
                message=c.message,
                author=f"{c.author.name} <{c.author.email}>",
                date=c.author.when,
                versions=released.get(c.id, []),
            )
            for c in commits
        ]

    async def diff(self, proc_id: str, a: str | None, b: str | None = "HEAD") -> ProcedureDiff:
        """A unified diff of the folder from spec ``a`` to spec ``b`` (default: HEAD)."""
        left = await self.get(proc_id, a)
        right = await self.get(proc_id, b)
        patch = self.store.diff_text(left.tree_id, right.tree_id, f"{self.store.folder}/{proc_id}")
        return ProcedureDiff(
            id=proc_id,
            a=a,
            b=b,
            a_version=left.version,
            b_version=right.version,
            a_tree=left.tree_id,
            b_tree=right.tree_id,
            patch=patch,
        )


# --------------------------------------------------------------------------- sync facade


class Registry:
    """The blocking API: each call runs on the :class:`AsyncRegistry` core in a background loop.

    Safe to call with no event loop, with a loop that is not running, and
    from inside a running loop (it never touches the caller's loop). Calls
    from several threads are serialised on the one loop. Every call takes
    ``timeout=`` (seconds; default the one given to :meth:`open`) and raises
    :class:`RegistryTimeout` after cancelling the work.
    """

    def __init__(
        self,
        core: AsyncRegistry,
        portal: anyio.from_thread.BlockingPortal,
        portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal],
        timeout: float | None,
    ) -> None:
        self._core = core
        self._portal = portal
        self._portal_cm = portal_cm
        # calls go straight to the portal's asyncio loop: anyio's start_task_soon waits
        # for the loop thread once to spawn the task and again for its result, and that
        # extra cross-thread round trip was a fifth of a get
        self._loop: asyncio.AbstractEventLoop = portal.call(asyncio.get_running_loop)
        self.timeout = timeout
        self._closed = False

    @classmethod
    def open(
        cls,
        repo_path: str | os.PathLike[str] = ".",
        database_url: str | None = None,
        *,
        auto_sync: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        open_timeout: float | None = None,
    ) -> Registry:
        """Open the registry (see :meth:`AsyncRegistry.open`) on a new background loop.

        ``timeout`` is the default per call; ``open_timeout`` bounds the open
        itself, whose first sync may build the index (default: no bound).
        """
        portal_cm = anyio.from_thread.start_blocking_portal(backend="asyncio")
        portal = portal_cm.__enter__()
        try:
            future = portal.start_task_soon(
                _open_core,
                repo_path,
                database_url,
                auto_sync,
            )
            core = _wait(future, open_timeout)
        except BaseException:
            portal_cm.__exit__(None, None, None)
            raise
        return cls(core, portal, portal_cm, timeout)

    @property
    def core(self) -> AsyncRegistry:
        """The async core (use it only on this registry's loop, e.g. via :meth:`call`)."""
        return self._core

    def call(
        self,
        func: Callable[P, Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``await func(*args, **kwargs)`` on the background loop, with the default timeout."""
        return self._run(lambda: func(*args, **kwargs), None)

    def _run(self, make: Callable[[], Awaitable[T]], timeout: float | None) -> T:
        if self._closed:
            raise RegistryError("this Registry is closed; open a new one")

        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RegistryError(
                "a Registry call from inside its own background loop would wait for itself; "
                "await the AsyncRegistry (Registry.core) there instead"
            )

        async def runner() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(runner(), self._loop)
        return _wait(future, self.timeout if timeout is None else timeout)

    def close(self) -> None:
        """Close the index connection and stop the background loop (idempotent)."""
        if self._closed:
            return
        try:
            _wait(self._portal.start_task_soon(self._core.close), self.timeout)
        finally:
            self._closed = True
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the API, mirrored -----------------------------------------------------

    def sync(self, *, timeout: float | None = None) -> SyncReport:
        """See :meth:`AsyncRegistry.sync`."""
        return self._run(self._core.sync, timeout)

    def reindex(self, *, timeout: float | None = None) -> SyncReport:
        """See :meth:`AsyncRegistry.reindex`."""
        return self._run(self._core.reindex, timeout)

    def verify(self, *, timeout: float | None = None) -> list[Drift]:
        """See :meth:`AsyncRegistry.verify`."""
        return self._run(self._core.verify, timeout)

    def search(
        self,
        text: str | None = None,
        category: str | None = None,
        tags: Sequence[str] = (),
        status: str | None = None,
        limit: int = 50,
        *,
        valid: bool | None = None,
        min_success_rate: float | None = None,
        sort: Order | None = None,
        timeout: float | None = None,
    ) -> list[ProcedureSummary]:
        """See :meth:`AsyncRegistry.search`."""
        return self._run(
            lambda: self._core.search(
                text,
                category,
                tags,
                status,
                limit,
                valid=valid,
                min_success_rate=min_success_rate,
                sort=sort,
            ),
            timeout,
        )

    def run(
        self,
        proc_id: str,
        spec: str | None = None,
        /,
        *,
        timeout_s: float | None = None,
        caller: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """See :meth:`AsyncRegistry.run`; ``timeout`` bounds the call (default: limit + 10 s)."""
        merged = {**(arguments or {}), **kwargs}
        wait = (
            timeout if timeout is not None else max(self.timeout or 0.0, (timeout_s or 60.0) + 10.0)
        )
        return self._run(
            lambda: self._core.run(
                proc_id, spec, timeout_s=timeout_s, caller=caller, arguments=merged
            ),
            wait,
        )

    def metrics(self, proc_id: str, *, timeout: float | None = None) -> Metrics:
        """See :meth:`AsyncRegistry.metrics`."""
        return self._run(lambda: self._core.metrics(proc_id), timeout)

    def propose(
        self,
        proc_id: str,
        main_py: str,
        metadata: Mapping[str, Any] | str,
        message: str | None = None,
        *,
        proposer: str | None = None,
        timeout: float | None = None,
    ) -> Proposal:
        """See :meth:`AsyncRegistry.propose`."""
        return self._run(
            lambda: self._core.propose(proc_id, main_py, metadata, message, proposer=proposer),
            timeout,
        )

    def get(
        self, proc_id: str, spec: str | None = None, *, timeout: float | None = None
    ) -> ProcedureDetail:
        """See :meth:`AsyncRegistry.get`."""
        return self._run(lambda: self._core.get(proc_id, spec), timeout)

    def source(self, proc_id: str, spec: str | None = None, *, timeout: float | None = None) -> str:
        """See :meth:`AsyncRegistry.source`."""
        return self._run(lambda: self._core.source(proc_id, spec), timeout)

    def versions(self, proc_id: str, *, timeout: float | None = None) -> list[VersionInfo]:
        """See :meth:`AsyncRegistry.versions`."""
        return self._run(lambda: self._core.versions(proc_id), timeout)

    def history(self, proc_id: str, *, timeout: float | None = None) -> list[HistoryEntry]:
        """See :meth:`AsyncRegistry.history`."""
        return self._run(lambda: self._core.history(proc_id), timeout)

    def diff(
        self,
        proc_id: str,
        a: str | None,
        b: str | None = "HEAD",
        *,
        timeout: float | None = None,
    ) -> ProcedureDiff:
        """See :meth:`AsyncRegistry.diff`."""
        return self._run(lambda: self._core.diff(proc_id, a, b), timeout)


async def _open_core(
    repo_path: str | os.PathLike[str], database_url: str | None, auto_sync: bool
) -> AsyncRegistry:
    return await AsyncRegistry.open(repo_path, database_url, auto_sync=auto_sync)


def _wait(future: concurrent.futures.Future[T], timeout: float | None) -> T:
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise RegistryTimeout(
            f"the registry call did not finish within {timeout} s and was cancelled; "
            "pass a larger timeout= (or check that the database is reachable)"
        ) from None
    except concurrent.futures.CancelledError:
        raise RegistryTimeout("the registry call was cancelled") from None
