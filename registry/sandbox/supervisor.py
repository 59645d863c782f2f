"""The code that runs inside a sandbox (standard library only).

The host starts one sandbox per run: bubblewrap (``registry.sandbox.policy``)
runs ``python -I -S -B`` on this file's compiled code, as the run's own
unprivileged uid, with every namespace new, so this process is pid 1 of the
run's pid namespace and every process of the run dies with it. It is the
*supervisor*; it owns the one channel to the host (``RES``) and gives the
procedure no descriptor of it:

1. at once it forks the *procedure process*, which closes ``RES``, applies
   the fixed limits, warms itself up and waits for the run's request on
   ``REQ`` (so a warm sandbox pays none of that when the request comes);
2. it tells the host ``ready`` (a frame on ``RES``);
3. the procedure process reads the request, applies the run's limits,
   writes the procedure's data files into the scratch folder (its modules
   are imported from memory, see ``_SourceFinder``), installs the audit hook
   (defence in depth, not a boundary) and calls the entry point; it writes
   one length-prefixed JSON result into a pipe to the supervisor and exits;
4. the supervisor reads at most ``MAX_RESULT`` bytes of it, reaps whatever
   the procedure left (it is the namespace's init), sends ``exit`` (wait
   status, resource usage) and the raw result to the host, and exits, which
   ends every other process of the run.

The host decodes what comes back as untrusted bytes: this supervisor runs
beside hostile code, so nothing it says is believed beyond its framing.
The supervisor is not dumpable and is its namespace's init, so the
procedure (same uid, no capabilities, seccomp on) can neither read its
memory nor kill it.

Start-up time matters on the cold path, so this module imports only built-in
or tiny modules: JSON goes through the ``_json`` accelerator directly (the
``json`` package pulls in ``re``), signals through ``_signal`` (``signal``
pulls in ``enum``), and libc through ``_ctypes``. The host imports this module
too, for the constants and the framing shared by both sides.
"""

# The cold path pays for every import: no pathlib, no contextlib here.
# ruff: noqa: PTH103, PTH118, PTH120, SIM105

from __future__ import annotations

import _json
import _signal
import errno
import gc
import os
import select
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# Failure classes (``RunError.type``) produced inside; the host adds
# the ones only the host can see (Timeout, CpuLimitExceeded, Crashed...).
SANDBOX_VIOLATION = "SandboxViolation"
PROCESS_LIMIT = "ProcessLimitExceeded"
MEMORY_LIMIT = "MemoryLimitExceeded"
OUTPUT_LIMIT = "OutputLimitExceeded"
ARGUMENT_ERROR = "ArgumentError"
NOT_SERIALIZABLE = "ResultNotSerializable"
INVALID_PROCEDURE = "InvalidProcedure"

RESULT_HEADER = 4  # big-endian length prefix of every worker frame
MAX_META_BYTES = 65536  # a ready or exit frame
RECURSION_LIMIT = 1000
MAX_RECURSION_LIMIT = 10000
MESSAGE_CHARS = 500
NOFILE_LIMIT = 64
FSIZE_MB = 64

# A network sandbox: where its proxy's folder is mounted (read-only), the socket in it,
# and the address its relay listens on (what HTTP_PROXY names).
NET_MOUNT = "/run/procreg-net"
PROXY_SOCKET = "proxy.sock"
PROXY_PATH = NET_MOUNT + "/" + PROXY_SOCKET
PROXY_ADDRESS = ("127.0.0.1", 3128)

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_DUMPABLE = 4
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
_LOOKUP_EVENTS = frozenset(
    {
        "socket.getaddrinfo",
        "socket.gethostname",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
        "socket.getservbyname",
        "socket.getservbyport",
    }
)
_PROXY_PEERS = (PROXY_ADDRESS, PROXY_PATH, PROXY_PATH.encode())
_NO_NETWORK = (errno.ENETUNREACH, errno.ENETDOWN, errno.EAFNOSUPPORT)
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


def _harden(plain: bool) -> dict[str, Any]:
    """Make this process undumpable (plain: also a subreaper off the network); say what held.

    ``_ctypes`` directly: the ``ctypes`` package costs milliseconds to import.
    It is dropped from ``sys.modules`` afterwards, so the procedure imports it
    afresh (and the audit hook refuses that).
    """
    info: dict[str, Any] = {"pid1": os.getpid() == 1, "dumpable": True}
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
        info["dumpable"] = prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0
        if plain:
            info["subreaper"] = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            unshare = _Func(("unshare", _Lib()))  # type: ignore[arg-type]
            flags = CLONE_NEWUSER | CLONE_NEWNET if os.geteuid() != 0 else CLONE_NEWNET
            info["netns"] = unshare(flags) == 0
    except (OSError, AttributeError, ImportError) as exc:
        info["libc"] = f"unavailable: {exc}"
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    return info


