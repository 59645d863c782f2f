"""``procreg hooks install|uninstall`` and ``procreg hook ...``: the git hooks and what they call.

Heavy modules are imported inside the commands so that ``procreg --version`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from registry.cli._common import Context, pass_ctx


@click.group()
def hooks() -> None:
    """Git hooks: checks before commit, index sync after merge."""


@hooks.command("install")
@click.option(
    "--server", is_flag=True, help="Install the pre-receive hook (on a bare server repo)."
)
@pass_ctx
def hooks_install(ctx: Context, server: bool) -> None:
    """Install the registry's git hooks, keeping (chaining) any hook already there."""
    from registry.workspace import hooks as hooks_mod

    for hook in hooks_mod.install(ctx.store(), server=server):
        kept = f" (kept your hook as {Path(hook.kept_existing).name})" if hook.kept_existing else ""
        click.echo(f"installed {hook.path}{kept}")


@hooks.command("uninstall")
@click.option("--server", is_flag=True, help="Remove the pre-receive hook instead.")
@pass_ctx
def hooks_uninstall(ctx: Context, server: bool) -> None:
    """Remove procreg's own git hooks (a hook it kept as .local is put back)."""
    from registry.workspace import hooks as hooks_mod

    removed = hooks_mod.uninstall(ctx.store(), server=server)
    for hook in removed:
        back = f" (put back your {Path(hook.path).name})" if hook.restored else ""
        click.echo(f"removed {hook.path}{back}")
    if not removed:
        click.echo("no procreg hook is installed here")


@click.group()
def hook() -> None:
    """Entry points the git hook shims call."""


@hook.command("pre-receive")
@pass_ctx
def hook_pre_receive(ctx: Context) -> None:
    """Refuse pushes of release tags procreg would not make, moved tags, or broken main."""
    from registry.releases import receive as server_hook

    code = server_hook.hook_main(["pre-receive"])
    if code:
        sys.exit(code)


COMMANDS = (hooks, hook)
"""What :mod:`registry.cli` registers."""
