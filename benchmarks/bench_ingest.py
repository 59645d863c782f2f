"""Run-record ingest throughput of both index backends.

Feeds ``--total`` execution records in batches of ``--batch`` (repeatable) to
``record_executions`` on a fresh SQLite file and a fresh PostgreSQL database, then
re-delivers the same records once (every one a duplicate, as after a spool replay).
Each setting runs ``--repeat`` times on a fresh store; the median is reported.
Prints a table and writes ``benchmarks/results/ingest.json`` with machine facts.

    .venv/bin/python benchmarks/bench_ingest.py [--total 50000] [--batch 1000 ...]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--no-pg]

The PostgreSQL URL names a server where a scratch database may be created (and dropped).
Target: >= 10,000 records/s on PostgreSQL with batches of 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry.index import ExecutionRecord, IndexBackend
from registry.index_postgres import PostgresIndex
from registry.index_sqlite import SqliteIndex

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
DEFAULT_PG = os.environ.get("PROCREG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_PG_RPS = 10_000


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


async def ingest(index: IndexBackend, records: list[ExecutionRecord], batch: int) -> dict[str, Any]:
    """Time the first delivery and a full re-delivery of ``records``."""
    row: dict[str, Any] = {"batch": batch, "records": len(records)}
    for label in ("new", "redelivered"):
        stored = 0
        began = time.perf_counter()
        for start in range(0, len(records), batch):
            stored += await index.record_executions(records[start : start + batch])
        seconds = time.perf_counter() - began
        row[f"{label}_seconds"] = round(seconds, 4)
        row[f"{label}_per_second"] = round(len(records) / seconds)
        row[f"{label}_stored"] = stored
    assert row["new_stored"] == len(records) and row["redelivered_stored"] == 0
    assert await index.count_executions() == len(records)
    return row


def median_row(backend: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The sample with the median first-delivery rate, with every sample's rate kept."""
    ordered = sorted(samples, key=lambda r: r["new_per_second"])
    return {
        "backend": backend,
        **ordered[len(ordered) // 2],
        "new_per_second_samples": [r["new_per_second"] for r in samples],
        "redelivered_per_second_samples": [r["redelivered_per_second"] for r in samples],
    }


async def bench_sqlite(
    records: list[ExecutionRecord], batches: list[int], repeat: int
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="procreg-bench-") as tmp:
        for batch in batches:
            samples = []
            for n in range(repeat):
                async with await SqliteIndex.connect(Path(tmp) / f"b{batch}-{n}.sqlite3") as index:
                    samples.append(await ingest(index, records, batch))
            rows.append(median_row("sqlite", samples))
    return rows


async def bench_postgres(
    admin_url: str, records: list[ExecutionRecord], batches: list[int], repeat: int
) -> tuple[list[dict[str, Any]], str]:
    rows = []
    admin = await asyncpg.connect(admin_url)
    server = str(await admin.fetchval("SHOW server_version"))
    try:
        for batch in batches:
            samples = []
            for _ in range(repeat):
                name = f"procreg_bench_{uuid.uuid4().hex[:10]}"
                await admin.execute(f'CREATE DATABASE "{name}"')
                try:
                    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
                    async with await PostgresIndex.connect(url) as index:
                        samples.append(await ingest(index, records, batch))
                finally:
                    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            rows.append(median_row("postgres", samples))
    finally:
        await admin.close()
    return rows, server


def machine() -> dict[str, Any]:
    """Facts that make a throughput number comparable."""
    memory_kb = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_mb": None if memory_kb is None else memory_kb // 1024,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        # other work on the machine skews throughput; record how busy it was
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "sqlite": sqlite3.sqlite_version,
        "asyncpg": asyncpg.__version__,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'backend':<9} {'batch':>6} {'records':>8} {'new rec/s':>10} "
        f"{'redelivered rec/s':>18}  new rec/s samples"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        samples = ", ".join(f"{x:,}" for x in r["new_per_second_samples"])
        print(
            f"{r['backend']:<9} {r['batch']:>6} {r['records']:>8} "
            f"{r['new_per_second']:>10,} {r['redelivered_per_second']:>18,}  {samples}"
        )
    print("(median of the repeats; 'redelivered' = the same records again, all duplicates)")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=50_000)
    parser.add_argument("--batch", type=int, action="append", help="default: 100, 1000, 10000")
    parser.add_argument("--pg", default=DEFAULT_PG, help="admin URL of a PostgreSQL server")
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting (median kept)")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    batches = args.batch or [100, 1000, 10_000]

    records = make_records(args.total)
    rows = await bench_sqlite(records, batches, args.repeat)
    server = None
    if not args.no_pg:
        pg_rows, server = await bench_postgres(args.pg, records, batches, args.repeat)
        rows += pg_rows
    print_table(rows)

    info = machine() | {"postgresql": server}  # load average after the runs
    pg_1000 = [r for r in rows if r["backend"] == "postgres" and r["batch"] == 1000]
    verdict = None
    if pg_1000:
        verdict = pg_1000[0]["new_per_second"] >= TARGET_PG_RPS
        print(
            f"\nPostgreSQL, batches of 1000: {pg_1000[0]['new_per_second']:,} records/s "
            f"(target {TARGET_PG_RPS:,}: {'met' if verdict else 'MISSED'})"
        )
    print(f"machine: {info}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "ingest",
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "total": args.total,
                "repeat": args.repeat,
                "statistic": "median of repeats (per setting, by first-delivery rate)",
                "target_postgres_records_per_second": TARGET_PG_RPS,
                "target_met": verdict,
                "machine": info,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
