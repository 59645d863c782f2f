"""The code that runs inside the sandbox processes (standard library only).

``registry/sandbox.py`` starts a *zygote* from this file with ``python -I -S -B``
and a clean environment, so that it never sees the host's memory. It makes
itself a child subreaper, leaves the host's network namespace (every worker it
forks shares that one empty namespace), and serves a few commands over the
SEQPACKET socket passed to it, all naming a worker by the host's id:

``spawn`` (three fds attached: control socket, stdout pipe, stderr pipe)
    fork a *worker* that applies the fixed limits, warms itself up and then
    waits on its control socket for exactly one request;
``assign``
    the uid a worker is about to run as. After the worker exits, every
    process of that uid must be gone before the exit is reported: the zygote
    is the subreaper of everything its workers start, so when none of its own
    children has that uid nothing escaped; otherwise every process of the uid
    is killed and reaped (the *sweep*);
``kill``
    kill a worker's process group (wall-clock timeout, output flood);
``quit``
    kill every worker and exit.

A worker applies the request's limits, drops to the slot's uid, writes the
procedure's data files into the scratch folder (its modules are imported from
memory, see ``_SourceFinder``), installs an audit hook and calls the entry
point, then writes one length-prefixed JSON result and exits. It never serves
a second request. A one-shot zygote (the cold path) exits after its single
worker has been reported.

Start-up time matters on the cold path, so this module imports only built-in
or tiny modules: JSON goes through the ``_json`` accelerator directly (the
``json`` package pulls in ``re``), signals through ``_signal`` (``signal``
pulls in ``enum``), and libc through ``_ctypes``. The host imports this module
too, for the constants and the framing shared by both sides.
"""

# The cold path pays for every import: no pathlib, no contextlib here.
# ruff: noqa: PTH103, PTH110, PTH118, PTH120, SIM105

from __future__ import annotations

import _json
import _signal
import errno
import gc
import os
import select
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# Failure classes (``RunError.type``) produced on the child side; sandbox.py adds
# the ones only the host can see (Timeout, CpuLimitExceeded, Crashed...).
SANDBOX_VIOLATION = "SandboxViolation"
PROCESS_LIMIT = "ProcessLimitExceeded"
MEMORY_LIMIT = "MemoryLimitExceeded"
OUTPUT_LIMIT = "OutputLimitExceeded"
ARGUMENT_ERROR = "ArgumentError"
NOT_SERIALIZABLE = "ResultNotSerializable"
INVALID_PROCEDURE = "InvalidProcedure"

RESULT_HEADER = 4  # big-endian length prefix of every worker frame
MAX_ZYGOTE_MESSAGE = 65536
RECURSION_LIMIT = 1000
MAX_RECURSION_LIMIT = 10000
MESSAGE_CHARS = 500
SWEEP_WAIT_S = 10.0
NOFILE_LIMIT = 64
FSIZE_MB = 64

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_CHILD_SUBREAPER = 36

