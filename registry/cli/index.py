"""``procreg sync``, ``reindex``, ``verify`` and ``watch``: the index beside git.

Heavy modules are imported inside the commands so that ``procreg --version`` stays fast.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

import click

from registry.cli._common import (
    EXIT_PROBLEM,
    Context,
    emit_json,
    json_option,
    pass_ctx,
    plain,
    run_async,
    stop_on_sigterm,
    with_registry,
)

if TYPE_CHECKING:
    from registry.index.drift import Drift
    from registry.index.sync import SyncReport


def sync_line(report: SyncReport) -> str:
    """One line for a sync: what changed, at which commit, how long it took."""
    what = "rebuilt" if report.rebuilt else "synced"
    counts = (
        f"+{len(report.added)} ~{len(report.updated)} -{len(report.deleted)}, "
        f"{len(report.invalid)} invalid, tags +{len(report.tags_added)} -{len(report.tags_removed)}"
    )
    commit = (report.commit or "-")[:12]
    return f"{what} {report.ref} at {commit}: {counts} ({report.duration_ms:.0f} ms)"


@click.command()
@click.option("--quiet", is_flag=True, help="Print nothing unless something fails.")
@json_option
@pass_ctx
def sync(ctx: Context, quiet: bool, as_json: bool) -> None:
    """Bring the index up to date with git (incremental)."""
    report = with_registry(ctx, lambda reg: reg.sync())
    if as_json:
        emit_json(report)
    elif not quiet:
        click.echo(sync_line(report))


@click.command()
@json_option
@pass_ctx
def reindex(ctx: Context, as_json: bool) -> None:
    """Rebuild the index from git alone (run records are kept; a corrupt index is set aside)."""
    report = with_registry(ctx, lambda reg: reg.reindex(), set_aside_corrupt=True)
    if as_json:
        emit_json(report)
    else:
        click.echo(sync_line(report))


@click.command()
@json_option
@pass_ctx
def verify(ctx: Context, as_json: bool) -> None:
    """Compare the index with git; exit 1 on any drift."""
    drift = with_registry(ctx, lambda reg: reg.verify())
    if as_json:
        emit_json({"ok": not drift, "drift": [_drift_record(d) for d in drift]})
    else:
        for d in drift:
            click.echo(d.format())
        click.echo(
            "index matches git"
            if not drift
            else f"{len(drift)} differences: run `procreg reindex` to rebuild",
            err=bool(drift),
        )
    if drift:
        sys.exit(EXIT_PROBLEM)


def _drift_record(drift: Drift) -> dict[str, Any]:
    """One difference as JSON, with the ``id`` of the procedure it is about (None: none)."""
    from registry.core import tags

    data: dict[str, Any] = plain(drift)
    proc_id: str | None = None
    if drift.table == "procedures":
        proc_id = drift.key
    elif drift.table in ("versions", "channels"):
        parsed = tags.parse_release_tag(drift.key) or tags.parse_channel_tag(drift.key)
        proc_id = parsed[0] if parsed is not None else None
    data["id"] = proc_id
    return data


@click.command()
@click.option(
    "--reconcile-every",
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Full reconcile period (events are only hints).",
)
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@pass_ctx
def watch(ctx: Context, reconcile_every: float, quiet: bool) -> None:
    """Keep the index in sync as refs move; one line per sync that changed something."""
    import asyncio

    from registry.index.watcher import describe_error, watch_repo

    def on_sync(report: SyncReport) -> None:
        if report.changed and not quiet:  # a no-op reconcile says nothing
            click.echo(sync_line(report))

    def on_error(exc: BaseException) -> None:
        # called once per distinct error (not on every retry), never with a traceback
        click.echo(f"procreg watch: {describe_error(exc)} (still watching)", err=True)

    async def go() -> None:
        stop = asyncio.Event()  # SIGTERM stops it as Ctrl-C does: the index is closed
        with stop_on_sigterm(asyncio.get_running_loop(), stop.set):
            if not quiet:
                click.echo(f"watching {ctx.path.resolve()} (Ctrl-C to stop)", err=True)
            await watch_repo(
                ctx.path,
                ctx.database_url,
                on_sync=on_sync,
                on_error=on_error,
                reconcile_every=reconcile_every,
                stop_event=stop,
            )

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the watcher closed the index
        run_async(go)
    if not quiet:
        click.echo("stopped", err=True)


COMMANDS = (sync, reindex, verify, watch)
"""What :mod:`registry.cli` registers."""
