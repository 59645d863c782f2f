"""``procreg release``, ``log``, ``diff``, ``rollback``, ``promote``, ``channels``: versions.

The write commands call :class:`registry.api.AsyncRegistry`. Heavy modules are
imported inside the commands so that ``procreg --version`` stays fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from registry.cli._common import (
    EXIT_PROBLEM,
    Context,
    emit_json,
    json_option,
    pass_ctx,
    progress,
    say_left_alone,
    table,
    with_registry,
)
from registry.cli._publish import check_branch, from_branch_option, publish, push_option

if TYPE_CHECKING:
    from registry.git.store import GitStore
    from registry.releases.channels import ChannelReport
    from registry.releases.release import Refusal, ReleaseResult


@click.command()
@click.argument("ids", nargs=-1, metavar="[ID...]")
@click.option(
    "--all-changed", is_flag=True, help="Release every procedure changed since its last release."
)
@click.option("--ref", default="HEAD", show_default=True, help="The commit to release.")
@click.option(
    "--dry-run", is_flag=True, help="Show what would be tagged (examples run too); tag nothing."
)
@json_option
@click.option("--skip-examples", is_flag=True, help="Do not run the examples before tagging.")
@push_option
@from_branch_option
@pass_ctx
def release(
    ctx: Context,
    ids: tuple[str, ...],
    all_changed: bool,
    ref: str,
    dry_run: bool,
    as_json: bool,
    skip_examples: bool,
    push_to: str | None,
    from_branch: bool,
) -> None:
    """Tag each changed procedure procedure-<id>-vX.Y.Z with a computed bump."""
    ctx.check_history(compare_remote=True)
    store = ctx.store()
    ids, push_to = _push_or_id(store, ids, push_to)
    if ids:
        from registry.releases.tagged import require_procedure

        for proc_id in ids:
            require_procedure(store, proc_id, ref)
    if not dry_run:
        check_branch(store, ref, from_branch)
    if skip_examples:
        click.echo(
            "procreg: examples not run (--skip-examples): "
            f"{'the plan' if dry_run else 'every version'} is unchecked by its contract tests",
            err=True,
        )
    with progress("releasing", enabled=not as_json) as on_progress:
        results = with_registry(
            ctx,
            lambda reg: reg.release(
                ids,
                ref=ref,
                all_changed=all_changed,
                dry_run=dry_run,
                run_examples=not skip_examples,
                on_progress=on_progress,
            ),
            index_optional=True,
        )
    if as_json:
        emit_json(results)
    else:
        _say_released(results, dry_run)
    if not dry_run:
        made = [
            f"refs/tags/{r.tag}"
            for r in results
            if r.created and not r.existing and r.refused is None
        ]
        publish(store, made, push_to, as_json=as_json)
    refused = [r for r in results if r.refused is not None]
    if refused:
        if not as_json:
            verb = "would be refused" if dry_run else "refused"
            click.echo(
                f"procreg: error: {len(refused)} of {len(results)} "
                f"release{'s' * (len(results) != 1)} {verb} "
                f"({', '.join(r.id for r in refused)}): their examples fail; fix the code or "
                "the example, then `procreg release` again",
                err=True,
            )
        sys.exit(EXIT_PROBLEM)


def _failure(refusal: Refusal) -> str:
    """The failing example in one line (description, input, expected, got), and how many more."""
    from registry.runs.examples import ExampleResult, describe_failure

    if refusal.example is None:
        return refusal.message
    more = f" ({refusal.failing - 1} more failing)" if refusal.failing > 1 else ""
    return describe_failure(ExampleResult.model_validate(refusal.example)) + more


def _say_released(results: list[ReleaseResult], dry_run: bool) -> None:
    if not results:
        click.echo("nothing to release: no procedure changed since its last release")
    for r in results:
        if r.refused is not None:
            verb = "would refuse" if dry_run else "refused"
            click.echo(f"procreg: {verb} {r.tag}: {_failure(r.refused)}", err=True)
            continue
        if r.existing:
            click.echo(f"already tagged {r.tag} (released by another process meanwhile)")
            continue
        verb = "would tag" if dry_run else "tagged"
        click.echo(f"{verb} {r.tag} ({r.bump}, +{r.lines_added} -{r.lines_removed})")
        for reason in r.reasons:
            click.echo(f"  - {reason}")


def _push_or_id(
    store: GitStore, ids: tuple[str, ...], push_to: str | None
) -> tuple[tuple[str, ...], str | None]:
    """``release --push greet``: "greet" is a procedure, not a remote; push to the default."""
    from registry.git.remotes import remote_names

    if not push_to or "/" in push_to or ":" in push_to or push_to in remote_names(store):
        return ids, push_to
    if push_to in store.list_procedures():
        return (*ids, push_to), ""
    return ids, push_to


@click.command()
@click.argument("proc_id", metavar="ID")
@json_option
@pass_ctx
def log(ctx: Context, proc_id: str, as_json: bool) -> None:
    """The releases of ID, newest first, with their bumps and reasons."""
    from registry.releases.history import history
    from registry.releases.tagged import require_procedure

    store = ctx.store()
    versions = history(store, proc_id)
    if not versions:
        require_procedure(store, proc_id)  # an unknown id is an error, not "no releases yet"
    if as_json:
        emit_json(versions)
        return
    if not versions:
        click.echo(f"{proc_id}: no releases yet (`procreg release {proc_id}`)")
    for v in versions:
        when = v.date.strftime("%Y-%m-%d %H:%M") if v.date else "-"
        click.echo(
            f"{v.version}  {when}  {v.tagger_name or '-'}  {v.bump or '-'}  "
            f"+{v.lines_added or 0} -{v.lines_removed or 0}"
        )
        for reason in v.reasons:
            click.echo(f"    - {reason}")


@click.command()
@click.argument("proc_id", metavar="ID")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B", default="HEAD")
@pass_ctx
def diff(ctx: Context, proc_id: str, a: str, b: str) -> None:
    """Unified diff of ID's folder between versions (or specs) A and B (default HEAD)."""
    from registry.releases.history import diff as folder_diff

    click.echo(folder_diff(ctx.store(), proc_id, a, b), nl=False)


