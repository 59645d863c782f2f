"""Whole-process scenarios: ``procreg log``/``show``, release of 100 procedures, start-up, gto.

Every figure here is a whole process, started the way a user or a CI job
starts it (``python -m registry ...`` from the project's venv), so it
includes interpreter start-up and imports. The naive baseline is timed both
in-process and as a whole process (``python benchmarks/naive.py ...``).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import naive
from benchmarks.common import (
    INTERPRETER_FLOOR,
    ROOT,
    Context,
    Row,
    drop_copy,
    interpreter_floor,
    log,
    run_process,
    stats,
    timed,
    working_copy,
)
from benchmarks.peer import gto_bin, gto_version, time_gto
from benchmarks.scen_index import bump, growth_rows, growth_spec
from benchmarks.synthetic import Spec, proc_id
from registry.git.store import GitStore
from registry.releases import history

PROCREG = [sys.executable, "-m", "registry"]
NAIVE = [sys.executable, str(ROOT / "benchmarks" / "naive.py")]


def procreg_exe() -> list[str]:
    """The installed ``procreg`` console script next to this interpreter, else ``-m registry``."""
    script = Path(sys.executable).parent / "procreg"
    return [str(script)] if script.exists() else PROCREG


LIBRARY_IMPORTS = "import pygit2, pydantic, click"
"""The libraries every read command loads (git objects, the metadata model, the command line)."""


def _proc(argv: list[str], reps: int) -> dict[str, Any]:
    return stats(timed(lambda: run_process(argv, cwd=ROOT), reps))


# -- log and show --------------------------------------------------------------------------


def scenario_log(ctx: Context) -> list[Row]:
    """``procreg log ID`` and ``procreg show ID`` whole process, and history in-process."""
    rows: list[Row] = []
    reps = ctx.reps(10, 20)
    for n in ctx.sizes:
        repo = working_copy(growth_spec(n), "log", checkout=True)
        pid = proc_id(n // 2)
        try:
            log(f"log/show at {n:,} x{reps}")
            cli = [*PROCREG, "-C", str(repo)]
            inproc = stats(
                timed(lambda r=repo, i=pid: history.history(GitStore.open(r), i), reps * 5)  # type: ignore[misc]
            )
            naive_in = stats(timed(lambda r=repo, i=pid: naive.log(r, i), reps * 5))  # type: ignore[misc]
            log_proc = _proc([*cli, "log", pid, "--json"], reps)
            naive_log_proc = _proc([*NAIVE, str(repo), "log", pid], reps)
            show_proc = _proc([*cli, "show", pid, "--json"], reps)
            naive_get_proc = _proc([*NAIVE, str(repo), "get", pid], reps)
            floor = interpreter_floor(reps)
            libraries = _proc([sys.executable, "-c", LIBRARY_IMPORTS], reps)
            size = f"{n:,}"
            # what a read command cannot go below while it needs these libraries
            extra = {"procedures": n, "library_import_floor_ms": libraries["median_ms"]}
            process = {"limit_name": INTERPRETER_FLOOR, "limit": floor}
            targets = {}
            for key, mine, naive_proc in (("log", log_proc, naive_log_proc),
                                          ("show", show_proc, naive_get_proc)):  # fmt: skip
                targets[key] = {
                    "target": "< 100 ms median; <= 2x the naive process",
                    "met": mine["median_ms"] < 100
                    and mine["median_ms"] <= 2 * naive_proc["median_ms"],
                }
            rows += [
                Row("log", "log ID in-process (history)", size, inproc,
                    "naive log in-process (git tag -l + git log)", naive_in, extra=extra),
                Row("log", "procreg log ID (process)", size, log_proc,
                    "naive log (process)", naive_log_proc, extra=extra, **process,
                    **(targets["log"] if n == 1_000 else {})),
                Row("log", "procreg show ID (process)", size, show_proc,
                    "naive get (process)", naive_get_proc, extra=extra, **process,
                    **(targets["show"] if n == 1_000 else {})),
            ]  # fmt: skip
        finally:
            drop_copy(repo)
    return rows + growth_rows(rows, "log", "log/show", flat=True)


# -- release -------------------------------------------------------------------------------


def _change_many(store: GitStore, ids: list[str], n: int) -> str:
    files = {}
    for pid in ids:
        snap = store.read(pid, "HEAD")
        fs = dict(snap.files)
        main = fs["main.py"].data.decode()
        fs["main.py"] = fs["main.py"]._replace(data=(main + f"\n# bench release {n}\n").encode())
        files[pid] = fs
    return store.write(files, f"fix: bench change of {len(ids)} procedures ({n})", branch="main")


def scenario_release(ctx: Context) -> list[Row]:
    """Release of 100 procedures changed in one commit: ``procreg release --all-changed``."""
    rows: list[Row] = []
    for n in ctx.sizes:
        # a release takes 1-2 s at 10,000 procedures and ~5 s at 30,000 (it once took 85 s,
        # when one repeat was all --quick could afford): three repeats give a median
        reps = ctx.reps(3 if n <= 10_000 else 1, 5)
        spec = growth_spec(n)
        mine = working_copy(spec, "release-procreg")
        theirs = working_copy(spec, "release-naive")
        try:
            log(f"release of 100 changed at {n:,} x{reps}")
            store, other = GitStore.open(mine), GitStore.open(theirs)
            samples, base = [], []
            for r in range(reps):
                ids = [proc_id((r * 100 + i) * (n // 100 // reps or 1) % n) for i in range(100)]
                ids = sorted(set(ids))
                _change_many(store, ids, r)
                argv = [*PROCREG, "-C", str(mine), "release", "--all-changed"]
                start = time.perf_counter()
                run_process([*argv, "--skip-examples", "--json"], cwd=ROOT, timeout=600)
                samples.append((time.perf_counter() - start) * 1000)
                _change_many(other, ids, r)
                start = time.perf_counter()
                run_process([*NAIVE, str(theirs), "release"], cwd=ROOT, timeout=600)
                base.append((time.perf_counter() - start) * 1000)
            figure = stats(samples)
            rows.append(
                Row(
                    "release",
                    "release 100 changed (process)",
                    f"{n:,}",
                    figure,
                    "naive release (git diff --name-only + git tag -a each)",
                    stats(base),
                    target="< 0.5 s median" if n == 10_000 else None,
                    met=figure["median_ms"] < 500 if n == 10_000 else None,
                    note="procreg computes each bump from signatures and validates; "
                    "--skip-examples (the naive way runs no examples either)",
                    extra={"procedures": n, "changed": 100},
                    limit_name=INTERPRETER_FLOOR,
                    limit=interpreter_floor(5),
                )
            )
        finally:
            drop_copy(mine)
            drop_copy(theirs)
    return rows + growth_rows(rows, "release", "release", flat=True)


# -- CLI start-up --------------------------------------------------------------------------


def scenario_startup(ctx: Context) -> list[Row]:
    """``procreg --version`` as a whole process, hyperfine-style (warm-up, then repeats)."""
    reps = ctx.reps(20, 50)
    exe = procreg_exe()
    figure = stats(timed(lambda: run_process([*exe, "--version"]), reps, warmup=3))
    floor = interpreter_floor(reps)
    rows = [
        Row("startup", "procreg --version", "-", figure, INTERPRETER_FLOOR,
            floor, target="< 150 ms median", met=figure["median_ms"] < 150,
            extra={"argv": exe}, limit_name=INTERPRETER_FLOOR, limit=floor)
    ]  # fmt: skip
    gto = gto_bin()
    if gto is not None:
        peer = stats(timed(lambda: run_process([str(gto), "--version"]), max(5, reps // 2)))
        rows.append(Row("startup", "procreg --version", "-", figure, "gto --version (peer)", peer))
    return rows


# -- the peer: gto -------------------------------------------------------------------------


def peer_spec(n: int, flavor: str) -> Spec:
    """N procedures with 5 releases each (issue 3's scenario), in procreg's or gto's tag format."""
    return Spec(procedures=n, tags=5 * n, commits=max(20, n // 5), flavor=flavor)


def scenario_peer(ctx: Context) -> list[Row]:
    """procreg vs gto on equivalent repos (same procedures, commits, releases; gto's tag names)."""
    gto = gto_bin()
    if gto is None:
        return [Row("peer", "gto unavailable", "-", {"note": "gto could not be installed"})]
    rows: list[Row] = []
    version = gto_version(gto)
    for n in (100, 1_000):
        mine = working_copy(peer_spec(n, "procreg"), "peer")
        theirs = working_copy(peer_spec(n, "gto"), "peer")
        big = n >= 1_000
        reps = 1 if big else 3
        timeout = (300.0 if ctx.full else 60.0) if big else 120.0
        pid = proc_id(n // 2)
        cli = [*PROCREG, "-C", str(mine)]
        ops: list[tuple[str, list[str], list[str], bool]] = [
            ("one artifact's versions", [*cli, "log", pid, "--json"], ["show", pid, "--json"],
             True),
            ("history of one artifact", [*cli, "log", pid, "--json"], ["history", pid, "--json"],
             True),
            ("latest of one artifact", [*cli, "show", pid, "--json"],
             ["show", f"{pid}@latest", "--json"], True),
            ("list all with latest", [*cli, "list", "--json"], ["show", "--json"], ctx.full),
        ]  # fmt: skip
        try:
            for label, mine_argv, gto_args, run_big in ops:
                target = ">= 100x gto at 1,000" if big and "list" not in label else None
                if big and not run_big:
                    continue
                log(f"peer {label} at {n:,}: procreg, then gto {' '.join(gto_args)}")
                figure = _proc(mine_argv, 10)
                peer = time_gto(gto, gto_args, theirs, reps, timeout)
                ratio = peer["median_ms"] / figure["median_ms"]
                rows.append(
                    Row("peer", f"{label}: procreg {mine_argv[5]}", f"{n:,}", figure,
                        f"gto {' '.join(gto_args)}", peer, target=target,
                        met=(ratio >= 100) if target else None,
                        note=peer.get("note"), extra={"gto": version, "procedures": n})
                )  # fmt: skip
            if not big or ctx.full:
                log(f"peer register at {n:,}")
                sm, st = GitStore.open(mine), GitStore.open(theirs)
                samples, base = [], []
                for i in range(reps):
                    target_id = proc_id((n // 3 + i) % n)
                    bump(sm, target_id, 50_000 + i)
                    bump(st, target_id, 50_000 + i)
                    start = time.perf_counter()
                    run_process([*cli, "release", target_id, "--skip-examples", "--json"])
                    samples.append((time.perf_counter() - start) * 1000)
                    one = time_gto(gto, ["register", target_id, "--bump-patch"], theirs, 1, timeout)
                    base.append(one)
                rows.append(
                    Row("peer", "register a version: procreg release ID", f"{n:,}", stats(samples),
                        "gto register ID --bump-patch",
                        base[0] if len(base) == 1 else stats([b["median_ms"] for b in base]),
                        note="procreg computes the bump from the code; gto is told it",
                        extra={"gto": version, "procedures": n})
                )  # fmt: skip
        finally:
            drop_copy(mine)
            drop_copy(theirs)
    skipped = [] if ctx.full else ["list all (gto show)", "register"]
    if skipped:
        rows.append(
            Row("peer", "not run at 1,000 in --quick", "1,000", {"note": ", ".join(skipped)},
                note="each takes minutes with gto at 1,000; --full runs them")
        )  # fmt: skip
    return rows


def clear_scratch() -> None:
    """Remove leftovers of interrupted runs."""
    shutil.rmtree(ROOT / "benchmarks" / "work" / "scratch", ignore_errors=True)
