"""``procreg mcp``, ``serve``, ``tools`` and ``propose``: procreg for agents.

Registered into the main group by :mod:`registry.cli`. Thin: the server is
:mod:`registry.serve`, proposals are :meth:`registry.api.AsyncRegistry.propose`.
"""

from __future__ import annotations

from pathlib import Path

import click

from registry.cli._common import (
    Context,
    emit_json,
    fail,
    json_option,
    pass_ctx,
    run_async,
    table,
    with_registry,
)

_CHANNEL = click.option(
    "--channel", default=None, help="Pin tools to this channel (default: [mcp] channel, stable)."
)
_FALLBACK = click.option(
    "--fallback",
    type=click.Choice(["latest", "none"]),
    default=None,
    help="No such channel: serve the latest release, or skip (default: [mcp] fallback, latest).",
)


def _quiet_logs() -> None:
    import logging
    import sys

    # stdout belongs to the protocol; logs go to stderr, warnings and up
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="procreg: %(message)s")


@click.command("mcp")
@_CHANNEL
@_FALLBACK
@pass_ctx
def mcp_stdio(ctx: Context, channel: str | None, fallback: str | None) -> None:
    """Serve the registry to one MCP client over stdio (the local user is trusted)."""
    from registry.serve.mcp import ProcregServer

    _quiet_logs()
    server = ProcregServer(
        ctx.path,
        ctx.database_url,
        channel=channel,
        fallback=fallback,  # type: ignore[arg-type]
    )
    run_async(server.serve_stdio)


def _announce(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"procreg: {line}", err=True)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=click.IntRange(0, 65535))
@_CHANNEL
@_FALLBACK
@pass_ctx
def serve(ctx: Context, host: str, port: int, channel: str | None, fallback: str | None) -> None:
    """Serve MCP at /mcp and the read-only web view at /, with the tokens of [serve].

    /mcp needs a token; the web view needs a token with the read right, or, with
    no token configured and a loopback --host, is open to this machine.
    """
    from registry.serve.http import serve_http

    _quiet_logs()
    run_async(
        lambda: serve_http(
            ctx.path,
            ctx.database_url,
            host=host,
            port=port,
            channel=channel,
            fallback=fallback,  # type: ignore[arg-type]
            announce=_announce,
        )
    )


@click.command("tools")
@_CHANNEL
@_FALLBACK
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mcp", "openai", "anthropic"]),
    default="mcp",
    show_default=True,
    help="The tool definition format: MCP, OpenAI (chat completions) or Anthropic.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the definitions as JSON.")
@click.option("--no-meta", is_flag=True, help="Leave out the meta tools.")
@pass_ctx
def tools(
    ctx: Context,
    channel: str | None,
    fallback: str | None,
    fmt: str,
    as_json: bool,
    no_meta: bool,
) -> None:
    """The tools `procreg mcp` serves, as definitions an agent framework can register."""
    from registry.serve import tools as tooldefs
    from registry.serve.mcp import ProcregServer

    server = ProcregServer(
        ctx.path,
        ctx.database_url,
        channel=channel,
        fallback=fallback,  # type: ignore[arg-type]
        watch=False,
    )

    async def go() -> list[tooldefs.ToolDef]:
        async with server.running():
            defs = server.tool_defs()
        return [d for d in defs if d.id is not None] if no_meta else defs

    defs = run_async(go)
    exported = tooldefs.export(defs, fmt)  # type: ignore[arg-type]
    if as_json:
        emit_json(exported)
        return
    rows = []
    for d in defs:
        pin = f"{d.version} ({d.resolved_from})" if d.id else "meta tool"
        first = d.description.splitlines()[0] if d.description else ""
        rows.append([d.name, pin, first if len(first) <= 70 else first[:67] + "..."])
    table(["tool", "version", "description"], rows)


@click.command("propose")
@click.argument("proc_id", metavar="ID")
@click.option(
    "--from",
    "folder",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Folder holding main.py and metadata.json (default: procedures/ID in the working tree).",
)
@click.option("-m", "--message", help="The commit message (default: 'proposal: ID').")
@json_option
@pass_ctx
def propose(
    ctx: Context, proc_id: str, folder: Path | None, message: str | None, as_json: bool
) -> None:
    """Commit a procedure's files on a new branch proposals/ID/N for review (never on main)."""
    store = ctx.store()
    if folder is None:
        if store.workdir is None:
            fail("a bare repository has no working tree; pass --from FOLDER")
        assert store.workdir is not None
        folder = store.workdir / store.folder / proc_id
    main_py, meta_text = folder / "main.py", folder / "metadata.json"
    for path in (main_py, meta_text):
        if not path.is_file():
            fail(f"{path}: no such file; a proposal needs main.py and metadata.json")

    proposal = with_registry(
        ctx,
        lambda reg: reg.propose(
            proc_id,
            main_py.read_text(encoding="utf-8"),
            meta_text.read_text(encoding="utf-8"),
            message,
        ),
        auto_sync=True,
    )
    if as_json:
        emit_json(proposal)
        return
    release = (
        f"{proposal.previous or '-'} -> {proposal.version} ({proposal.bump})"
        if proposal.version
        else "no release"
    )
    click.echo(f"proposed {proposal.id} on {proposal.branch} at {proposal.commit[:12]}: {release}")
    for reason in proposal.reasons:
        click.echo(f"  - {reason}")


COMMANDS = [mcp_stdio, serve, tools, propose]