# --------------------------------------------------------------------------- supervisor


class _Supervisor:
    def __init__(self, res: int, max_result: int, plain: bool, network: bool = False) -> None:
        self.res, self.max_result, self.plain, self.network = res, max_result, plain, network

    def send(self, data: bytes) -> None:
        try:
            _write_all(self.res, data)
        except OSError:
            os._exit(0)  # the host is gone: nothing to report to

    def serve(self, req: int, out: int, err: int, scratch: str) -> None:
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        info = _harden(self.plain)
        import resource  # noqa: F401  (imported once here, shared with the fork)

        if os.read(req, 1) != b"g":  # the host has put us into the run's cgroup
            os._exit(0)
        if self.network:  # the port is taken before the procedure exists
            info["relay"] = _start_relay(PROXY_PATH)
        result_r, result_w = os.pipe()
        warm_r, warm_w = os.pipe()
        gc.freeze()  # the fork shares these pages instead of copying them on the first GC
        pid = os.fork()
        if pid == 0:
            try:
                os.close(self.res)
                os.close(result_r)
                os.close(warm_r)
                _procedure_process(req, result_w, out, err, scratch, warm_w, self.network)
            finally:
                os._exit(70)
        for fd in (req, out, err, result_w, warm_w):
            os.close(fd)
        os.read(warm_r, 1)  # EOF once the procedure process is warm and waits for the request
        os.close(warm_r)
        self.send(frame({"op": "ready", "pid": os.getpid(), **info}))
        status, usage, data, oversize = self.wait(pid, result_r)
        exit_msg = {"op": "exit", "status": status, "usage": usage, "oversize": oversize}
        self.send(frame(exit_msg) + len(data).to_bytes(RESULT_HEADER, "big") + bytes(data))
        os._exit(0)  # as pid 1, this ends every process the procedure left

    def wait(self, pid: int, result_r: int) -> tuple[int, list[float], bytearray, bool]:
        """Collect the procedure's result (bounded) until its process exits; reap the rest."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        os.set_blocking(result_r, False)
        _signal.signal(_signal.SIGCHLD, _ignore_signal)
        _signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        poller = select.poll()
        poller.register(result_r, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        data = bytearray()
        limit = self.max_result + RESULT_HEADER
        oversize = False
        open_result = True
        while True:
            try:
                poller.poll(1000)
            except InterruptedError:
                pass
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            if open_result:
                open_result, oversize = self.read_result(result_r, data, limit, oversize)
                if not open_result:
                    poller.unregister(result_r)
            done = self.reap(pid)
            if done is not None:
                if open_result:
                    self.read_result(result_r, data, limit, oversize)
                return done[0], done[1], data, oversize or len(data) > limit

    def read_result(
        self, fd: int, data: bytearray, limit: int, oversize: bool
    ) -> tuple[bool, bool]:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return True, oversize
            if not chunk:
                return False, oversize
            if len(data) + len(chunk) > limit:
                oversize = True  # keep draining, so the writer is never stuck, but keep none
                data.clear()
                continue
            if not oversize:
                data += chunk

    def reap(self, pid: int) -> tuple[int, list[float]] | None:
        """Reap every exited child; the procedure's wait status and usage once it is gone."""
        found = None
        while True:
            try:
                child, status, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return found
            if child == 0:
                return found
            if child == pid:
                found = (status, [ru.ru_utime, ru.ru_stime, float(ru.ru_maxrss)])


def _ignore_signal(signum: int, frame: object) -> None:
    """SIGCHLD only has to wake the poll loop (through the wakeup fd)."""


def _procedure_process(
    req: int, result_w: int, out: int, err: int, scratch: str, warm_w: int, network: bool
) -> None:
    _signal.set_wakeup_fd(-1)
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in {out, err} - {1, 2}:
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:  # the kernel's OOM killer takes this process (and its children) before the supervisor
        _write_file("/proc/self/oom_score_adj", "1000")
    except OSError:
        pass
    _fixed_limits()
    _warm_up()
    if network:  # the standard library's HTTP clients, imported while the sandbox waits
        try:
            import urllib.request

            urllib.request.build_opener()  # its handlers' code paths; nothing is installed
        except ImportError:
            pass
    os.close(warm_w)
    request = _read_frame(req)
    os.close(req)
    if request is None:
        os._exit(0)
    request["scratch"] = scratch
    request["network"] = network
    _Worker(request, result_w).run()