@click.command()
@click.argument("proc_id", metavar="ID")
@click.option("--to", "to_version", required=True, metavar="VERSION")
@click.option("--reason", help="Why; recorded in the release.")
@click.option("--branch", help="Branch to commit on (default: the current one).")
@json_option
@push_option
@pass_ctx
def rollback(
    ctx: Context,
    proc_id: str,
    to_version: str,
    reason: str | None,
    branch: str | None,
    as_json: bool,
    push_to: str | None,
) -> None:
    """Restore VERSION's folder in a new commit and release it (history is never rewritten)."""
    result = with_registry(
        ctx,
        lambda reg: reg.rollback(
            proc_id, to_version, branch=branch, reason=reason, on_left_alone=say_left_alone
        ),
        index_optional=True,
    )
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"rolled {proc_id} back to {to_version}'s code: tagged {result.tag} "
            f"({result.bump}) on {result.commit[:12]}"
        )
    store = ctx.store()
    publish(store, [store.branch_ref(branch), f"refs/tags/{result.tag}"], push_to, as_json=as_json)


@click.command()
@click.argument("proc_id", metavar="ID")
@click.argument("version", metavar="VERSION")
@click.option("--channel", required=True, help="Channel name, e.g. stable.")
@click.option("--reason", help="Why; recorded in the channel tag.")
@json_option
@push_option
@pass_ctx
def promote(
    ctx: Context,
    proc_id: str,
    version: str,
    channel: str,
    reason: str | None,
    as_json: bool,
    push_to: str | None,
) -> None:
    """Point channel NAME of ID at VERSION (a new tag; the move history is kept)."""
    move = with_registry(
        ctx,
        lambda reg: reg.promote(proc_id, version, channel, reason=reason),
        index_optional=True,
    )
    if as_json:
        emit_json(move)
    else:
        what = "moved" if move.created else "already at"
        click.echo(f"{proc_id}@{channel} {what} {move.version} ({move.tag})")
    if move.created:
        publish(ctx.store(), [f"refs/tags/{move.tag}"], push_to, as_json=as_json)


@click.command()
@click.argument("proc_id", metavar="[ID]", required=False)
@json_option
@pass_ctx
def channels(ctx: Context, proc_id: str | None, as_json: bool) -> None:
    """Every channel (of ID, or of every procedure): its version now and every move."""
    reports = with_registry(ctx, lambda reg: reg.channels(proc_id), index_optional=True)
    if as_json:
        emit_json(reports)
        return
    if not reports:
        where = proc_id or "any procedure"
        click.echo(
            f"no channels for {where} yet "
            f"(`procreg promote {proc_id or 'ID'} VERSION --channel stable` makes one)"
        )
    for n, report in enumerate(reports):
        if n:
            click.echo()
        _say_channel(report)


def _say_channel(report: ChannelReport) -> None:
    current = report.moves[0]
    if report.status == "out-of-service":
        when = current.date.strftime("%Y-%m-%d %H:%M") if current.date else "-"
        click.echo(
            f"{report.id}@{report.channel}: OUT OF SERVICE since {when} (was {current.version}); "
            f"`procreg promote {report.id} VERSION --channel {report.channel}` restores it"
        )
    else:
        click.echo(f"{report.id}@{report.channel}: {report.version}")
    table(
        ["seq", "version", "when", "by", "how", "reason"],
        [
            [
                str(m.seq),
                f"out of service (was {m.version})" if m.out_of_service else m.version or "-",
                m.date.strftime("%Y-%m-%d %H:%M") if m.date else "-",
                m.tagger_name or "-",
                "health policy" if m.by_health else m.action,
                m.reason or "-",
            ]
            for m in report.moves
        ],
    )


COMMANDS = (release, log, diff, rollback, promote, channels)
"""What :mod:`registry.cli` registers."""
