"""Index benchmarks on a synthetic repo, on both backends.

Scenarios: full reindex; incremental sync after a one-procedure commit;
commit-to-visible latency through the watcher (a subprocess running
:func:`registry.watcher.watch_repo`); search and get latency through the sync
API (:class:`registry.api.Registry`). Prints a table and writes
``benchmarks/results/index.json`` (median, p95, machine info).

Targets on a 2-core machine: reindex < 10 s; incremental sync < 25 ms median;
commit-to-visible < 150 ms median; search and get < 5 ms median.

Usage: ``python benchmarks/bench_index.py [--small] [--repo PATH] [--pg URL|--no-pg]``.
``--small`` uses 1,000 procedures, 3,000 tags and 200 commits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from synthetic import Spec, build, proc_id  # noqa: E402

from registry.api import Registry  # noqa: E402
from registry.gitstore import GitStore  # noqa: E402
from registry.sync import open_backend, sync  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "index.json"
PG_ADMIN = os.environ.get("PROCREG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
WATCHER = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from registry.watcher import watch_repo
asyncio.run(watch_repo(sys.argv[2], sys.argv[3] or None, reconcile_every=3600))
"""


def stats(samples: list[float]) -> dict[str, float]:
    """Median and p95 in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(p95, 3),
        "n": len(ordered),
    }


def bump(store: GitStore, pid: str, n: int) -> str:
    """Commit a one-procedure change with pygit2 (as a registry write would)."""
    snap = store.read(pid, "HEAD")
    files = dict(snap.files)
    main = files["main.py"].data.decode()
    files["main.py"] = files["main.py"]._replace(data=(main + f"\n# bench edit {n}\n").encode())
    return store.write({pid: files}, f"fix({pid}): bench edit {n}", branch="main")


async def _reindex_and_incremental(repo: Path, url: str | None, rounds: int) -> dict[str, Any]:
    store = GitStore.open(repo)
    backend = await open_backend(store, url)
    out: dict[str, Any] = {}
    async with backend:
        t = time.perf_counter()
        report = await sync(store, backend, full=True)
        out["full_reindex_s"] = round(time.perf_counter() - t, 3)
        out["indexed"] = len(report.added) + len(report.updated)
        t = time.perf_counter()
        await sync(store, backend)
        out["noop_sync_ms"] = round((time.perf_counter() - t) * 1000, 3)
        samples = []
        ids = store.list_procedures()
        for i in range(rounds):
            bump(store, ids[(i * 7919) % len(ids)], i)
            t = time.perf_counter()
            report = await sync(store, backend)
            samples.append((time.perf_counter() - t) * 1000)
            assert report.updated and not report.rebuilt, report
        out["incremental_sync"] = stats(samples)
    return out


def _watch_latency(repo: Path, url: str | None, rounds: int) -> dict[str, float]:
    store = GitStore.open(repo)
    proc = subprocess.Popen(
        [sys.executable, "-c", WATCHER, str(ROOT), str(repo), url or ""],
        stderr=subprocess.DEVNULL,
    )
    samples = []
    try:
        with Registry.open(repo, url, auto_sync=False) as reg:
            ids = store.list_procedures()
            time.sleep(1.5)  # the watcher's start-up reconcile
            for i in range(rounds):
                pid = ids[(i * 104729) % len(ids)]
                commit = bump(store, pid, 10_000 + i)
                tree = store.tree_ids(commit)[pid]
                t = time.perf_counter()
                deadline = t + 15
                while reg.get(pid, "HEAD").tree_id != tree:
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"{pid} not visible after 15 s")
                    time.sleep(0.002)
                samples.append((time.perf_counter() - t) * 1000)
                time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    return stats(samples)


def _query_latency(
    repo: Path, url: str | None, rounds: int, built_ids: list[str]
) -> dict[str, Any]:
    words = ["csv", "parse report", "invoice", "tax discount", "webhook", "hash"]
    with Registry.open(repo, url, auto_sync=False) as reg:
        search, get, get_range = [], [], []
        for i in range(rounds):
            t = time.perf_counter()
            reg.search(words[i % len(words)], limit=20)
            search.append((time.perf_counter() - t) * 1000)
            pid = built_ids[(i * 31) % len(built_ids)]
            t = time.perf_counter()
            reg.get(pid)
            get.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            reg.get(pid, "^1")
            get_range.append((time.perf_counter() - t) * 1000)
    return {"search": stats(search), "get": stats(get), "get_range": stats(get_range)}


def _pg_database(admin: str) -> str | None:
    import asyncpg

    name = f"procreg_bench_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(admin, timeout=3)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except Exception as exc:
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
        return None
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def _drop_pg(admin: str, url: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def main() -> None:
    """Run every scenario and write the results."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--repo", type=Path, help="reuse (or create) the synthetic repo here")
    parser.add_argument("--pg", default=PG_ADMIN, help="PostgreSQL admin URL")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    spec = Spec(1_000, 3_000, 200) if args.small else Spec()
    base = args.repo or Path(tempfile.mkdtemp(prefix="procreg-bench-")) / "repo"
    t = time.perf_counter()
    if not (base / ".git").exists():
        build(base, spec)
    generated_s = round(time.perf_counter() - t, 1)
    built_ids = [proc_id(i) for i in range(spec.procedures)]
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "spec": vars(spec),
        "generate_s": generated_s,
        "backends": {},
    }
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    pg_url = None if args.no_pg else _pg_database(args.pg)
    if pg_url:
        backends.append(("postgres", pg_url))
    try:
        for name, url in backends:
            print(f"== {name}", file=sys.stderr)
            row = asyncio.run(_reindex_and_incremental(base, url, args.rounds))
            row["commit_to_visible"] = _watch_latency(base, url, min(args.rounds, 20))
            row.update(_query_latency(base, url, 200, built_ids))
            results["backends"][name] = row
    finally:
        if pg_url:
            _drop_pg(args.pg, pg_url)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'scenario':28} " + " ".join(f"{n:>22}" for n, _ in backends))
    for label, key in (
        ("full reindex (s)", "full_reindex_s"),
        ("no-op sync (ms)", "noop_sync_ms"),
        ("incremental sync (ms)", "incremental_sync"),
        ("commit-to-visible (ms)", "commit_to_visible"),
        ("search (ms)", "search"),
        ("get latest (ms)", "get"),
        ("get ^1 (ms)", "get_range"),
    ):
        cells = []
        for name, _ in backends:
            value = results["backends"][name][key]
            if isinstance(value, dict):
                cells.append(f"{value['median_ms']:>9} / p95 {value['p95_ms']:>7}")
            else:
                cells.append(f"{value:>22}")
        print(f"{label:28} " + " ".join(f"{c:>22}" for c in cells))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