_DENIED_IMPORTS = frozenset({"ctypes", "_ctypes", "cffi", "_cffi_backend"})
_PROCESS_EVENTS = frozenset(
    {
        "os.fork",
        "os.forkpty",
        "os.exec",
        "os.spawn",
        "os.posix_spawn",
        "os.system",
        "subprocess.Popen",
        "pty.spawn",
    }
)
# Audit events that modify the file system, with the positions of their path arguments.
_PATH_EVENTS: dict[str, tuple[int, ...]] = {
    "os.mkdir": (0,),
    "os.rmdir": (0,),
    "os.remove": (0,),
    "os.rename": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (1,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.chflags": (0,),
    "os.lchflags": (0,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "os.mkfifo": (0,),
    "os.mknod": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.rmtree": (0,),
    "shutil.move": (0, 1),
    "shutil.copyfile": (1,),
    "shutil.copytree": (1,),
    "shutil.chown": (0,),
    "shutil.unpack_archive": (1,),
}
_INTROSPECTION_EVENTS = frozenset(
    {"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile"}
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class SandboxViolation(PermissionError):
    """The audit hook refused an operation the sandbox does not allow."""


class ProcessLimitExceeded(PermissionError):
    """The audit hook refused to start a process (fork, exec, subprocess)."""


class _Failure(Exception):
    """A failure with a fixed class, raised by the worker itself."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --------------------------------------------------------------------------- JSON


def _not_json(obj: object) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class _DecodeContext:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float


_scan = _json.make_scanner(_DecodeContext())  # type: ignore[arg-type]


def dumps(obj: Any) -> str:
    """``json.dumps(obj, separators=(",", ":"), allow_nan=False)`` without importing json."""
    encode = _json.make_encoder(
        {}, _not_json, _json.encode_basestring_ascii, None, ":", ",", False, False, False
    )
    return "".join(encode(obj, 0))


def loads(text: str) -> Any:
    """Decode one JSON document written by :func:`dumps` (or ``json.dumps``)."""
    try:
        obj, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("extra data after the JSON document")
    return obj


def frame(obj: Any) -> bytes:
    """``obj`` as compact JSON behind a 4-byte big-endian length."""
    return _frame_text(dumps(obj))


def _frame_text(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(RESULT_HEADER, "big") + data


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> Any:
    header = _read_exact(fd, RESULT_HEADER)
    if header is None:
        return None
    body = _read_exact(fd, int.from_bytes(header, "big"))
    return None if body is None else loads(body.decode())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, text.encode())
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- libc


def _libc_setup() -> dict[str, Any]:
    """Become a subreaper and leave the network; report what the OS granted.

    ``_ctypes`` directly: the ``ctypes`` package costs milliseconds to import.
    It is dropped from ``sys.modules`` afterwards, so workers import it afresh
    (and the audit hook refuses that).
    """
    info: dict[str, Any] = {"subreaper": False, "netns": False, "netns_detail": ""}
    try:
        import _ctypes

        class _CInt(_ctypes._SimpleCData):
            _type_ = "i"

        class _Func(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = _CInt

        class _Lib:
            _handle = _ctypes.dlopen(None)  # type: ignore[arg-type]

        prctl = _Func(("prctl", _Lib()))  # type: ignore[arg-type]
        unshare = _Func(("unshare", _Lib()))  # type: ignore[arg-type]
        info["subreaper"] = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
        if unshare(flags) == 0:
            info["netns"] = True
            info["netns_detail"] = "new network namespace (no interfaces up)"
        else:
            info["netns_detail"] = f"unshare refused: {os.strerror(_ctypes.get_errno())}"
    except (OSError, AttributeError, ImportError) as exc:
        info["netns_detail"] = f"libc unavailable: {exc}"
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    return info


# --------------------------------------------------------------------------- zygote


class _Zygote:
    def __init__(self, fd: int, one_shot: bool) -> None:
        import _socket

        self.sock = _socket.socket(fileno=fd)
        self.one_shot = one_shot
        self.workers: dict[int, int] = {}  # pid -> host's worker id
        self.pids: dict[int, int] = {}  # host's worker id -> pid
        self.assigned: dict[int, int] = {}  # pid -> uid
        self.sweepers: dict[int, tuple[int, int, list[float]]] = {}
        self.spawned = 0
        self.reported = 0
        self.closing = False
        self.info: dict[str, Any] = {}

    def send(self, msg: dict[str, Any]) -> None:
        try:
            self.sock.send(dumps(msg).encode())
        except OSError:
            self.closing = True

    def serve(self) -> None:
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        self.info = _libc_setup()
        own = os.getpid()
        self.children = f"/proc/{own}/task/{own}/children"  # CONFIG_PROC_CHILDREN
        self.info["children"] = self.info["subreaper"] and os.path.exists(self.children)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        _signal.signal(_signal.SIGCHLD, _ignore_signal)
        _signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.sock.setblocking(False)
        import resource  # noqa: F401  (imported once here, shared by every fork)

        gc.freeze()  # forks then share these pages instead of copying them on the first GC
        self.send({"op": "ready", "pid": os.getpid(), **self.info})
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while True:
            if self.closing:
                self.shutdown()
            if self.one_shot and self.spawned and self.reported >= self.spawned:
                os._exit(0)  # nothing left to serve; skip the interpreter's tear-down
            try:
                poller.poll(1000)
            except InterruptedError:
                pass
            self.commands()
            try:
                while os.read(self.wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            self.reap()

    def commands(self) -> None:
        """Handle every command waiting on the socket."""
        import _socket

        fd_space = _socket.CMSG_SPACE(3 * 4)
        while not self.closing:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(MAX_ZYGOTE_MESSAGE, fd_space)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.closing = True
                return
            if not data:
                self.closing = True
                return
            fds: list[int] = []
            for level, kind, payload in ancdata:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % 4
                    fds.extend(memoryview(payload[:usable]).cast("i"))
            self.command(loads(data.decode()), fds)

    def command(self, msg: dict[str, Any], fds: list[int]) -> None:
        op, wid = msg.get("op"), msg.get("id", -1)
        if op == "spawn" and len(fds) == 3 and not (self.one_shot and self.spawned):
            pid = os.fork()
            if pid == 0:
                try:
                    self.become_worker(*fds)
                finally:
                    os._exit(70)
            self.spawned += 1
            self.workers[pid] = wid
            self.pids[wid] = pid
            self.send({"op": "spawned", "id": wid, "pid": pid})
            if msg.get("uid") is not None:
                self.assign(pid, msg)
        elif op == "assign" and wid in self.pids:
            self.assign(self.pids[wid], msg)
        elif op == "kill":
            if wid in self.pids:
                _killpg(self.pids[wid])
        elif op == "quit":
            self.closing = True
        else:
            self.send({"op": "error", "id": wid, "message": f"bad command {op!r}"})
        for fd in fds:
            os.close(fd)

    def assign(self, pid: int, msg: dict[str, Any]) -> None:
        self.assigned[pid] = int(msg["uid"])

    def escaped(self, uid: int) -> bool:
        """Whether a process of ``uid`` may still exist (zombies included).

        Every process a worker starts descends from it; when it exits, the
        kernel hands its surviving children to us, the subreaper, before we
        can reap it. So once the worker is reaped, a process of ``uid`` is
        either one of our children or a descendant of one: none among our
        children that is not a known worker or sweeper means none at all.
        The list is read whole while nothing leaves it (only we reap our
        children; new ones are appended), so no entry can be skipped.
        """
        if not self.info.get("children"):
            return True
        try:
            fd = os.open(self.children, os.O_RDONLY)
            try:
                listed = os.read(fd, 1 << 16).split()
            finally:
                os.close(fd)
        except OSError:
            return True
        for raw in listed:
            pid = int(raw)
            if pid in self.workers or pid in self.sweepers:
                continue
            if _real_uid(pid) in (uid, None):
                return True
        return False

    def reap(self) -> None:
        while True:
            try:
                pid, status, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.workers:
                if pid not in self.assigned:
                    # The host sends a worker's ``assign`` before its request, so
                    # a worker that ran is assigned by now: the command may just
                    # be unread (a fast run ends while we were busy here).
                    self.commands()
                wid = self.workers.pop(pid)
                self.pids.pop(wid, None)
                usage = [ru.ru_utime, ru.ru_stime, float(ru.ru_maxrss)]
                uid = self.assigned.pop(pid, None)
                if uid is None or uid == os.getuid():
                    self.report(wid, status, usage, swept=False)
                elif not self.escaped(uid):
                    self.report(wid, status, usage, swept=True)
                else:
                    self.sweepers[_fork_sweeper(uid)] = (wid, status, usage)
            elif pid in self.sweepers:
                wid, wstatus, usage = self.sweepers.pop(pid)
                self.report(wid, wstatus, usage, swept=os.waitstatus_to_exitcode(status) == 0)
            # Any other pid is an orphan reparented to us: reaping it is all it needs.

    def report(self, wid: int, status: int, usage: list[float], swept: bool) -> None:
        self.reported += 1
        self.send({"op": "exit", "id": wid, "status": status, "usage": usage, "swept": swept})

    def shutdown(self) -> None:
        for pid in list(self.workers):
            _killpg(pid)
        deadline = time.monotonic() + SWEEP_WAIT_S
        while (self.workers or self.sweepers) and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.002)
        os._exit(0)

    def become_worker(self, ctl: int, out: int, err: int) -> None:
        _signal.set_wakeup_fd(-1)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
        self.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in {null, out, err} - {0, 1, 2}:
            os.close(fd)
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        _fixed_limits()
        _warm_up()
        request = _read_frame(ctl)
        if request is None:
            os._exit(0)
        _Worker(request, ctl).run()


def _ignore_signal(signum: int, frame: object) -> None:
    """SIGCHLD only has to wake the poll loop (through the wakeup fd)."""


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, _signal.SIGKILL)
    except OSError:
        pass


def _real_uid(pid: int) -> int | None:
    """The real uid of ``pid`` (-1 once it is gone; None when unknown).

    Not the owner of ``/proc/<pid>``: that is root for a process made
    undumpable by its setuid().
    """
    try:
        fd = os.open(f"/proc/{pid}/status", os.O_RDONLY)
    except FileNotFoundError:
        return -1
    except OSError:
        return None
    try:
        status = os.read(fd, 1 << 16)
    except OSError:
        return None
    finally:
        os.close(fd)
    for line in status.splitlines():
        if line.startswith(b"Uid:"):
            return int(line.split()[1])
    return None


def _fork_sweeper(uid: int) -> int:
    """Fork a helper that kills every process of ``uid`` and exits once none is left.

    As ``uid`` with RLIMIT_NPROC at 2, a fork succeeds only when the helper is
    the uid's one process: zombies count until reaped, so success means every
    escaped process is dead *and* reaped (by us, the subreaper).
    """
    pid = os.fork()
    if pid:
        return pid
    try:
        import resource

        _signal.set_wakeup_fd(-1)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (2, 2))
        deadline = time.monotonic() + SWEEP_WAIT_S
        while time.monotonic() < deadline:
            try:
                os.kill(-1, _signal.SIGKILL)
            except OSError:
                pass
            try:
                child = os.fork()
            except BlockingIOError:
                time.sleep(0.0005)
                continue
            if child == 0:
                os._exit(0)
            os.waitpid(child, 0)
            os._exit(0)
    finally:
        os._exit(1)


# --------------------------------------------------------------------------- worker

_WARM_UP_SOURCE = "def main(a=1):\n    return {'a': [a, 1.5, None, True, 'x']}\n"
_WARM_UP_REQUEST = (
    '{"scratch":"/nonexistent","uid":null,"gid":null,"files":{"main.py":"x"},'
    '"entry_point":"main","kwargs":{"a":1},"env":{"PATH":"/bin"},"audit":true,'
    '"max_result_bytes":1,"limits":{"memory_mb":1,"cpu_s":1}}'
)


def _fixed_limits() -> None:
    """The limits that do not depend on the request, set while the worker waits."""
    import resource

    fsize = FSIZE_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE_LIMIT, NOFILE_LIMIT))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))


def _warm_up() -> None:
    """Run the request's code paths once on dummy data while the worker is idle.

    A forked worker shares the zygote's memory copy-on-write: the first write
    to each page (reference counts included) faults and copies it. Doing that
    now, before the request arrives, takes it off the run's critical path. No
    state is left behind for the procedure to see.
    """
    request = loads(_WARM_UP_REQUEST)
    namespace: dict[str, Any] = {"__name__": "__warm_up__"}
    exec(compile(_WARM_UP_SOURCE, "/nonexistent/main.py", "exec"), namespace)  # noqa: S102
    result = namespace["main"](**request["kwargs"])
    _frame_text('{"ok":true,"result":' + dumps(result) + "}")
    hook = _make_hook("/nonexistent")
    hook("open", ("/nonexistent/main.py", "r", os.O_RDONLY))
    hook("import", ("main", None, [], [], []))
    hook("exec", (None,))
    os.path.join("/nonexistent", "main.py")
    os.path.dirname("/nonexistent/main.py")
    os.environ["PROCREG_WARM_UP"] = "1"
    del os.environ["PROCREG_WARM_UP"]
    _write_file(os.devnull, "")
    finder = _SourceFinder("/nonexistent", {"main.py": _WARM_UP_SOURCE, "data.txt": ""})
    finder.find_spec("main")
    try:  # the import system's own code paths, through every finder
        __import__("_procreg_warm_up_no_such_module")
    except ImportError:
        pass
    del namespace, result, hook, request, finder


class _Worker:
    def __init__(self, request: dict[str, Any], ctl: int) -> None:
        self.req = request
        self.ctl = ctl
        self.scratch = str(request["scratch"])
        self.pid = os.getpid()

    def run(self) -> None:
        try:
            self.confine()
        except BaseException as exc:  # noqa: BLE001  (setup failed: say so, run nothing)
            self.finish({"ok": False, "error": {"type": "Crashed", "message": f"setup: {exc}"}})
        try:
            text = self.call()
            data = _frame_text('{"ok":true,"result":' + text + "}")
            limit = int(self.req["max_result_bytes"])
            if len(data) > limit:
                message = f"the result is {len(data)} bytes of JSON, more than the {limit} allowed"
                raise _Failure(OUTPUT_LIMIT, message)
        except BaseException as exc:  # noqa: BLE001  (every failure becomes a result)
            if isinstance(exc, MemoryError):
                exc.__traceback__ = None  # frees the procedure's frames, and its memory
            error = self.describe(exc)
            self.print_traceback(exc)
            del exc
            data = frame({"ok": False, "error": error})
        self.finish_bytes(data)

    def confine(self) -> None:
        import resource

        req = self.req
        limits = req["limits"]
        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
        os.chdir(self.scratch)
        if req.get("uid") is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
            os.setgroups([])
            os.setgid(int(req["gid"]))
            os.setuid(int(req["uid"]))
        env = req["env"]
        for key in [key for key in os.environ if key not in env]:
            del os.environ[key]
        for key, value in env.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        scratch = self.scratch
        finder = _SourceFinder(scratch, req["files"])
        for name, text in req["files"].items():
            if name not in finder.paths:  # data files; the modules are imported from memory
                if "/" in name:
                    os.makedirs(os.path.join(scratch, os.path.dirname(name)), exist_ok=True)
                _write_file(os.path.join(scratch, name), text)
        sys.path.insert(0, scratch)
        sys.meta_path.insert(_path_finder_index(), finder)
        sys.dont_write_bytecode = True
        sys.argv = ["main.py"]
        sys.setrecursionlimit(RECURSION_LIMIT)
        resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mb, limits["memory_mb"] * mb))
        if req.get("audit", True):
            sys.addaudithook(_make_hook(scratch))
            _cap_recursion_limit()

    def call(self) -> str:
        """Call the entry point; its result as JSON text."""
        try:
            module = __import__("main")
        except SyntaxError as exc:
            where = os.path.relpath(exc.filename or "main.py", self.scratch)
            raise _Failure(INVALID_PROCEDURE, f"{where} line {exc.lineno}: {exc.msg}") from None
        name = self.req["entry_point"]
        fn = getattr(module, name, None)
        if not callable(fn):
            raise _Failure(INVALID_PROCEDURE, f"main.py defines no callable {name!r}")
        try:
            result = fn(**self.req["kwargs"])
        except TypeError as exc:
            tb = exc.__traceback__
            if tb is not None and tb.tb_next is None:  # raised while binding, not inside
                raise _Failure(ARGUMENT_ERROR, f"{name}(): {exc}") from None
            raise
        if hasattr(result, "__await__"):
            import asyncio

            result = asyncio.run(result)
        try:
            return dumps(result)
        except (TypeError, ValueError, RecursionError) as exc:
            kind = type(result).__name__
            raise _Failure(NOT_SERIALIZABLE, f"{name}() returned {kind}: {exc}") from None

    def describe(self, exc: BaseException) -> dict[str, str]:
        limits = self.req["limits"]
        if isinstance(exc, _Failure):
            kind, message = exc.kind, str(exc)
        elif isinstance(exc, SandboxViolation):
            kind, message = SANDBOX_VIOLATION, str(exc)
        elif isinstance(exc, ProcessLimitExceeded):
            kind, message = PROCESS_LIMIT, str(exc)
        elif isinstance(exc, MemoryError):
            kind = MEMORY_LIMIT
            message = f"ran out of memory (limit {limits['memory_mb']} MB of address space)"
        elif isinstance(exc, BlockingIOError) and exc.errno == errno.EAGAIN:
            kind = PROCESS_LIMIT
            message = f"process limit reached ({limits['nproc']}): {exc.strerror}"
        elif isinstance(exc, PermissionError):
            kind, message = SANDBOX_VIOLATION, f"denied by the sandbox: {exc}"
        elif isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.ENETDOWN):
            kind, message = SANDBOX_VIOLATION, f"no network in the sandbox: {exc}"
        else:
            kind, message = type(exc).__name__, str(exc) or type(exc).__name__
        message = " ".join(message.split())
        if len(message) > MESSAGE_CHARS:
            message = message[: MESSAGE_CHARS - 3] + "..."
        return {"type": kind, "message": message}

    def print_traceback(self, exc: BaseException) -> None:
        if isinstance(exc, _Failure | MemoryError):
            return
        try:
            import traceback

            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
                tb = tb.tb_next
            traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
        except BaseException:  # noqa: BLE001, S110  (a broken traceback must not hide the result)
            pass

    def finish(self, payload: dict[str, Any]) -> None:
        self.finish_bytes(frame(payload))

    def finish_bytes(self, data: bytes) -> None:
        if os.getpid() != self.pid:  # a fork of the procedure's: only the worker answers
            os._exit(0)
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except BaseException:  # noqa: BLE001, S110  (a broken stream must not hide the result)
                pass
        try:
            _write_all(self.ctl, data)
        finally:
            os._exit(0)


class _SourceFinder:
    """Imports the procedure's modules from the request, without writing them to disk.

    Placed just before the path finder, so that, as with the scratch folder
    first on ``sys.path``, the procedure's modules come before the standard
    library's but not before built-in ones. ``__file__`` is where the file
    would be in the scratch folder; tracebacks and ``inspect`` read the source
    through :meth:`get_source`.
    """

    def __init__(self, scratch: str, files: dict[str, str]) -> None:
        self.modules: dict[str, tuple[str, str | None]] = {}  # name -> path, source
        self.paths: dict[str, str] = {}  # file name -> source
        packages: set[str] = set()
        for name, text in files.items():
            parts = name[:-3].split("/") if name.endswith(".py") else []
            if not parts or not all(part.isidentifier() for part in parts):
                continue
            if parts[-1] == "__init__":
                parts.pop()
                if not parts:
                    continue
                packages.add(".".join(parts))
            self.modules[".".join(parts)] = (os.path.join(scratch, name), text)
            self.paths[name] = text
            for i in range(1, len(parts)):  # folders without __init__.py: namespace packages
                packages.add(".".join(parts[:i]))
        self.packages = {name: os.path.join(scratch, *name.split(".")) for name in packages}
        for name in packages:
            self.modules.setdefault(name, (self.packages[name], None))
        self.by_path = {path: source for path, source in self.modules.values() if source}

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> Any:
        entry = self.modules.get(fullname)
        if entry is None:
            return None
        from _frozen_importlib import ModuleSpec

        origin, source = entry
        spec = ModuleSpec(
            fullname,
            self if source is not None else None,  # type: ignore[arg-type]
            origin=origin if source is not None else None,
            is_package=fullname in self.packages,
        )
        if fullname in self.packages:
            spec.submodule_search_locations = [self.packages[fullname]]
        spec.has_location = source is not None
        return spec

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        origin, source = self.modules[module.__spec__.name]
        exec(compile(source or "", origin, "exec", dont_inherit=True), module.__dict__)  # noqa: S102

    def get_source(self, fullname: str) -> str | None:
        return self.modules.get(fullname, ("", None))[1]

    def get_filename(self, fullname: str) -> str:
        return self.modules[fullname][0]

    def is_package(self, fullname: str) -> bool:
        return fullname in self.packages

    def get_data(self, path: str) -> bytes:
        source = self.by_path.get(path)
        if source is not None:
            return source.encode()
        fd = os.open(path, os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)


def _path_finder_index() -> int:
    for i, finder in enumerate(sys.meta_path):
        if getattr(finder, "__name__", "") == "PathFinder":
            return i
    return len(sys.meta_path)


def _cap_recursion_limit() -> None:
    real = sys.setrecursionlimit

    def setrecursionlimit(limit: int) -> None:
        real(min(int(limit), MAX_RECURSION_LIMIT))

    sys.setrecursionlimit = setrecursionlimit


def _make_hook(scratch: str) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook: defence in depth on top of the OS layers."""
    root = os.path.realpath(scratch)
    prefix = root + os.sep
    own_pid = os.getpid()
    realpath, fspath, fsdecode = os.path.realpath, os.fspath, os.fsdecode

    def resolve(path: Any) -> str | None:
        try:
            p = fspath(path)
        except TypeError:
            return None
        return realpath(fsdecode(p) if isinstance(p, bytes) else p)

    def inside(path: Any) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor
        p = resolve(path)
        return p is not None and (p == root or p.startswith(prefix))

    def foreign_proc(path: Any) -> bool:
        if isinstance(path, int):
            return False
        p = resolve(path)
        if p is None or not p.startswith("/proc/"):
            return False
        first = p[6:].split("/", 1)[0]
        return first.isdigit() and int(first) != own_pid

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(flags, int) and flags & _WRITE_FLAGS) or (
                isinstance(mode, str) and any(c in mode for c in "wax+")
            )
            if writing and not inside(path):
                raise SandboxViolation(
                    f"writing to {path!r} is not allowed: only the scratch folder is writable"
                )
            if (
                isinstance(path, str | bytes)
                and b"proc" in os.fsencode(path)
                and foreign_proc(path)
            ):
                raise SandboxViolation(f"reading {path!r} (another process) is not allowed")
            return
        paths = _PATH_EVENTS.get(event)
        if paths is not None:
            for i in paths:
                if i < len(args) and args[i] is not None and not inside(args[i]):
                    raise SandboxViolation(
                        f"{event} on {args[i]!r} is not allowed: "
                        "only the scratch folder is writable"
                    )
            return
        if event in _PROCESS_EVENTS:
            raise ProcessLimitExceeded(
                f"starting a process ({event}) is not allowed in the sandbox"
            )
        if event in ("os.kill", "os.killpg"):
            pid = args[0]
            if pid not in (0, own_pid):
                raise SandboxViolation(f"sending a signal to process {pid} is not allowed")
            return
        if event.startswith("socket."):
            if event == "socket.__new__" and len(args) > 1 and args[1] == 1:  # AF_UNIX
                return  # socketpair() (asyncio's self-pipe); connect and bind stay denied
            raise SandboxViolation(f"network access ({event}) is not allowed in the sandbox")
        if event.startswith("ctypes."):
            raise SandboxViolation(f"{event} is not allowed in the sandbox")
        if event == "import" and str(args[0]).split(".", 1)[0] in _DENIED_IMPORTS:
            raise SandboxViolation(f"importing {args[0]} is not allowed in the sandbox")
        if event in _INTROSPECTION_EVENTS or event == "setopencodehook":
            raise SandboxViolation(f"{event} is not allowed in the sandbox")
        if event in ("object.__setattr__", "object.__delattr__") and args and args[0] is hook:
            raise SandboxViolation("the sandbox's audit hook cannot be changed")

    return hook


def main(argv: list[str]) -> int:
    """Entry point: ``zygote FD [--one-shot]``."""
    if len(argv) >= 2 and argv[0] == "zygote":
        fd = int(argv[1])
        # Nothing of the host's but our socket: stdin carried this code, and no
        # other descriptor may reach a worker.
        null = os.open(os.devnull, os.O_RDWR)
        for std in (0, 1, 2):
            if std != null:
                os.dup2(null, std)
        os.closerange(3, fd)
        os.closerange(fd + 1, 1 << 20)
        _Zygote(fd, "--one-shot" in argv[2:]).serve()
        return 0
    sys.stderr.write("usage: _sandbox_child.py zygote FD [--one-shot]\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
