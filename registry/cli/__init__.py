"""``procreg``: the command line, a thin layer over the library.

Exit codes scripts can rely on: 0 success, 1 a problem the user can fix (one
line on stderr, no traceback), 2 a usage error (click's), 3 an internal
error (rerun with ``--traceback`` to see it). Heavy modules are imported
inside the commands so that ``procreg --version`` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from pydantic import BaseModel

    from registry.git.store import GitStore

F = TypeVar("F", bound=Callable[..., Any])

EXIT_PROBLEM = 1
EXIT_INTERNAL = 3


class Context:
    """What the global options say, shared by every command."""

    def __init__(self, path: Path, database_url: str | None) -> None:
        self.path = path
        self.database_url = database_url

    def store(self) -> GitStore:
        from registry.git.store import GitStore

        return GitStore.open(self.path)


pass_ctx = click.make_pass_decorator(Context)


def emit_json(data: Any) -> None:
    """Print JSON for scripts: models, lists of models, or plain data."""
    click.echo(json.dumps(_plain(data), indent=2, ensure_ascii=False, default=str))


def _plain(data: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", by_alias=True)
    if isinstance(data, list | tuple):
        return [_plain(d) for d in data]
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    return data


def fail(message: str) -> NoReturn:
    """A problem the user can fix: one line on stderr, exit 1."""
    from registry.errors import RegistryError

    raise RegistryError(message)


class _PipeClosed(Exception):
    """The reader of stdout went away (``| head``): not an error, as for git."""


class _Group(click.Group):
    """The command group, listing each command's whole first sentence (click cuts it at 45)."""

    def invoke(self, ctx: click.Context) -> Any:
        # click turns EPIPE into exit 1 itself; take it first, so that it can be exit 0
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise _PipeClosed from exc

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
@click.version_option(None, "--version", package_name="procedure-registry", prog_name="procreg")
@click.pass_context
def cli(ctx: click.Context, path: Path, database_url: str | None, traceback: bool) -> None:
    """A git-native registry of executable procedures."""
    ctx.obj = Context(path, database_url)


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


# -- issue: procedures in git ----------------------------------------------------------


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@pass_ctx
def init(ctx: Context, path: Path | None) -> None:
    """Make PATH (default: the current folder) a procedure registry."""
    from registry.workspace import hooks
    from registry.workspace.scaffold import init_registry

    target = path if path is not None else ctx.path
    store, created = init_registry(target)
    installed = hooks.install(store)
    what = ", ".join(created) if created else "nothing new"
    click.echo(
        f"Initialized procedure registry in {target} ({what}; "
        f"hooks: {', '.join(h.name for h in installed)})"
    )


@cli.command()
@click.argument("proc_id", metavar="ID")
@click.option("--name", help="Human title (default: from the id).")
@click.option("--description", default="", help="One or two sentences a search will find.")
@click.option("--category", default="general")
@pass_ctx
def new(ctx: Context, proc_id: str, name: str | None, description: str, category: str) -> None:
    """Scaffold procedures/ID/ with a valid main.py and metadata.json."""
    from registry.workspace.scaffold import new_procedure

    store = ctx.store()
    if store.workdir is None:
        fail(f"{store.name}: a bare repository has no working tree to create files in")
    assert store.workdir is not None
    folder = new_procedure(
        store.workdir, proc_id, name=name, description=description, category=category
    )
    click.echo(
        f"Created {folder.relative_to(store.workdir)}/main.py and metadata.json; "
        f"edit them, then `procreg check` and commit."
    )


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--staged", is_flag=True, help="Check what `git commit` would record.")
@click.option(
    "--base",
    "base",
    metavar="REF",
    help="Also show the bump a merge would release for each procedure changed since REF.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "markdown"]), default="text")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def check(
    ctx: Context, paths: tuple[Path, ...], staged: bool, base: str | None, fmt: str, as_json: bool
) -> None:
    """Validate procedures (default: every folder under procedures/)."""
    from registry.workspace import scaffold as workspace

    store = ctx.store()
    config = workspace.load_config(store)
    if staged:
        snapshots = workspace.staged_snapshots(store)
    else:
        snapshots = workspace.worktree_snapshots(store, [_under(ctx.path, p) for p in paths])
    report = workspace.check(snapshots, config)
    plans = None
    if base is not None:
        from registry.releases import release as releases

        plans = releases.check_base(store, base)
    if as_json:
        data = report.model_dump(mode="json")
        data["problems"] = [p.model_dump(mode="json") for p in report.problems]
        if plans is not None:
            data["releases"] = _plain(plans)
        emit_json(data)
    else:
        for problem in report.problems:
            click.echo(problem.format())
        if plans is not None:
            if fmt == "markdown":
                click.echo(releases.render_markdown(plans))
            else:
                for plan in plans:
                    click.echo(f"{plan.id}: {plan.previous or '-'} -> {plan.version} ({plan.bump})")
                    for reason in plan.reasons:
                        click.echo(f"  - {reason}")
        bad = sum(not p.ok for p in report.procedures)
        summary = (
            f"checked {report.checked} procedure{'s' * (report.checked != 1)}: "
            f"{'all valid' if report.ok else f'{bad} invalid, {len(report.problems)} problems'}"
        )
        click.echo(summary, err=not report.ok)
    if not report.ok:
        sys.exit(EXIT_PROBLEM)


