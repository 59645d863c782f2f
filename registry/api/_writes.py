"""The API's write side: releases, rollbacks, channel moves, the health policy, examples.

:class:`WriteSide` is part of :class:`registry.api.AsyncRegistry`; each method wraps
the domain function (:mod:`registry.releases`, :mod:`registry.runs.examples`) over
the registry's git store, in a worker thread where the work is blocking git.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from registry.config import worktree_config
from registry.core.tags import check_id
from registry.errors import NotFoundError
from registry.releases import channels, tagged
from registry.releases import health as health_policy
from registry.releases import release as releases
from registry.runs import execution
from registry.runs.examples import ExamplesGate, check_examples
from registry.runs.recorder import RunRecorder

if TYPE_CHECKING:
    from registry.config import Config
    from registry.git.store import GitStore
    from registry.index.contract import ExecutionRecord, IndexBackend
    from registry.releases.channels import ChannelReport, ChannelTag
    from registry.releases.health import HealthAction, HealthMove
    from registry.releases.release import Progress, ReleaseResult
    from registry.runs.examples import ExamplesReport


class WriteSide:
    """What changes the registry: tags, commits, channel moves (a part of ``AsyncRegistry``)."""

    store: GitStore
    backend: IndexBackend

    @property
    def config(self) -> Config:
        """The registry's ``procreg.toml`` (of the working tree, else of HEAD), read now."""
        return worktree_config(self.store)

    async def release(
        self,
        ids: Sequence[str] | None = None,
        *,
        ref: str = "HEAD",
        all_changed: bool = False,
        dry_run: bool = False,
        run_examples: bool = True,
        on_progress: Progress | None = None,
    ) -> list[ReleaseResult]:
        """Tag each changed procedure at ``ref`` with its computed next version.

        ``ids`` (default: every procedure changed since its last release, as
        with ``all_changed``) as in :func:`registry.releases.release.release`.
        Unless not ``run_examples``, every planned version's examples run first
        in the sandbox (on a ``dry_run`` too). A version whose examples fail is
        not tagged: its result has ``refused`` set (the failing example and a
        one-line message) and ``created=False``; the others are tagged all the
        same. The example runs of a real release are recorded with the caller
        ``release`` (a dry run records nothing). ``on_progress(done, total, id)``
        follows the tags.
        """
        records: list[ExecutionRecord] = []
        gate = None
        if run_examples:
            gate = ExamplesGate(config=self.config, record=None if dry_run else records.append)
        try:
            return await asyncio.to_thread(
                releases.release,
                self.store,
                list(ids) if ids else None,
                ref=ref,
                all_changed=all_changed,
                dry_run=dry_run,
                on_progress=on_progress,
                before_tag=gate,
            )
        finally:
            await self._record(records)

    async def _record(self, records: Sequence[ExecutionRecord]) -> None:
        """Deliver run records made outside :attr:`runner` (spooled if the index is down)."""
        if not records:
            return
        spool = execution.spool_path(self.store)
        async with RunRecorder(spool, self.backend, batch_size=len(records)) as recorder:
            for record in records:
                await recorder.record(record)

    async def rollback(
        self,
        proc_id: str,
        to_version: str,
        *,
        branch: str | None = None,
        reason: str | None = None,
        on_left_alone: Callable[[list[str]], None] | None = None,
    ) -> ReleaseResult:
        """Restore ``to_version``'s folder in a new commit on ``branch`` and release it.

        See :func:`registry.releases.release.rollback` (history is never
        rewritten). When ``branch`` is the checked-out one, the working tree is
        brought up to the new commit; files with local changes are left alone,
        and ``on_left_alone`` gets their paths (also when the rollback fails).
        """
        return await asyncio.to_thread(
            self._rollback, proc_id, to_version, branch, reason, on_left_alone
        )

    def _rollback(
        self,
        proc_id: str,
        to_version: str,
        branch: str | None,
        reason: str | None,
        on_left_alone: Callable[[list[str]], None] | None,
    ) -> ReleaseResult:
        store = self.store
        on_checkout = (
            store.workdir is not None and store.branch_ref(branch) == store.current_branch()
        )
        skipped = store.begin_checkout_update() if on_checkout else []
        try:
            return releases.rollback(store, proc_id, to_version, branch=branch, reason=reason)
        finally:
            if on_checkout:
                skipped += store.finish_checkout_update()
            if on_left_alone is not None:
                on_left_alone(skipped)

    async def promote(
        self, proc_id: str, version: str, channel: str, *, reason: str | None = None
    ) -> ChannelTag:
        """Point ``channel`` of ``proc_id`` at released ``version`` (a new tag; moves are kept).

        Nothing is created when the channel is there already (``created=False``).
        """
        return await asyncio.to_thread(
            channels.promote, self.store, proc_id, version, channel, reason=reason
        )

    async def channels(self, proc_id: str | None = None) -> list[ChannelReport]:
        """Every channel of ``proc_id`` (default: of every procedure) and its full move history.

        Each says where the channel points now (``version``; None and ``status``
        ``out-of-service`` while out of service) and every move, newest first:
        who, when, why, and whether the health policy made it. Read from the
        channel tags. An id with no folder and no release is a :class:`NotFoundError`.
        """
        return await asyncio.to_thread(self._channels, proc_id)

    def _channels(self, proc_id: str | None) -> list[ChannelReport]:
        if proc_id is not None:
            check_id(proc_id)
            # one lookup in the procedures/ tree, not a listing of all its folders
            head = self.store.subtree_ids(self.store.resolve("HEAD"), [proc_id])
            known = head[proc_id] is not None or bool(tagged.releases(self.store, proc_id))
            if not known:
                raise NotFoundError(
                    f"no procedure {proc_id!r} in {self.store.name}; `procreg list` shows them",
                    kind="procedure",
                    name=proc_id,
                )
        return channels.channel_reports(self.store, proc_id)

    def _targets(self, ids: Sequence[str] | None) -> list[str]:
        return list(ids or ()) or self.store.list_procedures()

    async def health(
        self, ids: Sequence[str] | None = None, *, dry_run: bool = False
    ) -> list[HealthAction]:
        """Apply the health policy of ``procreg.toml`` ``[health]`` now, for ``ids`` (default: all).

        A channel whose version's recent runs fail too often is moved back to
        the last healthy release its callers can still call, or, when every
        healthy earlier release is beyond a breaking change, taken out of
        service (``kind="out-of-service"``: ``ID@channel`` then fails until a
        promote); ``dry_run`` says what would happen. Nothing happens when the
        policy is disabled.
        """
        config = self.config
        actions: list[HealthAction] = []
        for proc_id in self._targets(ids):
            actions += await health_policy.apply_policy(
                self.store, self.backend, proc_id, config, dry_run=dry_run
            )
        return actions

    async def health_moves(self, ids: Sequence[str] | None = None) -> list[HealthMove]:
        """The channel moves the health policy made for ``ids`` (default: all), from the tags."""
        return [
            move
            for proc_id in self._targets(ids)
            for move in health_policy.health_moves(self.store, proc_id)
        ]

    async def test(
        self, proc_id: str, spec: str | None = None, *, timeout_s: float | None = None
    ) -> ExamplesReport:
        """Run the examples of ``proc_id`` at ``spec`` as contract tests (not recorded as runs)."""
        from registry.sandbox import Sandbox

        with Sandbox(self.config.sandbox) as sandbox:
            return await check_examples(
                self.store, proc_id, spec, sandbox=sandbox, timeout_s=timeout_s
            )
