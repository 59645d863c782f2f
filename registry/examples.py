"""Contract tests: a version's metadata examples, run in the sandbox and compared.

Each example of ``metadata.json`` gives an input and the expected output. They
are run the way a real run is (the exact files of the version, the metadata's
limits, the sandbox) but never recorded as runs. ``procreg run --examples``
reports them (:func:`check_examples`); ``procreg release`` refuses a version
whose examples fail (:class:`ExamplesGate`, the ``before_tag`` of
:func:`registry.releases.release`). Results are compared as JSON values
(:func:`json_equal`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from registry.arguments import ARGUMENT_ERROR, argument_problems
from registry.config import Config
from registry.errors import RegistryError
from registry.execution import ErrorInfo, build_request, validated_metadata
from registry.model import Example, Metadata
from registry.snapshot import Snapshot

if TYPE_CHECKING:
    from registry.gitstore import GitStore
    from registry.releases import ReleasePlan
    from registry.sandbox import Sandbox


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


class ExamplesFailed(RegistryError):
    """A version's examples do not hold; ``report`` says which and how."""

    def __init__(self, report: ExamplesReport, message: str) -> None:
        super().__init__(message)
        self.report = report


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: 1 == 1.0, but True != 1 and "1" != 1; lists in order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def run_examples(
    sandbox: Sandbox,
    snapshot: Snapshot,
    meta: Metadata,
    *,
    config: Config | None = None,
    timeout_s: float | None = None,
) -> list[ExampleResult]:
    """Run every example of ``meta`` in ``sandbox`` (synchronously) and compare results."""
    results: list[ExampleResult] = []
    for index, example in enumerate(meta.examples, start=1):
        results.append(_run_example(sandbox, snapshot, meta, index, example, config, timeout_s))
    return results


def _run_example(
    sandbox: Sandbox,
    snapshot: Snapshot,
    meta: Metadata,
    index: int,
    example: Example,
    config: Config | None,
    timeout_s: float | None,
) -> ExampleResult:
    base = {
        "index": index,
        "description": example.description,
        "input": example.input,
        "expected": example.output,
    }
    problems = argument_problems(meta, example.input)
    if problems:
        error = ErrorInfo(type=ARGUMENT_ERROR, message="; ".join(problems))
        return ExampleResult(**base, ok=False, error=error)
    request = build_request(snapshot, meta, example.input, timeout_s=timeout_s, config=config)
    outcome = sandbox.run(request)
    if not outcome.ok:
        err = outcome.error
        error = ErrorInfo(type=err.type if err else "unknown", message=err.message if err else "")
        return ExampleResult(**base, ok=False, error=error)
    return ExampleResult(**base, got=outcome.result, ok=json_equal(outcome.result, example.output))


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

    from registry import releases
    from registry.sync import worktree_config

    resolved = releases.resolve(store, proc_id, spec)
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
    """A ``before_tag`` for :func:`registry.releases.release`: refuse versions whose examples fail.

    ``release(store, ids, before_tag=ExamplesGate())`` runs every example of each
    planned version in a sandbox and raises :class:`ExamplesFailed` naming the first
    failing example before any tag is made. Without a ``sandbox`` each call uses a
    cold one of its own (no pool, nothing left running), so the gate needs no closing;
    ``close()`` and the context manager exist for symmetry.
    """

    def __init__(self, sandbox: Sandbox | None = None, config: Config | None = None) -> None:
        self._sandbox = sandbox
        self.config = config

    def __enter__(self) -> ExamplesGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: a gate's own sandboxes live for one call."""

    def __call__(self, plan: ReleasePlan, snapshot: Snapshot) -> None:
        """Run ``snapshot``'s examples; raise :class:`ExamplesFailed` if any fails."""
        from pydantic import ValidationError

        text = snapshot.text("metadata.json")
        try:
            meta = Metadata.model_validate_json(text) if text is not None else None
        except ValidationError:
            meta = None
        if meta is None or not meta.examples:
            return  # release validation reports bad metadata; no examples, no contract
        if self._sandbox is not None:
            results = run_examples(self._sandbox, snapshot, meta, config=self.config)
        else:
            from registry.sandbox import Sandbox

            section = self.config.sandbox if self.config else None
            with Sandbox(section, pool_size=0) as sandbox:
                results = run_examples(sandbox, snapshot, meta, config=self.config)
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


def examples_gate(
    store: GitStore | None = None,
    *,
    database_url: str | None = None,
    config: Config | None = None,
) -> ExamplesGate:
    """The ``before_tag`` that ``procreg release`` passes (see :class:`ExamplesGate`).

    ``store`` supplies the registry config (sandbox limits) when ``config`` is not
    given. ``database_url`` is accepted for symmetry with the other commands and not
    used: contract tests are not runs, so nothing is recorded.
    """
    del database_url
    if config is None and store is not None:
        from registry.sync import worktree_config

        config = worktree_config(store)
    return ExamplesGate(config=config)
