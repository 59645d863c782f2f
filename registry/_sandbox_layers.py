"""Probing which sandbox layers are really in force on this machine.

Two cold runs in the sandbox itself report what a procedure sees (its uid,
rlimits, network, environment, working folder) and whether the audit hook
refuses a write outside the scratch folder. Nothing is assumed: a layer the OS
refused is reported inactive, with the reason.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from registry._sandbox_zygote import sandbox_python, worker_env
from registry.sandbox import (
    FSIZE_MB,
    NOFILE_LIMIT,
    NPROC_LIMIT,
    LayerStatus,
    RunRequest,
    Sandbox,
)

_PROBE_SOURCE = """
import errno, os, resource, socket

def main(parent_pid):
    info = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "cwd": os.getcwd(), "env": sorted(os.environ), "rlimits": {}}
    for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_FSIZE",
                 "RLIMIT_NPROC", "RLIMIT_CORE"):
        info["rlimits"][name] = list(resource.getrlimit(getattr(resource, name)))
    try:
        info["interfaces"] = [name for _, name in socket.if_nameindex()]
    except OSError as exc:
        info["interfaces"] = str(exc)
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", 9))
        info["connect"] = "connected"
    except OSError as exc:
        info["connect"] = errno.errorcode.get(exc.errno or 0, str(exc))
    finally:
        s.close()
    try:
        with open(f"/proc/{parent_pid}/environ", "rb") as fh:
            fh.read(1)
        info["parent_environ"] = "readable"
    except OSError as exc:
        info["parent_environ"] = errno.errorcode.get(exc.errno or 0, str(exc))
    return info
"""

_HOOK_PROBE_SOURCE = """
def main(target):
    try:
        open(target, "w").close()
    except PermissionError as exc:
        return type(exc).__name__
    return "written"
"""


def probe(sandbox: Sandbox) -> list[LayerStatus]:
    """Every layer of ``sandbox`` and whether it is active (two cold runs)."""
    hook = sandbox.audit_hook
    sandbox.audit_hook = False
    try:
        request = RunRequest(
            files={"main.py": _PROBE_SOURCE}, kwargs={"parent_pid": os.getpid()}, memory_mb=256
        )
        outcome = sandbox.run(request, warm=False)
    finally:
        sandbox.audit_hook = hook
    target = sandbox.scratch_base / f"procreg-probe-{uuid.uuid4().hex}"
    hook_result = sandbox.run(
        RunRequest(files={"main.py": _HOOK_PROBE_SOURCE}, kwargs={"target": str(target)}),
        warm=False,
    )
    target.unlink(missing_ok=True)
    if not outcome.ok or not isinstance(outcome.result, dict):
        reason = outcome.error.message if outcome.error else "no result"
        return [LayerStatus(name="sandbox", active=False, detail=f"the probe run failed: {reason}")]
    info: dict[str, Any] = outcome.result
    layers = [
        LayerStatus(
            name="separate-process",
            active=True,
            detail=f"one {sandbox_python()} process per run, killed with its process group",
        )
    ]
    dropped = info["uid"] not in (0, os.geteuid())
    layers.append(
        LayerStatus(
            name="uid-drop",
            active=dropped,
            detail=(
                f"runs as uid {info['uid']} with no groups (one uid per concurrent slot)"
                if dropped
                else f"runs as uid {info['uid']}: the host is not root, so no unprivileged user"
            ),
        )
    )
    limits = info["rlimits"]
    expected_as = request.memory_mb * 1024 * 1024
    rl_ok = (
        limits["RLIMIT_AS"][0] == expected_as
        and limits["RLIMIT_NOFILE"][0] == NOFILE_LIMIT
        and limits["RLIMIT_FSIZE"][0] == FSIZE_MB * 1024 * 1024
        and limits["RLIMIT_CORE"][0] == 0
        and limits["RLIMIT_CPU"][0] > 0
    )
    layers.append(
        LayerStatus(
            name="rlimits",
            active=rl_ok,
            detail=f"address space {request.memory_mb} MB (per run), CPU from the timeout, "
            f"{NOFILE_LIMIT} open files, {FSIZE_MB} MB file size, no core dumps",
        )
    )
    nproc_ok = dropped and limits["RLIMIT_NPROC"][0] == NPROC_LIMIT
    layers.append(
        LayerStatus(
            name="process-limit",
            active=nproc_ok,
            detail=f"RLIMIT_NPROC {NPROC_LIMIT} for the run's own uid"
            if nproc_ok
            else "RLIMIT_NPROC is not applied without a uid of the run's own",
        )
    )
    no_net = info["interfaces"] == ["lo"] and info["connect"] in ("ENETUNREACH", "ENETDOWN")
    layers.append(
        LayerStatus(
            name="network-namespace",
            active=no_net,
            detail=(
                "own network namespace, no interface up (127.0.0.1 unreachable); "
                "Unix sockets on the file system are stopped by the audit hook only"
                if no_net
                else f"network reachable (connect: {info['connect']})"
            ),
        )
    )
    env_keys = set(info["env"])
    clean = env_keys <= set(worker_env(Path("/"))) and info["parent_environ"] != "readable"
    layers.append(
        LayerStatus(
            name="clean-environment",
            active=clean,
            detail=f"only {', '.join(sorted(env_keys))}; the host's /proc/<pid>/environ is "
            f"{'readable!' if info['parent_environ'] == 'readable' else 'unreadable'}",
        )
    )
    cwd = Path(info["cwd"])
    layers.append(
        LayerStatus(
            name="scratch-directory",
            active=cwd.parent == sandbox.scratch_base and not cwd.exists(),
            detail=f"a fresh folder in {sandbox.scratch_base} as the working directory, "
            "gone from there when the run returns (renamed away, deleted in the background)",
        )
    )
    sweeping = dropped and sandbox.slots.uids is not None
    zygote_info = sandbox._pool.zygote.info if sandbox._pool.zygote is not None else {}
    checked = (
        " (skipped when none of the subreaper zygote's children has the uid: nothing escaped)"
        if zygote_info.get("children")
        else ""
    )
    layers.append(
        LayerStatus(
            name="process-sweep",
            active=sweeping,
            detail=(
                "after each run every process of the run's uid is killed and reaped, before "
                f"the uid serves another run{checked}"
                if sweeping
                else "only the run's process group is killed: background children can escape"
            ),
        )
    )
    hook_ok = hook_result.ok and hook_result.result == "SandboxViolation"
    layers.append(
        LayerStatus(
            name="audit-hook",
            active=hook_ok and hook,
            detail=(
                "denies writes outside the scratch folder, sockets, new processes, "
                "signals to other processes, ctypes"
                if hook
                else "disabled for this Sandbox (audit_hook=False)"
            ),
        )
    )
    zygote = sandbox._pool.zygote
    if sandbox.pool_size <= 0:
        pool = LayerStatus(name="warm-pool", active=False, detail="disabled (pool_size = 0)")
    elif zygote is None:
        pool = LayerStatus(name="warm-pool", active=False, detail=f"{sandbox._pool.error}")
    else:
        pool = LayerStatus(
            name="warm-pool",
            active=bool(zygote.info.get("subreaper")),
            detail=f"{sandbox.pool_size} pre-forked workers, one run each; the zygote is a "
            + ("subreaper" if zygote.info.get("subreaper") else "not a subreaper: orphans linger"),
        )
    layers.append(pool)
    layers.append(
        LayerStatus(
            name="filesystem-isolation",
            active=False,
            detail="no mount namespace: world-readable files stay readable and world-writable "
            "folders (/tmp) are closed only by the audit hook",
        )
    )
    return layers
