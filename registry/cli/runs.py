"""``procreg run``, ``test``, ``metrics``, ``health`` and ``doctor``: execution on the command line.

Registered into the main group by :mod:`registry.cli` (``cli.add_command(run)`` ...).
Heavy modules are imported inside the commands so that ``procreg --version`` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from registry.cli import EXIT_PROBLEM, Context, _run_async, _table, emit_json, pass_ctx

if TYPE_CHECKING:
    from registry.config import Config
    from registry.git.store import GitStore


def _config(store: GitStore) -> Config:
    from registry.config import worktree_config

    return worktree_config(store)


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
@click.option("--json", "as_json", is_flag=True, help="Print the whole run result as JSON.")
@pass_ctx
def run(
    ctx: Context,
    ref_spec: str,
    pairs: tuple[str, ...],
    args_json: str | None,
    timeout_s: float | None,
    caller: str | None,
    as_json: bool,
) -> None:
    """Run a procedure at a version (default: its latest release) in the sandbox.

    Exit 0 when it succeeded, 1 when it failed (the error on stderr as one line)
    or when its record could be neither stored in the index nor spooled (a full
    or read-only disk; the result is still printed).
    """
    from registry.core.specs import split_ref
    from registry.runs import execution
    from registry.sandbox import Sandbox

    # the recorder's warnings (spooled, kept in memory) are said below, once, by this command
    logging.getLogger("registry.runs.recorder").setLevel(logging.ERROR)
    proc_id, spec = split_ref(ref_spec)
    store = ctx.store()
    config = _config(store)
    resolved = execution.resolve(store, proc_id, spec)
    kwargs = execution.parse_cli_arguments(execution.declared_metadata(resolved), pairs, args_json)

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

    result, recorder = _run_async(go)
    if recorder.totals.spooled:
        click.echo(
            f"procreg: warning: the index is unreachable ({recorder.totals.error}); the run "
            f"record waits in {recorder.spool} and is delivered on the next connection",
            err=True,
        )
    for action in recorder.events:
        click.echo(f"procreg: health: {getattr(action, 'reason', action)}", err=True)
    if as_json:
        emit_json(result)
    else:
        if result.stdout:
            click.echo(result.stdout, nl=not result.stdout.endswith("\n"), err=True)
        if result.stderr:
            click.echo(result.stderr, nl=not result.stderr.endswith("\n"), err=True)
        if result.ok:
            click.echo(json.dumps(result.result, ensure_ascii=False, indent=2))
    if recorder.unsaved:
        # The run happened and its result is shown above; only its record is gone.
        click.echo(
            f"procreg: error: the run's record could not be stored or spooled: "
            f"{recorder.unsaved_reason}; free some space or make {recorder.spool} writable",
            err=True,
        )
    if not result.ok:
        assert result.error is not None
        where = f"{result.id}@{result.version or 'HEAD'}"
        click.echo(
            f"procreg: {where} failed: {result.error.type}: {_one_line(result.error.message)}",
            err=True,
        )
    if not result.ok or recorder.unsaved:
        sys.exit(EXIT_PROBLEM)


@click.command("test")
@click.argument("ref_spec", metavar="ID[@SPEC]")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    metavar="S",
    help="Wall-clock limit per example (default: the metadata's).",
)
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def test(ctx: Context, ref_spec: str, timeout_s: float | None, as_json: bool) -> None:
    """Run a procedure's examples as contract tests; exit 1 if any fails."""
    from registry.core.specs import split_ref
    from registry.runs import execution
    from registry.sandbox import Sandbox

    proc_id, spec = split_ref(ref_spec)
    store = ctx.store()
    config = _config(store)

    async def go() -> execution.ExamplesReport:
        with Sandbox(config.sandbox) as sandbox:
            return await execution.check_examples(
                store, proc_id, spec, sandbox=sandbox, timeout_s=timeout_s
            )

    report = _run_async(go)
    if as_json:
        emit_json(report)
    else:
        for ex in report.examples:
            label = f"example {ex.index}" + (f" ({ex.description})" if ex.description else "")
            if ex.ok:
                click.echo(f"PASS {label}")
            else:
                click.echo(f"FAIL {execution.describe_failure(ex)}")
        failed = sum(not ex.ok for ex in report.examples)
        where = f"{report.id}@{report.version or 'HEAD'}"
        if not report.examples:
            click.echo(f"{where}: no examples in metadata.json; nothing to test")
        else:
            click.echo(
                f"{where}: {len(report.examples) - failed} passed, {failed} failed", err=failed > 0
            )
    if not report.ok:
        sys.exit(EXIT_PROBLEM)


