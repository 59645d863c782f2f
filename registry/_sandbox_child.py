"""The code that runs inside the sandbox processes (standard library only).

``registry/sandbox.py`` starts this file as ``python -I -S -B _sandbox_child.py
zygote FD [--one-shot]``: a *zygote* with a clean environment that never saw
the host's memory. It makes itself a child subreaper, leaves the host's network
namespace, and serves a few commands over the SEQPACKET socket ``FD``:

``spawn`` (three fds attached: control socket, stdout pipe, stderr pipe)
    fork a *worker* that waits on its control socket for exactly one request;
``assign``
    the uid a worker is about to run as, so that after the worker exits every
    process of that uid is killed and reaped (the *sweep*) before its exit is
    reported;
``kill``
    kill a worker's process group (wall-clock timeout, output flood);
``quit``
    kill every worker and exit.

A worker applies the request's limits, drops to the slot's uid, writes the
procedure's files into the scratch folder, installs an audit hook and calls the
entry point, then writes one length-prefixed JSON result and exits. It never
serves a second request. A one-shot zygote (the cold path) exits after its
single worker has been reported.

The host imports this module too, for the constants shared by both sides.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
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


# --------------------------------------------------------------------------- framing


def frame(obj: Any) -> bytes:
    """``obj`` as compact JSON behind a 4-byte big-endian length."""
    data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
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
    return None if body is None else json.loads(body)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --------------------------------------------------------------------------- libc


def _libc_setup(one_shot: bool) -> dict[str, Any]:
    """Become a subreaper and leave the network; report what the OS granted."""
    info: dict[str, Any] = {"subreaper": False, "netns": False, "netns_detail": ""}
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        info["subreaper"] = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
        if libc.unshare(flags) == 0:
            info["netns"] = True
            info["netns_detail"] = "new network namespace (no interfaces up)"
        else:
            info["netns_detail"] = f"unshare refused: {os.strerror(ctypes.get_errno())}"
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
        self.workers: dict[int, int | None] = {}  # pid -> assigned uid
        self.sweepers: dict[int, tuple[int, int, list[float]]] = {}
        self.spawned = 0
        self.reported = 0
        self.closing = False
        self.info: dict[str, Any] = {}

    def send(self, msg: dict[str, Any]) -> None:
        try:
            self.sock.send(json.dumps(msg).encode())
        except OSError:
            self.closing = True

    def serve(self) -> None:
        import _socket

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.info = _libc_setup(self.one_shot)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.sock.setblocking(False)
        import resource  # noqa: F401  (imported once here, shared by every fork)

        gc.freeze()  # forks then share these pages instead of copying them on the first GC
        self.send({"op": "ready", "pid": os.getpid(), **self.info})
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        fd_space = _socket.CMSG_SPACE(3 * 4)
        while True:
            if self.closing:
                self.shutdown()
            if (
                self.one_shot
                and self.spawned
                and self.reported >= self.spawned
                and self.sweepers == {}
            ):
                return
            with contextlib.suppress(InterruptedError):
                poller.poll(1000)
            # Commands first: an ``assign`` must be seen before its worker's exit.
            while not self.closing:
                try:
                    data, ancdata, _flags, _addr = self.sock.recvmsg(MAX_ZYGOTE_MESSAGE, fd_space)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self.closing = True
                    break
                if not data:
                    self.closing = True
                    break
                fds: list[int] = []
                for level, kind, payload in ancdata:
                    if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                        usable = len(payload) - len(payload) % 4
                        fds.extend(memoryview(payload[:usable]).cast("i"))
                self.command(json.loads(data), fds)
            try:
                while os.read(self.wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            self.reap()

    def command(self, msg: dict[str, Any], fds: list[int]) -> None:
        op = msg.get("op")
        if op == "spawn" and len(fds) == 3 and not (self.one_shot and self.spawned):
            pid = os.fork()
            if pid == 0:
                try:
                    self.become_worker(*fds)
                finally:
                    os._exit(70)
            self.spawned += 1
            self.workers[pid] = None
            self.send({"op": "spawned", "id": msg.get("id"), "pid": pid})
        elif op == "assign" and msg.get("pid") in self.workers:
            self.workers[msg["pid"]] = int(msg["uid"])
        elif op == "kill" and msg.get("pid") in self.workers:
            _killpg(msg["pid"])
        elif op == "quit":
            self.closing = True
        else:
            self.send({"op": "error", "id": msg.get("id"), "message": f"bad command {op!r}"})
        for fd in fds:
            os.close(fd)

    def reap(self) -> None:
        while True:
            try:
                pid, status, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.workers:
                uid = self.workers.pop(pid)
                usage = [ru.ru_utime, ru.ru_stime, float(ru.ru_maxrss)]
                if uid is not None and uid != os.getuid():
                    self.sweepers[_fork_sweeper(uid)] = (pid, status, usage)
                else:
                    self.report(pid, status, usage, swept=False)
            elif pid in self.sweepers:
                wpid, wstatus, usage = self.sweepers.pop(pid)
                self.report(wpid, wstatus, usage, swept=os.waitstatus_to_exitcode(status) == 0)
            # Any other pid is an orphan reparented to us: reaping it is all it needs.

    def report(self, pid: int, status: int, usage: list[float], swept: bool) -> None:
        self.reported += 1
        self.send({"op": "exit", "pid": pid, "status": status, "usage": usage, "swept": swept})

    def shutdown(self) -> None:
        for pid in list(self.workers):
            _killpg(pid)
        deadline = time.monotonic() + 10
        while (self.workers or self.sweepers) and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.002)
        os._exit(0)

    def become_worker(self, ctl: int, out: int, err: int) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
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
        request = _read_frame(ctl)
        if request is None:
            os._exit(0)
        _Worker(request, ctl, bool(self.info.get("netns"))).run()


def _killpg(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


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

        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (2, 2))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                os.kill(-1, signal.SIGKILL)
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


class _Worker:
    def __init__(self, request: dict[str, Any], ctl: int, netns: bool) -> None:
        self.req = request
        self.ctl = ctl
        self.netns = netns
        self.scratch = str(request["scratch"])
        self.pid = os.getpid()

    def run(self) -> None:
        try:
            self.confine()
        except BaseException as exc:  # the sandbox could not be set up: say so, run nothing
            self.finish({"ok": False, "error": {"type": "Crashed", "message": f"setup: {exc}"}})
        try:
            data = frame({"ok": True, "result": self.call()})
            limit = int(self.req["max_result_bytes"])
            if len(data) > limit:
                message = f"the result is {len(data)} bytes of JSON, more than the {limit} allowed"
                raise _Failure(OUTPUT_LIMIT, message)
        except BaseException as exc:  # every failure of the procedure becomes a result
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
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits["nofile"], limits["nofile"]))
        resource.setrlimit(
            resource.RLIMIT_FSIZE, (limits["fsize_mb"] * mb, limits["fsize_mb"] * mb)
        )
        resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
        os.chdir(self.scratch)
        if req.get("uid") is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
            os.setgroups([])
            os.setgid(int(req["gid"]))
            os.setuid(int(req["uid"]))
        os.environ.clear()
        os.environ.update(req["env"])
        for name, text in req["files"].items():
            path = Path(self.scratch, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        sys.path.insert(0, self.scratch)
        sys.dont_write_bytecode = True
        sys.argv = ["main.py"]
        sys.setrecursionlimit(RECURSION_LIMIT)
        resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mb, limits["memory_mb"] * mb))
        if req.get("audit", True):
            sys.addaudithook(_make_hook(self.scratch))
            _cap_recursion_limit()

    def call(self) -> Any:
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
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            kind = type(result).__name__
            raise _Failure(NOT_SERIALIZABLE, f"{name}() returned {kind}: {exc}") from None
        return result

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
        except BaseException:  # noqa: S110  (a broken traceback must not hide the result)
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
            except BaseException:  # noqa: S110  (a broken stream must not hide the result)
                pass
        try:
            _write_all(self.ctl, data)
        finally:
            os._exit(0)


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
        _Zygote(int(argv[1]), "--one-shot" in argv[2:]).serve()
        return 0
    sys.stderr.write("usage: _sandbox_child.py zygote FD [--one-shot]\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
