"""Contract tests: a version's metadata examples, run in the sandbox and compared.

Each example of ``metadata.json`` gives an input and the expected output. They
are run the way a real run is (the exact files of the version, the metadata's
limits, the sandbox). ``procreg run --examples`` reports them
(:func:`check_examples`, not recorded: a person asked to look); ``procreg
release`` refuses a version whose examples fail (:class:`ExamplesGate`, the
``before_tag`` of :func:`registry.releases.release.release`: that version alone is
not tagged, the others are), and records each of those
runs with the caller ``release``: they run the version's code in the sandbox
like any run. Results are compared as JSON values
(:func:`registry.core.jsonvalue.json_equal`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from registry.config import Config
from registry.core.arguments import ARGUMENT_ERROR, argument_problems
from registry.core.jsonvalue import json_equal
from registry.core.model import Example, Metadata, parse_metadata
from registry.core.snapshot import METADATA_FILE, Snapshot
from registry.errors import EnvironmentBuildError, ExamplesFailed
from registry.runs.execution import (
    ENVIRONMENT_BUILD,
    ErrorInfo,
    RunResult,
    Usage,
    build_request,
    deliver_records,
    execution_record,
    locked_environment,
    validated_metadata,
)

if TYPE_CHECKING:
    from registry.git.store import GitStore
    from registry.index.contract import ExecutionRecord
    from registry.releases.plan import ReleasePlan
    from registry.sandbox import RunOutcome, Sandbox

RELEASE_CALLER = "release"
"""The caller recorded for the example runs of ``procreg release``'s gate."""


class ExampleResult(BaseModel):
    """One example of the metadata run as a contract test."""

    index: int
    description: str
    input: dict[str, Any]
    expected: Any
    got: Any = None
    ok: bool
    error: ErrorInfo | None = None


class ExamplesReport(BaseModel):
    """Every example of one version, run in the sandbox."""

    id: str
    version: str | None
    commit: str | None
    ok: bool
    examples: list[ExampleResult]


def run_examples(
    sandbox: Sandbox,
    snapshot: Snapshot,
    meta: Metadata,
    *,
    config: Config | None = None,
    timeout_s: float | None = None,
) -> list[ExampleResult]:
    """Run every example of ``meta`` in ``sandbox`` (synchronously) and compare results."""
    return [r for r, _ in _run_all(sandbox, snapshot, meta, config=config, timeout_s=timeout_s)]


def _run_all(
    sandbox: Sandbox,
    snapshot: Snapshot,
    meta: Metadata,
    *,
    config: Config | None = None,
    timeout_s: float | None = None,
) -> list[tuple[ExampleResult, RunOutcome | None]]:
    return [
        _run_example(sandbox, snapshot, meta, index, example, config, timeout_s)
        for index, example in enumerate(meta.examples, start=1)
    ]


def _run_example(
    sandbox: Sandbox,
    snapshot: Snapshot,
    meta: Metadata,
    index: int,
    example: Example,
    config: Config | None,
    timeout_s: float | None,
) -> tuple[ExampleResult, RunOutcome | None]:
    base = {
        "index": index,
        "description": example.description,
        "input": example.input,
        "expected": example.output,
    }
    problems = argument_problems(meta, example.input)
    if problems:
        error = ErrorInfo(type=ARGUMENT_ERROR, message="; ".join(problems))
        return ExampleResult(**base, ok=False, error=error), None
    try:
        env = locked_environment(snapshot, config)
    except EnvironmentBuildError as exc:
        error = ErrorInfo(type=ENVIRONMENT_BUILD, message=str(exc))
        return ExampleResult(**base, ok=False, error=error), None
    request = build_request(
        snapshot, meta, example.input, timeout_s=timeout_s, config=config, env=env
    )
    outcome = sandbox.run(request)
    if not outcome.ok:
        err = outcome.error
        error = ErrorInfo(type=err.type if err else "unknown", message=err.message if err else "")
        return ExampleResult(**base, ok=False, error=error), outcome
    ok = json_equal(outcome.result, example.output)
    return ExampleResult(**base, got=outcome.result, ok=ok), outcome


async def check_examples(
    store: GitStore,
    proc_id: str,
    spec: str | None = None,
    *,
    sandbox: Sandbox,
    timeout_s: float | None = None,
) -> ExamplesReport:
    """Run the examples of ``proc_id`` at ``spec`` (never recorded as runs)."""
    import anyio

    from registry.config import worktree_config
    from registry.releases import history

    resolved = history.resolve(store, proc_id, spec)
    meta, invalid = validated_metadata(store, resolved)
    if meta is None:
        from registry.errors import ValidationFailed

        raise ValidationFailed([], invalid)
    config = worktree_config(store)
    results = await anyio.to_thread.run_sync(
        lambda: run_examples(sandbox, resolved.snapshot, meta, config=config, timeout_s=timeout_s)
    )
    return ExamplesReport(
        id=resolved.id,
        version=resolved.version,
        commit=resolved.commit,
        ok=all(r.ok for r in results),
        examples=results,
    )


