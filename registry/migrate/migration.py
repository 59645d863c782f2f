"""Migration of legacy procedures into the registry, with a zero-loss proof.

For each legacy procedure: a stable id, generated code, ``metadata.json``
keeping the legacy rows verbatim, validation, one commit and a 1.0.0 release
tag; its executions become imported run records. Already-migrated procedures
(found by their legacy identity at the branch tip) are skipped, so a rerun
after a kill finishes what is left and a second run changes nothing. Finally
every migrated procedure is read back from git and each legacy field compared
with a fresh read of the source.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from registry.config import ValidationSection, parse_config
from registry.core.model import Confidence, Metadata
from registry.core.reasons import ReasonKind, reason
from registry.core.snapshot import MAIN_FILE, METADATA_FILE, FileEntry, Snapshot
from registry.core.tags import (
    format_release_message,
    parse_release_tag,
    release_tag,
    release_tag_prefix,
)
from registry.core.validation import validate_snapshot
from registry.core.versioning import BumpDecision, DiffStats
from registry.errors import ConflictError, MigrationError, NotFoundError, RegistryError
from registry.git.store import GitStore
from registry.index.contract import IndexBackend
from registry.migrate.analysis import analyse
from registry.migrate.codegen import BuiltinGenerator, Generator
from registry.migrate.convert import (
    VERSION,
    assign_ids,
    build_metadata,
    commit_message,
    decode_legacy,
    run_records,
    score,
)
from registry.migrate.legacy import (
    LegacyProcedure,
    LegacySource,
    read_source,
    same_value,
)

Progress = Callable[[int, int, str], None]
Status = Literal["migrated", "skipped", "failed"]

# -- the report ---------------------------------------------------------------------


class ProcedureResult(BaseModel):
    """What happened to one legacy procedure."""

    id: str
    legacy_id: str
    name: str
    status: Status
    confidence: float | None = None
    band: str | None = None
    generator: str | None = None
    commit: str | None = None
    tag: str | None = None
    tag_created: bool = False
    runs_imported: int = 0
    problems: list[str] = Field(default_factory=list)


class Verification(BaseModel):
    """The read-back of every migrated procedure, compared field by field."""

    procedures: int = 0
    fields_checked: int = 0
    fields_lost: int = 0
    lost: list[str] = Field(default_factory=list)
    checkout: list[str] = Field(default_factory=list)
    """Paths of migrated procedures where the checkout's index differs from the branch."""

    @property
    def line(self) -> str:
        """``verified: 101 procedures, 0 fields lost`` (and how the checkout differs, if so)."""
        text = f"verified: {self.procedures} procedures, {self.fields_lost} fields lost"
        if self.checkout:
            text += (
                f"; the checkout differs from the branch at {len(self.checkout)} path(s) "
                f"(first: {self.checkout[0]}): see `git status`"
            )
        return text


class MigrationReport(BaseModel):
    """Counts, per-procedure results and the verification of a migration."""

    source: str
    system: str
    dry_run: bool = False
    total: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    bands: dict[str, int] = Field(default_factory=dict)
    tags_created: int = 0
    runs_imported: int = 0
    procedures: list[ProcedureResult] = Field(default_factory=list)
    verification: Verification = Field(default_factory=Verification)
    checkout_skipped: list[str] = Field(default_factory=list)
    """Files the checkout update left alone because they hold the user's own changes."""

    def to_json(self) -> str:
        """The report as JSON (with ``verification.line``)."""
        data = self.model_dump(mode="json")
        data["verification"]["line"] = self.verification.line
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    def summary(self) -> str:
        """The counts on one line."""
        c, b = self.counts, self.bands
        what = "would migrate" if self.dry_run else "migrated"
        return (
            f"{what} {c.get('migrated', 0)}, skipped {c.get('skipped', 0)}, failed "
            f"{c.get('failed', 0)} of {self.total} from {self.source}; bands: approved "
            f"{b.get('approved', 0)}, review {b.get('review', 0)}, expert {b.get('expert', 0)}"
        )

    def render_table(self) -> str:
        """A plain-text table, one procedure a line, then the summary and the verification line."""
        rows = [("ID", "LEGACY", "NAME", "STATUS", "CONF", "BAND", "PROBLEMS")]
        for r in self.procedures:
            name = " ".join(r.name.split())
            name = name if len(name) <= 40 else name[:39] + "…"
            conf = f"{r.confidence:.2f}" if r.confidence is not None else "-"
            rows.append(
                (r.id, r.legacy_id, name, r.status, conf, r.band or "-", "; ".join(r.problems)[:80])
            )
        widths = [max(len(row[i]) for row in rows) for i in range(6)]
        lines = [
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:6])) + "  " + row[6]
            for row in rows
        ]
        lines += ["", self.summary(), *self.verification.lost[:20], self.verification.line]
        return "\n".join(line.rstrip() for line in lines) + "\n"


