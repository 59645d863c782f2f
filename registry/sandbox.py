"""Run untrusted procedure code in a separate, confined process.

Every run gets a fresh process (a pre-forked *warm* worker, or a *cold* one
started for the run) that serves that one run and exits. The layers, each
checked by :func:`probe_layers` rather than assumed:

- wall-clock timeout enforced here: the worker's whole process group is
  SIGKILLed, then every process of its uid (the *sweep*);
- rlimits: address space, CPU, open files, file size, processes, no core;
- an unprivileged uid, one per concurrent slot (``UID_BASE`` upwards, locked
  across processes), so the sweep and RLIMIT_NPROC are exact;
- a clean environment (the zygote is exec'd with a minimal one and never sees
  the host's memory) and a scratch working directory removed afterwards;
- a network namespace with no interface up;
- an audit hook in the child, defence in depth: writes outside the scratch
  folder, sockets, process creation, signals to other processes, ctypes.

A layer the OS refuses is reported inactive by :meth:`Sandbox.layers`; the run
still works. Failures are reported with the stable classes in ``FAILURE_TYPES``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import pwd
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
import weakref
from collections import deque
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from registry import _sandbox_child as child
from registry.config import SandboxSection
from registry.errors import ExecutionError

log = logging.getLogger(__name__)

TIMEOUT = "Timeout"
CPU_LIMIT = "CpuLimitExceeded"
MEMORY_LIMIT = child.MEMORY_LIMIT
OUTPUT_LIMIT = child.OUTPUT_LIMIT
PROCESS_LIMIT = child.PROCESS_LIMIT
SANDBOX_VIOLATION = child.SANDBOX_VIOLATION
CRASHED = "Crashed"
ARGUMENT_ERROR = child.ARGUMENT_ERROR
NOT_SERIALIZABLE = child.NOT_SERIALIZABLE
INVALID_PROCEDURE = child.INVALID_PROCEDURE

FAILURE_TYPES: dict[str, str] = {
    TIMEOUT: "ran longer than its wall-clock limit; its processes were killed",
    CPU_LIMIT: "used more CPU time than its limit (RLIMIT_CPU)",
    MEMORY_LIMIT: "ran out of address space (MemoryError, or died of it)",
    OUTPUT_LIMIT: "wrote more than the hard output cap, or returned a result too large "
    "(output over max_output_bytes is only truncated and flagged)",
    PROCESS_LIMIT: "tried to start a process, or hit RLIMIT_NPROC (fork bomb)",
    SANDBOX_VIOLATION: "did something the sandbox forbids: write outside the scratch folder, "
    "network, signals to other processes, ctypes, or an OS permission denial",
    CRASHED: "died of a signal or exited without a result",
    ARGUMENT_ERROR: "the keyword arguments do not fit the entry point, or are not JSON",
    NOT_SERIALIZABLE: "the result is not JSON (NaN and infinities included)",
    INVALID_PROCEDURE: "no main.py, a syntax error in it, or no such entry point",
}
"""Stable ``RunError.type`` values; any other type is the procedure's own exception class."""

UID_BASE = 61000
UID_SLOTS = 64
NPROC_LIMIT = 32
NOFILE_LIMIT = 64
FSIZE_MB = 64
OUTPUT_HARD_CAP_FACTOR = 256  # a stream past bound * factor bytes gets the run killed
MAX_RESULT_BYTES = 16 * 1024 * 1024
SPAWN_WAIT_S = 5.0
KILL_GRACE_S = 5.0
DRAIN_S = 1.0
CHILD_SCRIPT = Path(child.__file__).resolve()
ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


class RunRequest(BaseModel):
    """One run: the procedure's files, the entry point, its arguments and limits."""

    model_config = ConfigDict(extra="forbid")

    files: dict[str, str]
    entry_point: str = "main"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)
    memory_mb: int = Field(default=256, ge=16)
    cpu_s: float | None = Field(default=None, gt=0)
    max_output_bytes: int = Field(default=65536, gt=0)