@click.command("metrics")
@click.argument("proc_id", metavar="ID")
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def metrics(ctx: Context, proc_id: str, as_json: bool) -> None:
    """Run statistics of a procedure: runs, success rate, p50/p95, errors, callers, per version."""
    from registry.core.specs import split_ref
    from registry.errors import NotFoundError
    from registry.index.connect import open_backend
    from registry.index.contract import Metrics
    from registry.runs.recorder import RunRecorder, spool_dir

    proc_id, _ = split_ref(proc_id)
    store = ctx.store()

    async def go() -> Metrics:
        backend = await open_backend(store, ctx.database_url)
        try:
            # runs spooled while the index was down count too: deliver them first
            await RunRecorder(spool_dir(store.git_dir), backend).deliver_spool()
            return await backend.metrics(proc_id)
        finally:
            await backend.close()

    stats = _run_async(go)
    if stats.runs == 0 and proc_id not in store.list_procedures():
        raise NotFoundError(
            f"no procedure {proc_id!r} at HEAD and no recorded runs of it; "
            "`procreg list` shows the procedures"
        )
    if as_json:
        emit_json(stats)
        return
    rows = [("all", stats), *stats.versions.items()]
    click.echo(f"{proc_id}: {stats.runs} run{'s' * (stats.runs != 1)}")
    headers = ["version", "runs", "success", "p50 ms", "p95 ms", "last run", "errors", "callers"]
    table = [
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
    ]
    _table(headers, table)


@click.command("health")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--apply",
    "apply_now",
    is_flag=True,
    help="Evaluate the policy now and move channels that need it.",
)
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def health(ctx: Context, ids: tuple[str, ...], apply_now: bool, as_json: bool) -> None:
    """List the channel moves the health policy made; --apply evaluates it now."""
    from registry.index.connect import open_backend
    from registry.releases import health as health_mod

    store = ctx.store()
    config = _config(store)
    targets = list(ids) or store.list_procedures()
    actions: list[health_mod.HealthAction] = []
    if apply_now:

        async def go() -> list[health_mod.HealthAction]:
            backend = await open_backend(store, ctx.database_url)
            try:
                found: list[health_mod.HealthAction] = []
                for proc_id in targets:
                    found += await health_mod.apply_policy(store, backend, proc_id, config)
                return found
            finally:
                await backend.close()

        actions = _run_async(go)
    moves = [m for proc_id in targets for m in health_mod.health_moves(store, proc_id)]
    if as_json:
        emit_json(
            {
                "enabled": config.health.enabled,
                "policy": config.health,
                "moves": moves,
                "actions": actions,
            }
        )
        return
    h = config.health
    state = "on" if h.enabled else "OFF ([health] enabled = false in procreg.toml)"
    click.echo(
        f"health policy {state}: move {h.channel} back when a version's success rate over "
        f"its last {h.window} runs (at least {h.min_runs}) is below {h.threshold:.0%}"
    )
    if apply_now:
        for a in actions:
            did = "moved" if a.applied else ("left" if a.kind == "stay" else "would move")
            click.echo(f"{did} {a.id} {a.channel}: {a.reason}")
        if not actions:
            click.echo("nothing to do: every channel is healthy or has too few runs")
    if not moves:
        click.echo("no channel moves by the health policy")
        return
    _table(
        ["id", "channel", "to", "when", "reason"],
        [
            [
                m.id,
                m.channel,
                m.version or "-",
                m.date.isoformat(timespec="seconds") if m.date else "-",
                m.reason or "-",
            ]
            for m in moves
        ],
    )


@click.command("doctor")
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
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
    click.echo(
        f"git {report.git or 'not found on PATH'}; libgit2 {report.libgit2}; "
        f"pygit2 {report.pygit2}; python {report.python}"
    )


COMMANDS = (run, test, metrics, health, doctor)
"""What :mod:`registry.cli` registers: ``for c in COMMANDS: cli.add_command(c)``."""
