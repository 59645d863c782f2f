"""Queued runs: no-op job throughput with 1 and 2 workers, submit-to-result latency.

Real ``procreg worker`` processes on a scratch PostgreSQL database, a released no-op
procedure, and the API submitting from this process. Figures:

- throughput: ``n`` jobs submitted as fast as the API takes them (64 in flight) and
  waited for, first submit to last result, with 1 and with 2 workers (each
  ``--concurrency 4``); jobs per second (target: at least 200 with 2 workers);
- latency: one job at a time, ``AsyncRegistry.submit`` to ``result`` (woken by
  NOTIFY), median and p95 (target: median under 50 ms), beside a local
  ``Registry.run`` of the same procedure (warm sandbox), the baseline;
- the queue's floor: the same number of jobs of a no-op procrastinate task (no sandbox,
  no git, no run record) through 2 plain ``procrastinate worker`` processes on the same
  database: what the queue alone carries, so the gap is what a sandboxed run costs.

Everything shares the 2 cores: this process, the workers, their sandboxes and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
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
FLOOR_URL = "PROCREG_BENCH_QUEUE_URL"


def _floor_app() -> Any:
    """A procrastinate App with one no-op task, on the database in $PROCREG_BENCH_QUEUE_URL."""
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=os.environ.get(FLOOR_URL, ""))
    )

    @app.task(name="bench.noop")
    def noop(n: int) -> int:
        return n

    return app


floor_app = _floor_app()
"""What ``procrastinate --app=benchmarks.scen_queue.floor_app worker`` runs."""


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


def _floor(url: str, n: int, logs: Path) -> float:
    """Jobs per second of a no-op procrastinate task through 2 plain procrastinate workers."""
    from registry.runs.queue import Queue

    env = bench_env() | {FLOOR_URL: url}
    repo = Path(__file__).resolve().parent.parent
    procs = []
    for i in range(2):
        with (logs / f"floor-{i}.log").open("w") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "procrastinate", "--app=benchmarks.scen_queue.floor_app",
                     "worker", "--concurrency", str(WORKER_CONCURRENCY)],
                    stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=repo,
                )
            )  # fmt: skip
    try:

        async def go() -> float:
            os.environ[FLOOR_URL] = url
            app = _floor_app()
            async with app.open_async(), Queue(url) as queue:
                task = app.configure_task("bench.noop")
                warm = [await task.defer_async(n=i) for i in range(16)]
                for job_id in warm:
                    await queue.wait(job_id, 60)
                gate = asyncio.Semaphore(IN_FLIGHT)

                async def one(i: int) -> None:
                    async with gate:
                        await queue.wait(await task.defer_async(n=i), 300)

                start = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(n)))
                return n / (time.perf_counter() - start)

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
            log(f"queue: the floor, {n} no-op procrastinate jobs, 2 plain workers")
            floor = _floor(url, n, base)
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
        Row("queue", "the queue's floor: no-op procrastinate task, 2 workers", jobs,
            {"jobs_per_s": round(floor, 1)},
            note="no sandbox, no git, no run record: what the queue alone carries"),
        Row("queue", "submit-to-result latency, idle workers", f"{lat_n} jobs", lat,
            "local Registry.run (warm sandbox)", stats(local),
            target="median < 50 ms", met=lat.get("median_ms", 1e9) < 50),
    ]  # fmt: skip
