"""``procreg run``, ``test``, ``metrics``, ``health`` and ``doctor``: execution on the command line.

Registered into the main group by :mod:`registry.cli` (``cli.add_command(run)`` ...).
``test``, ``metrics`` and ``health`` call :class:`registry.api.AsyncRegistry`; ``run``
is a one-shot run of its own (a cold sandbox, its record written at once or
spooled, so that it works while the index is unreachable). Heavy modules are
imported inside the commands so that ``procreg --version`` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from registry.cli._common import (
    EXIT_PROBLEM,
    Context,
    emit_json,
    json_option,
    one_line,
    pass_ctx,
    plain,
    run_async,
    table,
    with_registry,
)

if TYPE_CHECKING:
    from registry.api import AsyncRegistry
    from registry.config import HealthSection
    from registry.index.contract import Metrics
    from registry.releases.health import HealthAction, HealthMove
    from registry.runs.examples import ExamplesReport
    from registry.runs.execution import RunResult
    from registry.runs.recorder import RunRecorder


@click.command("run")
@click.argument("ref_spec", metavar="ID[@SPEC]")
@click.option(
    "--arg",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="An argument; VALUE is JSON when it parses, typed by the metadata. Repeatable.",
)
@click.option("--args-json", metavar="JSON", help="A JSON object of arguments (--arg wins).")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    metavar="S",
    help="Wall-clock limit in seconds (default: the metadata's limits.timeout_s).",
)
@click.option("--caller", help="Who runs it, for the run record (default: user@host).")
@click.option(
    "--queue",
    "queued",
    is_flag=True,
    help="Submit it as a job for `procreg worker`s (needs the PostgreSQL index).",
)
@click.option(
    "--queue-name", metavar="Q", help="With --queue: the worker queue (default: default)."
)
@click.option("--priority", type=int, default=0, help="With --queue: higher runs first.")
@click.option(
    "--wait", is_flag=True, help="With --queue: wait for the job and print its run result."
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole run result as JSON.")
@pass_ctx
def run(
    ctx: Context,
    ref_spec: str,
    pairs: tuple[str, ...],
    args_json: str | None,
    timeout_s: float | None,
    caller: str | None,
    queued: bool,
    queue_name: str | None,
    priority: int,
    wait: bool,
    as_json: bool,
) -> None:
    """Run a procedure at a version (default: its latest release) in the sandbox.

    Exit 0 when it succeeded, 1 when it failed (the error on stderr as one line)
    or when its record could be neither stored in the index nor spooled (a full
    or read-only disk; the result is still printed). With --queue the version is
    resolved now and the run is a job for the workers: the job's handle is printed,
    or with --wait its run result, exactly as a local run prints it.
    """
    if queued:
        _run_queued(ctx, ref_spec, pairs, args_json, timeout_s, caller, queue_name, priority,
                    wait, as_json)  # fmt: skip
        return
    if wait or queue_name is not None:
        raise click.UsageError("--wait and --queue-name go with --queue")
    from registry.config import worktree_config
    from registry.core.arguments import parse_cli_arguments
    from registry.core.specs import split_ref
    from registry.runs import execution
    from registry.sandbox import Sandbox

    # the recorder's warnings (spooled, kept in memory) are said below, once, by this command
    logging.getLogger("registry.runs.recorder").setLevel(logging.ERROR)
    proc_id, spec = split_ref(ref_spec)
    store = ctx.store()
    config = worktree_config(store)
    resolved = execution.resolve(store, proc_id, spec)
    kwargs = parse_cli_arguments(execution.declared_metadata(resolved), pairs, args_json)

    async def go() -> tuple[execution.RunResult, Any]:
        recorder = execution.open_recorder(
            store, database_url=ctx.database_url, config=config, batch_size=1
        )
        try:
            with Sandbox(config.sandbox, pool_size=0) as sandbox:
                result = await execution.run(
                    store,
                    recorder,
                    proc_id,
                    spec,
                    kwargs,
                    timeout_s=timeout_s,
                    caller=caller,
                    sandbox=sandbox,
                    config=config,
                    resolved=resolved,
                )
        finally:
            await recorder.close()
        return result, recorder

    result, recorder = run_async(go)
    _say_recorded(recorder)
    _say_result(result, as_json)
    if recorder.unsaved:
        # The run happened and its result is shown above; only its record is gone.
        click.echo(
            f"procreg: error: the run's record could not be stored or spooled: "
            f"{recorder.unsaved_reason}; free some space or make {recorder.spool} writable",
            err=True,
        )
    if not result.ok:
        _say_failure(result)
    if not result.ok or recorder.unsaved:
        sys.exit(EXIT_PROBLEM)


def _run_queued(
    ctx: Context,
    ref_spec: str,
    pairs: tuple[str, ...],
    args_json: str | None,
    timeout_s: float | None,
    caller: str | None,
    queue_name: str | None,
    priority: int,
    wait: bool,
    as_json: bool,
) -> None:
    from registry.core.arguments import parse_cli_arguments
    from registry.core.specs import split_ref
    from registry.runs import execution

    proc_id, spec = split_ref(ref_spec)

    async def go(reg: AsyncRegistry) -> tuple[Any, RunResult | None]:
        reg.queue_url()  # no PostgreSQL index: say so before anything else
        resolved = execution.resolve(reg.store, proc_id, spec)
        kwargs = parse_cli_arguments(execution.declared_metadata(resolved), pairs, args_json)
        handle = await reg.submit_resolved(  # the version the arguments were parsed for
            resolved,
            spec,
            kwargs,
            queue=queue_name,
            priority=priority,
            timeout_s=timeout_s,
            caller=caller,
        )
        return handle, (await reg.result(handle.job_id) if wait else None)

    handle, result = with_registry(ctx, go)
    if result is None:
        if as_json:
            emit_json(handle)
        else:
            click.echo(
                f"procreg: job {handle.job_id} queued: {handle.id}@{handle.version or 'HEAD'} "
                f"({handle.commit[:12]}) on queue {handle.queue}; `procreg job "
                f"{handle.job_id}` shows it",
                err=True,
            )
            click.echo(handle.job_id)
        return
    _say_result(result, as_json)
    if not result.ok:
        _say_failure(result)
        sys.exit(EXIT_PROBLEM)


def _say_failure(result: RunResult) -> None:
    """The one stderr line of a failed run."""
    assert result.error is not None
    where = f"{result.id}@{result.version or 'HEAD'}"
    click.echo(
        f"procreg: {where} failed: {result.error.type}: {one_line(result.error.message)}",
        err=True,
    )


def _say_recorded(recorder: RunRecorder) -> None:
    if recorder.totals.spooled:
        click.echo(
            f"procreg: warning: the index is unreachable ({recorder.totals.error}); the run "
            f"record waits in {recorder.spool} and is delivered on the next connection",
            err=True,
        )
    for action in recorder.events:
        click.echo(f"procreg: health: {getattr(action, 'reason', action)}", err=True)


def _say_result(result: RunResult, as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    if result.stdout:
        click.echo(result.stdout, nl=not result.stdout.endswith("\n"), err=True)
    if result.stderr:
        click.echo(result.stderr, nl=not result.stderr.endswith("\n"), err=True)
    for denial in result.network_denied:
        click.echo(f"procreg: network: refused {denial.target}: {denial.reason}", err=True)
    if result.ok:
        click.echo(json.dumps(result.result, ensure_ascii=False, indent=2))


@click.command("test")
@click.argument("ref_spec", metavar="ID[@SPEC]")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    metavar="S",
    help="Wall-clock limit per example (default: the metadata's).",
)
@json_option
@pass_ctx
def test(ctx: Context, ref_spec: str, timeout_s: float | None, as_json: bool) -> None:
    """Run a procedure's examples as contract tests; exit 1 if any fails."""
    from registry.core.specs import split_ref

    proc_id, spec = split_ref(ref_spec)
    report = with_registry(
        ctx, lambda reg: reg.test(proc_id, spec, timeout_s=timeout_s), index_optional=True
    )
    if as_json:
        emit_json(report)
    else:
        _say_tested(report)
    if not report.ok:
        sys.exit(EXIT_PROBLEM)