class RunError(BaseModel):
    """Why a run failed: ``type`` is one of ``FAILURE_TYPES`` or an exception class."""

    type: str
    message: str


class ResourceUsage(BaseModel):
    """What the worker process consumed."""

    cpu_user_ms: float
    cpu_system_ms: float
    max_rss_kb: int


class RunOutcome(BaseModel):
    """The result of a run, successful or not."""

    ok: bool
    result: Any = None
    error: RunError | None = None
    duration_ms: float
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    usage: ResourceUsage | None = None


class LayerStatus(BaseModel):
    """One isolation layer and whether it is really in force here."""

    name: str
    active: bool
    detail: str


# --------------------------------------------------------------------------- uid slots


class _Slot:
    def __init__(self, uid: int | None, gid: int | None, lock_fd: int | None) -> None:
        self.uid, self.gid, self.lock_fd = uid, gid, lock_fd


class _Slots:
    """Unprivileged uids, each held by one run at a time across all processes (flock)."""

    def __init__(self, uids: list[tuple[int, int]] | None) -> None:
        self.uids = uids  # None: no uid drop (not root)
        self.free: list[_Slot] = []
        self.held: set[int] = set()
        self.lock = threading.Lock()
        self.lock_dir = Path("/run/procreg-sandbox")
        if uids is not None:
            self.lock_dir.mkdir(mode=0o700, exist_ok=True)

    def acquire(self) -> _Slot:
        if self.uids is None:
            return _Slot(None, None, None)
        deadline = time.monotonic() + 60
        while True:
            with self.lock:
                if self.free:
                    return self.free.pop()
                for uid, gid in self.uids:
                    if uid in self.held:
                        continue
                    fd = os.open(self.lock_dir / f"slot-{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(fd)
                        continue
                    self.held.add(uid)
                    _kill_uid(uid)  # leftovers of a host that died mid-run
                    return _Slot(uid, gid, fd)
            if time.monotonic() > deadline:
                raise ExecutionError(
                    f"all {len(self.uids)} sandbox uids are busy (locks in {self.lock_dir}); "
                    "wait for other runs to finish or raise UID_SLOTS"
                )
            time.sleep(0.01)

    def release(self, slot: _Slot, clean: bool) -> None:
        if slot.uid is None:
            return
        with self.lock:
            if clean:
                self.free.append(slot)
            else:  # keep it locked (unused) until close: its processes may linger
                log.warning("sandbox uid %s is quarantined: its sweep did not finish", slot.uid)

    def close(self) -> None:
        with self.lock:
            for slot in self.free:
                if slot.lock_fd is not None and slot.uid is not None:
                    os.close(slot.lock_fd)
                    self.held.discard(slot.uid)
            self.free.clear()


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (a forked helper that becomes it)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


# --------------------------------------------------------------------------- zygote client


class _Worker:
    """The host's side of one worker: its control socket, output pipes and exit."""

    def __init__(self, zygote: _Zygote, wid: int) -> None:
        self.zygote, self.id = zygote, wid
        self.ctl, ctl_child = socket.socketpair()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.notify_r, self.notify_w = os.pipe()
        self.child_fds = [ctl_child.detach(), out_w, err_w]
        self.pid: int | None = None
        self.ready = threading.Event()
        self.exit: dict[str, Any] | None = None

    def spawned(self, pid: int | None) -> None:
        self.pid = pid
        self.ready.set()

    def exited(self, msg: dict[str, Any]) -> None:
        self.exit = msg
        with contextlib.suppress(OSError):
            os.write(self.notify_w, b"x")

    def close(self) -> None:
        self.ctl.close()
        for fd in (self.out_r, self.err_r, self.notify_r, self.notify_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Zygote:
    """A ``_sandbox_child.py zygote`` process and the thread that reads its messages."""

    def __init__(self, one_shot: bool) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd = [
            sandbox_python(),
            "-I",
            "-S",
            "-B",
            str(CHILD_SCRIPT),
            "zygote",
            str(theirs.fileno()),
        ]
        if one_shot:
            cmd.append("--one-shot")
        try:
            self.proc = subprocess.Popen(
                cmd,
                pass_fds=[theirs.fileno()],
                env=ZYGOTE_ENV,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            self.sock.close()
            raise ExecutionError(f"cannot start the sandbox ({cmd[0]}): {exc}") from exc
        finally:
            theirs.close()
        self.send_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.spawning: dict[int, _Worker] = {}
        self.running: dict[int, _Worker] = {}
        self.next_id = 0
        self.dead = False
        self.sock.settimeout(10)
        try:
            ready = json.loads(self.sock.recv(child.MAX_ZYGOTE_MESSAGE) or b"null")
        except (OSError, ValueError):
            ready = None
        if not isinstance(ready, dict) or ready.get("op") != "ready":
            self.close()
            raise ExecutionError("the sandbox zygote did not start (run `procreg doctor`)")
        self.info: dict[str, Any] = ready
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._read_loop, name="sandbox-zygote", daemon=True)
        self.reader.start()

    def _send(self, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(msg).encode()
        with self.send_lock:
            if fds:
                socket.send_fds(self.sock, [data], fds)
            else:
                self.sock.send(data)

    def spawn(self) -> _Worker:
        """Ask for a new worker; it is usable once ``worker.ready`` is set with a pid."""
        with self.state_lock:
            self.next_id += 1
            worker = _Worker(self, self.next_id)
            if self.dead:
                worker.spawned(None)
            else:
                self.spawning[worker.id] = worker
        try:
            if not self.dead:
                self._send({"op": "spawn", "id": worker.id}, worker.child_fds)
        except OSError:
            self._mark_dead()
        finally:
            for fd in worker.child_fds:
                os.close(fd)
        return worker

    def assign(self, pid: int, uid: int) -> None:
        self._send({"op": "assign", "pid": pid, "uid": uid})

    def kill(self, pid: int) -> None:
        """Kill a worker's process group; the zygote then sweeps its uid and reports."""
        try:
            self._send({"op": "kill", "pid": pid})
        except OSError:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)

    def _read_loop(self) -> None:
        while True:
            try:
                data = self.sock.recv(child.MAX_ZYGOTE_MESSAGE)
            except OSError:
                data = b""
            if not data:
                self._mark_dead()
                return
            msg = json.loads(data)
            with self.state_lock:
                if msg.get("op") == "spawned":
                    worker = self.spawning.pop(msg["id"], None)
                    if worker is not None:
                        self.running[msg["pid"]] = worker
                        worker.spawned(msg["pid"])
                elif msg.get("op") == "exit":
                    worker = self.running.pop(msg["pid"], None)
                    if worker is not None:
                        worker.exited(msg)
                elif msg.get("op") == "error":
                    log.warning("sandbox zygote: %s", msg.get("message"))
                    worker = self.spawning.pop(msg.get("id", -1), None)
                    if worker is not None:
                        worker.spawned(None)

    def _mark_dead(self) -> None:
        with self.state_lock:
            self.dead = True
            for worker in self.spawning.values():
                worker.spawned(None)
            for worker in self.running.values():
                worker.exited({"op": "exit", "status": None, "usage": None, "swept": False})
            self.spawning.clear()
            self.running.clear()

    def close(self) -> None:
        """Tell the zygote to kill its workers and exit; wait for it."""
        with contextlib.suppress(OSError):
            self._send({"op": "quit"})
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


# --------------------------------------------------------------------------- the sandbox


class Sandbox:
    """Runs procedures in confined processes; owns the warm pool. Thread-safe.

    ``pool_size`` pre-forked workers wait for runs (``config.pool_size`` by
    default; 0 makes every run cold). ``audit_hook=False`` leaves only the OS
    layers, to test them. ``scratch_dir`` holds the runs' scratch folders (the
    system's temporary folder by default); the sandbox uids must be able to
    traverse it.
    """

    def __init__(
        self,
        config: SandboxSection | None = None,
        *,
        pool_size: int | None = None,
        audit_hook: bool = True,
        scratch_dir: Path | None = None,
    ) -> None:
        self.config = config or SandboxSection()
        self.pool_size = self.config.pool_size if pool_size is None else pool_size
        self.audit_hook = audit_hook
        self.slots = _Slots(_slot_uids(self.config))
        self.scratch_base = Path(scratch_dir or tempfile.gettempdir())
        self._pool_lock = threading.Lock()
        self._idle: deque[_Worker] = deque()
        self._zygote: _Zygote | None = None
        self._holder: list[_Zygote | None] = [None]  # what the finalizer shuts down
        self._zygote_error: str | None = None
        self._layers: list[LayerStatus] | None = None
        self._closed = False
        if self.pool_size > 0:
            with self._pool_lock:
                self._start_zygote()
        self._finalizer = weakref.finalize(self, _shutdown, self._idle, self._holder)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the warm pool and release the uid slots."""
        with self._pool_lock:
            self._closed = True
            self._zygote = None
            _shutdown(self._idle, self._holder)
        self.slots.close()
        self._finalizer.detach()

    # ----------------------------------------------------------------- pool

    def _start_zygote(self) -> None:
        try:
            self._zygote = _Zygote(one_shot=False)
            self._holder[0] = self._zygote
            self._zygote_error = None
        except ExecutionError as exc:
            self._zygote, self._zygote_error = None, str(exc)
            log.warning("sandbox warm pool unavailable, runs will be cold: %s", exc)
            return
        for _ in range(self.pool_size):
            self._idle.append(self._zygote.spawn())

    def _take_warm(self) -> _Worker | None:
        with self._pool_lock:
            if self._closed or self.pool_size <= 0:
                return None
            if self._zygote is None or self._zygote.dead:
                _shutdown(self._idle, [self._zygote])
                self._start_zygote()
            zygote = self._zygote
            if zygote is None:
                return None
            worker = self._idle.popleft() if self._idle else zygote.spawn()
        if not worker.ready.wait(SPAWN_WAIT_S) or worker.pid is None:
            worker.close()
            return None
        return worker

    def _refill(self) -> None:
        """Top the pool up again (the zygote forks in the background)."""
        with self._pool_lock:
            zygote = self._zygote
            if self._closed or zygote is None or zygote.dead:
                return
            while len(self._idle) < self.pool_size:
                self._idle.append(zygote.spawn())

    # ----------------------------------------------------------------- runs

    def run(self, request: RunRequest, *, warm: bool = True) -> RunOutcome:
        """Run ``request`` in a fresh confined process and report how it went.

        ``warm`` takes a pre-forked worker when the pool has one (a worker
        serves exactly one run); otherwise, or with ``warm=False``, a new
        interpreter is started for the run. Failures of the procedure are
        outcomes, never exceptions; :class:`ExecutionError` means the sandbox
        itself could not run anything.
        """
        problem = _check_files(request)
        if problem is not None:
            return _failure(INVALID_PROCEDURE, problem)
        try:
            json.dumps(request.kwargs, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return _failure(ARGUMENT_ERROR, f"the arguments are not JSON: {exc}")
        if self._closed:
            raise ExecutionError("this Sandbox is closed; create a new one")
        slot = self.slots.acquire()
        scratch = Path(tempfile.mkdtemp(prefix="procreg-run-", dir=self.scratch_base))
        clean = False
        cold: _Zygote | None = None
        try:
            if slot.uid is not None and slot.gid is not None:
                os.chown(scratch, slot.uid, slot.gid)
            worker = self._take_warm() if warm else None
            if worker is None:
                cold = _Zygote(one_shot=True)
                worker = cold.spawn()
                if not worker.ready.wait(SPAWN_WAIT_S) or worker.pid is None:
                    worker.close()
                    raise ExecutionError(
                        "the sandbox could not fork a worker (run `procreg doctor`)"
                    )
            outcome, clean = self._execute(worker, request, slot, scratch)
        finally:
            if warm:
                self._refill()
            if cold is not None:
                cold.close()
            shutil.rmtree(scratch, ignore_errors=True)
            self.slots.release(slot, clean)
        return outcome

    def _execute(
        self, worker: _Worker, request: RunRequest, slot: _Slot, scratch: Path
    ) -> tuple[RunOutcome, bool]:
        assert worker.pid is not None
        pid, zygote = worker.pid, worker.zygote
        cpu_s = math.ceil(request.cpu_s) if request.cpu_s else math.ceil(request.timeout_s) + 1
        payload = {
            "scratch": str(scratch),
            "uid": slot.uid,
            "gid": slot.gid,
            "files": request.files,
            "entry_point": request.entry_point,
            "kwargs": request.kwargs,
            "env": _child_env(scratch),
            "audit": self.audit_hook,
            "max_result_bytes": MAX_RESULT_BYTES,
            "limits": {
                "memory_mb": request.memory_mb,
                "cpu_s": cpu_s,
                "nofile": NOFILE_LIMIT,
                "fsize_mb": FSIZE_MB,
                "nproc": NPROC_LIMIT,
            },
        }
        if slot.uid is not None:
            zygote.assign(pid, slot.uid)
        start = time.monotonic()
        with contextlib.suppress(OSError):  # a dead worker shows up as its exit
            worker.ctl.sendall(child.frame(payload))
        bound = request.max_output_bytes
        cap = bound * OUTPUT_HARD_CAP_FACTOR
        bufs = {"out": bytearray(), "err": bytearray(), "ctl": bytearray()}
        seen = {"out": 0, "err": 0}
        killed: tuple[str, str] | None = None
        finished: float | None = None
        sel = selectors.DefaultSelector()
        sel.register(worker.out_r, selectors.EVENT_READ, "out")
        sel.register(worker.err_r, selectors.EVENT_READ, "err")
        sel.register(worker.ctl.fileno(), selectors.EVENT_READ, "ctl")
        sel.register(worker.notify_r, selectors.EVENT_READ, "exit")
        deadline, kill_deadline, drain_deadline = start + request.timeout_s, 0.0, 0.0
        exited = False

        def kill(kind: str, message: str) -> None:
            nonlocal killed, kill_deadline
            if killed is None:
                killed = (kind, message)
                kill_deadline = time.monotonic() + KILL_GRACE_S
                zygote.kill(pid)

        try:
            while True:
                now = time.monotonic()
                if exited:
                    if len(sel.get_map()) == 0 or now >= drain_deadline:
                        break
                    wait = drain_deadline - now
                elif killed is not None:
                    if now >= kill_deadline:  # the zygote is stuck: kill the group ourselves
                        with contextlib.suppress(OSError):
                            os.killpg(pid, signal.SIGKILL)
                        log.warning("sandbox zygote did not report worker %s; killed it", pid)
                        break
                    wait = kill_deadline - now
                else:
                    wait = deadline - now
                    if wait <= 0:
                        kill(
                            TIMEOUT, f"ran longer than its {request.timeout_s:g} s wall-clock limit"
                        )
                        continue
                for key, _ in sel.select(wait):
                    tag, fd = key.data, key.fd
                    if tag == "exit":
                        sel.unregister(fd)
                        exited = True
                        finished = finished or time.monotonic()
                        drain_deadline = time.monotonic() + DRAIN_S
                        continue
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        sel.unregister(fd)
                        if tag == "ctl":
                            finished = time.monotonic()
                        continue
                    buf = bufs[tag]
                    if tag == "ctl":
                        if len(buf) + len(chunk) > MAX_RESULT_BYTES + child.RESULT_HEADER:
                            kill(OUTPUT_LIMIT, "the result is larger than the sandbox accepts")
                        else:
                            buf += chunk
                        continue
                    seen[tag] += len(chunk)
                    if len(buf) < bound:
                        buf += chunk[: bound - len(buf)]
                    if seen[tag] > cap:
                        name = "stdout" if tag == "out" else "stderr"
                        kill(OUTPUT_LIMIT, f"wrote more than {cap} bytes to {name} (kept {bound})")
        finally:
            sel.close()
            worker.close()
        end = finished or time.monotonic()
        exit_msg = worker.exit or {}
        clean = slot.uid is None or bool(exit_msg.get("swept"))
        outcome = _classify(
            request,
            cpu_s,
            killed,
            _decode_frame(bufs["ctl"]),
            exit_msg,
            duration_ms=(end - start) * 1000,
            stdout=bytes(bufs["out"]),
            stderr=bytes(bufs["err"]),
            truncated=(seen["out"] > bound, seen["err"] > bound),
        )
        return outcome, clean

    # ----------------------------------------------------------------- layers

    def layers(self) -> list[LayerStatus]:
        """What is really in force on this machine (probed once, then cached)."""
        if self._layers is None:
            self._layers = _probe(self)
        return list(self._layers)


def probe_layers() -> list[LayerStatus]:
    """Probe every sandbox layer on this machine (for ``procreg doctor``)."""
    with Sandbox(pool_size=1) as sandbox:
        return sandbox.layers()


# --------------------------------------------------------------------------- helpers


def _shutdown(idle: deque[_Worker], zygotes: list[_Zygote | None]) -> None:
    while idle:
        idle.popleft().close()
    for i, zygote in enumerate(zygotes):
        if zygote is not None:
            zygotes[i] = None
            zygote.close()


def sandbox_python() -> str:
    """The interpreter sandbox processes run: one whose files the sandbox uid can read.

    ``sys.executable`` when every folder up to its standard library is open to
    other users; otherwise (a pyenv build under ``/root``, say) the system's
    ``/usr/bin/python3.X`` of the same version. Not root: always ``sys.executable``.
    """
    global _PYTHON
    if _PYTHON is None:
        _PYTHON = sys.executable
        if os.geteuid() == 0:
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            own = Path(sysconfig.get_paths()["stdlib"])
            candidates = [(sys.executable, own), (f"/usr/bin/python{version}", None)]
            for exe, stdlib in candidates:
                real = Path(exe).resolve()
                lib = stdlib or real.parent.parent / "lib" / f"python{version}"
                if real.is_file() and _open_to_others(real) and _open_to_others(lib / "os.py"):
                    _PYTHON = exe
                    break
    return _PYTHON


_PYTHON: str | None = None


def _open_to_others(path: Path) -> bool:
    """Whether a user that is neither owner nor in the group can reach and read ``path``."""
    try:
        if not path.stat().st_mode & stat.S_IROTH:
            return False
        return all(folder.stat().st_mode & stat.S_IXOTH for folder in path.parents)
    except OSError:
        return False


def _slot_uids(config: SandboxSection) -> list[tuple[int, int]] | None:
    if os.geteuid() != 0:
        return None
    if config.user:
        try:
            entry = pwd.getpwnam(config.user)
        except KeyError:
            raise ExecutionError(
                f"procreg.toml: sandbox.user {config.user!r} is not a user on this machine"
            ) from None
        if entry.pw_uid == 0:
            raise ExecutionError("procreg.toml: sandbox.user must not be root")
        return [(entry.pw_uid, entry.pw_gid)]
    return [(uid, uid) for uid in range(UID_BASE, UID_BASE + UID_SLOTS)]


def _child_env(scratch: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
    }


def _check_files(request: RunRequest) -> str | None:
    if "main.py" not in request.files:
        return "the procedure has no main.py"
    if not request.entry_point.isidentifier():
        return f"entry point {request.entry_point!r} is not a Python identifier"
    for name in request.files:
        parts = PurePosixPath(name).parts
        if (
            not parts
            or name.startswith("/")
            or "\\" in name
            or "\0" in name
            or any(p in ("..", ".") for p in parts)
            or str(PurePosixPath(name)) != name
        ):
            return f"file name {name!r} must be a plain relative path inside the procedure folder"
    return None


def _failure(kind: str, message: str) -> RunOutcome:
    return RunOutcome(ok=False, error=RunError(type=kind, message=message), duration_ms=0.0)


def _decode_frame(buf: bytearray) -> dict[str, Any] | None:
    if len(buf) < child.RESULT_HEADER:
        return None
    size = int.from_bytes(buf[: child.RESULT_HEADER], "big")
    if len(buf) != child.RESULT_HEADER + size:
        return None
    try:
        data = json.loads(bytes(buf[child.RESULT_HEADER :]))
    except ValueError:
        return None
    return data if isinstance(data, dict) and "ok" in data else None


def _classify(
    request: RunRequest,
    cpu_s: int,
    killed: tuple[str, str] | None,
    payload: dict[str, Any] | None,
    exit_msg: dict[str, Any],
    *,
    duration_ms: float,
    stdout: bytes,
    stderr: bytes,
    truncated: tuple[bool, bool],
) -> RunOutcome:
    usage_raw = exit_msg.get("usage")
    usage = None
    if usage_raw:
        usage = ResourceUsage(
            cpu_user_ms=usage_raw[0] * 1000,
            cpu_system_ms=usage_raw[1] * 1000,
            max_rss_kb=int(usage_raw[2]),
        )
    err_text = stderr.decode("utf-8", "replace")
    common: dict[str, Any] = {
        "duration_ms": round(duration_ms, 3),
        "stdout": stdout.decode("utf-8", "replace"),
        "stderr": err_text,
        "stdout_truncated": truncated[0],
        "stderr_truncated": truncated[1],
        "usage": usage,
    }
    error: RunError | None = None
    if killed is not None:
        error = RunError(type=killed[0], message=killed[1])
    elif payload is not None:
        if payload.get("ok"):
            return RunOutcome(ok=True, result=payload.get("result"), **common)
        raw = payload.get("error") or {}
        error = RunError(type=str(raw.get("type", CRASHED)), message=str(raw.get("message", "")))
    else:
        status = exit_msg.get("status")
        cpu_used = (usage.cpu_user_ms + usage.cpu_system_ms) / 1000 if usage else 0.0
        memoryish = "MemoryError" in err_text or "Cannot allocate memory" in err_text
        if status is None:
            error = RunError(type=CRASHED, message="the sandbox lost track of the worker")
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= cpu_s):
                error = RunError(
                    type=CPU_LIMIT, message=f"used more than its {cpu_s} s of CPU time"
                )
            elif memoryish:
                error = RunError(
                    type=MEMORY_LIMIT,
                    message=f"died out of memory (limit {request.memory_mb} MB)",
                )
            else:
                error = RunError(type=CRASHED, message=f"killed by {signal.Signals(sig).name}")
        else:
            code = os.waitstatus_to_exitcode(status)
            if memoryish and code != 0:
                error = RunError(
                    type=MEMORY_LIMIT, message=f"died out of memory (limit {request.memory_mb} MB)"
                )
            else:
                error = RunError(
                    type=CRASHED,
                    message=f"exited with code {code} without a result "
                    "(sys.exit or os._exit in the procedure?)",
                )
    return RunOutcome(ok=False, error=error, **common)


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


def _probe(sandbox: Sandbox) -> list[LayerStatus]:
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
    clean = env_keys <= set(_child_env(Path("/"))) and info["parent_environ"] != "readable"
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
            detail=f"a fresh folder in {sandbox.scratch_base}, removed after the run",
        )
    )
    sweeping = dropped and sandbox.slots.uids is not None
    layers.append(
        LayerStatus(
            name="process-sweep",
            active=sweeping,
            detail=(
                "after each run every process of the run's uid is killed and reaped"
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
    zygote = sandbox._zygote
    if sandbox.pool_size <= 0:
        pool = LayerStatus(name="warm-pool", active=False, detail="disabled (pool_size = 0)")
    elif zygote is None:
        pool = LayerStatus(name="warm-pool", active=False, detail=f"{sandbox._zygote_error}")
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
