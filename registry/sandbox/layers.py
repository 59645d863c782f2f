"""Probing which sandbox layers are really in force on this machine (``procreg doctor``).

Two cold runs in the sandbox itself report what a procedure sees: its
namespaces (compared with the host's own), its root, capabilities, seccomp
mode, uid, rlimits, network, environment, tmpfs sizes, and whether the
refused system calls are refused. Nothing is assumed: a layer that is not in
force is reported inactive, with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from registry.config import SandboxSection
from registry.sandbox.engine import BUBBLEWRAP, Engine
from registry.sandbox.instance import sandbox_python, worker_env
from registry.sandbox.models import (
    FSIZE_MB,
    NOFILE_LIMIT,
    NPROC_LIMIT,
    LayerStatus,
    RunOutcome,
    RunRequest,
)
from registry.sandbox.policy import SCRATCH
from registry.sandbox.pool import WarmPool
from registry.sandbox.slots import Slots
from registry.sandbox.supervisor import PROXY_PATH


class Probed(Protocol):
    """What the probe needs of the sandbox it probes (a :class:`~registry.sandbox.Sandbox`)."""

    audit_hook: bool

    @property
    def config(self) -> SandboxSection: ...

    @property
    def pool_size(self) -> int: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def slots(self) -> Slots: ...

    @property
    def isolation(self) -> str: ...

    def run(self, request: RunRequest, *, warm: bool = True) -> RunOutcome: ...


NAMESPACES = ("mnt", "pid", "ipc", "uts", "net", "user", "cgroup")

_PROBE_SOURCE = """
import errno, os, resource, socket

def code(exc):
    return errno.errorcode.get(exc.errno or 0, str(exc))

