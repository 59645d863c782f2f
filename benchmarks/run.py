"""Run the benchmark suite: ``python -m benchmarks [--quick|--full] [--only S] [--backend B]``.

``--quick`` (``make bench``) uses 1,000 and 10,000 procedures and fewer
repeats and finishes within 15 minutes on a 2-core machine; ``--full``
(``make bench-full``) adds 30,000 procedures, more repeats and the slow gto
operations at 1,000. Every scenario prints a table and writes
``benchmarks/results/<scenario>.json``; the run ends by writing
``benchmarks/results/summary.md`` from every result file present.
"""

from __future__ import annotations

import argparse
import compileall
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import (
    scen_cli,
    scen_envs,
    scen_index,
    scen_mcp,
    scen_net,
    scen_queue,
    scen_run,
    scen_web,
)
from benchmarks.common import (
    RESULTS,
    ROOT,
    Context,
    Row,
    log,
    machine,
    print_table,
    write_result,
)
from benchmarks.summary import write_summary

SCENARIOS: dict[str, Callable[[Context], list[Row]]] = {
    "startup": scen_cli.scenario_startup,
    "run": scen_run.scenario_run,
    "ingest": scen_run.scenario_ingest,
    "reindex": scen_index.scenario_reindex,
    "sync": scen_index.scenario_sync,
    "query": scen_index.scenario_query,
    "watch": scen_index.scenario_watch,
    "log": scen_cli.scenario_log,
    "release": scen_cli.scenario_release,
    "peer": scen_cli.scenario_peer,
    "mcp": scen_mcp.scenario_mcp,
    "envs": scen_envs.scenario_envs,
    "network": scen_net.scenario_network,
    "web": scen_web.scenario_web,
    "queue": scen_queue.scenario_queue,
}


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the scenarios, write the results and the summary."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="make bench (default)")
    mode.add_argument("--full", action="store_true", help="make bench-full: 30,000 too")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), metavar="SCENARIO",
                        help=f"run only these (repeatable): {', '.join(SCENARIOS)}")  # fmt: skip
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args(argv)
    info = machine()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and info["postgresql"] is None:
        log("no PostgreSQL server answers at PROCREG_TEST_PG (127.0.0.1:5432): SQLite only")
        backends.remove("postgres")
        if not backends:
            return 1
    ctx = Context(full=args.full, backends=backends, info=info)
    mode_name = "full" if args.full else "quick"
    print(f"procreg benchmarks ({mode_name}); machine: {json.dumps(info)}")
    scen_cli.clear_scratch()
    # what installing a wheel does: whole-process figures must not include compiling the
    # package from source on every start (with PYTHONDONTWRITEBYTECODE set, or a read-only
    # checkout, an editable install would otherwise never get its .pyc files)
    compileall.compile_dir(ROOT / "registry", quiet=1)
    started = time.perf_counter()
    failed = []
    for name in args.only or list(SCENARIOS):
        t0 = time.perf_counter()
        log(f"scenario {name}")
        try:
            rows = SCENARIOS[name](ctx)
        except Exception as exc:  # noqa: BLE001 (one broken scenario must not hide the others)
            log(f"scenario {name} FAILED: {type(exc).__name__}: {exc}")
            failed.append(name)
            continue
        params = {"mode": mode_name, "backends": backends, "sizes": ctx.sizes,
                  "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        write_result(name, info, rows, params)
        print_table(f"{name} ({params['seconds']} s)", rows)
    summary = write_summary(RESULTS)
    total = time.perf_counter() - started
    print(f"\nwrote {RESULTS}/*.json and {summary}; total {total / 60:.1f} min")
    if failed:
        print(f"FAILED scenarios: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