# -- verification -------------------------------------------------------------------


def compare_legacy(proc: LegacyProcedure, legacy: dict[str, Any] | None) -> tuple[int, list[str]]:
    """``(fields checked, fields lost)`` between a source read and a stored ``legacy`` object."""
    expected = [("row", [proc.row]), ("params", proc.params), ("executions", proc.executions)]
    if legacy is None or legacy.get("key") != proc.key or legacy.get("system") != proc.system:
        n = sum(len(r) for _, rows in expected for r in rows)
        return n, [f"{proc.identity}: no legacy object for this procedure ({n} fields)"]
    try:
        row, params, executions = decode_legacy(legacy)
    except (RegistryError, ValueError, TypeError) as exc:
        n = sum(len(r) for _, rows in expected for r in rows)
        return n, [f"{proc.identity}: legacy object unreadable: {exc}"]
    got = {"row": [row], "params": params, "executions": executions}
    checked, lost = 0, []
    for part, rows in expected:
        for i, source_row in enumerate(rows):
            stored = got[part][i] if i < len(got[part]) else None
            for column, value in source_row.items():
                checked += 1
                where = (
                    f"{proc.identity}: {part}[{i}].{column}"
                    if part != "row"
                    else (f"{proc.identity}: {column}")
                )
                if stored is None or column not in stored:
                    lost.append(f"{where} missing")
                elif not same_value(stored[column], value):
                    lost.append(f"{where} is {stored[column]!r}, source has {value!r}")
    return checked, lost


def verify(
    store: GitStore,
    legacy: LegacySource,
    ids: dict[str, str],
    ref: str | None,
    planned: dict[str, str] | None = None,
) -> Verification:
    """Read each migrated procedure's ``metadata.json`` at ``ref`` and compare every field.

    ``planned`` maps legacy identities to ``metadata.json`` texts not written
    (a dry run); those are checked instead of git.
    """
    v = Verification()
    for proc in legacy.procedures:
        proc_id = ids.get(proc.identity)
        if proc_id is None:
            continue
        text = (planned or {}).get(proc.identity)
        try:
            if text is None:
                if ref is None:
                    raise NotFoundError("the branch has no commits", kind="ref")
                text = store.read(proc_id, ref).files[METADATA_FILE].data.decode("utf-8")
            data = json.loads(text)
        except (NotFoundError, KeyError, ValueError) as exc:
            data = {}
            v.lost.append(f"{proc.identity}: cannot read {proc_id}/{METADATA_FILE}: {exc}")
        checked, lost = compare_legacy(proc, data.get("legacy") if isinstance(data, dict) else None)
        v.procedures += 1
        v.fields_checked += checked
        v.fields_lost += len(lost)
        v.lost += lost
    return v


# -- orchestration ------------------------------------------------------------------


def _migrated_at(store: GitStore, ref: str | None) -> tuple[dict[str, str], set[str]]:
    """``({legacy identity: id} of migrated folders, every folder id)`` at ``ref``."""
    if ref is None:
        return {}, set()
    found: dict[str, str] = {}
    ids = store.list_procedures(ref)
    for proc_id in ids:
        raw = store.read_path(f"{store.folder}/{proc_id}/{METADATA_FILE}", ref)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            continue
        src = data.get("source") if isinstance(data, dict) else None
        if isinstance(src, dict) and src.get("kind") == "migrated" and src.get("legacy_id"):
            found.setdefault(f"{src.get('system')}#{src.get('legacy_id')}", proc_id)
    return found, set(ids)


def _validation_config(store: GitStore, ref: str | None) -> ValidationSection:
    raw = store.read_path("procreg.toml", ref) if ref else None
    return parse_config(raw).validation


