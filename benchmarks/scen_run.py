"""Execution scenarios: run overhead of a no-op procedure (cold, warm) and run-record ingest.

Run overhead is timed at two levels: the sandbox alone (``Sandbox.run`` of a
no-op ``main.py``) and the full path (resolve the version from its tag, read
the code from git objects, validate, check arguments, run in the sandbox,
record the run): warm through ``Registry.run`` (a sandbox started ahead,
batched records) and cold through ``execution.run`` with no pool (a new
sandbox per run, as ``procreg run`` does). Every run has the whole isolation
engine (bubblewrap, seccomp, a cgroup). A *warm* run is one that finds a warm
sandbox waiting (the pool is refilled, unmeasured, between runs); the
*sustained* figure runs back to back, so the pool's refill (a new sandbox
each run) is the bound. Baseline: ``python -c`` running the same
function in a new process, the naive way to isolate a call.

Ingest feeds execution records to ``record_executions`` in batches; the
baseline is the naive logger: one INSERT and one commit per record.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Context,
    PgDatabase,
    Row,
    bench_env,
    log,
    stats,
    timed,
    timed_after,
)
from registry.api import Registry
from registry.core.model import Metadata
from registry.git.store import GitStore
from registry.index.connect import open_backend
from registry.index.contract import ExecutionRecord
from registry.releases import release as releases
from registry.runs import execution
from registry.sandbox import RunRequest, Sandbox, sandbox_python

NOOP = '''"""noop: returns its input, does nothing else."""


def main(n: int) -> int:
    """Return n."""
    return n
'''


def make_repo(base: Path) -> Path:
    """A one-procedure registry with ``noop`` released as 1.0.0."""
    root = base / "repo"
    folder = root / "procedures" / "noop"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(NOOP)
    meta = Metadata.model_validate(
        {
            "id": "noop",
            "name": "No-op",
            "description": "benchmark procedure",
            "parameters": [{"name": "n", "type": "integer"}],
            "returns": {"type": "integer"},
        }
    )
    (folder / "metadata.json").write_text(meta.to_json())
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "feat: noop"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=bench_env())
    releases.release(GitStore.open(root), ["noop"])
    return root


async def _cold_full(root: Path, runs: int) -> list[float]:
    store = GitStore.open(root)
    async with await open_backend(store) as backend:
        recorder = execution.open_recorder(store, backend)
        try:
            with Sandbox(pool_size=0) as box:
                samples = []
                for i in range(runs + 2):
                    start = time.perf_counter()
                    result = await execution.run(
                        store, recorder, "noop", None, {"n": i}, sandbox=box
                    )
                    if i >= 2:
                        samples.append((time.perf_counter() - start) * 1000)
                    if not result.ok:
                        raise RuntimeError(f"cold run failed: {result.error}")
        finally:
            await recorder.close()
    return samples


def scenario_run(ctx: Context) -> list[Row]:
    """No-op run overhead, warm and cold, in the sandbox and through the full path."""
    warm_n, cold_n = ctx.reps(200, 500), ctx.reps(40, 100)
    python = sandbox_python()
    code = "import json\ndef main(n):\n    return n\nprint(json.dumps(main(1)))"
    base = stats(
        timed(lambda: subprocess.run([python, "-c", code], capture_output=True, check=True), cold_n)
    )
    base_name = "python -c (a fresh process per call)"
    request = RunRequest(files={"main.py": NOOP}, kwargs={"n": 1})
    log(f"sandbox warm x{warm_n}, cold x{cold_n}")
    with Sandbox(pool_size=2) as sandbox:
        refill = lambda: sandbox.wait_warm(30)  # noqa: E731
        warm = stats(timed_after(lambda: sandbox.run(request, warm=True), refill, warm_n, 5))
        sustained = stats(timed(lambda: sandbox.run(request, warm=True), warm_n, warmup=5))
        cold = stats(timed_after(lambda: sandbox.run(request, warm=False), refill, cold_n, 2))
        layers = {layer.name: layer.active for layer in sandbox.layers()}
    with tempfile.TemporaryDirectory(prefix="procreg-bench-run-") as tmp:
        root = make_repo(Path(tmp))
        log(f"Registry.run warm x{warm_n}")
        with Registry.open(root) as reg:
            for i in range(10):
                reg.run("noop", n=i)
            box = reg._core.runner._sandbox  # the registry's own warm pool
            assert box is not None

            def one() -> None:
                result = reg.run("noop", n=1)
                if not result.ok:
                    raise RuntimeError(f"run failed: {result.error}")

            full_warm = stats(timed_after(one, lambda: box.wait_warm(30), warm_n, warmup=0))
        log(f"full path cold x{cold_n}")
        full_cold = stats(asyncio.run(_cold_full(root, cold_n)))
    extra = {"layers": layers, "sandbox_python": python, "before_engine": BEFORE_ENGINE}
    return [
        Row("run", "warm: Registry.run (full path)", "no-op", full_warm, base_name, base,
            target="< 8 ms median", met=full_warm["median_ms"] < 8, extra=extra),
        Row("run", "cold: execution.run, no pool (full path)", "no-op", full_cold, base_name,
            base, target="< 60 ms median", met=full_cold["median_ms"] < 60, extra=extra),
        Row("run", "warm: Sandbox.run (sandbox only)", "no-op", warm, base_name, base,
            target="< 8 ms median", met=warm["median_ms"] < 8, extra=extra),
        Row("run", "sustained: Sandbox.run back to back (sandbox only)", "no-op", sustained,
            base_name, base, target=None, met=None, extra=extra),
        Row("run", "cold: Sandbox.run (sandbox only)", "no-op", cold, base_name, base,
            target="< 60 ms median", met=cold["median_ms"] < 60, extra=extra),
    ]  # fmt: skip


# The same figures before the isolation engine (2026-11-26, same machine, medians in ms):
# pre-forked workers sharing one zygote, no namespaces but net, no seccomp, no cgroup.
BEFORE_ENGINE = {
    "warm full path": 3.3,
    "cold full path": 14.6,
    "warm sandbox": 2.2,
    "cold sandbox": 12.9,
}


# -- ingest --------------------------------------------------------------------------------


def make_records(total: int) -> list[ExecutionRecord]:
    """Realistic records: 50 procedures, 3 versions, 1 in 10 failing."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        ExecutionRecord(
            run_id=uuid.uuid4().hex,
            id=f"proc-{i % 50}",
            version=f"1.{i % 3}.0",
            commit=f"{i % 97:040x}",
            tree_id=f"{i % 89:040x}",
            python_version="3.11.7",
            caller="bench",
            started_at=start + timedelta(milliseconds=i),
            duration_ms=float(i % 500) + 0.25,
            outcome="failure" if i % 10 == 0 else "success",
            error_type="ValueError" if i % 10 == 0 else None,
            error_message="bad input" if i % 10 == 0 else None,
            cpu_ms=float(i % 300),
            max_rss_kb=20_000 + i % 1000,
        )
        for i in range(total)
    ]