def describe_failure(example: ExampleResult) -> str:
    """One line naming a failing example: description, input, expected, got."""
    what = f"example {example.index}" + (f" ({example.description})" if example.description else "")
    got = (
        f"{example.error.type}: {example.error.message}"
        if example.error is not None
        else json.dumps(example.got, ensure_ascii=False, default=str)
    )
    return (
        f"{what}: input {json.dumps(example.input, ensure_ascii=False, default=str)}, "
        f"expected {json.dumps(example.expected, ensure_ascii=False, default=str)}, got {got}"
    )


class ExamplesGate:
    """A ``before_tag`` for ``releases.release.release``: refuse versions whose examples fail.

    ``release(store, ids, before_tag=ExamplesGate())`` runs every example of each
    planned version in a sandbox; for a version whose examples fail the gate raises
    :class:`ExamplesFailed` naming the first failing example, and ``release`` does not
    tag that version but reports it with ``refused`` (the other versions are tagged).
    Without a ``sandbox`` each call uses a cold one of its own (no pool, nothing
    left running). Each example run is passed to ``record`` as the run record it
    is (caller ``release``); :func:`examples_gate` delivers them to the index
    when the gate is closed.
    """

    def __init__(
        self,
        sandbox: Sandbox | None = None,
        config: Config | None = None,
        record: Callable[[ExecutionRecord], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._sandbox = sandbox
        self.config = config
        self._record = record
        self._on_close = on_close

    def __enter__(self) -> ExamplesGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Deliver the example runs' records (when the gate was made to)."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def __call__(self, plan: ReleasePlan, snapshot: Snapshot) -> None:
        """Run ``snapshot``'s examples; raise :class:`ExamplesFailed` if any fails."""
        meta = parse_metadata(snapshot.text(METADATA_FILE))
        if meta is None or not meta.examples:
            return  # release validation reports bad metadata; no examples, no contract
        started_at = datetime.now(UTC)
        if self._sandbox is not None:
            ran = _run_all(self._sandbox, snapshot, meta, config=self.config)
        else:
            from registry.sandbox import Sandbox

            section = self.config.sandbox if self.config else None
            with Sandbox(section, pool_size=0) as sandbox:
                ran = _run_all(sandbox, snapshot, meta, config=self.config)
        if self._record is not None:
            for _, outcome in ran:
                if outcome is not None:
                    self._record(_record_of(plan, snapshot, outcome, started_at))
        results = [r for r, _ in ran]
        failed = [r for r in results if not r.ok]
        if failed:
            report = ExamplesReport(
                id=plan.id, version=plan.version, commit=plan.commit, ok=False, examples=results
            )
            more = f" ({len(failed) - 1} more failing)" if len(failed) > 1 else ""
            raise ExamplesFailed(
                report,
                f"{plan.id} {plan.version} not released: {describe_failure(failed[0])}{more}; "
                f"fix the code or the example, then release again",
            )


def _record_of(
    plan: ReleasePlan,
    snapshot: Snapshot,
    outcome: RunOutcome,
    started_at: datetime,
) -> ExecutionRecord:
    """The run record of one example run of the release gate."""
    usage = Usage()
    if outcome.usage is not None:
        usage = Usage(
            cpu_ms=outcome.usage.cpu_user_ms + outcome.usage.cpu_system_ms,
            max_rss_kb=outcome.usage.max_rss_kb,
        )
    error = outcome.error
    result = RunResult(
        ok=outcome.ok,
        error=ErrorInfo(type=error.type, message=error.message) if error else None,
        duration_ms=outcome.duration_ms,
        id=plan.id,
        version=plan.version,
        commit=plan.commit,
        tree_id=snapshot.tree_id or plan.tree_id or None,
        run_id=uuid.uuid4().hex,
        usage=usage,
        isolation=outcome.isolation,
    )
    return execution_record(result, started_at, RELEASE_CALLER)


def examples_gate(
    store: GitStore | None = None,
    *,
    database_url: str | None = None,
    config: Config | None = None,
) -> ExamplesGate:
    """The ``before_tag`` that ``procreg release`` passes (see :class:`ExamplesGate`).

    ``store`` supplies the registry config (sandbox limits) when ``config`` is not
    given; with a ``store``, the example runs are recorded (caller ``release``) in
    its index (``database_url``, else the default) when the gate is closed,
    spooled if the index is unreachable.
    """
    if store is None:
        return ExamplesGate(config=config)
    if config is None:
        from registry.config import worktree_config

        config = worktree_config(store)
    records: list[ExecutionRecord] = []

    def deliver() -> None:
        if records:
            import anyio

            anyio.run(deliver_records, store, list(records), database_url)
            records.clear()

    return ExamplesGate(config=config, record=records.append, on_close=deliver)