def _release(store: GitStore, proc_id: str, commit: str) -> tuple[str | None, bool]:
    """Tag ``commit`` as 1.0.0 unless the procedure has that or another release already.

    Returns the 1.0.0 tag name (None when another release exists) and whether
    this call created it.
    """
    with store.release_lock():
        return _release_locked(store, proc_id, commit)


def _release_locked(store: GitStore, proc_id: str, commit: str) -> tuple[str | None, bool]:
    name = release_tag(proc_id, VERSION)
    if store.tag(name) is not None:
        return name, False
    for info in store.tags(release_tag_prefix(proc_id)):
        parsed = parse_release_tag(info.name)
        if parsed is not None and parsed[0] == proc_id:
            return None, False
    tree_id = store.read(proc_id, commit).tree_id or ""
    added, removed, files = store.diff_stats(None, tree_id)
    migrated = reason(ReasonKind.MIGRATED_FROM_LEGACY)
    decision = BumpDecision(
        bump="initial", breaking=False, reasons=[migrated.words], details=[migrated]
    )
    stats = DiffStats(lines_added=added, lines_removed=removed, files_changed=files)
    message = format_release_message(proc_id, VERSION, decision, stats, None, tree_id)
    try:
        store.create_tag(name, commit, message)
    except ConflictError:  # another migration of the same source tagged it first
        return name, False
    return name, True


def _migration_commit(store: GitStore, proc_id: str, tip: str) -> str:
    commits = store.folder_commits(proc_id, tip)
    ours = [c for c in commits if c.message.startswith("feat: Convert procedure ")]
    return (ours[-1] if ours else commits[-1]).id if commits else tip


def _generate(
    proc: LegacyProcedure, proc_id: str, generator: Generator, config: ValidationSection
) -> tuple[Metadata | None, dict[str, FileEntry], list[str]]:
    """Generate, build metadata, validate; a non-built-in generator falls back on failure."""
    attempts: list[Generator] = [generator]
    if not isinstance(generator, BuiltinGenerator):
        attempts.append(BuiltinGenerator())
    problems: list[str] = []
    for gen in attempts:
        try:
            code = gen.generate(proc)
            a = analyse(proc)
            meta = build_metadata(proc, proc_id, code, score(proc, a, code, True))
        except (RegistryError, ValueError) as exc:
            problems.append(f"{gen.name}: {exc}")
            continue
        files = {
            MAIN_FILE: FileEntry(code.source.encode("utf-8")),
            METADATA_FILE: FileEntry(meta.to_json().encode("utf-8")),
        }
        result = validate_snapshot(Snapshot(proc_id, files), config)
        if result.ok:
            if problems:
                meta.confidence = Confidence(
                    score=meta.confidence.score if meta.confidence else 0.0,
                    band=meta.confidence.band if meta.confidence else "expert",
                    notes=[*(meta.confidence.notes if meta.confidence else []), *problems],
                )
                files[METADATA_FILE] = FileEntry(meta.to_json().encode("utf-8"))
            return meta, files, problems
        problems.append(f"{gen.name}: " + "; ".join(p.format() for p in result.problems[:3]))
    return None, {}, problems


