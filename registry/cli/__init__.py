"""``procreg``: the command line, a thin layer over the library.

This package assembles the command group: the global options, ``procreg help``,
the commands of each family (:mod:`~registry.cli.procedures`,
:mod:`~registry.cli.versions`, :mod:`~registry.cli.index`,
:mod:`~registry.cli.runs`, :mod:`~registry.cli.agents`,
:mod:`~registry.cli.migrate`, :mod:`~registry.cli.hooks`) and :func:`main`.
What the commands share is in :mod:`registry.cli._common`.

Exit codes scripts can rely on: 0 success, 1 a problem the user can fix (one
line on stderr, no traceback), 2 a usage error (click's), 3 an internal
error (rerun with ``--traceback`` to see it). Heavy modules are imported
inside the commands so that ``procreg --version`` starts fast.

A family's module is imported only when one of its commands runs (or when help
lists them all): :data:`FAMILIES` names each module's commands, and
:class:`LazyCommands` imports the module on first use. A new family is one line
there (its module exports ``COMMANDS`` as today); a test checks the table
against every module's ``COMMANDS``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from registry.cli._common import Context, PipeClosed, exit_code, fail

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values

__version__ = "0.1.0"
"""procreg's version, in one place: the package metadata reads it (``pyproject.toml``) and
``procreg --version`` prints it without looking the distribution up, which would import
``importlib.metadata`` (a third of that command's start-up)."""

FAMILIES: Mapping[str, tuple[str, ...]] = {
    "procedures": ("init", "new", "check", "list", "show", "schema", "search"),
    "versions": ("release", "log", "diff", "rollback", "promote", "channels"),
    "index": ("sync", "reindex", "verify", "watch"),
    "migrate": ("migrate",),
    "hooks": ("hooks", "hook"),
    "runs": ("run", "test", "metrics", "health", "doctor"),
    "agents": ("mcp", "serve", "tools", "propose"),
    "envs": ("lock", "envs"),
    "queue": ("worker", "jobs", "job", "schedules"),
}
"""``{module under registry.cli: the names of the commands in its COMMANDS}``."""


class LazyCommands(dict[str, click.Command]):
    """A group's commands; each family's module is imported when one of its commands is
    looked up (``procreg show`` imports :mod:`~registry.cli.procedures` alone), all of
    them when the commands are listed. Commands added directly are kept as they are."""

    def __init__(self, families: Mapping[str, Sequence[str]]) -> None:
        super().__init__()
        self._pending = {module: tuple(names) for module, names in families.items()}

    def _load(self, module: str) -> None:
        if self._pending.pop(module, None) is None:
            return
        for command in importlib.import_module(f"registry.cli.{module}").COMMANDS:
            assert command.name is not None
            self.setdefault(command.name, command)

    def _load_for(self, name: object) -> None:
        for module, names in list(self._pending.items()):
            if name in names:
                self._load(module)

    def _load_all(self) -> None:
        for module in list(self._pending):
            self._load(module)

    def get(self, name: str, default: click.Command | None = None) -> click.Command | None:  # type: ignore[override]
        self._load_for(name)
        return super().get(name, default)

    def __getitem__(self, name: str) -> click.Command:
        self._load_for(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self._load_for(name)
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return super().__iter__()

    def __len__(self) -> int:
        self._load_all()
        return super().__len__()

    def keys(self) -> dict_keys[str, click.Command]:
        self._load_all()
        return super().keys()

    def values(self) -> dict_values[str, click.Command]:
        self._load_all()
        return super().values()

    def items(self) -> dict_items[str, click.Command]:
        self._load_all()
        return super().items()


class _Group(click.Group):
    """The command group, listing each command's whole first sentence (click cuts it at 45)."""

    def invoke(self, ctx: click.Context) -> Any:
        # click turns EPIPE into exit 1 itself; take it first, so that it can be exit 0
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise PipeClosed from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-C",
    "path",
    type=click.Path(path_type=Path),
    default=Path(),
    help="Run as if started in PATH (like git -C).",
)
@click.option(
    "--database-url",
    envvar="PROCREG_DATABASE_URL",
    default=None,
    help="PostgreSQL URL for the index (default: SQLite inside .git).",
)
@click.option("--traceback", is_flag=True, help="Show the full traceback of internal errors.")
@click.option(
    "--allow-shallow",
    is_flag=True,
    help="Go on in a shallow or tagless clone (release history and tags may be missing).",
)
@click.version_option(__version__, "--version", prog_name="procreg")
@click.pass_context
def cli(
    ctx: click.Context, path: Path, database_url: str | None, traceback: bool, allow_shallow: bool
) -> None:
    """A git-native registry of executable procedures."""
    ctx.obj = Context(path, database_url, allow_shallow=allow_shallow)
    ctx.obj.needs_history = ctx.invoked_subcommand not in NO_HISTORY


NO_HISTORY = frozenset(
    {"init", "new", "check", "schema", "hooks", "hook", "doctor", "help", "migrate"}
)
"""Commands that read no release history (``check`` does with ``--base``: it asks itself)."""


@cli.command("help")
@click.argument("command", nargs=-1)
@click.pass_context
def help_command(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Show the help of COMMAND (``procreg help release``), or of procreg itself."""
    parent = ctx.parent
    assert parent is not None
    target: click.Command = parent.command
    info = parent
    for name in command:
        sub = target.get_command(info, name) if isinstance(target, click.Group) else None
        if sub is None:
            names = ", ".join(cli.list_commands(parent))
            fail(f"no command {name!r}; the commands are: {names}")
        info = click.Context(sub, info_name=name, parent=info)
        target = sub
    click.echo(target.get_help(info))


_eager = cli.commands
cli.commands = LazyCommands(FAMILIES)
cli.commands.update(_eager)  # procreg help


# -- entry point ------------------------------------------------------------------------

GLOBAL_WITH_VALUE = ("-C", "--database-url")
GLOBAL_FLAGS = ("--traceback", "--allow-shallow")


def hoist_global_options(args: list[str]) -> list[str]:
    """Accept the global options anywhere: ``procreg migrate --from X -C REPO`` works too.

    They are moved in front of the command, where click expects them;
    nothing after ``--`` is touched.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in GLOBAL_WITH_VALUE and i + 1 < len(args):
            front += [arg, args[i + 1]]
            i += 2
            continue
        if (
            arg.startswith("--database-url=")
            or (arg.startswith("-C") and len(arg) > 2)
            or arg in GLOBAL_FLAGS
        ):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; turn errors into exit codes (the one place that does).

    Under ``--json`` an error is JSON on stdout too, ``{"error": {"type",
    "message", "hint"}}``, with the same exit code. A closed pipe (``| head``)
    ends quietly with 0, as git does.
    """
    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    show_traceback = "--traceback" in args
    as_json = "--json" in (args[: args.index("--")] if "--" in args else args)
    try:
        cli.main(args=args, prog_name="procreg", standalone_mode=False)
    except BaseException as exc:
        code = exit_code(exc, as_json=as_json, show_traceback=show_traceback)
        if code is None:
            raise
        return code
    return 0
