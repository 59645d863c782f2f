"""What every command module shares: the context, output helpers, the registry, exit codes.

The command modules (``procedures``, ``versions``, ``index``, ``runs``, ...) import
from here, never from :mod:`registry.cli` itself, which only assembles them.
Heavy modules are imported inside the helpers so that ``procreg --version``
starts fast.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    import asyncio

    from registry.api import AsyncRegistry
    from registry.git.store import GitStore

T = TypeVar("T")

EXIT_PROBLEM = 1
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

JSON_HELP = 'Print JSON (errors too, as {"error": {...}}).'

json_option = click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
"""The ``--json`` flag of most commands."""


class Context:
    """What the global options say, shared by every command.

    ``needs_history``: the command reads release history or tags, so the repository
    is checked once (a shallow or tagless clone stops it, unless ``allow_shallow``).
    """

    def __init__(self, path: Path, database_url: str | None, allow_shallow: bool = False) -> None:
        self.path = path
        self.database_url = database_url
        self.allow_shallow = allow_shallow
        self.needs_history = False
        self._history_checked = False

    def store(self) -> GitStore:
        from registry.git.store import GitStore

        store = GitStore.open(self.path)
        if self.needs_history:
            self.check_history(store)
        return store

    def check_history(self, store: GitStore | None = None, *, compare_remote: bool = False) -> None:
        """Stop when this clone is shallow or lacks the remote's release tags (once a command).

        ``compare_remote`` (before releasing) asks the remote for its release tags even
        when this clone has some. ``--allow-shallow`` skips the check.
        """
        if self.allow_shallow or self._history_checked:
            return
        from registry.core.tags import RELEASE_TAG_PREFIX
        from registry.git import remotes
        from registry.git.store import GitStore

        self._history_checked = True
        store = store or GitStore.open(self.path)
        branch = store.current_branch()
        remotes.check_history(
            store,
            RELEASE_TAG_PREFIX,
            branch=branch.removeprefix("refs/heads/") if branch else None,
            compare_remote=compare_remote,
        )


pass_ctx = click.make_pass_decorator(Context)


# -- the API ------------------------------------------------------------------------


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run the coroutine ``make()`` makes on a new event loop, to the end."""
    import asyncio

    async def main() -> T:
        return await make()

    return asyncio.run(main())


def with_registry(
    ctx: Context,
    use: Callable[[AsyncRegistry], Awaitable[T]],
    *,
    auto_sync: bool = False,
    set_aside_corrupt: bool = False,
    index_optional: bool = False,
) -> T:
    """``await use(reg)`` on an :class:`AsyncRegistry` of this repo's index, then close it.

    ``index_optional``: the command works without the index (see ``AsyncRegistry.open``).
    """
    from registry.api import AsyncRegistry

    if ctx.needs_history:
        ctx.check_history()

    async def go() -> T:
        reg = await AsyncRegistry.open(
            ctx.path,
            ctx.database_url,
            auto_sync=auto_sync,
            set_aside_corrupt=set_aside_corrupt,
            index_optional=index_optional,
        )
        async with reg:
            return await use(reg)

    return run_async(go)


