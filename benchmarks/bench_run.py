"""End-to-end run overhead: a no-op procedure through the full execution path.

Each run resolves the version from its tag, reads the code from git objects,
validates it, checks the arguments, runs it in the sandbox and records the run
(batched, into the SQLite index in ``.git``). Two paths are timed:

- ``warm``: :class:`registry.execution.Runner` (what ``AsyncRegistry.run`` /
  ``Registry.run`` use): a warm pool of pre-forked workers and batched records;
- ``cold``: a sandbox without a pool (``pool_size=0``), a fresh interpreter per
  run, as ``procreg run`` does.

Reports the median and p95 per path, the sandbox's own share (the wall time of
``Sandbox.run``) and the orchestration overhead around it, and writes
``benchmarks/results/run.json``.

    .venv/bin/python benchmarks/bench_run.py [--runs 200] [--cold-runs 40]

Targets (issue 4): warm median under 5 ms, cold median under 40 ms.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry import execution, releases
from registry.gitstore import GitStore
from registry.model import Metadata
from registry.sandbox import Sandbox
from registry.sync import open_backend

RESULTS = Path(__file__).resolve().parent / "results" / "run.json"
TARGET_WARM_MS = 5.0
TARGET_COLD_MS = 40.0

NOOP = '''"""noop: returns its input, does nothing else."""


def main(n: int) -> int:
    """Return n."""
    return n
'''


def make_repo(base: Path) -> Path:
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
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "feat: noop"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=env)
    releases.release(GitStore.open(root), ["noop"])
    return root


class TimedSandbox:
    """Wraps the sandbox to time its ``run`` call: the rest of a run is orchestration."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last_ms = 0.0

    def run(self, request: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.inner.run(request, **kwargs)
        finally:
            self.last_ms = (time.perf_counter() - t0) * 1000

    def close(self) -> None:
        self.inner.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(total: list[float], inner: list[float]) -> dict[str, float]:
    overhead = [t - i for t, i in zip(total, inner, strict=True)]
    return {
        "runs": len(total),
        "median_ms": round(statistics.median(total), 3),
        "p95_ms": round(percentile(total, 0.95), 3),
        "sandbox_median_ms": round(statistics.median(inner), 3),
        "orchestration_median_ms": round(statistics.median(overhead), 3),
    }


async def bench_warm(root: Path, runs: int) -> dict[str, float]:
    store = GitStore.open(root)
    async with await open_backend(store) as backend:
        runner = execution.Runner(store, backend, pool_size=2)
        sandbox, _, _ = runner._ensure()
        timed = TimedSandbox(sandbox)
        runner._sandbox = timed  # type: ignore[assignment]
        try:
            for i in range(10):  # warm-up: pool start, imports, first index writes
                await runner.run("noop", None, {"n": i})
            total, inner = [], []
            for i in range(runs):
                t0 = time.perf_counter()
                result = await runner.run("noop", None, {"n": i})
                total.append((time.perf_counter() - t0) * 1000)
                inner.append(timed.last_ms)
                assert result.ok and result.result == i, result.error
        finally:
            await runner.close()
        recorded = await backend.count_executions("noop")
    out = summary(total, inner)
    out["recorded"] = recorded
    return out


async def bench_cold(root: Path, runs: int) -> dict[str, float]:
    store = GitStore.open(root)
    async with await open_backend(store) as backend:
        recorder = execution.open_recorder(store, backend)
        try:
            with Sandbox(pool_size=0) as real:
                box = TimedSandbox(real)
                total, inner = [], []
                for i in range(runs):
                    t0 = time.perf_counter()
                    result = await execution.run(
                        store,
                        recorder,
                        "noop",
                        None,
                        {"n": i},
                        sandbox=box,  # type: ignore[arg-type]
                    )
                    total.append((time.perf_counter() - t0) * 1000)
                    inner.append(box.last_ms)
                    assert result.ok, result.error
        finally:
            await recorder.close()
    return summary(total, inner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="warm runs")
    parser.add_argument("--cold-runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="procreg-bench-run-") as tmp:
        root = make_repo(Path(tmp))
        warm = asyncio.run(bench_warm(root, args.runs))
        cold = asyncio.run(bench_cold(root, args.cold_runs))
    report: dict[str, Any] = {
        "benchmark": "run end to end (resolve, git read, validate, sandbox, record)",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "warm": warm,
        "cold": cold,
        "targets": {"warm_median_ms": TARGET_WARM_MS, "cold_median_ms": TARGET_COLD_MS},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for name, row in (("warm", warm), ("cold", cold)):
        print(
            f"{name:5} median {row['median_ms']:8.2f} ms  p95 {row['p95_ms']:8.2f} ms  "
            f"(sandbox {row['sandbox_median_ms']:.2f} ms + orchestration "
            f"{row['orchestration_median_ms']:.2f} ms, {row['runs']} runs)"
        )
    print(f"targets: warm median < {TARGET_WARM_MS} ms, cold median < {TARGET_COLD_MS} ms")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
