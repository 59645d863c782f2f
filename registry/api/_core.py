"""The async core of the API: :class:`AsyncRegistry`, one git store and one index connection.

Queries are served by the index (SQLite in ``.git`` or PostgreSQL), so they
are fast; source code is read from git objects by tree id, never from the
working tree. The index follows git through :func:`registry.index.sync.sync`: run
by ``open`` (``auto_sync=True``, an incremental sync that costs milliseconds
once the index exists), by :meth:`AsyncRegistry.sync`, by ``procreg watch``
or by git hooks. The write side is :class:`registry.api._writes.WriteSide`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any, Self, cast

import semver

from registry.api._queue import QueueSide
from registry.api._results import (
    HistoryEntry,
    ProcedureDetail,
    ProcedureDiff,
    ProcedureSummary,
    VersionInfo,
    metadata_from,
    summary,
    trusted_summaries,
    version_info,
)
from registry.api._writes import WriteSide
from registry.config import tracked_ref
from registry.core.model import Metadata
from registry.core.snapshot import MAIN_FILE, METADATA_FILE, utf8_text
from registry.core.tags import check_id, parse_version
from registry.errors import IndexUnavailable, NotFoundError
from registry.git.store import GitStore
from registry.index.connect import OfflineIndex, index_target, open_backend
from registry.index.contract import (
    IndexBackend,
    Metrics,
    Order,
    ProcedureHead,
    ProcedureRow,
    ReleaseRef,
    SearchQuery,
)
from registry.index.drift import Drift
from registry.index.memory import collection_paused
from registry.index.sync import SyncReport, sync, verify
from registry.releases import history as release_history
from registry.runs import execution
from registry.runs.execution import RunResult
from registry.runs.recorder import RunRecorder
from registry.workspace import proposals
from registry.workspace.proposals import Proposal


class AsyncRegistry(WriteSide, QueueSide):
    """The registry's API, async. Open with :meth:`open`; use ``async with``.

    One object owns one index connection (pool) and one git store; it is not
    meant to be shared between event loops (use :class:`Registry` for that).
    Queries, runs and metrics are here; the write side (release, rollback,
    promote, health, test) comes from :class:`~registry.api._writes.WriteSide`, queued
    runs (submit, result, jobs, cancel_job, schedules) from :class:`~registry.api._queue.QueueSide`.
    All use :attr:`store`, :attr:`backend` and :attr:`ref`.
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
        index_optional: bool = False,
    ) -> Self:
        """Open the registry at ``repo_path`` and its index.

        The index is SQLite in ``.git/procreg/`` unless ``database_url`` (or
        ``$PROCREG_DATABASE_URL``) names PostgreSQL. With ``auto_sync`` the
        index is brought up to date first: milliseconds when it is current,
        a full build (seconds for thousands of procedures) the first time.
        ``set_aside_corrupt`` moves a corrupt SQLite index aside and starts a new
        one (``reindex`` then rebuilds it); run records live apart and are kept.
        ``index_optional`` (for the write side: release, rollback, promote, test)
        goes on without an index that cannot be opened; run records are spooled.
        """
        store = GitStore.open(repo_path)
        try:
            backend = await open_backend(store, database_url, set_aside_corrupt=set_aside_corrupt)
        except IndexUnavailable as exc:
            if not index_optional or auto_sync:
                raise
            target = index_target(store, database_url)
            backend = cast("IndexBackend", OfflineIndex(exc, target))
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
            await self.close_queue()
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
        """Runs, success rate, p50/p95 duration, last run and error classes, per version too.

        Runs not in the index yet count too: this object's buffered records and
        those spooled while the index was unreachable are delivered first.
        """
        await self.runner.flush()
        async with RunRecorder(execution.spool_path(self.store), self.backend) as spool:
            await spool.deliver_spool()
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
        Each hit carries its channels and their versions now (one more query).
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
        lean = getattr(self.backend, "summary_rows", None)
        if lean is not None:
            # a list of 10,000 allocates ~100,000 objects and no cycles: the collector's
            # passes over them would be a third of its time (one runs after, as usual)
            with collection_paused():
                found = await lean(query)
                ids = [h[0] for h in found]
                current = await self.backend.current_channel_versions(ids) if ids else {}
                return trusted_summaries(found, current)
        hits = [summary(r) for r in await self.backend.search(query)]
        if hits:
            current = await self.backend.current_channel_versions([h.id for h in hits])
            for hit in hits:
                hit.channels = current.get(hit.id, {})
        return hits

    async def _row(self, proc_id: str) -> ProcedureRow | None:
        return await self.backend.get_procedure(check_id(proc_id))

    async def get(self, proc_id: str, spec: str | None = None) -> ProcedureDetail:
        """``proc_id`` at ``spec``: an exact version, a range (``^1.2``), a channel or ``HEAD``.

        Without ``spec``: the latest release, or ``HEAD`` if never released.
        Raises :class:`NotFoundError` naming what exists.
        """
        row, versions = await self.backend.procedure_refs(check_id(proc_id))
        if row is None and not versions:
            raise NotFoundError(
                f"no procedure {proc_id!r} in the index of {self.store.name}; "
                "`procreg search` lists them (run `procreg sync` if it was just committed)"
            )
        parsed = release_history.release_spec(proc_id, spec, bool(versions))
        if parsed.kind == "head":
            return await self._head(proc_id, row, versions, spec)
        channels: dict[str, semver.Version] = {}
        closed: dict[str, str] = {}
        if parsed.kind == "channel":
            for name, m in (await self.backend.current_channels(proc_id)).items():
                if m.out_of_service:
                    closed[name] = release_history.out_of_service_message(
                        proc_id, name, m.version, m.moved_at, m.reason
                    )
                else:
                    channels[name] = parse_version(m.version)
        released = [(parse_version(v.version), v) for v in versions]
        _, record = release_history.pick_release(proc_id, spec, parsed, released, channels, closed)
        tree_id = record.tree_id or self.store.read(proc_id, record.commit).tree_id
        assert tree_id is not None
        # the index holds the metadata of the tracked tree; others are parsed from git
        indexed = row is not None and row.valid and row.tree_id == tree_id
        paths, data = self.store.read_some(
            proc_id, tree_id, _SOURCE_ONLY if indexed else _SOURCE_AND_METADATA
        )
        metadata: Metadata | None
        if indexed:
            assert row is not None
            metadata = Metadata.model_validate(row.metadata)
        else:
            metadata = metadata_from(utf8_text(data.get(METADATA_FILE)))
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
            source=utf8_text(data.get(MAIN_FILE)) or "",
            files=sorted(paths),
        )

    async def _head(
        self,
        proc_id: str,
        row: ProcedureHead | None,
        versions: Sequence[ReleaseRef],
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
        paths: list[str] = []
        data: dict[str, bytes] = {}
        if row.tree_id:
            paths, data = self.store.read_some(proc_id, row.tree_id, _SOURCE_ONLY)
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
            source=(utf8_text(data.get(MAIN_FILE)) or "") if row.tree_id else "",
            files=sorted(paths),
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
            if not move.out_of_service:
                by_version.setdefault(move.version, []).append(name)
        return [version_info(v, by_version.get(v.version, [])) for v in records]

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


_SOURCE_ONLY = frozenset({MAIN_FILE})
_SOURCE_AND_METADATA = frozenset({MAIN_FILE, METADATA_FILE})