def _under(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


@cli.command("list")
@click.option("--ref", default="HEAD", show_default=True)
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def list_(ctx: Context, ref: str, as_json: bool) -> None:
    """List the procedures at REF with their latest release."""
    from registry.workspace.scaffold import list_procedures

    rows = list_procedures(ctx.store(), ref)
    if as_json:
        emit_json(rows)
        return
    _table(
        ["id", "version", "category", "valid", "name"],
        [[r.id, r.version or "-", r.category, "yes" if r.valid else "NO", r.name] for r in rows],
    )


@cli.command()
@click.argument("ref_spec", metavar="ID[@SPEC]")
@click.option("--ref", default=None, help="Show the procedure as it is at this git ref.")
@click.option("--source", is_flag=True, help="Print main.py.")
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def show(ctx: Context, ref_spec: str, ref: str | None, source: bool, as_json: bool) -> None:
    """Show a procedure: latest release, ID@SPEC (version, range, channel, HEAD) or --ref."""
    from registry.workspace.scaffold import show_procedure

    detail = show_procedure(ctx.store(), ref_spec, ref=ref)
    if as_json:
        data = _plain(detail)
        if not source:
            data.pop("source", None)
        emit_json(data)
        return
    if source:
        click.echo(detail.source, nl=False)
        return
    meta = detail.metadata
    click.echo(f"{meta.id} {detail.version or '(unreleased)'}  {meta.name}")
    click.echo(f"  commit:   {detail.commit}")
    click.echo(
        f"  category: {meta.category}   status: {meta.status}   tags: {', '.join(meta.tags) or '-'}"
    )
    if meta.description:
        click.echo(f"  {meta.description}")
    for p in meta.parameters:
        opt = "required" if p.required else f"default {json.dumps(p.default)}"
        click.echo(f"  --arg {p.name}=<{p.type}>  {opt}  {p.description}")
    click.echo(f"  returns {meta.returns.type}: {meta.returns.description}")
    click.echo(f"  examples: {len(meta.examples)}")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of metadata.json."""
    from registry.core.model import json_schema

    emit_json(json_schema())


@cli.group()
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


# -- issue: versions ------------------------------------------------------------------


@cli.command()
@click.argument("ids", nargs=-1, metavar="[ID...]")
@click.option(
    "--all-changed", is_flag=True, help="Release every procedure changed since its last release."
)
@click.option("--ref", default="HEAD", show_default=True, help="The commit to release.")
@click.option("--dry-run", is_flag=True, help="Show what would be tagged; tag nothing.")
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
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
    from registry.releases import release as releases

    store = ctx.store()
    before_tag = None if skip_examples or dry_run else _examples_gate(ctx)
    try:
        with _progress("releasing", enabled=not as_json) as progress:
            results = releases.release(
                store,
                list(ids) or None,
                ref=ref,
                all_changed=all_changed,
                dry_run=dry_run,
                on_progress=progress,
                before_tag=before_tag,
            )
    finally:
        close = getattr(before_tag, "close", None)
        if close is not None:
            close()  # the example runs' records go to the index
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


def _examples_gate(ctx: Context) -> Callable[..., None] | None:
    """The execution layer's example check, when it is available."""
    try:
        from registry.runs.execution import examples_gate
    except ImportError:  # the execution layer is optional at this point
        return None
    return examples_gate(ctx.store(), database_url=ctx.database_url)


@cli.command()
@click.argument("proc_id", metavar="ID")
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def log(ctx: Context, proc_id: str, as_json: bool) -> None:
    """The releases of ID, newest first, with their bumps and reasons."""
    from registry.releases import release as releases

    versions = releases.history(ctx.store(), proc_id)
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


@cli.command()
@click.argument("proc_id", metavar="ID")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B", default="HEAD")
@pass_ctx
def diff(ctx: Context, proc_id: str, a: str, b: str) -> None:
    """Unified diff of ID's folder between versions (or specs) A and B (default HEAD)."""
    from registry.releases import release as releases

    click.echo(releases.diff(ctx.store(), proc_id, a, b), nl=False)


@cli.command()
@click.argument("proc_id", metavar="ID")
@click.option("--to", "to_version", required=True, metavar="VERSION")
@click.option("--reason", help="Why; recorded in the release.")
@click.option("--branch", help="Branch to commit on (default: the current one).")
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
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
    from registry.releases import release as releases

    store = ctx.store()
    on_checkout = store.workdir is not None and store.branch_ref(branch) == store.current_branch()
    skipped = store.begin_checkout_update() if on_checkout else []
    try:
        result = releases.rollback(store, proc_id, to_version, branch=branch, reason=reason)
    finally:
        if on_checkout:
            skipped += store.finish_checkout_update()
        _say_left_alone(skipped)
    if as_json:
        emit_json(result)
        return
    click.echo(
        f"rolled {proc_id} back to {to_version}'s code: tagged {result.tag} "
        f"({result.bump}) on {result.commit[:12]}"
    )


@cli.command()
@click.argument("proc_id", metavar="ID")
@click.argument("version", metavar="VERSION")
@click.option("--channel", required=True, help="Channel name, e.g. stable.")
@click.option("--reason", help="Why; recorded in the channel tag.")
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def promote(
    ctx: Context, proc_id: str, version: str, channel: str, reason: str | None, as_json: bool
) -> None:
    """Point channel NAME of ID at VERSION (a new tag; the move history is kept)."""
    from registry.releases import release as releases

    move = releases.promote(ctx.store(), proc_id, version, channel, reason=reason)
    if as_json:
        emit_json(move)
        return
    what = "moved" if move.created else "already at"
    click.echo(f"{proc_id}@{channel} {what} {move.version} ({move.tag})")


@cli.group()
def hook() -> None:
    """Entry points the git hook shims call."""


@hook.command("pre-receive")
@pass_ctx
def hook_pre_receive(ctx: Context) -> None:
    """Refuse pushes that move or delete release tags or break procedures on main."""
    from registry.releases import receive as server_hook

    code = server_hook.hook_main(["pre-receive"])
    if code:
        sys.exit(code)


# -- issue: the index ------------------------------------------------------------------


def _registry(ctx: Context, *, auto_sync: bool = False, set_aside_corrupt: bool = False) -> Any:
    """An :class:`AsyncRegistry` on this repo's index (embedded SQLite unless a URL is given)."""
    from registry.api import AsyncRegistry

    return AsyncRegistry.open(
        ctx.path, ctx.database_url, auto_sync=auto_sync, set_aside_corrupt=set_aside_corrupt
    )


def _run_async(make: Callable[[], Any]) -> Any:
    import asyncio

    return asyncio.run(make())


def _sync_line(report: Any) -> str:
    what = "rebuilt" if report.rebuilt else "synced"
    counts = (
        f"+{len(report.added)} ~{len(report.updated)} -{len(report.deleted)}, "
        f"{len(report.invalid)} invalid, tags +{len(report.tags_added)} -{len(report.tags_removed)}"
    )
    commit = (report.commit or "-")[:12]
    return f"{what} {report.ref} at {commit}: {counts} ({report.duration_ms:.0f} ms)"


@cli.command()
@click.option("--quiet", is_flag=True, help="Print nothing unless something fails.")
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def sync(ctx: Context, quiet: bool, as_json: bool) -> None:
    """Bring the index up to date with git (incremental)."""

    async def go() -> Any:
        async with await _registry(ctx) as reg:
            return await reg.sync()

    report = _run_async(go)
    if as_json:
        emit_json(report)
    elif not quiet:
        click.echo(_sync_line(report))


@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def reindex(ctx: Context, as_json: bool) -> None:
    """Rebuild the index from git alone (run records are kept; a corrupt index is set aside)."""

    async def go() -> Any:
        async with await _registry(ctx, set_aside_corrupt=True) as reg:
            return await reg.reindex()

    report = _run_async(go)
    if as_json:
        emit_json(report)
    else:
        click.echo(_sync_line(report))


@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def verify(ctx: Context, as_json: bool) -> None:
    """Compare the index with git; exit 1 on any drift."""

    async def go() -> Any:
        async with await _registry(ctx) as reg:
            return await reg.verify()

    drift = _run_async(go)
    if as_json:
        emit_json({"ok": not drift, "drift": _plain(drift)})
    else:
        for d in drift:
            click.echo(d.format())
        click.echo(
            "index matches git"
            if not drift
            else f"{len(drift)} differences: run `procreg reindex` to rebuild",
            err=bool(drift),
        )
    if drift:
        sys.exit(EXIT_PROBLEM)


@cli.command()
@click.option(
    "--reconcile-every",
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Full reconcile period (events are only hints).",
)
@pass_ctx
def watch(ctx: Context, reconcile_every: float) -> None:
    """Keep the index in sync as refs move; one line per sync, until Ctrl-C."""
    from registry.index.watcher import describe_error, watch_repo

    def on_sync(report: Any) -> None:
        click.echo(_sync_line(report))

    def on_error(exc: BaseException) -> None:
        # called once per distinct error (not on every retry), never with a traceback
        click.echo(f"procreg watch: {describe_error(exc)} (still watching)", err=True)

    click.echo(f"watching {ctx.path.resolve()} (Ctrl-C to stop)", err=True)
    try:
        _run_async(
            lambda: watch_repo(
                ctx.path,
                ctx.database_url,
                on_sync=on_sync,
                on_error=on_error,
                reconcile_every=reconcile_every,
            )
        )
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


@cli.command()
@click.argument("text", required=False, default=None)
@click.option("--category", help="Only this category.")
@click.option("--tag", "tags", multiple=True, help="Must carry this tag (repeatable).")
@click.option("--status", type=click.Choice(["active", "deprecated"]))
@click.option("--sort", type=click.Choice(["relevance", "name", "health"]), default=None)
@click.option("--min-success-rate", type=click.FloatRange(0, 1), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def search(
    ctx: Context,
    text: str | None,
    category: str | None,
    tags: tuple[str, ...],
    status: str | None,
    sort: str | None,
    min_success_rate: float | None,
    limit: int,
    as_json: bool,
) -> None:
    """Full-text search over name, description, tags, parameters and docstring."""

    async def go() -> Any:
        async with await _registry(ctx, auto_sync=True) as reg:
            return await reg.search(
                text, category, tags, status, limit, sort=sort, min_success_rate=min_success_rate
            )

    hits = _run_async(go)
    if as_json:
        emit_json(hits)
        return
    _table(
        ["id", "version", "category", "valid", "runs", "ok%", "description"],
        [
            [
                h.id,
                h.version or "-",
                h.category,
                "yes" if h.valid else "NO",
                str(h.runs),
                f"{h.success_rate * 100:.0f}" if h.success_rate is not None else "-",
                _clip(h.description, 60),
            ]
            for h in hits
        ],
    )


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -- issue: migration ------------------------------------------------------------------


@cli.command()
@click.option(
    "--from",
    "source",
    required=True,
    metavar="URL_OR_FILE",
    help="sqlite:///file.db, a .db or .json path, or postgresql://...",
)
@click.option("--dry-run", is_flag=True, help="Convert and verify in memory; write nothing.")
@click.option(
    "--report",
    "report_file",
    type=click.Path(path_type=Path),
    help="Also write the JSON report to FILE.",
)
@click.option(
    "--generator",
    type=click.Choice(["builtin", "llm"]),
    default=None,
    help="Code generator (default: procreg.toml [migration] generator, else builtin).",
)
@click.option(
    "--json", "as_json", is_flag=True, help='Print JSON (errors too, as {"error": {...}}).'
)
@pass_ctx
def migrate(
    ctx: Context,
    source: str,
    dry_run: bool,
    report_file: Path | None,
    generator: str | None,
    as_json: bool,
) -> None:
    """Migrate legacy procedures into this repo: code, commits, 1.0.0 tags, verification."""
    from registry.migrate import migration
    from registry.workspace.scaffold import load_config

    store = ctx.store()
    config = load_config(store)
    gen = _generator(generator or config.migration.generator, config)

    async def go(progress: Callable[[int, int, str], None]) -> migration.MigrationReport:
        backend = None
        if not dry_run:
            from registry.index.connect import open_backend

            backend = await open_backend(store, ctx.database_url)
        try:
            return await migration.migrate(
                store, source, dry_run=dry_run, generator=gen, backend=backend, on_progress=progress
            )
        finally:
            if backend is not None:
                await backend.close()

    import asyncio

    with _progress("migrating", enabled=not as_json) as progress:
        report = asyncio.run(go(progress))
    _say_left_alone(report.checkout_skipped)
    if report_file is not None:
        report_file.write_text(report.to_json())
    if as_json:
        click.echo(report.to_json())
    else:
        click.echo(report.render_table())
    if report.counts.get("failed", 0):
        sys.exit(EXIT_PROBLEM)


def _generator(kind: str, config: Any) -> Any:
    from registry.migrate import codegen

    if kind == "builtin":
        return codegen.BuiltinGenerator()
    llm = config.migration.llm
    settings = (
        codegen.LLMSettings(llm.url, llm.model, llm.api_key_env)
        if llm.url and llm.model
        else codegen.LLMSettings.from_env()
    )
    if settings is None:
        fail(
            "the llm generator needs [migration.llm] url and model in procreg.toml "
            "(or PROCREG_LLM_URL and PROCREG_LLM_MODEL)"
        )
    return codegen.ChatCompletionsGenerator(settings)


def _say_left_alone(paths: Sequence[str]) -> None:
    """Tell the user which checkout files kept their own changes, and what to run."""
    for path in sorted(set(paths)):
        click.echo(
            f"procreg: left {path} alone: it has local changes, and the branch now holds "
            f"another version. Keep yours and commit it, or take the branch's with "
            f"`git checkout HEAD -- {path}`",
            err=True,
        )


class _progress:
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


def _register_commands() -> None:
    """Commands that live in their own modules (registry/cli/)."""
    from registry.cli import agents, runs

    for command in [*runs.COMMANDS, *agents.COMMANDS]:
        cli.add_command(command)


# -- output helpers ------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        click.echo("(none)")
        return
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _models(data: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [d.model_dump(mode="json") for d in data]


# -- entry point ------------------------------------------------------------------------


GLOBAL_WITH_VALUE = ("-C", "--database-url")
GLOBAL_FLAGS = ("--traceback",)


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
    from registry.errors import RegistryError

    args = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    show_traceback = "--traceback" in args
    as_json = "--json" in (args[: args.index("--")] if "--" in args else args)
    try:
        cli.main(args=args, prog_name="procreg", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        if as_json:
            return _json_error("UsageError", exc.format_message(), _usage_hint(exc), exc.exit_code)
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except RegistryError as exc:
        if show_traceback:
            raise
        if as_json:
            message, _, hint = str(exc).partition("; ")
            return _json_error(type(exc).__name__, message, hint or None, EXIT_PROBLEM)
        click.echo(f"procreg: error: {exc}", err=True)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        return 130
    except (BrokenPipeError, _PipeClosed):
        _quiet_stdout()
        return 0
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except Exception as exc:
        if show_traceback:
            raise
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
    return 0


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


_register_commands()
