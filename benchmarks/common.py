"""What every scenario shares: timing, statistics, machine facts, cached repos, results.

A figure is a list of samples (milliseconds); :func:`stats` turns it into the
median, p95, min/max and IQR that go into the JSON. A :class:`Row` puts a
procreg figure beside its baseline measured in the same run, with the ratio
and the target. Synthetic repos are built once per spec under
``benchmarks/work/repos/`` and copied for every scenario that changes them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
PG_ADMIN = os.environ.get("PROCREG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# git and the registry must not read the machine's config: fixed identity, no hooks
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


# -- statistics -------------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def stats(samples: Sequence[float]) -> dict[str, Any]:
    """Median, p95, min, max and IQR of millisecond samples."""
    if not samples:
        return {"n": 0}
    q1, q3 = (percentile(samples, 0.25), percentile(samples, 0.75))
    return {
        "n": len(samples),
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(percentile(samples, 0.95), 3),
        "min_ms": round(min(samples), 3),
        "max_ms": round(max(samples), 3),
        "iqr_ms": round(q3 - q1, 3),
    }


def timed(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Milliseconds of ``repeat`` calls of ``fn`` after ``warmup`` unmeasured ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def timed_after(
    fn: Callable[[], object], setup: Callable[[], object], repeat: int, warmup: int = 1
) -> list[float]:
    """Like :func:`timed`, with ``setup()`` (not measured) before each call."""
    for _ in range(warmup):
        setup()
        fn()
    samples = []
    for _ in range(repeat):
        setup()
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def run_process(argv: Sequence[str], cwd: Path | None = None, timeout: float = 120.0) -> None:
    """Run a whole process, raising if it fails (a failed op must never look fast)."""
    result = subprocess.run(
        list(argv), cwd=cwd, capture_output=True, timeout=timeout, env=bench_env()
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")


def bench_env() -> dict[str, str]:
    """The environment for subprocesses: no PostgreSQL URL leaking in, fixed git identity."""
    env = {k: v for k, v in os.environ.items() if k != "PROCREG_DATABASE_URL"}
    return env | GIT_ENV


def fit_exponent(sizes: Sequence[int], medians: Sequence[float]) -> float | None:
    """Least-squares slope of log(time) against log(N): 0 is flat, 1 linear."""
    points = [(math.log(n), math.log(t)) for n, t in zip(sizes, medians, strict=True) if t > 0]
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return round(sum((x - mx) * (y - my) for x, y in points) / den, 3) if den else None


# -- rows and results ----------------------------------------------------------------------


@dataclass
class Row:
    """One figure: procreg beside its baseline, measured in the same run.

    ``target`` is a human string ("< 25 ms median", ">= 20x baseline"), and
    ``met`` says whether this run met it (None: no target for this row).
    ``limit`` is what the machine can do at best for the same answer, measured in
    the same run (``python -c pass`` for a whole process, raw pygit2 reads of every
    metadata blob for a reindex, a bare ``SELECT`` of the same rows for a query);
    :attr:`over_limit` is how many times the limit procreg takes.
    """

    scenario: str
    figure: str
    size: str
    procreg: dict[str, Any]
    baseline_name: str | None = None
    baseline: dict[str, Any] | None = None
    target: str | None = None
    met: bool | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    limit_name: str | None = None
    limit: dict[str, Any] | None = None

    @property
    def ratio(self) -> float | None:
        """Baseline median / procreg median: how many times faster procreg is."""
        if not self.baseline or "median_ms" not in self.baseline:
            return None
        mine = self.procreg.get("median_ms")
        if not mine:
            return None
        return round(self.baseline["median_ms"] / mine, 1)

    @property
    def over_limit(self) -> float | None:
        """Procreg median / limit median: 1.0 is as fast as the machine allows."""
        if not self.limit or not self.limit.get("median_ms"):
            return None
        mine = self.procreg.get("median_ms")
        return None if mine is None else round(mine / self.limit["median_ms"], 1)

    def to_json(self) -> dict[str, Any]:
        """The row as stored in the results JSON."""
        return asdict(self) | {
            "ratio_baseline_over_procreg": self.ratio,
            "ratio_procreg_over_limit": self.over_limit,
        }


def machine() -> dict[str, Any]:
    """Facts that make a figure comparable: cores, memory, versions, load at start."""
    import pygit2

    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "memory_mb": mem_kb // 1024,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "pygit2": pygit2.__version__,
        "libgit2": pygit2.LIBGIT2_VERSION,
        "git": git,
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def postgres_version(admin: str = PG_ADMIN) -> str | None:
    """The PostgreSQL server version, or None when no server answers."""
    import asyncpg

    async def ask() -> str:
        conn = await asyncpg.connect(admin, timeout=3)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    try:
        return asyncio.run(ask())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None


def write_result(
    scenario: str, info: dict[str, Any], rows: list[Row], params: dict[str, Any]
) -> Path:
    """Write ``benchmarks/results/<scenario>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{scenario}.json"
    data = {
        "scenario": scenario,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "params": params,
        "rows": [r.to_json() for r in rows],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def fmt_ms(figure: dict[str, Any] | None) -> str:
    """A short human cell for a figure."""
    if not figure:
        return "-"
    if "exponent" in figure:
        return "-" if figure["exponent"] is None else f"N^{figure['exponent']}"
    if "value" in figure:
        return f"{figure['value']:,} {figure.get('unit', '')}".strip()
    if "median_ms" not in figure:
        return str(figure.get("note", "-"))
    median = figure["median_ms"]
    prefix = ">" if figure.get("lower_bound") else ""
    if median >= 1000:
        return f"{prefix}{median / 1000:.2f} s"
    return f"{prefix}{median:.2f} ms"


def print_table(title: str, rows: list[Row]) -> None:
    """Print one scenario's rows as an aligned table."""
    header = ["figure", "size", "procreg median", "p95", "baseline", "baseline median", "ratio",
              "limit median", "x limit"]  # fmt: skip
    cells = [header]
    for r in rows:
        p95 = r.procreg.get("p95_ms")
        cells.append(
            [
                r.figure,
                r.size,
                fmt_ms(r.procreg),
                "-" if p95 is None else f"{p95:.2f}",
                r.baseline_name or "-",
                fmt_ms(r.baseline),
                "-" if r.ratio is None else f"{r.ratio}x",
                fmt_ms(r.limit),
                "-" if r.over_limit is None else f"{r.over_limit}x",
            ]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n== {title}")
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for r in rows:
        if r.target:
            verdict = "met" if r.met else ("MISSED" if r.met is False else "n/a")
            print(f"   target {r.figure} @ {r.size}: {r.target} -> {verdict}")
    sys.stdout.flush()


# -- repos ---------------------------------------------------------------------------------


def cached_repo(spec: Any) -> Path:
    """The pristine synthetic repo for ``spec``, built once under benchmarks/work/repos/."""
    from benchmarks.synthetic import build

    path = WORK / "repos" / spec.key()
    done = path / ".git" / "bench-complete"
    if done.exists():
        return path
    if path.exists():
        shutil.rmtree(path)  # a build that was interrupted
    started = time.perf_counter()
    log(f"building synthetic repo {spec.key()} (once; cached in {path.relative_to(ROOT)})")
    build(path, spec)
    done.write_text(f"{time.perf_counter() - started:.1f}\n")
    return path


def working_copy(spec: Any, name: str, *, checkout: bool = False) -> Path:
    """A fresh copy of the cached repo for a scenario that changes it (commits, tags, index)."""
    source = cached_repo(spec)
    dest = WORK / "scratch" / f"{name}-{spec.key()}"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(source / ".git", dest / ".git")
    (dest / ".git" / "bench-complete").unlink()
    if checkout:
        subprocess.run(["git", "-C", str(dest), "reset", "-q", "--hard", "main"], check=True)
    return dest


def drop_copy(path: Path) -> None:
    """Remove a working copy (they are big at 10,000 procedures)."""
    shutil.rmtree(path, ignore_errors=True)


def interpreter_floor(reps: int) -> dict[str, Any]:
    """``python -c pass`` as a whole process: the limit of every whole-process figure."""
    return stats(timed(lambda: run_process([sys.executable, "-c", "pass"]), reps, warmup=2))


INTERPRETER_FLOOR = "python -c pass (interpreter floor)"


def log(message: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- PostgreSQL ----------------------------------------------------------------------------


class PgDatabase:
    """A scratch PostgreSQL database, created on enter and dropped on exit."""

    def __init__(self, admin: str = PG_ADMIN) -> None:
        self.admin = admin
        self.name = f"procreg_bench_{uuid.uuid4().hex[:10]}"
        self.url = f"{admin.rsplit('/', 1)[0]}/{self.name}"

    async def _admin(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def __enter__(self) -> str:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        return self.url

    def __exit__(self, *exc: object) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    async def __aenter__(self) -> str:
        await self._admin(f'CREATE DATABASE "{self.name}"')
        return self.url

    async def __aexit__(self, *exc: object) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class Context:
    """How this run was asked for: quick or full, which backends, the machine."""

    full: bool
    backends: list[str]
    info: dict[str, Any]

    @property
    def sizes(self) -> list[int]:
        """The growth sizes (procedures): 30,000 only in --full."""
        return [1_000, 10_000, 30_000] if self.full else [1_000, 10_000]

    def reps(self, quick: int, full: int) -> int:
        """Repetitions for this mode."""
        return full if self.full else quick
