"""``procreg init``, ``new``, ``check``, ``list``, ``show``, ``search`` and ``schema``: procedures.

Heavy modules are imported inside the commands so that ``procreg --version`` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from registry.cli._common import (
    EXIT_PROBLEM,
    Context,
    clip,
    emit_json,
    fail,
    json_option,
    pass_ctx,
    plain,
    table,
    with_registry,
)

if TYPE_CHECKING:
    from registry.index.contract import Order
    from registry.releases.plan import ReleasePlan
    from registry.workspace.scaffold import CheckReport, ShownProcedure


@click.command()
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


@click.command()
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


@click.command()
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
        from registry.releases.plan import check_base

        ctx.check_history(store)
        plans = check_base(store, base)
    if as_json:
        data = report.model_dump(mode="json")
        data["problems"] = [p.model_dump(mode="json") for p in report.problems]
        if plans is not None:
            data["releases"] = plain(plans)
        emit_json(data)
    else:
        _say_checked(report, plans, fmt)
    if not report.ok:
        sys.exit(EXIT_PROBLEM)


def _say_checked(report: CheckReport, plans: list[ReleasePlan] | None, fmt: str) -> None:
    if fmt == "markdown":  # a pull-request comment: the table and the problems, nothing else
        from registry.releases.plan import render_markdown

        click.echo(render_markdown(plans, report.problems), nl=False)
        return
    for problem in report.problems:
        click.echo(problem.format())
    if plans is not None:
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


def _under(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


@click.command("list")
@click.option("--ref", default="HEAD", show_default=True)
@json_option
@pass_ctx
def list_(ctx: Context, ref: str, as_json: bool) -> None:
    """List the procedures at REF with their latest release."""
    from registry.releases.channels import current_channel_versions
    from registry.workspace.scaffold import list_procedures

    store = ctx.store()
    rows = list_procedures(store, ref)
    current = current_channel_versions(store) if rows else {}
    if as_json:
        emit_json([{**plain(r), "channels": current.get(r.id, {})} for r in rows])
        return
    table(
        ["id", "version", "channels", "category", "valid", "name"],
        [
            [
                r.id,
                r.version or "-",
                channel_cell(current.get(r.id, {})),
                r.category,
                "yes" if r.valid else "NO",
                r.name,
            ]
            for r in rows
        ],
    )


def channel_cell(channels: Mapping[str, str | None]) -> str:
    """``stable=1.2.0 beta=1.3.0`` (``stable=out-of-service`` while out of service), or ``-``."""
    cells = [f"{name}={version or 'out-of-service'}" for name, version in sorted(channels.items())]
    return " ".join(cells) or "-"


@click.command()
@click.argument("ref_spec", metavar="ID[@SPEC]")
@click.option("--ref", default=None, help="Show the procedure as it is at this git ref.")
@click.option("--source", is_flag=True, help="Print main.py.")
@json_option
@pass_ctx
def show(ctx: Context, ref_spec: str, ref: str | None, source: bool, as_json: bool) -> None:
    """Show a procedure: latest release, ID@SPEC (version, range, channel, HEAD) or --ref."""
    from registry.releases.channels import current_channel_versions
    from registry.workspace.scaffold import show_procedure

    store = ctx.store()
    detail = show_procedure(store, ref_spec, ref=ref)
    chans = current_channel_versions(store, [detail.id]).get(detail.id, {})
    if as_json:
        data = plain(detail)
        if not source:
            data.pop("source", None)
        data["channels"] = chans
        emit_json(data)
        return
    if source:
        click.echo(detail.source, nl=False)
        return
    _say_shown(detail, chans)


def _say_shown(detail: ShownProcedure, channels: Mapping[str, str | None]) -> None:
    meta = detail.metadata
    click.echo(f"{meta.id} {detail.version or '(unreleased)'}  {meta.name}")
    click.echo(f"  commit:   {detail.commit}")
    click.echo(f"  channels: {channel_cell(channels)}")
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
    if meta.requirements:
        click.echo(f"  requirements: {', '.join(meta.requirements)}")
    if detail.lock is not None:
        click.echo(f"  locked ({detail.lock[:12]}):")
        for dist in detail.locked:
            modules = f"  (imports {', '.join(dist.modules)})" if dist.modules else ""
            click.echo(f"    {dist.name}=={dist.version}{modules}")


@click.command()
def schema() -> None:
    """Print the JSON Schema of metadata.json."""
    from registry.core.model import json_schema

    emit_json(json_schema())


@click.command()
@click.argument("text", required=False, default=None)
@click.option("--category", help="Only this category.")
@click.option("--tag", "tags", multiple=True, help="Must carry this tag (repeatable).")
@click.option("--status", type=click.Choice(["active", "deprecated"]))
@click.option(
    "--sort",
    type=click.Choice(["relevance", "name", "health"]),
    default=None,
    help="relevance (with TEXT), name (by id, as shown) or health (success rate).",
)
@click.option("--min-success-rate", type=click.FloatRange(0, 1), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@json_option
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
    hits = with_registry(
        ctx,
        lambda reg: reg.search(
            text,
            category,
            tags,
            status,
            limit,
            sort=cast("Order | None", sort),
            min_success_rate=min_success_rate,
        ),
        auto_sync=True,
    )
    if as_json:
        emit_json(hits)
        return
    table(
        ["id", "version", "channels", "category", "valid", "runs", "ok%", "description"],
        [
            [
                h.id,
                h.version or "-",
                channel_cell(h.channels),
                h.category,
                "yes" if h.valid else "NO",
                str(h.runs),
                f"{h.success_rate * 100:.0f}" if h.success_rate is not None else "-",
                clip(h.description, 60),
            ]
            for h in hits
        ],
    )


COMMANDS = (init, new, check, list_, show, schema, search)
"""What :mod:`registry.cli` registers."""
