"""Queued runs: no-op job throughput with 1 and 2 workers, submit-to-result latency.

Real ``procreg worker`` processes on a scratch PostgreSQL database, a released no-op
procedure, and the API submitting from this process. Figures:

- throughput: ``n`` jobs submitted as fast as the API takes them (64 in flight) and
  waited for, first submit to last result, with 1 and with 2 workers (each
  ``--concurrency 4``); jobs per second (target: at least 200 with 2 workers);
- latency: one job at a time, ``AsyncRegistry.submit`` to ``result`` (woken by
  NOTIFY), median and p95 (target: median under 50 ms), beside a local
  ``Registry.run`` of the same procedure (warm sandbox), the baseline.

Everything shares the 2 cores: this process, the workers, their sandboxes and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Context, PgDatabase, Row, bench_env, log, stats
from registry.api import AsyncRegistry, Registry
from registry.git.store import GitStore
from registry.releases import release as releases

NOOP = '''"""noop: returns its input."""


def main(n: int) -> int:
    """Return n."""
    return n
'''
WORKER_CONCURRENCY = 4
IN_FLIGHT = 64


def make_repo(base: Path) -> Path:
    """A registry with ``noop`` released."""
    root = base / "repo"
    folder = root / "procedures" / "noop"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(NOOP)
    meta = {
        "id": "noop",
        "name": "Noop",
        "description": "benchmark procedure",
        "parameters": [{"name": "n", "type": "integer"}],
        "returns": {"type": "integer"},
    }
    (folder / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    env = bench_env()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True, env=env)
    for args in (["add", "-A"], ["commit", "-qm", "feat: noop"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=env)
    releases.release(GitStore.open(root), ["noop"])
    return root


def start_workers(root: Path, url: str, count: int, logs: Path) -> list[subprocess.Popen[str]]:
    procs = []
    for i in range(count):
        with (logs / f"worker-{count}-{i}.log").open("w") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "registry", "worker", "--database-url", url,
                     "-C", str(root), "--concurrency", str(WORKER_CONCURRENCY)],
                    stdout=out, stderr=subprocess.STDOUT, text=True, env=bench_env(),
                )
            )  # fmt: skip
    return procs


def stop_workers(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def _warm(reg: AsyncRegistry, workers: int) -> None:
    """Every worker has run jobs (its sandbox pool is warm) before anything is measured."""
    for _ in range(3):
        handles = [await reg.submit("noop", n=i) for i in range(workers * WORKER_CONCURRENCY * 2)]
        for h in handles:
            await reg.result(h.job_id, timeout=120)


async def _throughput(reg: AsyncRegistry, n: int) -> float:
    """Jobs per second: ``n`` submitted (IN_FLIGHT at a time) and waited for."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        async with gate:
            handle = await reg.submit("noop", n=i)
            result = await reg.result(handle.job_id, timeout=300)
            if not result.ok or result.result != i:
                raise RuntimeError(f"job {handle.job_id} failed: {result.error}")

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - start)


async def _latency(reg: AsyncRegistry, n: int) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        handle = await reg.submit("noop", n=i)
        await reg.result(handle.job_id, timeout=60)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _measure(root: Path, url: str, workers: int, n: int, lat_n: int, logs: Path) -> Any:
    procs = start_workers(root, url, workers, logs)
    try:

        async def go() -> tuple[float, list[float]]:
            async with await AsyncRegistry.open(root, url) as reg:
                await _warm(reg, workers)
                rate = await _throughput(reg, n)
                return rate, await _latency(reg, lat_n) if lat_n else []

        return asyncio.run(go())
    finally:
        stop_workers(procs)


def scenario_queue(ctx: Context) -> list[Row]:
    """No-op job throughput (1 and 2 workers) and submit-to-result latency."""
    if "postgres" not in ctx.backends:
        log("queue: needs PostgreSQL; skipped")
        return []
    n, lat_n, local_n = ctx.reps(1000, 3000), ctx.reps(100, 300), ctx.reps(200, 500)
    with tempfile.TemporaryDirectory(prefix="procreg-bench-queue-", dir="/tmp") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        root = make_repo(base)
        with PgDatabase() as url:
            log(f"queue: 1 worker, {n} jobs")
            one_rate, _ = _measure(root, url, 1, n, 0, base)
            log(f"queue: 2 workers, {n} jobs, then {lat_n} one at a time")
            two_rate, latency = _measure(root, url, 2, n, lat_n, base)
        log(f"queue: local Registry.run x{local_n}")
        with Registry.open(root) as reg:
            for i in range(20):
                reg.run("noop", n=i)
            local = []
            for i in range(local_n):
                start = time.perf_counter()
                reg.run("noop", n=i)
                local.append((time.perf_counter() - start) * 1000)
    lat = stats(latency)
    jobs = f"{n} no-op jobs"
    return [
        Row("queue", "no-op job throughput, 1 worker", jobs,
            {"jobs_per_s": round(one_rate, 1)},
            note=f"--concurrency {WORKER_CONCURRENCY}, {IN_FLIGHT} jobs in flight"),
        Row("queue", "no-op job throughput, 2 workers", jobs,
            {"jobs_per_s": round(two_rate, 1)},
            target=">= 200 jobs/s", met=two_rate >= 200,
            note=f"--concurrency {WORKER_CONCURRENCY} each, {IN_FLIGHT} jobs in flight"),
        Row("queue", "submit-to-result latency, idle workers", f"{lat_n} jobs", lat,
            "local Registry.run (warm sandbox)", stats(local),
            target="median < 50 ms", met=lat.get("median_ms", 1e9) < 50),
    ]  # fmt: skip
