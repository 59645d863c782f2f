"""Overhead of running a no-op procedure in the sandbox, warm and cold.

Baseline: the naive way, a ``python -c`` subprocess per call. Prints a table
and writes ``benchmarks/results/run_overhead.json``.

    .venv/bin/python benchmarks/bench_run_overhead.py [--warm 200] [--cold 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from registry.sandbox import RunRequest, Sandbox, sandbox_python

NOOP = "def main():\n    return None\n"
RESULTS = Path(__file__).parent / "results" / "run_overhead.json"


def measure(fn: Callable[[], object], n: int) -> dict[str, float]:
    """Median and p95 in milliseconds of ``n`` calls (after two unmeasured ones)."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "n": n,
        "median_ms": round(statistics.median(times), 3),
        "p95_ms": round(times[min(n - 1, int(n * 0.95))], 3),
        "min_ms": round(times[0], 3),
    }


def machine() -> dict[str, object]:
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "memory_mb": mem_kb // 1024,
        "python": platform.python_version(),
        "sandbox_python": sandbox_python(),
        "platform": platform.platform(),
        "root": os.geteuid() == 0,
        "load_average": list(os.getloadavg()),  # other work on the machine skews the numbers
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--cold", type=int, default=50)
    args = parser.parse_args()
    request = RunRequest(files={"main.py": NOOP})
    with Sandbox(pool_size=2) as sandbox:

        def warm() -> None:
            outcome = sandbox.run(request, warm=True)
            assert outcome.ok, outcome

        def cold() -> None:
            outcome = sandbox.run(request, warm=False)
            assert outcome.ok, outcome

        results = {"warm": measure(warm, args.warm), "cold": measure(cold, args.cold)}
        layers = {layer.name: layer.active for layer in sandbox.layers()}
    code = "import json\ndef main():\n    return None\nprint(json.dumps(main()))"
    python = sandbox_python()
    results["baseline_python_c"] = measure(
        lambda: subprocess.run([python, "-c", code], capture_output=True, check=True), args.cold
    )
    base = results["baseline_python_c"]["median_ms"]
    print(f"{'mode':<20}{'n':>6}{'median ms':>12}{'p95 ms':>10}{'vs python -c':>14}")
    for name, row in results.items():
        ratio = row["median_ms"] / base
        print(
            f"{name:<20}{row['n']:>6}{row['median_ms']:>12.2f}{row['p95_ms']:>10.2f}{ratio:>13.2f}x"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "run_overhead",
        "machine": machine(),
        "layers": layers,
        "results": results,
        "targets_ms": {"warm_median": 5, "cold_median": 40},
        "ratios_to_python_c": {k: round(v["median_ms"] / base, 3) for k, v in results.items()},
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