async def migrate(
    store: GitStore,
    source: str,
    *,
    dry_run: bool = False,
    generator: Generator | None = None,
    backend: IndexBackend | None = None,
    on_progress: Progress | None = None,
    branch: str | None = None,
) -> MigrationReport:
    """Migrate every procedure of ``source`` into ``store`` (see the module docstring).

    ``dry_run`` generates and validates everything and writes nothing (the
    verification then checks the files that would be written). ``backend``
    receives the imported run records (skipped when ``None``). ``on_progress``
    is called with ``(done, total, name)`` after each procedure.
    """
    legacy = await read_source(source)
    generator = generator or BuiltinGenerator()
    ref_name = store.branch_ref(branch)
    tip = store.try_resolve(ref_name)
    known, occupied = _migrated_at(store, tip)
    ids = assign_ids(legacy.procedures, known, occupied)
    config = _validation_config(store, tip)
    # Commits before checkouts: catch up what an interrupted run left, and say which
    # commit the checkout reflects before writing any (see GitStore.begin_checkout_update).
    on_checkout = not dry_run and store.workdir is not None and ref_name == store.current_branch()
    skipped: list[str] = []
    if not dry_run:
        store.identity()  # no git identity: fail before the first procedure, not on each
        if on_checkout:
            skipped += store.begin_checkout_update()
    report = MigrationReport(source=legacy.source, system=legacy.system, dry_run=dry_run)
    report.total = len(legacy.procedures)
    planned: dict[str, str] = {}
    present: dict[str, str] = {}
    for done, proc in enumerate(legacy.procedures, 1):
        proc_id = ids[proc.identity]
        result = ProcedureResult(id=proc_id, legacy_id=proc.key, name=proc.name, status="skipped")
        try:
            if proc.identity in known:
                await _finish_existing(store, proc, proc_id, ref_name, result, backend, dry_run)
            else:
                await _migrate_one(
                    store,
                    proc,
                    proc_id,
                    ref_name,
                    generator,
                    config,
                    result,
                    backend,
                    dry_run,
                    planned,
                )
        except MigrationError as exc:  # git and index errors stop the run: rerun resumes
            result.status = "failed"
            result.problems.append(str(exc))
        report.procedures.append(result)
        if result.status != "failed":
            present[proc.identity] = proc_id
        report.counts[result.status] = report.counts.get(result.status, 0) + 1
        if result.band and result.status != "failed":
            report.bands[result.band] = report.bands.get(result.band, 0) + 1
        report.tags_created += result.tag_created
        report.runs_imported += result.runs_imported
        if on_progress is not None:
            on_progress(done, report.total, proc.name)
    for key in ("migrated", "skipped", "failed"):
        report.counts.setdefault(key, 0)
    for key in ("approved", "review", "expert"):
        report.bands.setdefault(key, 0)
    if on_checkout:
        skipped += store.finish_checkout_update()
    report.checkout_skipped = sorted(set(skipped))
    fresh = await read_source(source)
    tip = store.try_resolve(ref_name)
    report.verification = verify(store, fresh, present, tip, planned if dry_run else None)
    if on_checkout:
        report.verification.checkout = store.checkout_differences(present.values())
    return report


async def _finish_existing(
    store: GitStore,
    proc: LegacyProcedure,
    proc_id: str,
    ref_name: str,
    result: ProcedureResult,
    backend: IndexBackend | None,
    dry_run: bool,
) -> None:
    tip = store.resolve(ref_name)
    data = json.loads(store.read(proc_id, tip).files[METADATA_FILE].data)
    conf = data.get("confidence") or {}
    result.confidence, result.band = conf.get("score"), conf.get("band")
    result.generator = (data.get("source") or {}).get("generator")
    result.problems.append("already migrated")
    if dry_run:
        return
    commit = _migration_commit(store, proc_id, tip)
    tag, created = _release(store, proc_id, commit)
    result.commit, result.tag, result.tag_created = commit, tag, created
    if created:
        result.problems.append(f"created missing tag {tag}")
    if backend is not None and proc.executions:
        info = store.tag(tag) if tag else None
        at = info.commit if info else commit
        records = run_records(proc, proc_id, at, store.read(proc_id, at).tree_id)
        result.runs_imported = await backend.record_executions(records)


async def _migrate_one(
    store: GitStore,
    proc: LegacyProcedure,
    proc_id: str,
    ref_name: str,
    generator: Generator,
    config: ValidationSection,
    result: ProcedureResult,
    backend: IndexBackend | None,
    dry_run: bool,
    planned: dict[str, str],
) -> None:
    # Code generation is CPU-bound but short; it stays on the loop for determinism.
    meta, files, problems = _generate(proc, proc_id, generator, config)
    result.problems += problems
    if meta is None:
        result.status = "failed"
        return
    assert meta.confidence is not None
    result.status = "migrated"
    result.confidence, result.band = meta.confidence.score, meta.confidence.band
    result.generator = meta.source.generator
    if dry_run:
        planned[proc.identity] = files[METADATA_FILE].data.decode("utf-8")
        return
    commit = store.write({proc_id: files}, commit_message(proc, meta), branch=ref_name)
    result.commit = commit
    result.tag, result.tag_created = _release(store, proc_id, commit)
    if backend is not None and proc.executions:
        tree_id = store.read(proc_id, commit).tree_id
        result.runs_imported = await backend.record_executions(
            run_records(proc, proc_id, commit, tree_id)
        )


def migrate_sync(store: GitStore, source: str, **kwargs: Any) -> MigrationReport:
    """:func:`migrate` for callers without an event loop (runs it with ``asyncio.run``)."""
    return asyncio.run(migrate(store, source, **kwargs))