NAIVE_TABLE = (
    "CREATE TABLE naive_runs (run_id text primary key, id text, version text, commit_id text,"
    " started_at text, duration_ms double precision, outcome text, error_type text,"
    " error_message text)"
)
NAIVE_INSERT = "INSERT INTO naive_runs VALUES ({})"


def _naive_values(r: ExecutionRecord) -> tuple[Any, ...]:
    return (r.run_id, r.id, r.version, r.commit, r.started_at.isoformat(), r.duration_ms,
            r.outcome, r.error_type, r.error_message)  # fmt: skip


async def _ingest(index: Any, records: list[ExecutionRecord], batch: int) -> float:
    start = time.perf_counter()
    stored = 0
    for i in range(0, len(records), batch):
        stored += await index.record_executions(records[i : i + batch])
    seconds = time.perf_counter() - start
    if stored != len(records):
        raise RuntimeError(f"stored {stored} of {len(records)} records")
    return len(records) / seconds


async def _pg_rates(records: list[ExecutionRecord], batch: int, reps: int) -> list[float]:
    from registry.index.postgres import PostgresIndex

    rates = []
    for _ in range(reps):
        async with PgDatabase() as url, await PostgresIndex.connect(url) as index:
            rates.append(await _ingest(index, records, batch))
    return rates


