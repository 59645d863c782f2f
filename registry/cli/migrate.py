"""``procreg migrate``: legacy procedures into this repo, with code, commits and 1.0.0 tags.

Heavy modules are imported inside the command so that ``procreg --version`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from registry.cli._common import (
    EXIT_PROBLEM,
    Context,
    fail,
    json_option,
    pass_ctx,
    progress,
    run_async,
    say_left_alone,
)

if TYPE_CHECKING:
    from registry.config import Config


@click.command()
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
@json_option
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

    async def go(on_progress: Any) -> migration.MigrationReport:
        backend = None
        if not dry_run:
            from registry.index.connect import open_backend

            backend = await open_backend(store, ctx.database_url)
        try:
            return await migration.migrate(
                store,
                source,
                dry_run=dry_run,
                generator=gen,
                backend=backend,
                on_progress=on_progress,
            )
        finally:
            if backend is not None:
                await backend.close()

    with progress("migrating", enabled=not as_json) as on_progress:
        report = run_async(lambda: go(on_progress))
    say_left_alone(report.checkout_skipped)
    if report_file is not None:
        report_file.write_text(report.to_json())
    if as_json:
        click.echo(report.to_json())
    else:
        click.echo(report.render_table())
    if report.counts.get("failed", 0):
        sys.exit(EXIT_PROBLEM)


def _generator(kind: str, config: Config) -> Any:
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


COMMANDS = (migrate,)
"""What :mod:`registry.cli` registers."""