def _say_tested(report: ExamplesReport) -> None:
    from registry.runs.examples import describe_failure

    for ex in report.examples:
        label = f"example {ex.index}" + (f" ({ex.description})" if ex.description else "")
        if ex.ok:
            click.echo(f"PASS {label}")
        else:
            click.echo(f"FAIL {describe_failure(ex)}")
    failed = sum(not ex.ok for ex in report.examples)
    where = f"{report.id}@{report.version or 'HEAD'}"
    if not report.examples:
        click.echo(f"{where}: no examples in metadata.json; nothing to test")
    else:
        click.echo(
            f"{where}: {len(report.examples) - failed} passed, {failed} failed", err=failed > 0
        )


@click.command("metrics")
@click.argument("proc_id", metavar="ID")
@json_option
@pass_ctx
def metrics(ctx: Context, proc_id: str, as_json: bool) -> None:
    """Run statistics of a procedure: runs, success rate, p50/p95, errors, callers, per version."""
    from registry.core.specs import split_ref
    from registry.releases.tagged import require_procedure

    proc_id, _ = split_ref(proc_id)
    # runs spooled while the index was down count too: the API delivers them first
    stats = with_registry(ctx, lambda reg: reg.metrics(proc_id))
    if stats.runs == 0:
        require_procedure(ctx.store(), proc_id)
    if as_json:
        emit_json({"id": proc_id, **plain(stats)})
        return
    click.echo(f"{proc_id}: {stats.runs} run{'s' * (stats.runs != 1)}")
    _metrics_table(stats)
    _say_waiting_elsewhere(ctx)


def _say_waiting_elsewhere(ctx: Context) -> None:
    """Say how many spooled run records wait for another index (not counted above)."""
    from registry.index.connect import index_target
    from registry.runs.recorder import spool_counts, spool_dir

    store = ctx.store()
    _, other = spool_counts(spool_dir(store.git_dir), index_target(store, ctx.database_url))
    if other:
        click.echo(
            f"procreg: {other} spooled run record{'s' * (other != 1)} wait for another index "
            "(another --database-url) and are not counted here",
            err=True,
        )


