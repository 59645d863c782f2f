"""The seccomp filter: :class:`~registry.sandbox.policy.SeccompPolicy` compiled to BPF.

The filter is compiled by libseccomp's own Python bindings (Debian's
``python3-seccomp``), which belong to the system interpreter that the
sandbox runs, so the compiler runs in that interpreter: one short process,
once per policy, its output cached in memory and in a root-only folder.
bubblewrap loads the program (``--seccomp FD``) into the sandbox's first
process, so everything the run starts is under it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from pathlib import Path

from registry.errors import ExecutionError
from registry.sandbox.policy import SeccompPolicy

# Runs in the system interpreter (-I -S): Debian keeps the bindings in dist-packages.
_COMPILER = r"""
import json, sys
sys.path.append("/usr/lib/python3/dist-packages")
import seccomp
p = json.loads(sys.stdin.read())
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
for name in p["denied"]:
    try:
        f.add_rule(seccomp.ERRNO(p["eperm"]), name)
    except (RuntimeError, ValueError):
        pass  # a call this kernel and architecture do not have
f.add_rule(seccomp.ERRNO(p["enosys"]), "clone3")  # flags are in memory: glibc falls back to clone
for bit in range(32):
    flag = 1 << bit
    if p["clone_flags"] & flag:
        f.add_rule(seccomp.ERRNO(p["eperm"]), "clone",
                   seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
allowed = sorted(p["socket_families"])
# One comparison per rule (libseccomp refuses two on one argument): every family below
# the highest allowed one that is not allowed, then everything above it.
for fam in range(allowed[-1]):
    if fam not in allowed:
        f.add_rule(seccomp.ERRNO(p["eafnosupport"]), "socket", seccomp.Arg(0, seccomp.EQ, fam))
f.add_rule(seccomp.ERRNO(p["eafnosupport"]), "socket", seccomp.Arg(0, seccomp.GT, allowed[-1]))
f.add_rule(seccomp.ERRNO(p["eperm"]), "ioctl",
           seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, p["tiocsti"]))
f.export_bpf(sys.stdout.buffer)
"""

CACHE_DIR = Path("/run/procreg-sandbox")
_LOCK = threading.Lock()
_MEMO: dict[str, bytes] = {}


def policy_key(python: str, policy: SeccompPolicy) -> str:
    """The cache key of ``policy`` compiled by ``python``."""
    text = json.dumps({"python": python, "compiler": _COMPILER, **policy.as_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def compile_filter(python: str, policy: SeccompPolicy | None = None) -> bytes:
    """The BPF program for ``policy`` (cached); raises :class:`ExecutionError` if it cannot be."""
    policy = policy or SeccompPolicy()
    key = policy_key(python, policy)
    with _LOCK:
        cached = _MEMO.get(key)
        if cached is not None:
            return cached
        path = _cache_dir() / f"seccomp-{key}.bpf"
        try:
            program = path.read_bytes()
        except OSError:
            program = b""
        if not program:
            program = _run_compiler(python, policy)
            _store(path, program)
        _MEMO[key] = program
        return program


def _run_compiler(python: str, policy: SeccompPolicy) -> bytes:
    try:
        done = subprocess.run(
            [python, "-I", "-S", "-c", _COMPILER],
            input=json.dumps(policy.as_dict()).encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExecutionError(f"cannot compile the seccomp filter with {python}: {exc}") from None
    if done.returncode != 0 or not done.stdout:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        hint = (
            "install libseccomp's Python bindings (Debian: apt-get install python3-seccomp)"
            if "seccomp" in last
            else "run `procreg doctor`"
        )
        raise ExecutionError(f"cannot compile the seccomp filter ({last}); {hint}")
    if len(done.stdout) % 8:
        raise ExecutionError("the seccomp compiler returned a truncated BPF program")
    return done.stdout


def _cache_dir() -> Path:
    if os.geteuid() == 0:
        return CACHE_DIR
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "procreg"


def _store(path: Path, program: bytes) -> None:
    """Write the program atomically; a cache that cannot be written only costs a recompile."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(program)
        tmp.replace(path)
    except OSError:
        pass
