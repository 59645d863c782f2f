"""``procreg release``, ``log``, ``diff``, ``rollback`` and ``promote``: versions and channels.

The write commands call :class:`registry.api.AsyncRegistry`. Heavy modules are
imported inside the commands so that ``procreg --version`` stays fast.
"""

from __future__ import annotations

import click

from registry.cli._common import (
    Context,
    emit_json,
    json_option,
    pass_ctx,
    progress,
    say_left_alone,
    with_registry,
)


@click.command()
@click.argument("ids", nargs=-1, metavar="[ID...]")
@click.option(
    "--all-changed", is_flag=True, help="Release every procedure changed since its last release."
)
@click.option("--ref", default="HEAD", show_default=True, help="The commit to release.")
@click.option("--dry-run", is_flag=True, help="Show what would be tagged; tag nothing.")
@json_option
@click.option("--skip-examples", is_flag=True, help="Do not run the examples before tagging.")
@pass_ctx
def release(
    ctx: Context,
    ids: tuple[str, ...],
    all_changed: bool,
    ref: str,
    dry_run: bool,
    as_json: bool,
    skip_examples: bool,
) -> None:
    """Tag each changed procedure procedure-<id>-vX.Y.Z with a computed bump."""
    if ids:
        from registry.releases.tagged import require_procedure

        store = ctx.store()
        for proc_id in ids:
            require_procedure(store, proc_id, ref)
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
        return
    if not results:
        click.echo("nothing to release: no procedure changed since its last release")
    for r in results:
        if r.existing:
            click.echo(f"already tagged {r.tag} (released by another process meanwhile)")
            continue
        verb = "would tag" if dry_run else "tagged"
        click.echo(f"{verb} {r.tag} ({r.bump}, +{r.lines_added} -{r.lines_removed})")
        for reason in r.reasons:
            click.echo(f"  - {reason}")


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
@pass_ctx
def rollback(
    ctx: Context,
    proc_id: str,
    to_version: str,
    reason: str | None,
    branch: str | None,
    as_json: bool,
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
        return
    click.echo(
        f"rolled {proc_id} back to {to_version}'s code: tagged {result.tag} "
        f"({result.bump}) on {result.commit[:12]}"
    )


@click.command()
@click.argument("proc_id", metavar="ID")
@click.argument("version", metavar="VERSION")
@click.option("--channel", required=True, help="Channel name, e.g. stable.")
@click.option("--reason", help="Why; recorded in the channel tag.")
@json_option
@pass_ctx
def promote(
    ctx: Context, proc_id: str, version: str, channel: str, reason: str | None, as_json: bool
) -> None:
    """Point channel NAME of ID at VERSION (a new tag; the move history is kept)."""
    move = with_registry(
        ctx,
        lambda reg: reg.promote(proc_id, version, channel, reason=reason),
        index_optional=True,
    )
    if as_json:
        emit_json(move)
        return
    what = "moved" if move.created else "already at"
    click.echo(f"{proc_id}@{channel} {what} {move.version} ({move.tag})")


COMMANDS = (release, log, diff, rollback, promote)
"""What :mod:`registry.cli` registers."""