def _metrics_table(stats: Metrics) -> None:
    rows = [("all", stats), *stats.versions.items()]
    headers = ["version", "runs", "success", "p50 ms", "p95 ms", "last run", "errors", "callers"]
    table(
        headers,
        [
            [
                name,
                str(m.runs),
                "-" if m.success_rate is None else f"{m.success_rate:.1%}",
                "-" if m.p50_ms is None else f"{m.p50_ms:.1f}",
                "-" if m.p95_ms is None else f"{m.p95_ms:.1f}",
                "-" if m.last_run is None else m.last_run.isoformat(timespec="seconds"),
                ", ".join(f"{k} x{v}" for k, v in m.errors.items()) or "-",
                ", ".join(f"{k} x{v}" for k, v in m.callers.items()) or "-",
            ]
            for name, m in rows
        ],
    )


@click.command("health")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--apply",
    "apply_now",
    is_flag=True,
    help="Evaluate the policy now and move channels that need it.",
)
@json_option
@pass_ctx
def health(ctx: Context, ids: tuple[str, ...], apply_now: bool, as_json: bool) -> None:
    """List the channel moves the health policy made; --apply evaluates it now."""
    from registry.releases.tagged import require_procedure

    if ids:
        store = ctx.store()
        for proc_id in ids:
            require_procedure(store, proc_id)

    async def go(reg: AsyncRegistry) -> tuple[HealthSection, list[HealthAction], list[HealthMove]]:
        actions = await reg.health(ids) if apply_now else []
        return reg.config.health, actions, await reg.health_moves(ids)

    policy, actions, moves = with_registry(ctx, go)
    if as_json:
        emit_json({"enabled": policy.enabled, "policy": policy, "moves": moves, "actions": actions})
        return
    state = "on" if policy.enabled else "OFF ([health] enabled = false in procreg.toml)"
    click.echo(
        f"health policy {state}: move {policy.channel} back when a version's success rate over "
        f"its last {policy.window} runs (at least {policy.min_runs}) is below "
        f"{policy.threshold:.0%}"
    )
    if apply_now:
        for a in actions:
            if a.kind == "out-of-service":
                did = "took" if a.applied else "left"
                click.echo(f"{did} {a.id} {a.channel} out of service: {a.reason}")
                continue
            did = "moved" if a.applied else ("left" if a.kind == "stay" else "would move")
            click.echo(f"{did} {a.id} {a.channel}: {a.reason}")
        if not actions:
            click.echo("nothing to do: every channel is healthy or has too few runs")
    if not moves:
        click.echo("no channel moves by the health policy")
        return
    table(
        ["id", "channel", "to", "when", "reason"],
        [
            [
                m.id,
                m.channel,
                f"OUT OF SERVICE (was {m.version})" if m.out_of_service else m.version or "-",
                m.date.isoformat(timespec="seconds") if m.date else "-",
                m.reason or "-",
            ]
            for m in moves
        ],
    )


@click.command("doctor")
@json_option
@pass_ctx
def doctor(ctx: Context, as_json: bool) -> None:
    """Check the sandbox layers, the index and git; says clearly what is missing."""
    from registry.runs.doctor import diagnose

    report = diagnose(ctx.path, ctx.database_url)
    if as_json:
        emit_json(report)
        return
    for layer in report.layers:
        mark = "ok     " if layer.active else "MISSING"
        click.echo(f"sandbox {mark} {layer.name}: {layer.detail}")
    missing = [layer.name for layer in report.layers if not layer.active]
    if missing:
        click.echo(
            f"sandbox: {len(missing)} of {len(report.layers)} layers are NOT in force "
            f"({', '.join(missing)}); runs still work, with less isolation"
        )
    else:
        click.echo(f"sandbox: all {len(report.layers)} layers in force")
    idx = report.index
    click.echo(f"index {'ok     ' if idx.reachable else 'MISSING'} {idx.target}: {idx.detail}")
    if report.spool_pending:
        click.echo(
            f"spool: {report.spool_pending} run records wait in {report.spool} for the index"
        )
    if report.spool_other_index:
        click.echo(
            f"spool: {report.spool_other_index} run records in {report.spool} wait for another "
            "index (another --database-url); they are delivered when procreg uses it again"
        )
    click.echo(
        f"git {report.git or 'not found on PATH'}; libgit2 {report.libgit2}; "
        f"pygit2 {report.pygit2}; python {report.python}"
    )
    click.echo(
        f"uv {report.uv or 'MISSING (pip install uv): procreg lock and locked runs need it'}"
    )
    if report.env_cache is not None:
        cache = report.env_cache
        mark = "ok     " if cache.reachable else "MISSING"
        click.echo(f"envs {mark} {cache.path}: {cache.detail}, {cache.size_bytes} bytes")


COMMANDS = (run, test, metrics, health, doctor)
"""What :mod:`registry.cli` registers: ``for c in COMMANDS: cli.add_command(c)``."""
