"""The host's side of a sandbox zygote: starting it, its workers, its messages.

A zygote is ``_sandbox_child.py`` run by :func:`sandbox_python` with
``-I -S -B``, a minimal environment and the host's compiled copy of that file
on stdin. It forks *workers* on request (each serves one run) and reports
their exits over a SEQPACKET socket once their uid is swept. The commands and
replies are described in ``_sandbox_child.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import marshal
import os
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import threading
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from typing import Any

from registry import _sandbox_child as child
from registry.errors import ExecutionError

# The sandbox's one logger, whichever of its modules speaks.
log = logging.getLogger("registry.sandbox")

CHILD_SCRIPT = Path(child.__file__).resolve()
ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def worker_env(scratch: Path) -> dict[str, str]:
    """The whole environment of a run's process, whose home is its scratch folder."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
    }


LOST: dict[str, Any] = {"op": "exit", "status": None, "usage": None, "swept": False}
"""The exit reported for a worker whose zygote is gone."""


class NotStarted(ExecutionError):
    """A cold run's zygote died before it could start a worker."""


class Worker:
    """The host's side of one worker: its control socket, output pipes and exit."""

    def __init__(self, zygote: Zygote, wid: int) -> None:
        self.zygote, self.id = zygote, wid
        self.ctl, ctl_child = socket.socketpair()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.notify_r, self.notify_w = os.pipe()
        self.child_fds = [ctl_child.detach(), out_w, err_w]
        self.pid: int | None = None
        self.exit: dict[str, Any] | None = None

    def spawned(self, pid: int) -> None:
        """The zygote forked this worker as ``pid``."""
        self.pid = pid

    def exited(self, msg: dict[str, Any]) -> None:
        """The zygote reported the exit (and sweep); wakes whoever polls ``notify_r``."""
        self.exit = msg
        with contextlib.suppress(OSError):
            os.write(self.notify_w, b"x")

    def close(self) -> None:
        """Close the host's ends of the worker's sockets and pipes."""
        self.ctl.close()
        for fd in (self.out_r, self.err_r, self.notify_r, self.notify_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class Zygote:
    """A zygote process started from ``_sandbox_child.py`` and its messages.

    The pool's zygote has a reader thread. A one-shot zygote (a cold run) has
    none: the run's own loop reads its few messages (:meth:`pump`), and no
    message is waited for before the request is on its way.
    """

    def __init__(self, one_shot: bool) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.one_shot = one_shot
        cmd = [sandbox_python(), "-I", "-S", "-B", "-c", BOOT, str(CHILD_SCRIPT), "zygote"]
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
        code = zygote_code()
        with contextlib.suppress(OSError):  # a zygote that died at once is seen below
            if len(code) > 60000:
                fcntl.fcntl(code_w, fcntl.F_SETPIPE_SZ, len(code))
            os.write(code_w, code)
        os.close(code_w)
        self.send_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.workers: dict[int, Worker] = {}
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
            raise NotStarted("the sandbox zygote did not start (run `procreg doctor`)")
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
        """Whether the zygote process still runs and answers."""
        return not self.dead and self.proc.poll() is None

    def spawn(self, assign: dict[str, Any] | None = None) -> Worker:
        """Ask for a new worker (assigned to a uid at once when ``assign`` is given).

        Nothing is waited for: the zygote handles its commands in order, and
        the worker reads its request from a socket that buffers it.
        """
        with self.state_lock:
            self.next_id += 1
            worker = Worker(self, self.next_id)
            dead = self.dead
            if not dead:
                self.workers[worker.id] = worker
        try:
            if dead:
                worker.exited(LOST)
            else:
                self._send({"op": "spawn", "id": worker.id, **(assign or {})}, worker.child_fds)
        except OSError:
            self.mark_dead()
        finally:
            for fd in worker.child_fds:
                os.close(fd)
        return worker

    def assign(self, worker: Worker, assign: dict[str, Any]) -> None:
        """Tell the zygote the uid ``worker`` is about to run as (raises OSError if it is gone)."""
        self._send({"op": "assign", "id": worker.id, **assign})

    def kill(self, worker: Worker) -> None:
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
            self.mark_dead()
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
                    worker.exited(LOST)
        return True

    def mark_dead(self) -> None:
        """The zygote is gone: report every worker it had as lost."""
        with self.state_lock:
            self.dead = True
            for worker in self.workers.values():
                worker.exited(LOST)
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


# ``python -c`` code that runs the child module from the host's compiled copy
# on stdin (the byte code of one Python version); a different version compiles
# the file itself. Scripts are never cached as .pyc, and compiling this one
# costs the cold path milliseconds.
BOOT = (
    "import sys,marshal\n"
    "d=sys.stdin.buffer.read()\n"
    "f=sys.argv.pop(1)\n"
    "m=sys.modules['_frozen_importlib_external'].MAGIC_NUMBER\n"
    "c=marshal.loads(d[4:]) if d[:4]==m else compile(open(f,'rb').read(),f,'exec')\n"
    "exec(c,{'__name__':'__main__','__file__':f,'__builtins__':__builtins__})\n"
)
_CODE: bytes | None = None
_CODE_LOCK = threading.Lock()


def zygote_code() -> bytes:
    """The child module compiled once by the host: magic number, then marshalled code."""
    global _CODE
    with _CODE_LOCK:
        if _CODE is None:
            source = CHILD_SCRIPT.read_bytes()
            code = compile(source, str(CHILD_SCRIPT), "exec", dont_inherit=True)
            _CODE = MAGIC_NUMBER + marshal.dumps(code)
        return _CODE


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