@contextmanager
def stop_on_sigterm(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop()`` on SIGTERM, as Ctrl-C stops a command (``kill``, service managers).

    SIGINT is left as it is: Python's KeyboardInterrupt, or ignored when the
    parent ignored it (``nohup``, some service managers).
    """
    loop.add_signal_handler(signal.SIGTERM, stop)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


# -- output -------------------------------------------------------------------------


def emit_json(data: Any) -> None:
    """Print JSON for scripts: models, lists of models, or plain data.

    Every command's JSON goes through :func:`one_name_per_concept`, so that the
    keys mean the same in every command (``docs/json.md``).
    """
    shaped = one_name_per_concept(plain(data))
    click.echo(json.dumps(shaped, indent=2, ensure_ascii=False, default=str))


def one_name_per_concept(data: Any) -> Any:
    """``data`` (JSON values) with one name for each concept in every record.

    - the procedure id is ``id`` (the models already say so);
    - who made a tag is ``tagger_name`` / ``tagger_email`` (channel moves also keep
      their older ``by_name`` / ``by_email``);
    - validation problems are ``problems``, a list of ``{path, line, rule, message,
      field}`` objects (search hits also keep their older ``errors``, the same lines
      as text).

    Records are the top-level object, the items of a top-level list, and the items
    of the lists under :data:`RECORD_LISTS`; nothing else is touched, so that what a
    procedure returned or an example holds (``result``, ``input``...) is printed as it is.
    """
    if isinstance(data, list):
        return [_record(d) for d in data]
    return _record(data)


RECORD_LISTS = frozenset({"procedures", "moves", "actions", "history", "channels", "releases"})
"""The keys whose lists hold records that :func:`one_name_per_concept` shapes too."""


def _record(data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key in RECORD_LISTS & out.keys():
        if isinstance(out[key], list):
            out[key] = [_record(d) for d in out[key]]
    if "by_name" in out and "tagger_name" not in out:
        out["tagger_name"] = out["by_name"]
        out["tagger_email"] = out.get("by_email")
    errors = out.get("errors")
    if "problems" not in out and _lines(errors):
        out["problems"] = errors
    if _lines(out.get("problems")):
        from registry.core.problems import Problem

        out["problems"] = [Problem.parse(p).model_dump(mode="json") for p in out["problems"]]
    return out


def _lines(value: Any) -> bool:
    """True for a list of text lines (an empty list too)."""
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def plain(data: Any) -> Any:
    """``data`` as JSON values: models dumped (by alias), lists and dicts walked."""
    from pydantic import BaseModel

    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", by_alias=True)
    if isinstance(data, list | tuple):
        return [plain(d) for d in data]
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    return data


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print aligned columns under upper-case headers, or ``(none)``."""
    if not rows:
        click.echo("(none)")
        return
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def one_line(text: str) -> str:
    """``text`` with every run of white space (newlines too) made one space."""
    return " ".join(text.split())


def say_left_alone(paths: Sequence[str]) -> None:
    """Tell the user which checkout files kept their own changes, and what to run."""
    for path in sorted(set(paths)):
        click.echo(
            f"procreg: left {path} alone: it has local changes, and the branch now holds "
            f"another version. Keep yours and commit it, or take the branch's with "
            f"`git checkout HEAD -- {path}`",
            err=True,
        )


class progress:
    """A rich progress bar on stderr fed by ``(done, total, label)`` callbacks."""

    def __init__(self, label: str, *, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int, int, str], None]:
        if self.enabled:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: int, label: str) -> None:
        if self._bar is not None:
            self._bar.update(
                self._task, completed=done, total=total, description=f"{self.label} {label}"
            )

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- errors and exit codes ------------------------------------------------------------


def fail(message: str) -> NoReturn:
    """A problem the user can fix: one line on stderr, exit 1."""
    from registry.errors import RegistryError

    raise RegistryError(message)


class PipeClosed(Exception):
    """The reader of stdout went away (``| head``): not an error, as for git."""


def exit_code(exc: BaseException, *, as_json: bool, show_traceback: bool) -> int | None:
    """The exit code for what a command raised, after saying it; None: re-raise it.

    0 success, 1 a problem the user can fix (one line on stderr, no traceback),
    2 a usage error (click's), 3 an internal error, 130 interrupted. Under
    ``--json`` an error is JSON on stdout too, with the same exit code. A closed
    pipe ends quietly with 0. ``show_traceback`` re-raises our errors and bugs.
    """
    from registry.errors import RegistryError

    if isinstance(exc, click.exceptions.Exit):
        return int(exc.exit_code or 0)
    if isinstance(exc, click.ClickException):
        return _usage_error(exc, as_json)
    if isinstance(exc, click.exceptions.Abort):
        click.echo("Aborted.", err=True)
        return EXIT_INTERRUPTED
    if isinstance(exc, RegistryError):
        return None if show_traceback else _problem(exc, as_json)
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError | PipeClosed):
        _quiet_stdout()
        return 0
    if isinstance(exc, SystemExit):
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    if isinstance(exc, Exception) and not show_traceback:
        return _internal_error(exc, as_json)
    return None


def _usage_error(exc: click.ClickException, as_json: bool) -> int:
    if as_json:
        return _json_error("UsageError", exc.format_message(), _usage_hint(exc), exc.exit_code)
    exc.show()
    return exc.exit_code


def _problem(exc: Exception, as_json: bool) -> int:
    if as_json:
        message, _, hint = str(exc).partition("; ")
        return _json_error(type(exc).__name__, message, hint or None, EXIT_PROBLEM)
    click.echo(f"procreg: error: {exc}", err=True)
    return EXIT_PROBLEM


def _internal_error(exc: Exception, as_json: bool) -> int:
    message = f"{type(exc).__name__}: {exc}"
    hint = "this is a bug in procreg; rerun with --traceback and report what it prints"
    if as_json:
        return _json_error("InternalError", message, hint, EXIT_INTERNAL)
    click.echo(
        f"procreg: internal error: {message}\n"
        "This is a bug in procreg. Rerun with --traceback and report what it prints.",
        err=True,
    )
    return EXIT_INTERNAL


def _json_error(kind: str, message: str, hint: str | None, code: int) -> int:
    try:
        click.echo(json.dumps({"error": {"type": kind, "message": message, "hint": hint}}))
    except BrokenPipeError:
        _quiet_stdout()
    return code


def _usage_hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "procreg"
    return f"see `{where} --help`"


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the exit flush says nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
