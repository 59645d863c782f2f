"""``procreg lock`` and ``procreg envs list|prune``: locked libraries and their environments.

Heavy modules are imported inside the commands so that ``procreg --version`` stays fast.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from registry.cli._common import Context, emit_json, json_option, pass_ctx, table


@click.command()
@click.argument("proc_id", metavar="ID")
@click.option(
    "--find-links",
    "find_links",
    multiple=True,
    metavar="DIR",
    help="A folder (or page) of wheels to resolve from, besides [envs] find_links; repeatable.",
)
@click.option("--no-index", is_flag=True, default=None, help="Use only --find-links, no index.")
@click.option("--index-url", metavar="URL", help="The package index (default: [envs] or uv's).")
@json_option
@pass_ctx
def lock(
    ctx: Context,
    proc_id: str,
    find_links: tuple[str, ...],
    no_index: bool | None,
    index_url: str | None,
    as_json: bool,
) -> None:
    """Resolve ID's requirements with uv into procedures/ID/pylock.toml (PEP 751, hashed)."""
    from registry.workspace.locking import lock_procedure
    from registry.workspace.scaffold import load_config

    store = ctx.store()
    report = lock_procedure(
        store,
        proc_id,
        load_config(store),
        find_links=find_links,
        no_index=no_index,
        index_url=index_url,
    )
    if as_json:
        emit_json(report)
        return
    if report.lock is None:
        what = "removed" if report.changed else "not needed"
        click.echo(f"{report.id}: no requirements, so no {report.path} ({what})")
        return
    state = "written" if report.changed else "unchanged"
    click.echo(f"{report.path} {state} (lock {report.lock[:12]}, for {report.python}):")
    for dist in report.locked:
        click.echo(f"  {dist.name}=={dist.version}")


@click.group()
def envs() -> None:
    """The cache of built environments (one per lock and Python version)."""


def _cache(ctx: Context):  # type: ignore[no-untyped-def]
    from registry.errors import RegistryError
    from registry.sandbox.envs import EnvCache
    from registry.workspace.scaffold import load_config

    try:
        config = load_config(ctx.store()).envs
    except RegistryError:  # outside a registry: the default cache ($PROCREG_CACHE_DIR)
        config = None
    return EnvCache.default(config)


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M")


@envs.command("list")
@json_option
@pass_ctx
def envs_list(ctx: Context, as_json: bool) -> None:
    """The built environments, least recently used first."""
    found = _cache(ctx).entries()
    if as_json:
        emit_json(found)
        return
    table(
        ["lock", "python", "distributions", "size", "last used"],
        [
            [
                e.lock_hash[:12],
                e.python_version,
                ", ".join(f"{n}=={v}" for n, v in sorted(e.distributions.items())),
                f"{e.size_bytes / 1e6:.1f} MB",
                _when(e.last_used),
            ]
            for e in found
        ],
    )


@envs.command("prune")
@click.option("--keep", type=click.IntRange(min=0), default=0, help="Keep the N most recent.")
@click.option(
    "--unused-for",
    "unused_days",
    type=click.FloatRange(min=0),
    help="Only those not used for this many days.",
)
@json_option
@pass_ctx
def envs_prune(ctx: Context, keep: int, unused_days: float | None, as_json: bool) -> None:
    """Remove environments, least recently used first (a later run rebuilds what it needs)."""
    unused_s = None if unused_days is None else unused_days * 86400
    gone = _cache(ctx).prune(keep=keep, unused_for_s=unused_s)
    if as_json:
        emit_json(gone)
        return
    for env in gone:
        click.echo(
            f"removed {env.lock_hash[:12]} ({env.python_version}), last used {_when(env.last_used)}"
        )
    click.echo(
        f"{len(gone)} environment{'s' * (len(gone) != 1)} removed at {time.strftime('%H:%M')}"
    )


COMMANDS = (lock, envs)
"""What :mod:`registry.cli` registers: ``for c in COMMANDS: cli.add_command(c)``."""
