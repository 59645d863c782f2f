"""The git-tag registry peer, ``gto``, in its own venv (never a dependency of procreg).

:func:`gto_bin` creates ``benchmarks/work/gto-venv`` with ``python -m venv`` and
``pip install gto`` the first time. :func:`time_gto` runs one gto command as a
whole process, the way a user or CI job would, with a timeout: a command that
times out is recorded as a lower bound, never as a measurement.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import WORK, bench_env, log, stats

VENV = WORK / "gto-venv"
GTO_VERSION = "1.10.1"  # pinned so that figures stay comparable between runs


def gto_bin() -> Path | None:
    """The gto executable, installing it into the benchmark venv if needed (None: no network)."""
    exe = VENV / "bin" / "gto"
    if exe.exists():
        return exe
    log(f"installing gto {GTO_VERSION} into {VENV} (benchmark-only venv)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", f"gto=={GTO_VERSION}"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        log(f"gto could not be installed ({exc}); peer rows are skipped")
        return None
    return exe if exe.exists() else None


def gto_version(exe: Path) -> str:
    """What ``gto --version`` says."""
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout
    return out.strip().split()[-1] if out.strip() else "?"


def time_gto(
    exe: Path, args: Sequence[str], repo: Path, repeat: int, timeout: float
) -> dict[str, Any]:
    """Milliseconds of ``gto ARGS`` in ``repo``; a timeout ends the repeats as a lower bound."""
    samples: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            result = subprocess.run(
                [str(exe), *args],
                cwd=repo,
                capture_output=True,
                timeout=timeout,
                env=bench_env() | {"GTO_EMOJIS": "false"},
            )
        except subprocess.TimeoutExpired:
            return {
                "n": len(samples) + 1,
                "median_ms": timeout * 1000,
                "lower_bound": True,
                "note": f"timed out after {timeout:.0f} s: the true time is longer",
                "completed_samples_ms": [round(s, 1) for s in samples],
            }
        elapsed = (time.perf_counter() - start) * 1000
        if result.returncode != 0:
            raise RuntimeError(f"gto {' '.join(args)} failed: {result.stderr.decode()[-400:]}")
        samples.append(elapsed)
    return stats(samples)