# --------------------------------------------------------------------------- relay


def _start_relay(proxy_path: str) -> int:
    """Listen on 127.0.0.1:3128 now; fork the relay that carries it to the host's proxy.

    The relay is only a convenience for HTTP clients (``HTTP_PROXY``): the boundary
    is the host's proxy behind the Unix socket, which the procedure may as well
    reach itself, and a network namespace with nothing but loopback in it.
    """
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(PROXY_ADDRESS)
    listener.listen(64)
    pid = os.fork()
    if pid == 0:
        try:
            keep = listener.fileno()  # nothing of the supervisor's: not the host's channel
            os.closerange(0, keep)
            os.closerange(keep + 1, 1 << 20)
            _relay(listener, proxy_path)
        finally:
            os._exit(0)
    listener.close()
    return pid


def _relay(listener: Any, proxy_path: str) -> None:
    """Carry every accepted connection to a new connection to ``proxy_path``, both ways."""
    import socket

    poller = select.poll()
    poller.register(listener, select.POLLIN)
    socks: dict[int, Any] = {}
    peer: dict[int, Any] = {}
    half: set[int] = set()  # sockets whose reading side has ended

    def drop(fd: int) -> None:
        for one in (fd, peer[fd].fileno()):
            sock = socks.pop(one, None)
            peer.pop(one, None)
            half.discard(one)
            if sock is not None:
                try:
                    poller.unregister(one)
                except (KeyError, ValueError):
                    pass
                sock.close()

    while True:
        for fd, _event in poller.poll():
            if fd == listener.fileno():
                try:
                    client, _ = listener.accept()
                except OSError:
                    continue
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    upstream.connect(proxy_path)
                except OSError:
                    client.close()
                    upstream.close()
                    continue
                for a, b in ((client, upstream), (upstream, client)):
                    socks[a.fileno()], peer[a.fileno()] = a, b
                    poller.register(a, select.POLLIN)
                continue
            sock = socks.get(fd)
            if sock is None:
                continue
            try:
                data = sock.recv(65536)
                if data:
                    peer[fd].sendall(data)
                    continue
            except OSError:
                drop(fd)
                continue
            # End of one direction: pass it on; when both ended, close the pair.
            poller.unregister(fd)
            half.add(fd)
            try:
                peer[fd].shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if peer[fd].fileno() in half:
                drop(fd)


# --------------------------------------------------------------------------- worker