async def _pg_naive(records: list[ExecutionRecord]) -> float:
    import asyncpg

    async with PgDatabase() as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(NAIVE_TABLE)
            sql = NAIVE_INSERT.format(", ".join(f"${i}" for i in range(1, 10)))
            start = time.perf_counter()
            for r in records:  # autocommit: one transaction per record
                await conn.execute(sql, *_naive_values(r))
            return len(records) / (time.perf_counter() - start)
        finally:
            await conn.close()


async def _sqlite_rates(records: list[ExecutionRecord], batch: int, reps: int) -> list[float]:
    from registry.index.sqlite import SqliteIndex

    rates = []
    with tempfile.TemporaryDirectory(prefix="procreg-bench-ingest-") as tmp:
        for n in range(reps):
            async with await SqliteIndex.connect(Path(tmp) / f"i{n}.sqlite3") as index:
                rates.append(await _ingest(index, records, batch))
    return rates


def _sqlite_naive(records: list[ExecutionRecord]) -> float:
    with tempfile.TemporaryDirectory(prefix="procreg-bench-ingest-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "naive.sqlite3", isolation_level=None)
        try:
            conn.execute(NAIVE_TABLE)
            sql = NAIVE_INSERT.format(", ".join("?" * 9))
            start = time.perf_counter()
            for r in records:
                conn.execute(sql, _naive_values(r))
            return len(records) / (time.perf_counter() - start)
        finally:
            conn.close()


def _rate_figure(rates: list[float]) -> dict[str, Any]:
    """Records per second; ``median_ms`` is the time per 1,000 records so ratios read alike."""
    ordered = sorted(rates)
    median = ordered[len(ordered) // 2]
    return {
        "n": len(rates),
        "value": round(median),
        "unit": "records/s",
        "median_ms": round(1_000_000 / median, 3),
        "min_records_per_s": round(ordered[0]),
        "max_records_per_s": round(ordered[-1]),
    }


def scenario_ingest(ctx: Context) -> list[Row]:
    """Run-record ingest throughput into PostgreSQL and SQLite, batches of 1,000."""
    total = ctx.reps(20_000, 50_000)
    reps = ctx.reps(3, 5)
    records = make_records(total)
    naive_records = records[: ctx.reps(2_000, 5_000)]
    rows = []
    batches = [1_000] if not ctx.full else [100, 1_000, 10_000]
    for name in ctx.backends:
        log(f"ingest {name}: {total:,} records x{reps}")
        if name == "postgres":
            base = _rate_figure([asyncio.run(_pg_naive(naive_records))])
        else:
            base = _rate_figure([_sqlite_naive(naive_records)])
        for batch in batches:
            if name == "postgres":
                rates = asyncio.run(_pg_rates(records, batch, reps))
            else:
                rates = asyncio.run(_sqlite_rates(records, batch, reps))
            figure = _rate_figure(rates)
            target = ">= 10,000 records/s" if name == "postgres" and batch == 1_000 else None
            rows.append(
                Row("ingest", f"ingest, batches of {batch:,} ({name})", f"{total:,} records",
                    figure, "naive: one INSERT + commit per record", base, target=target,
                    met=(figure["value"] >= 10_000) if target else None,
                    note="median_ms = milliseconds per 1,000 records")
            )  # fmt: skip
    return rows
