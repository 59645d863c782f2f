"""Run untrusted procedure code in a separate, confined process.

Every run gets a fresh process (a pre-forked *warm* worker, or a *cold* one
started for the run) that serves that one run and exits. The layers, each
checked by :func:`probe_layers` rather than assumed:

- wall-clock timeout enforced here: the worker's whole process group is
  SIGKILLed, then every process of its uid (the *sweep*);
- rlimits: address space, CPU, open files, file size, processes, no core;
- an unprivileged uid, one per concurrent slot (``UID_BASE`` upwards, locked
  across processes), so the sweep and RLIMIT_NPROC are exact;
- the zygote is the child subreaper of every worker: once a worker exited,
  anything it left behind is one of the zygote's children, so when none has
  the run's uid the sweep is skipped; otherwise every process of the uid is
  killed and reaped before the uid serves another run;
- a clean environment (the zygote is exec'd with a minimal one and never sees
  the host's memory) and a fresh scratch working directory, gone when the run
  returns. The procedure's modules are imported from memory; its other files
  are written there;
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
import marshal
import math
import os
import pwd
import queue
import select
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
from collections.abc import Callable
from importlib.util import MAGIC_NUMBER
from pathlib import Path
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
NOFILE_LIMIT = child.NOFILE_LIMIT
FSIZE_MB = child.FSIZE_MB
OUTPUT_HARD_CAP_FACTOR = 256  # a stream past bound * factor bytes gets the run killed
MAX_RESULT_BYTES = 16 * 1024 * 1024
SPAWN_WAIT_S = 5.0
KILL_GRACE_S = 5.0
DRAIN_S = 1.0
CHILD_SCRIPT = Path(child.__file__).resolve()
ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
SLOT_LOCK_DIR = Path("/run/procreg-sandbox")


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
    """Unprivileged uids, each held by one run at a time across all processes (flock).

    A slot goes back to the free list only once its worker's exit was reported
    swept (nothing of the uid left); until then no other run can get its uid.
    """

    def __init__(self, uids: list[tuple[int, int]] | None) -> None:
        self.uids = uids  # None: no uid drop (not root)
        self.free: list[_Slot] = []
        self.held: set[int] = set()
        self.lock = threading.Lock()
        self.lock_dir = SLOT_LOCK_DIR
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


# --------------------------------------------------------------------------- janitor


class _Janitor:
    """A thread for clean-up nobody has to wait for: scratch folders, exited zygotes.

    Removing a folder costs milliseconds on some file systems (ext4 with
    ``discard``), so a finished run's scratch folder is *renamed* into a trash
    folder on the same file system (microseconds: it is gone from the scratch
    folder at once) and removed here. :meth:`close` waits for all of it.
    """

    def __init__(self, scratch_base: Path, own_root: Path | None) -> None:
        self.trash = _trash_folder(scratch_base, own_root)
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._loop, name="sandbox-janitor", daemon=True
                )
                self.thread.start()
        self.jobs.put(job)

    def discard(self, folder: Path) -> None:
        """Take ``folder`` out of its parent now; delete it in the background."""
        if self.trash is not None:
            target = self.trash / folder.name
            try:
                folder.rename(target)
            except OSError:
                pass
            else:
                self.submit(lambda: shutil.rmtree(target, ignore_errors=True))
                return
        shutil.rmtree(folder, ignore_errors=True)

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # a failed clean-up must not stop the next ones
                log.exception("sandbox clean-up failed")

    def close(self) -> None:
        with self.lock:
            thread, self.thread = self.thread, None
        if thread is not None:
            self.jobs.put(None)
            thread.join()
        if self.trash is not None:
            shutil.rmtree(self.trash, ignore_errors=True)


def _trash_folder(scratch_base: Path, own_root: Path | None) -> Path | None:
    """A private folder on the scratch folder's file system (renames need one)."""
    if own_root is not None:
        trash = own_root / "trash"
        trash.mkdir(mode=0o700)
        return trash
    try:
        device = scratch_base.stat().st_dev
        for parent in (scratch_base.parent, Path(tempfile.gettempdir())):
            if parent != Path("/") and parent.stat().st_dev == device:
                return Path(tempfile.mkdtemp(prefix=".procreg-trash-", dir=parent))
    except OSError:
        pass
    return None


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
        self.exit: dict[str, Any] | None = None

    def spawned(self, pid: int) -> None:
        self.pid = pid

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
    """A zygote process started from ``_sandbox_child.py`` and its messages.

    The pool's zygote has a reader thread. A one-shot zygote (a cold run) has
    none: the run's own loop reads its few messages (:meth:`pump`), and no
    message is waited for before the request is on its way.
    """

    def __init__(self, one_shot: bool) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.one_shot = one_shot
        cmd = [sandbox_python(), "-I", "-S", "-B", "-c", _BOOT, str(CHILD_SCRIPT), "zygote"]
        cmd += [str(theirs.fileno()), "--one-shot"] if one_shot else [str(theirs.fileno())]
        code_r, code_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                cmd,
                pass_fds=[theirs.fileno()],
                env=ZYGOTE_ENV,
                stdin=code_r,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            self.sock.close()
            os.close(code_w)
            raise ExecutionError(f"cannot start the sandbox ({cmd[0]}): {exc}") from exc
        finally:
            os.close(code_r)
            theirs.close()
        code = _zygote_code()
        with contextlib.suppress(OSError):  # a zygote that died at once is seen below
            if len(code) > 60000:
                fcntl.fcntl(code_w, fcntl.F_SETPIPE_SZ, len(code))
            os.write(code_w, code)
        os.close(code_w)
        self.send_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.workers: dict[int, _Worker] = {}
        self.next_id = 0
        self.dead = False
        self.info: dict[str, Any] = {}
        if one_shot:
            self.sock.setblocking(False)
            return
        self.sock.settimeout(10)
        try:
            ready = child.loads(self.sock.recv(child.MAX_ZYGOTE_MESSAGE).decode() or "null")
        except (OSError, ValueError):
            ready = None
        if not isinstance(ready, dict) or ready.get("op") != "ready":
            self.close()
            raise _NotStarted("the sandbox zygote did not start (run `procreg doctor`)")
        self.info = ready
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._read_loop, name="sandbox-zygote", daemon=True)
        self.reader.start()

    def _send(self, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        data = child.dumps(msg).encode()
        with self.send_lock:
            if fds:
                socket.send_fds(self.sock, [data], fds)
            else:
                self.sock.send(data)

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def spawn(self, assign: dict[str, Any] | None = None) -> _Worker:
        """Ask for a new worker (assigned to a uid at once when ``assign`` is given).

        Nothing is waited for: the zygote handles its commands in order, and
        the worker reads its request from a socket that buffers it.
        """
        with self.state_lock:
            self.next_id += 1
            worker = _Worker(self, self.next_id)
            dead = self.dead
            if not dead:
                self.workers[worker.id] = worker
        try:
            if dead:
                worker.exited(_LOST)
            else:
                self._send({"op": "spawn", "id": worker.id, **(assign or {})}, worker.child_fds)
        except OSError:
            self._mark_dead()
        finally:
            for fd in worker.child_fds:
                os.close(fd)
        return worker

    def assign(self, worker: _Worker, assign: dict[str, Any]) -> None:
        self._send({"op": "assign", "id": worker.id, **assign})

    def kill(self, worker: _Worker) -> None:
        """Kill a worker's process group; the zygote then sweeps its uid and reports."""
        try:
            self._send({"op": "kill", "id": worker.id})
        except OSError:
            if worker.pid is not None:
                with contextlib.suppress(OSError):
                    os.killpg(worker.pid, signal.SIGKILL)

    def _read_loop(self) -> None:
        while self.pump(blocking=True):
            pass

    def pump(self, blocking: bool = False) -> bool:
        """Handle one message from the zygote; False once it is gone."""
        try:
            data = self.sock.recv(child.MAX_ZYGOTE_MESSAGE)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            self._mark_dead()
            return False
        msg = child.loads(data.decode())
        op = msg.get("op")
        with self.state_lock:
            worker = self.workers.get(msg.get("id", -1))
            if op == "spawned" and worker is not None:
                worker.spawned(msg["pid"])
            elif op == "exit" and worker is not None:
                del self.workers[worker.id]
                worker.exited(msg)
            elif op == "ready":
                self.info = msg
            elif op == "error":
                log.warning("sandbox zygote: %s", msg.get("message"))
                if worker is not None:
                    del self.workers[worker.id]
                    worker.exited(_LOST)
        return True

    def _mark_dead(self) -> None:
        with self.state_lock:
            self.dead = True
            for worker in self.workers.values():
                worker.exited(_LOST)
            self.workers.clear()

    def close(self) -> None:
        """Tell the zygote to kill its workers and exit; wait for it."""
        with contextlib.suppress(OSError):
            self._send({"op": "quit"})  # a one-shot zygote that is done has gone already
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


class _NotStarted(ExecutionError):
    """A cold run's zygote died before it could start a worker."""


_LOST: dict[str, Any] = {"op": "exit", "status": None, "usage": None, "swept": False}

# ``python -c`` code that runs the child module from the host's compiled copy
# on stdin (the byte code of one Python version); a different version compiles
# the file itself. Scripts are never cached as .pyc, and compiling this one
# costs the cold path milliseconds.
_BOOT = (
    "import sys,marshal\n"
    "d=sys.stdin.buffer.read()\n"
    "f=sys.argv.pop(1)\n"
    "m=sys.modules['_frozen_importlib_external'].MAGIC_NUMBER\n"
    "c=marshal.loads(d[4:]) if d[:4]==m else compile(open(f,'rb').read(),f,'exec')\n"
    "exec(c,{'__name__':'__main__','__file__':f,'__builtins__':__builtins__})\n"
)
_CODE: bytes | None = None
_CODE_LOCK = threading.Lock()


def _zygote_code() -> bytes:
    global _CODE
    with _CODE_LOCK:
        if _CODE is None:
            source = CHILD_SCRIPT.read_bytes()
            code = compile(source, str(CHILD_SCRIPT), "exec", dont_inherit=True)
            _CODE = MAGIC_NUMBER + marshal.dumps(code)
        return _CODE


# --------------------------------------------------------------------------- the sandbox


class Sandbox:
    """Runs procedures in confined processes; owns the warm pool. Thread-safe.

    ``pool_size`` pre-forked workers wait for runs (``config.pool_size`` by
    default; 0 makes every run cold). ``audit_hook=False`` leaves only the OS
    layers, to test them. ``scratch_dir`` holds the runs' scratch folders (a
    private folder in the system's temporary folder by default); the sandbox
    uids must be able to traverse it.
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
        self._own_root: Path | None = None
        if scratch_dir is None:
            # A private folder, so that finished scratch folders can be renamed
            # into its trash on the same file system and removed later.
            self._own_root = Path(tempfile.mkdtemp(prefix="procreg-sandbox-"))
            scratch_dir = self._own_root / "runs"
            scratch_dir.mkdir()
            for folder in (self._own_root, scratch_dir):
                folder.chmod(0o711)  # the sandbox uids reach their folders inside
        self.scratch_base = Path(scratch_dir)
        self._janitor = _Janitor(self.scratch_base, self._own_root)
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
        self._finalizer = weakref.finalize(
            self, _shutdown, self._idle, self._holder, self._janitor, self._own_root
        )

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the warm pool, wait for the clean-up and release the uid slots."""
        with self._pool_lock:
            self._closed = True
            self._zygote = None
        self._finalizer()
        self.slots.close()

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
            if self._zygote is None or not self._zygote.alive():
                _shutdown(self._idle, [self._zygote])
                self._start_zygote()
            zygote = self._zygote
            if zygote is None:
                return None
            return self._idle.popleft() if self._idle else zygote.spawn()

    def _refill(self) -> None:
        """Top the pool up again once a run is over, so forking competes with no run of ours."""
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
            kwargs = child.dumps(request.kwargs)
        except (TypeError, ValueError, RecursionError) as exc:
            return _failure(ARGUMENT_ERROR, f"the arguments are not JSON: {exc}")
        if self._closed:
            raise ExecutionError("this Sandbox is closed; create a new one")
        slot = self.slots.acquire()
        clean = False
        scratch: Path | None = None
        cold: _Zygote | None = None
        try:
            scratch = self.scratch_base / f"procreg-run-{uuid.uuid4().hex}"
            scratch.mkdir(mode=0o700)
            if slot.uid is not None and slot.gid is not None:
                os.chown(scratch, slot.uid, slot.gid)
            assign = _assignment(slot)
            worker = self._take_warm() if warm else None
            if worker is not None and assign is not None:
                try:
                    worker.zygote.assign(worker, assign)
                except OSError:  # the zygote died: nothing was sent, so run cold
                    worker.zygote._mark_dead()
                    worker.close()
                    worker = None
            if worker is None:
                try:
                    cold = _Zygote(one_shot=True)
                except ExecutionError:
                    clean = True  # nothing ever ran as the slot's uid
                    raise
                worker = cold.spawn(assign)
            try:
                outcome, clean = self._execute(worker, request, slot, scratch, kwargs)
            except _NotStarted:
                clean = True  # nothing ever ran as the slot's uid
                raise
        finally:
            if cold is not None:  # it exits by itself once its worker is reported
                self._janitor.submit(cold.close)
            if scratch is not None:
                self._janitor.discard(scratch)
            self.slots.release(slot, clean)
            if warm:
                self._refill()
        return outcome

    def _execute(
        self, worker: _Worker, request: RunRequest, slot: _Slot, scratch: Path, kwargs: str
    ) -> tuple[RunOutcome, bool]:
        zygote = worker.zygote
        cpu_s = math.ceil(request.cpu_s) if request.cpu_s else math.ceil(request.timeout_s) + 1
        payload = {
            "scratch": str(scratch),
            "uid": slot.uid,
            "gid": slot.gid,
            "files": request.files,
            "entry_point": request.entry_point,
            "env": _child_env(scratch),
            "audit": self.audit_hook,
            "max_result_bytes": MAX_RESULT_BYTES,
            "limits": {"memory_mb": request.memory_mb, "cpu_s": cpu_s, "nproc": NPROC_LIMIT},
        }
        text = child.dumps(payload)
        start = time.monotonic()
        with contextlib.suppress(OSError):  # a dead worker shows up as its exit
            worker.ctl.sendall(child._frame_text(text[:-1] + ',"kwargs":' + kwargs + "}"))
        bound = request.max_output_bytes
        cap = bound * OUTPUT_HARD_CAP_FACTOR
        bufs = {"out": bytearray(), "err": bytearray(), "ctl": bytearray()}
        seen = {"out": 0, "err": 0}
        killed: tuple[str, str] | None = None
        finished: float | None = None
        poller = select.poll()
        tags = {worker.out_r: "out", worker.err_r: "err", worker.ctl.fileno(): "ctl"}
        tags[worker.notify_r] = "exit"
        if zygote.one_shot:
            tags[zygote.sock.fileno()] = "zygote"
        for fd in tags:
            poller.register(fd, select.POLLIN)
        deadline, kill_deadline, drain_deadline = start + request.timeout_s, 0.0, 0.0
        exited = False

        def kill(kind: str, message: str) -> None:
            nonlocal killed, kill_deadline
            if killed is None:
                killed = (kind, message)
                kill_deadline = time.monotonic() + KILL_GRACE_S
                zygote.kill(worker)

        try:
            while True:
                now = time.monotonic()
                if exited:
                    if not (tags.keys() - {zygote.sock.fileno()}) or now >= drain_deadline:
                        break
                    wait = drain_deadline - now
                elif killed is not None:
                    if now >= kill_deadline:  # the zygote is stuck: kill the group ourselves
                        if worker.pid is not None:
                            with contextlib.suppress(OSError):
                                os.killpg(worker.pid, signal.SIGKILL)
                        log.warning("sandbox zygote did not report worker %s", worker.pid)
                        break
                    wait = kill_deadline - now
                else:
                    wait = deadline - now
                    if wait <= 0:
                        kill(
                            TIMEOUT, f"ran longer than its {request.timeout_s:g} s wall-clock limit"
                        )
                        continue
                for fd, _ in poller.poll(max(0, math.ceil(wait * 1000))):
                    tag = tags[fd]
                    if tag == "zygote":
                        if not zygote.pump():
                            poller.unregister(fd)
                            del tags[fd]
                        continue
                    if tag == "exit":
                        poller.unregister(fd)
                        del tags[fd]
                        exited = True
                        finished = finished or time.monotonic()
                        drain_deadline = time.monotonic() + DRAIN_S
                        continue
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        poller.unregister(fd)
                        del tags[fd]
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
            worker.close()
        if zygote.one_shot and zygote.dead and not zygote.info and not bufs["ctl"]:
            raise _NotStarted("the sandbox zygote did not start (run `procreg doctor`)")
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


def _shutdown(
    idle: deque[_Worker],
    zygotes: list[_Zygote | None],
    janitor: _Janitor | None = None,
    own_root: Path | None = None,
) -> None:
    while idle:
        idle.popleft().close()
    for i, zygote in enumerate(zygotes):
        if zygote is not None:
            zygotes[i] = None
            zygote.close()
    if janitor is not None:
        janitor.close()
    if own_root is not None:
        shutil.rmtree(own_root, ignore_errors=True)


def _assignment(slot: _Slot) -> dict[str, Any] | None:
    """What the zygote needs to check and sweep after the worker of ``slot`` exits."""
    return None if slot.uid is None else {"uid": slot.uid}


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
        # Split by hand (PurePosixPath costs the hot path ~20 us a file): an
        # empty part is a leading, doubled or trailing slash.
        parts = name.split("/")
        if "\\" in name or "\0" in name or any(p in ("", ".", "..") for p in parts):
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
            detail=f"a fresh folder in {sandbox.scratch_base} as the working directory, "
            "gone from there when the run returns (renamed away, deleted in the background)",
        )
    )
    sweeping = dropped and sandbox.slots.uids is not None
    zygote_info = sandbox._zygote.info if sandbox._zygote is not None else {}
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