_WARM_UP_SOURCE = "def main(a=1):\n    return {'a': [a, 1.5, None, True, 'x']}\n"
_WARM_UP_REQUEST = (
    '{"scratch":"/nonexistent","own_uid":false,"files":{"main.py":"x"},'
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
    """Run the request's code paths once on dummy data while the process waits.

    The procedure process shares the supervisor's memory copy-on-write: the first write
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
        os.makedirs(self.scratch, exist_ok=True)
        os.chdir(self.scratch)
        if req.get("own_uid"):  # a uid of the run's own: RLIMIT_NPROC counts only the run
            resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
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
        if req.get("site"):  # the locked environment: after the standard library, never before
            sys.path.append(str(req["site"]))
        sys.meta_path.insert(_path_finder_index(), finder)
        sys.dont_write_bytecode = True
        sys.argv = ["main.py"]
        sys.setrecursionlimit(RECURSION_LIMIT)
        resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * mb, limits["memory_mb"] * mb))
        if req.get("audit", True):
            sys.addaudithook(_make_hook(scratch, network=bool(req.get("network"))))
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
        elif isinstance(exc, OSError) and exc.errno in _NO_NETWORK:
            kind, message = SANDBOX_VIOLATION, f"no network in the sandbox: {exc}"
        elif isinstance(exc, OSError) and exc.errno == errno.EROFS:
            kind, message = SANDBOX_VIOLATION, f"the sandbox's file system is read-only: {exc}"
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


def _check_open(
    path: Any, mode: Any, flags: Any, inside: Callable[[Any], bool], foreign: Callable[[Any], bool]
) -> None:
    """The ``open`` event: writes only inside the scratch folder, no other process's /proc."""
    writing = (isinstance(flags, int) and flags & _WRITE_FLAGS) or (
        isinstance(mode, str) and any(c in mode for c in "wax+")
    )
    if writing and not inside(path):
        raise SandboxViolation(
            f"writing to {path!r} is not allowed: only the scratch folder is writable"
        )
    if isinstance(path, str | bytes) and b"proc" in os.fsencode(path) and foreign(path):
        raise SandboxViolation(f"reading {path!r} (another process) is not allowed")


def _check_paths(
    event: str, args: tuple[Any, ...], paths: tuple[int, ...], inside: Callable[[Any], bool]
) -> None:
    """An event that changes the file system: each path it names inside the scratch folder."""
    for i in paths:
        if i < len(args) and args[i] is not None and not inside(args[i]):
            raise SandboxViolation(
                f"{event} on {args[i]!r} is not allowed: only the scratch folder is writable"
            )


def _check_socket(event: str, args: tuple[Any, ...], network: bool) -> None:
    """A socket event: none but AF_UNIX pairs, or (network) only a connection to the proxy."""
    if event == "socket.__new__" and len(args) > 1 and args[1] == 1:  # AF_UNIX
        return  # socketpair() (asyncio's self-pipe); connect and bind stay denied
    if not network:
        raise SandboxViolation(f"network access ({event}) is not allowed in the sandbox")
    if event == "socket.__new__" or event in _LOOKUP_EVENTS:
        return  # a lookup reaches nothing: the namespace has no resolver, the proxy resolves
    if event == "socket.connect" and len(args) > 1 and args[1] in _PROXY_PEERS:
        return
    raise SandboxViolation(
        f"{event} is not allowed: a run reaches the network only through procreg's proxy at "
        f"{PROXY_ADDRESS[0]}:{PROXY_ADDRESS[1]} (HTTP_PROXY), for the host:port pairs of "
        "metadata.json network.allow"
    )


def _check_event(
    event: str, args: tuple[Any, ...], own_pid: int, hook: object, network: bool = False
) -> None:
    """Every other event: processes, signals, sockets, ctypes, imports, introspection, the hook."""
    if event in _PROCESS_EVENTS:
        raise ProcessLimitExceeded(f"starting a process ({event}) is not allowed in the sandbox")
    if event in ("os.kill", "os.killpg"):
        pid = args[0]
        if pid not in (0, own_pid):
            raise SandboxViolation(f"sending a signal to process {pid} is not allowed")
        return
    if event.startswith("socket."):
        _check_socket(event, args, network)
        return
    if event.startswith("ctypes."):
        raise SandboxViolation(f"{event} is not allowed in the sandbox")
    if event == "import" and str(args[0]).split(".", 1)[0] in _DENIED_IMPORTS:
        raise SandboxViolation(f"importing {args[0]} is not allowed in the sandbox")
    if event in _INTROSPECTION_EVENTS or event == "setopencodehook":
        raise SandboxViolation(f"{event} is not allowed in the sandbox")
    if event in ("object.__setattr__", "object.__delattr__") and args and args[0] is hook:
        raise SandboxViolation("the sandbox's audit hook cannot be changed")


def _make_hook(scratch: str, network: bool = False) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook: defence in depth on top of the OS layers."""
    root = os.path.realpath(scratch)
    prefix = root + os.sep
    own_pid = os.getpid()
    realpath, fspath, fsdecode = os.path.realpath, os.fspath, os.fsdecode
    # Bound now, like the os functions: the hook never looks its checks up again.
    check_open, check_paths, check_event = _check_open, _check_paths, _check_event

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
            check_open(path, mode, flags, inside, foreign_proc)
            return
        paths = _PATH_EVENTS.get(event)
        if paths is not None:
            check_paths(event, args, paths, inside)
            return
        check_event(event, args, own_pid, hook, network)

    return hook


def main(argv: list[str]) -> int:
    """Entry point: ``supervisor REQ RES OUT ERR SCRATCH MAX_RESULT [--plain] [--network]``."""
    if len(argv) >= 7 and argv[0] == "supervisor":
        req, res, out, err = (int(arg) for arg in argv[1:5])
        scratch, max_result, plain = argv[5], int(argv[6]), "--plain" in argv[7:]
        network = "--network" in argv[7:]
        # Nothing of the host's but our four descriptors: stdin carried this code.
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        keep = sorted({0, 1, 2, req, res, out, err})
        for low, high in zip(keep, [*keep[1:], 1 << 20], strict=True):
            os.closerange(low + 1, high)
        _Supervisor(res, max_result, plain, network).serve(req, out, err, scratch)
        return 0
    sys.stderr.write("usage: supervisor.py supervisor REQ RES OUT ERR SCRATCH MAX_RESULT\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
