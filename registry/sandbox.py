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

This module is the public API and one run's orchestration; the parts live in
private modules: ``_sandbox_slots`` (the uids), ``_sandbox_zygote`` (starting
and talking to a zygote), ``_sandbox_pool`` (the warm workers),
``_sandbox_exchange`` (one run's I/O, timeout and output caps),
``_sandbox_janitor`` (background clean-up), ``_sandbox_layers`` (the probe)
and ``_sandbox_child`` (the code inside the sandbox processes).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import tempfile
import uuid
import weakref
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from registry import _sandbox_child as child
from registry._sandbox_exchange import MAX_RESULT_BYTES, TIMEOUT, exchange
from registry._sandbox_janitor import Janitor
from registry._sandbox_pool import WarmPool
from registry._sandbox_slots import UID_BASE as UID_BASE
from registry._sandbox_slots import Slot, Slots, slot_uids
from registry._sandbox_zygote import NotStarted, Worker, Zygote, sandbox_python, worker_env
from registry.config import SandboxSection
from registry.errors import ExecutionError

__all__ = [
    "FAILURE_TYPES",
    "LayerStatus",
    "ResourceUsage",
    "RunError",
    "RunOutcome",
    "RunRequest",
    "Sandbox",
    "probe_layers",
    "sandbox_python",
]

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

NPROC_LIMIT = 32
NOFILE_LIMIT = child.NOFILE_LIMIT
FSIZE_MB = child.FSIZE_MB


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
        self.slots = Slots(slot_uids(self.config))
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
        self._janitor = Janitor(self.scratch_base, self._own_root)
        self._pool = WarmPool(self.pool_size)
        self._layers: list[LayerStatus] | None = None
        self._closed = False
        self._finalizer = weakref.finalize(
            self, _shutdown, self._pool, self._janitor, self._own_root
        )

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _zygote(self) -> Zygote | None:
        """The warm pool's zygote, if one runs."""
        return self._pool.zygote

    def close(self) -> None:
        """Stop the warm pool, wait for the clean-up and release the uid slots."""
        self._closed = True
        self._pool.close()
        self._finalizer()
        self.slots.close()

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
        cold: Zygote | None = None
        try:
            scratch = self.scratch_base / f"procreg-run-{uuid.uuid4().hex}"
            scratch.mkdir(mode=0o700)
            if slot.uid is not None and slot.gid is not None:
                os.chown(scratch, slot.uid, slot.gid)
            assign = slot.assignment()
            worker = self._pool.take() if warm else None
            if worker is not None and assign is not None:
                try:
                    worker.zygote.assign(worker, assign)
                except OSError:  # the zygote died: nothing was sent, so run cold
                    worker.zygote.mark_dead()
                    worker.close()
                    worker = None
            if worker is None:
                try:
                    cold = Zygote(one_shot=True)
                except ExecutionError:
                    clean = True  # nothing ever ran as the slot's uid
                    raise
                worker = cold.spawn(assign)
            try:
                outcome, clean = self._execute(worker, request, slot, scratch, kwargs)
            except NotStarted:
                clean = True  # nothing ever ran as the slot's uid
                raise
        finally:
            if cold is not None:  # it exits by itself once its worker is reported
                self._janitor.submit(cold.close)
            if scratch is not None:
                self._janitor.discard(scratch)
            self.slots.release(slot, clean)
            if warm:
                self._pool.refill()
        return outcome

    def _execute(
        self, worker: Worker, request: RunRequest, slot: Slot, scratch: Path, kwargs: str
    ) -> tuple[RunOutcome, bool]:
        cpu_s = math.ceil(request.cpu_s) if request.cpu_s else math.ceil(request.timeout_s) + 1
        payload = {
            "scratch": str(scratch),
            "uid": slot.uid,
            "gid": slot.gid,
            "files": request.files,
            "entry_point": request.entry_point,
            "env": worker_env(scratch),
            "audit": self.audit_hook,
            "max_result_bytes": MAX_RESULT_BYTES,
            "limits": {"memory_mb": request.memory_mb, "cpu_s": cpu_s, "nproc": NPROC_LIMIT},
        }
        text = child.dumps(payload)
        # The arguments were encoded once, before a slot was taken: spliced in as they are.
        raw = exchange(
            worker,
            text[:-1] + ',"kwargs":' + kwargs + "}",
            request.timeout_s,
            request.max_output_bytes,
        )
        exit_msg = worker.exit or {}
        clean = slot.uid is None or bool(exit_msg.get("swept"))
        outcome = _classify(
            request,
            cpu_s,
            raw.killed,
            _decode_frame(raw.result),
            exit_msg,
            duration_ms=raw.duration_ms,
            stdout=raw.stdout,
            stderr=raw.stderr,
            truncated=raw.truncated,
        )
        return outcome, clean

    def layers(self) -> list[LayerStatus]:
        """What is really in force on this machine (probed once, then cached)."""
        if self._layers is None:
            from registry._sandbox_layers import probe  # only doctor and tests ask

            self._layers = probe(self)
        return list(self._layers)


def probe_layers() -> list[LayerStatus]:
    """Probe every sandbox layer on this machine (for ``procreg doctor``)."""
    with Sandbox(pool_size=1) as sandbox:
        return sandbox.layers()


def _shutdown(pool: WarmPool, janitor: Janitor, own_root: Path | None) -> None:
    pool.shutdown()
    janitor.close()
    if own_root is not None:
        shutil.rmtree(own_root, ignore_errors=True)


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
