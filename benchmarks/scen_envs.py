"""Environments of locked libraries: first build, warm run overhead, cache hit rate.

A tiny distribution is built here (``uv build`` without build isolation, so
nothing is downloaded) and served from a folder; a procedure importing it is
locked with ``procreg lock --find-links --no-index``. Figures:

- first build: ``EnvCache.ensure`` on an empty cache (uv installs the locked
  wheel into a new folder, which is renamed into place); the baseline is
  ``uv venv`` + ``uv pip install`` of the same wheel, the naive way to give a
  script its libraries;
- warm run overhead: a warm ``Sandbox.run`` of a no-op with the environment
  mounted, beside the same run without one (target: within 1 ms);
- cache hit rate over repeated ``Registry.run`` calls of the locked procedure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Context, Row, bench_env, log, stats, timed_after
from registry.api import Registry
from registry.config import Config
from registry.git.store import GitStore
from registry.releases import release as releases
from registry.sandbox import RunRequest, Sandbox, sandbox_python
from registry.sandbox.envs import EnvCache, uv_binary
from registry.workspace.locking import lock_procedure

NOOP = '''"""noop: returns its input."""


def main(n: int) -> int:
    """Return n."""
    return n
'''

TINY = '''"""tiny: imports its locked library."""

import tinylib


def main(n: int) -> str:
    """The library's version."""
    return tinylib.__version__
'''


def _uv() -> str:
    uv = uv_binary()
    if uv is None:
        raise RuntimeError("uv is not installed")
    return uv


def build_wheel(base: Path) -> Path:
    """``tinylib-1.0.0`` as a wheel in ``base/wheels``."""
    src = base / "tinylib"
    (src / "tinylib").mkdir(parents=True)
    (src / "tinylib" / "__init__.py").write_text('__version__ = "1.0.0"\n')
    (src / "pyproject.toml").write_text(
        '[project]\nname = "tinylib"\nversion = "1.0.0"\n[build-system]\n'
        'requires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    out = base / "wheels"
    argv = [_uv(), "build", "--wheel", "--no-build-isolation", "--python", sys.executable]
    subprocess.run([*argv, "-o", str(out)], cwd=src, check=True, capture_output=True)
    return out


def make_repo(base: Path, wheels: Path) -> Path:
    """A registry with ``tiny`` (locked to tinylib 1.0.0), released."""
    root = base / "repo"
    folder = root / "procedures" / "tiny"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(TINY)
    meta = {
        "id": "tiny",
        "name": "Tiny",
        "description": "benchmark procedure with a locked library",
        "parameters": [{"name": "n", "type": "integer"}],
        "returns": {"type": "string"},
        "requirements": ["tinylib==1.0.0"],
    }
    (folder / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True, env=bench_env())
    store = GitStore.open(root)
    lock_procedure(store, "tiny", Config(), find_links=[str(wheels)], no_index=True)
    for args in (["add", "-A"], ["commit", "-qm", "feat: tiny"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=bench_env())
    releases.release(GitStore.open(root), ["tiny"])
    return root


def _naive_build(wheels: Path, target: Path) -> None:
    uv = _uv()
    env = bench_env()
    subprocess.run(
        [uv, "venv", "-q", "--python", sandbox_python(), str(target)], check=True, env=env
    )
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(target / "bin" / "python"), "--no-index",
         "--find-links", str(wheels), "tinylib==1.0.0"],
        check=True, env=env,
    )  # fmt: skip


def scenario_envs(ctx: Context) -> list[Row]:
    """First environment build, warm run overhead with one, cache hit rate."""
    builds, warm_n, runs_n = ctx.reps(3, 8), ctx.reps(200, 500), ctx.reps(50, 200)
    with tempfile.TemporaryDirectory(prefix="procreg-bench-envs-", dir="/tmp") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        wheels = build_wheel(base)
        root = make_repo(base, wheels)
        lock_text = (root / "procedures" / "tiny" / "pylock.toml").read_text()
        python = sandbox_python()
        log(f"first environment build x{builds}")
        first, naive = [], []
        for i in range(builds):
            cache = EnvCache(base / f"cache-{i}")
            start = time.perf_counter()
            env, built = cache.ensure(lock_text, python)
            first.append((time.perf_counter() - start) * 1000)
            assert built
            start = time.perf_counter()
            _naive_build(wheels, base / f"naive-{i}")
            naive.append((time.perf_counter() - start) * 1000)
        log(f"warm runs with and without the environment x{warm_n}")
        plain = RunRequest(files={"main.py": NOOP}, kwargs={"n": 1})
        with_env = RunRequest(files={"main.py": NOOP}, kwargs={"n": 1}, env=env.path)
        with Sandbox(pool_size=2) as box:
            stdlib = stats(
                timed_after(lambda: box.run(plain), lambda: box.wait_warm(30), warm_n, 5)
            )
            mounted = stats(
                timed_after(
                    lambda: box.run(with_env), lambda: box.wait_warm(30, env=env.path), warm_n, 5
                )
            )
        log(f"Registry.run of the locked procedure x{runs_n}")
        # a cache the sandbox's uids can reach (the default one is under HOME)
        os.environ["PROCREG_CACHE_DIR"] = str(base / "cache-registry")
        cache = EnvCache.default()
        hits0, builds0 = cache.hits, cache.builds
        with Registry.open(root) as reg:
            for i in range(runs_n):
                result = reg.run("tiny", n=i)
                if not result.ok or result.result != "1.0.0":
                    raise RuntimeError(f"run failed: {result.error}")
        hits, built_n = cache.hits - hits0, cache.builds - builds0
        del os.environ["PROCREG_CACHE_DIR"]
    overhead = mounted["median_ms"] - stdlib["median_ms"]
    size = "1 wheel"
    return [
        Row("envs", "first environment build (EnvCache.ensure)", size, stats(first),
            "uv venv + uv pip install (naive)", stats(naive)),
        Row("envs", "warm Sandbox.run with an environment", "no-op", mounted,
            "warm Sandbox.run, standard library only", stdlib,
            target="within 1 ms of the standard-library warm run",
            met=overhead <= 1.0, note=f"overhead {overhead:+.2f} ms median"),
        Row("envs", "environment cache hit rate, repeated Registry.run", f"{runs_n} runs",
            {"hit_rate": hits / max(1, hits + built_n), "hits": hits, "builds": built_n},
            note="the first run of a fresh cache builds; the rest are hits"),
    ]  # fmt: skip
