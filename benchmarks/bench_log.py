"""How fast is `procreg log ID` with many tags? 1,000 procedures x 5 releases = 5,000 tags.

Builds the repository deterministically with pygit2 (fixed ids, times and
contents), packs its refs as a server would (`git pack-refs --all`), then
times, for one procedure id:

- ``latest_release`` and ``history`` in-process, on an open store (warm) and
  on a freshly opened store each time (what one CLI call pays);
- ``plan_release`` over every procedure when nothing changed (a CI run);
- the same prefix listing done by ``git for-each-ref`` (the baseline);
- a whole process that imports the library and prints the history.

Prints a table and writes ``benchmarks/results/log.json`` (median, p95, and
the machine). Run: ``.venv/bin/python benchmarks/bench_log.py [--repeat 50]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pygit2
import semver

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry import releases, tags  # noqa: E402
from registry.gitstore import GitStore  # noqa: E402
from registry.versioning import BumpDecision, DiffStats  # noqa: E402

EPOCH = 1_700_000_000
VERSIONS = ["1.0.0", "1.0.1", "1.1.0", "1.1.1", "2.0.0"]
BUMPS = ["initial", "patch", "minor", "patch", "major"]


def _sig(n: int) -> pygit2.Signature:
    return pygit2.Signature("Bench", "bench@example.com", EPOCH + n * 60, 0)


def build(path: Path, procedures: int, rounds: int) -> GitStore:
    """One commit per round changing every procedure, and one release tag per procedure a round."""
    repo = pygit2.init_repository(str(path), bare=True, initial_head="main")
    metas = {
        i: repo.create_blob(
            json.dumps({"id": f"proc-{i:04d}", "name": f"Procedure {i}"}, indent=2).encode()
        )
        for i in range(procedures)
    }
    parents: list[pygit2.Oid] = []
    for r in range(rounds):
        folder = repo.TreeBuilder()
        for i in range(procedures):
            main = f"def main(text: str) -> str:\n    return text * {r + 1}  # {i}\n".encode()
            sub = repo.TreeBuilder()
            sub.insert("main.py", repo.create_blob(main), pygit2.enums.FileMode.BLOB)
            sub.insert("metadata.json", metas[i], pygit2.enums.FileMode.BLOB)
            folder.insert(f"proc-{i:04d}", sub.write(), pygit2.enums.FileMode.TREE)
        root = repo.TreeBuilder()
        procs_tree = folder.write()
        root.insert("procedures", procs_tree, pygit2.enums.FileMode.TREE)
        commit = repo.create_commit(
            "refs/heads/main", _sig(r), _sig(r), f"round {r}", root.write(), parents
        )
        parents = [commit]
        version = semver.Version.parse(VERSIONS[r % len(VERSIONS)])
        previous = semver.Version.parse(VERSIONS[r - 1]) if r else None
        tree = repo.get(procs_tree)
        assert isinstance(tree, pygit2.Tree)
        decision = BumpDecision(
            bump=BUMPS[r % len(BUMPS)], breaking=BUMPS[r] == "major", reasons=["bench"]
        )
        for i in range(procedures):
            pid = f"proc-{i:04d}"
            message = tags.format_release_message(
                pid,
                version,
                decision,
                DiffStats(lines_added=1, lines_removed=1),
                previous,
                str(tree[pid].id),
            )
            repo.create_tag(
                tags.release_tag(pid, version),
                commit,
                pygit2.enums.ObjectType.COMMIT,
                _sig(r),
                message,
            )
    subprocess.run(["git", "pack-refs", "--all"], cwd=path, check=True)
    return GitStore(pygit2.Repository(str(path)))


def timed(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    fn()  # warm caches once, as a second call would find them
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 3),
        "min_ms": round(samples[0], 3),
        "runs": repeat,
    }


def machine() -> dict[str, object]:
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pygit2": pygit2.__version__,
        "libgit2": pygit2.LIBGIT2_VERSION,
        "git": git_version.strip(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procedures", type=int, default=1000)
    parser.add_argument("--releases", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--process-repeat", type=int, default=10)
    parser.add_argument("--id", default="proc-0500")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/log.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="procreg-bench-log-") as tmp:
        path = Path(tmp) / "registry.git"
        start = time.perf_counter()
        store = build(path, args.procedures, args.releases)
        build_s = time.perf_counter() - start
        ntags = len(store.ref_names("refs/tags/"))
        pid = args.id
        assert len(releases.history(store, pid)) == args.releases

        def fresh_history() -> object:
            return releases.history(GitStore.open(path), pid)

        script = (
            "import sys; sys.path.insert(0, sys.argv[1]);"
            "from registry.gitstore import GitStore; from registry.releases import history;"
            "print(len(history(GitStore.open(sys.argv[2]), sys.argv[3])))"
        )
        prefix = f"refs/tags/{tags.release_tag_prefix(pid)}*"
        rows = {
            "latest_release (open store)": timed(
                lambda: releases.latest_release(store, pid), args.repeat
            ),
            "history (open store)": timed(lambda: releases.history(store, pid), args.repeat),
            "history (fresh store each call)": timed(fresh_history, args.repeat),
            f"plan_release (all {args.procedures}, nothing to do)": timed(
                lambda: releases.plan_release(store), max(3, args.repeat // 5)
            ),
            "ref_names, all refs (listing cost)": timed(
                lambda: store.ref_names("refs/tags/"), args.repeat
            ),
            "git for-each-ref PREFIX (baseline process)": timed(
                lambda: subprocess.run(
                    ["git", "for-each-ref", prefix], cwd=path, check=True, capture_output=True
                ),
                args.process_repeat,
            ),
            "python -c 'import registry.releases' (startup)": timed(
                lambda: subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import registry.releases",
                    ],
                    check=True,
                    capture_output=True,
                ),
                args.process_repeat,
            ),
            "whole process: history(ID) printed": timed(
                lambda: subprocess.run(
                    [sys.executable, "-c", script, str(ROOT), str(path), pid],
                    check=True,
                    capture_output=True,
                ),
                args.process_repeat,
            ),
        }

    width = max(map(len, rows))
    print(
        f"{args.procedures} procedures x {args.releases} releases = {ntags} tags "
        f"(built in {build_s:.1f} s, refs packed); id {pid}"
    )
    print(f"{'operation':<{width}}  {'median ms':>10}  {'p95 ms':>10}  {'runs':>5}")
    for name, row in rows.items():
        print(
            f"{name:<{width}}  {row['median_ms']:>10.3f}  {row['p95_ms']:>10.3f}  {row['runs']:>5}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "log",
                "procedures": args.procedures,
                "releases_each": args.releases,
                "tags": ntags,
                "id": pid,
                "build_seconds": round(build_s, 2),
                "results": rows,
                "machine": machine(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