def main():
    info = {"uid": os.getuid(), "pid": os.getpid(), "cwd": os.getcwd(), "env": sorted(os.environ),
            "hostname": os.uname().nodename, "rlimits": {}, "ns": {}, "status": {}}
    for ns in ("mnt", "pid", "ipc", "uts", "net", "user", "cgroup"):
        try:
            info["ns"][ns] = os.readlink(f"/proc/self/ns/{ns}")
        except OSError as exc:
            info["ns"][ns] = code(exc)
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp"):
            info["status"][key] = value.strip()
    for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_FSIZE",
                 "RLIMIT_NPROC", "RLIMIT_CORE"):
        info["rlimits"][name] = list(resource.getrlimit(getattr(resource, name)))
    info["root"] = sorted(os.listdir("/"))
    info["procs"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    try:
        os.mkdir("/procreg-probe")
        info["root_writable"] = True
    except OSError:
        info["root_writable"] = False
    info["tmpfs"] = {}
    for folder in ("/tmp", "/dev/shm"):
        try:
            st = os.statvfs(folder)
            info["tmpfs"][folder] = st.f_blocks * st.f_frsize
        except OSError as exc:
            info["tmpfs"][folder] = code(exc)
    try:
        info["interfaces"] = [name for _, name in socket.if_nameindex()]
    except OSError as exc:
        info["interfaces"] = code(exc)
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        info["inet_socket"] = "created"
    except OSError as exc:
        info["inet_socket"] = code(exc)
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.unshare(0x10000000) != 0  # CLONE_NEWUSER
        info["unshare"] = errno.errorcode.get(ctypes.get_errno(), "?") if failed else "allowed"
    except OSError as exc:
        info["unshare"] = code(exc)
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


_NETWORK_PROBE_SOURCE = """
import socket

def main(path, port):
    direct = socket.socket()
    direct.settimeout(5)
    try:
        direct.connect(("127.0.0.1", port))
        reached = True
    except OSError:
        reached = False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    sock.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" % port)
    return {"direct": reached, "proxy": sock.recv(64).decode("latin-1").split("\\r\\n")[0]}
"""


def _network_layer(sandbox: Probed) -> LayerStatus:
    """A network run with an allowlist that leaves out the probe's target: refused, recorded."""
    if sandbox.isolation != BUBBLEWRAP:
        return LayerStatus(
            name="network-allowlist",
            active=False,
            detail="network runs need bubblewrap: procedures with network.allow fail here",
        )
    outcome = sandbox.run(
        RunRequest(
            files={"main.py": _NETWORK_PROBE_SOURCE},
            kwargs={"path": PROXY_PATH, "port": 9},
            network_allow=["procreg-probe.invalid:9"],
        ),
        warm=False,
    )
    got = outcome.result if outcome.ok and isinstance(outcome.result, dict) else {}
    refused = str(got.get("proxy", "")).startswith("HTTP/1.1 403")
    recorded = [d.target for d in outcome.network_denied] == ["127.0.0.1:9"]
    active = refused and recorded and got.get("direct") is False
    detail = (
        "a run with network.allow reaches only procreg's proxy (h11, on a Unix socket of its "
        "own); a target off the list got 403 and was recorded; no direct route"
        if active
        else f"the probe was not refused as expected: {got or outcome.error}"
    )
    return LayerStatus(name="network-allowlist", active=active, detail=detail)


def probe(sandbox: Probed, pool: WarmPool) -> list[LayerStatus]:
    """Every layer of ``sandbox`` (whose warm pool is ``pool``) and whether it is in force.

    Two cold runs; the sandbox passes itself, so the probe builds on no runner.
    """
    hook = sandbox.audit_hook
    sandbox.audit_hook = False
    try:
        outcome = sandbox.run(RunRequest(files={"main.py": _PROBE_SOURCE}), warm=False)
    finally:
        sandbox.audit_hook = hook
    hook_result = sandbox.run(
        RunRequest(files={"main.py": _HOOK_PROBE_SOURCE}, kwargs={"target": "/procreg-hook"}),
        warm=False,
    )
    if not outcome.ok or not isinstance(outcome.result, dict):
        reason = outcome.error.message if outcome.error else "no result"
        return [LayerStatus(name="sandbox", active=False, detail=f"the probe run failed: {reason}")]
    info: dict[str, Any] = outcome.result
    layers = [_engine_layer(sandbox)]
    layers += _namespace_layers(info)
    layers += _kernel_layers(info, sandbox)
    layers += _limit_layers(info, sandbox)
    hook_ok = hook_result.ok and hook_result.result == "SandboxViolation"
    layers.append(
        LayerStatus(
            name="audit-hook",
            active=hook_ok and hook,
            detail=(
                "defence in depth only, not a boundary (Python's audit hooks are no sandbox): "
                "refuses writes outside the scratch folder, sockets, new processes, signals, ctypes"
                if hook
                else "disabled for this Sandbox (audit_hook=False)"
            ),
        )
    )
    layers.append(_network_layer(sandbox))
    if sandbox.pool_size <= 0:
        layers.append(
            LayerStatus(name="warm-pool", active=False, detail="disabled (pool_size = 0)")
        )
    else:
        layers.append(
            LayerStatus(
                name="warm-pool",
                active=pool.error is None,
                detail=pool.error
                or f"{sandbox.pool_size} whole sandbox(es) started ahead, one run each, "
                "isolated like a cold one",
            )
        )
    return layers


def _engine_layer(sandbox: Probed) -> LayerStatus:
    engine = sandbox.engine
    if engine.isolation == BUBBLEWRAP:
        return LayerStatus(
            name="isolation-engine",
            active=True,
            detail=f"bubblewrap ({engine.bwrap}), a new sandbox per run, interpreter "
            f"{sandbox_python()}",
        )
    return LayerStatus(
        name="isolation-engine",
        active=False,
        detail=f"NONE: [sandbox] require_isolation = false and {engine.problem}; "
        "runs are not isolated, and every run record says isolation: none",
    )


def _namespace_layers(info: dict[str, Any]) -> list[LayerStatus]:
    layers = []
    for ns in NAMESPACES:
        try:
            host = str(Path(f"/proc/self/ns/{ns}").readlink())
        except OSError:
            host = "?"
        theirs = info["ns"].get(ns, "?")
        active = theirs != host and theirs.startswith(ns)
        detail = f"{'own' if active else 'the host'} {ns} namespace ({theirs})"
        if ns == "mnt" and active:
            ro = not info["root_writable"]
            active = active and ro
            detail += f"; read-only root holding only {', '.join(info['root'])}"
        if ns == "pid" and active:
            detail += f"; /proc shows {len(info['procs'])} processes, the run's own"
        if ns == "uts":
            detail += f"; hostname {info['hostname']!r}"
        if ns == "net":
            no_net = info["interfaces"] in (["lo"], [], "EAFNOSUPPORT")
            active = active and no_net
            detail += f"; interfaces {info['interfaces']}, loopback down"
        layers.append(LayerStatus(name=f"{ns}-namespace", active=active, detail=detail))
    return layers


def _kernel_layers(info: dict[str, Any], sandbox: Probed) -> list[LayerStatus]:
    status = info["status"]
    seccomp_on = (
        status.get("Seccomp") == "2"
        and info["inet_socket"] == "EAFNOSUPPORT"
        and info["unshare"] == "EPERM"
    )
    caps_none = all(not status.get(key, "x").strip("0") for key in ("CapEff", "CapBnd"))
    return [
        LayerStatus(
            name="seccomp",
            active=seccomp_on,
            detail=f"filter mode {status.get('Seccomp')}: AF_INET socket -> "
            f"{info['inet_socket']}, unshare -> {info['unshare']}; refuses ptrace, mount, "
            "namespaces, keyctl, bpf, perf_event_open, io_uring, modules, reboot",
        ),
        LayerStatus(
            name="capabilities",
            active=caps_none and status.get("NoNewPrivs") == "1",
            detail=f"effective {status.get('CapEff')}, bounding {status.get('CapBnd')}, "
            f"no_new_privs {status.get('NoNewPrivs')}",
        ),
        LayerStatus(
            name="uid-drop",
            active=info["uid"] != 0 and sandbox.slots.uids is not None,
            detail=f"runs as uid {info['uid']}, one unprivileged uid per live sandbox"
            if sandbox.slots.uids is not None
            else f"runs as uid {info['uid']}: the host is not root, so no uid of the run's own",
        ),
    ]


def _limit_layers(info: dict[str, Any], sandbox: Probed) -> list[LayerStatus]:
    limits = info["rlimits"]
    cfg = sandbox.config
    groups = sandbox.engine.cgroups
    tmpfs = info["tmpfs"]
    tmpfs_ok = all(isinstance(v, int) and v <= cfg.tmpfs_mb * 1024 * 1024 for v in tmpfs.values())
    bound_mb = NPROC_LIMIT * 256 + 2 * cfg.tmpfs_mb
    rl_ok = (
        limits["RLIMIT_AS"][0] == 256 * 1024 * 1024
        and limits["RLIMIT_NOFILE"][0] == NOFILE_LIMIT
        and limits["RLIMIT_FSIZE"][0] == FSIZE_MB * 1024 * 1024
        and limits["RLIMIT_CORE"][0] == 0
        and limits["RLIMIT_CPU"][0] > 0
    )
    env_keys = set(info["env"])
    return [
        LayerStatus(
            name="cgroup",
            active=groups.usable,
            detail=f"cgroup v{groups.version} per run: memory of all its processes and its "
            "tmpfs (the run's memory_mb + 32 MB for the supervisor), process count "
            f"{NPROC_LIMIT}"
            if groups.usable
            else f"not in force ({groups.problem}); a run's memory is bounded only by "
            f"{NPROC_LIMIT} processes x its address-space limit + its tmpfs (about {bound_mb} "
            "MB at 256 MB)",
        ),
        LayerStatus(
            name="tmpfs",
            active=tmpfs_ok and sandbox.isolation == BUBBLEWRAP,
            detail=f"private {SCRATCH} (in /tmp) and /dev/shm, {cfg.tmpfs_mb} MB each: {tmpfs}",
        ),
        LayerStatus(
            name="rlimits",
            active=rl_ok,
            detail=f"address space (the run's memory_mb), CPU from the timeout, {NOFILE_LIMIT} "
            f"open files, {FSIZE_MB} MB file size, no core dumps",
        ),
        LayerStatus(
            name="process-limit",
            active=limits["RLIMIT_NPROC"][0] == NPROC_LIMIT,
            detail=f"RLIMIT_NPROC {NPROC_LIMIT} for the run's own uid",
        ),
        LayerStatus(
            name="clean-environment",
            active=env_keys <= set(worker_env(SCRATCH)),
            detail=f"only {', '.join(sorted(env_keys))}",
        ),
        LayerStatus(
            name="limit-ceilings",
            active=True,
            detail=f"procreg.toml caps every run at {cfg.max_timeout_s:g} s and "
            f"{cfg.max_memory_mb} MB (metadata may ask for less, never more)",
        ),
    ]
