"""``procreg worker``, ``jobs``, ``job`` and ``schedules``: queued runs on the command line.

Queued runs need the PostgreSQL index (``--database-url`` or ``PROCREG_DATABASE_URL``);
the job queue lives in its database (see :mod:`registry.runs.queue`). ``procreg run
ID --queue [--wait]`` is in :mod:`registry.cli.runs`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

import click

from registry.cli._common import (
    Context,
    emit_json,
    fail,
    json_option,
    one_line,
    pass_ctx,
    run_async,
    table,
    with_registry,
)

if TYPE_CHECKING:
    from registry.api import AsyncRegistry
    from registry.runs.queue import JobInfo, ScheduleInfo

STATES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborted")


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else "-"


@click.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=256),
    default=1,
    show_default=True,
    help="Jobs this worker runs at once.",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="Q",
    help="Take jobs only from queue Q (repeatable; default: every queue).",
)
@click.option("--remote", help="Fetch missing commits from this remote (default: origin).")
@pass_ctx
def worker(ctx: Context, concurrency: int, queues: tuple[str, ...], remote: str | None) -> None:
    """Run queued jobs in this machine's sandbox until SIGTERM or Ctrl-C.

    Reads code from this clone (-C REPO), fetching from its remote when a job names a
    commit it lacks; records every run in the shared index (--database-url). The
    procreg.toml [[schedule]] entries of this clone tick here too, once across workers.
    """
    from registry.api._queue import NEEDS_POSTGRES
    from registry.index.connect import is_postgres_url
    from registry.runs.queue import run_worker

    url = ctx.database_url
    if not url or not is_postgres_url(url):
        fail(NEEDS_POSTGRES)
    logging.basicConfig(level=logging.WARNING, format="procreg worker: %(message)s")
    store = ctx.store()
    click.echo(
        f"procreg: worker on {store.name}, concurrency {concurrency}, queues "
        f"{', '.join(queues) or 'all'}",
        err=True,
    )
    run_async(lambda: run_worker(store, url, concurrency=concurrency, queues=queues, remote=remote))
    click.echo("procreg: worker stopped", err=True)


@click.command("jobs")
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--id", "proc_id", metavar="ID", help="Only jobs of this procedure.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@pass_ctx
def jobs(ctx: Context, state: str | None, proc_id: str | None, limit: int, as_json: bool) -> None:
    """Queued jobs, newest first: state, procedure, version, attempts, worker."""

    async def go(reg: AsyncRegistry) -> list[JobInfo]:
        return await reg.jobs(state, proc_id=proc_id, limit=limit)

    found = with_registry(ctx, go)
    if as_json:
        emit_json(found)
        return
    table(
        ["job", "state", "id", "version", "queue", "attempts", "worker", "submitted"],
        [
            [
                str(j.job_id),
                j.state,
                j.id or "-",
                j.version or ("schedule" if j.schedule else "-"),
                j.queue,
                str(len(j.attempts)),
                j.attempts[-1].worker if j.attempts else "-",
                _when(j.submitted_at),
            ]
            for j in found
        ],
    )


@click.command("job")
@click.argument("words", nargs=-1, required=True, metavar="JOB_ID | cancel JOB_ID")
@json_option
@pass_ctx
def job(ctx: Context, words: tuple[str, ...], as_json: bool) -> None:
    """Show a job (state, attempts, result), or `procreg job cancel JOB_ID` one not yet taken."""
    cancel = words[0] == "cancel"
    rest = words[1:] if cancel else words
    if len(rest) != 1 or not (rest[0].isascii() and rest[0].isdigit()):  # not '²'
        raise click.UsageError(
            "give one job id: `procreg job JOB_ID` or `procreg job cancel JOB_ID`"
        )
    job_id = int(rest[0])

    async def go(reg: AsyncRegistry) -> JobInfo:
        return await (reg.cancel_job(job_id) if cancel else reg.job(job_id))

    info = with_registry(ctx, go)
    if as_json:
        emit_json(info)
        return
    _say_job(info, cancelled=cancel)


def _say_job(info: JobInfo, *, cancelled: bool) -> None:
    if cancelled:
        click.echo(f"procreg: job {info.job_id} cancelled; no worker will run it", err=True)
    what = f"{info.id}@{info.version}" if info.version else f"{info.id} (schedule {info.schedule})"
    click.echo(f"job {info.job_id}: {info.state}  {what}  queue {info.queue}")
    if info.commit:
        click.echo(f"commit {info.commit}")
    click.echo(f"submitted {_when(info.submitted_at)}  finished {_when(info.finished_at)}")
    table(
        ["attempt", "worker", "started", "finished", "outcome", "error"],
        [
            [
                str(a.attempt),
                f"{a.worker}:{a.pid}" if a.pid else a.worker,
                _when(a.started_at),
                _when(a.finished_at),
                a.outcome or "running",
                one_line(a.error or "")[:80],
            ]
            for a in info.attempts
        ],
    )
    if info.result is not None:
        r = info.result
        said = f"result {r.result!r}" if r.ok else f"failed: {r.error.type if r.error else '?'}"
        click.echo(f"run {r.run_id}: {said} ({r.duration_ms:.1f} ms)")


@click.command("schedules")
@json_option
@pass_ctx
def schedules(ctx: Context, as_json: bool) -> None:
    """The [[schedule]] entries of procreg.toml, with their last and next run."""

    async def go(reg: AsyncRegistry) -> list[ScheduleInfo]:
        return await reg.schedules()

    found = with_registry(ctx, go)
    if as_json:
        emit_json(found)
        return
    table(
        ["id", "spec", "cron", "last run", "last job", "next run"],
        [
            [
                s.id,
                s.spec or "latest",
                s.cron,
                _when(s.last_run),
                f"{s.last_job_id} ({s.last_state})" if s.last_job_id else "-",
                _when(s.next_run),
            ]
            for s in found
        ],
    )


COMMANDS = (worker, jobs, job, schedules)
