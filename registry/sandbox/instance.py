"""The host's side of one sandbox: its process, its descriptors, its end.

An :class:`Instance` is one started sandbox, serving exactly one run: the
isolation engine's process (bubblewrap, whose command is the supervisor of
:mod:`registry.sandbox.supervisor`; or, with ``require_isolation = false``
and no bubblewrap, the supervisor itself) with four pipes: the request in,
the supervisor's reports out, the procedure's stdout and stderr. The new
process starts as the run's unprivileged uid, so nothing of a run ever runs
as root, and enters the run's cgroup before the procedure's process exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import marshal
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from typing import Any

import registry.sandbox.supervisor as sup
from registry.errors import ExecutionError
from registry.sandbox.cgroup import RunCgroup
from registry.sandbox.netproxy import ProxyEndpoint
from registry.sandbox.slots import Slot, kill_uid

log = logging.getLogger("registry.sandbox")

SUPERVISOR_SCRIPT = Path(sup.__file__).resolve()
ENGINE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
MAX_RESULT_BYTES = 16 * 1024 * 1024
EXIT_WAIT_S = 5.0


def worker_env(scratch: str) -> dict[str, str]:
    """The whole environment of a run's procedure process, whose home is its scratch folder."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": scratch,
        "TMPDIR": scratch,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
    }


def proxy_env() -> dict[str, str]:
    """What a network run's environment adds: every HTTP client's proxy settings, no bypass."""
    url = f"http://{sup.PROXY_ADDRESS[0]}:{sup.PROXY_ADDRESS[1]}"
    names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    return {key: url for name in names for key in (name, name.lower())}


class Instance:
    """One started sandbox and the host's ends of its pipes (closed by :meth:`close`).

    ``command(req, res, out, err, seccomp_fd)`` gives the argv for the
    descriptor numbers the process will have; ``seccomp`` is the BPF program
    bubblewrap loads, or None.
    """

    def __init__(
        self,
        command: Callable[[int, int, int, int, int | None, int | None], list[str]],
        slot: Slot,
        cgroup: RunCgroup | None,
        *,
        seccomp: bytes | None,
        scratch: str,
        plain: bool,
        proxy: ProxyEndpoint | None = None,
    ) -> None:
        self.slot, self.cgroup, self.scratch, self.plain = slot, cgroup, scratch, plain
        self.proxy = proxy  # a network sandbox's proxy endpoint, closed with the sandbox
        req_r, self.req_w = os.pipe()
        self.res_r, res_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.log_r, log_w = os.pipe()
        code_r, code_w = os.pipe()
        child_fds = [req_r, res_w, out_w, err_w]
        seccomp_fd = info_w = None
        self.info_r: int | None = None
        if seccomp is not None:
            seccomp_fd = os.memfd_create("procreg-seccomp", 0)
            os.write(seccomp_fd, seccomp)
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
            child_fds.append(seccomp_fd)
        if not plain:
            self.info_r, info_w = os.pipe()
            child_fds.append(info_w)
        argv = command(req_r, res_w, out_w, err_w, seccomp_fd, info_w)
        drop: dict[str, Any] = {}
        if slot.uid is not None:
            drop = {"user": slot.uid, "group": slot.gid, "extra_groups": []}
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=code_r,
                stdout=log_w,
                stderr=log_w,
                pass_fds=child_fds,
                env=ENGINE_ENV,
                start_new_session=True,
                **drop,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            for fd in (self.req_w, self.res_r, self.out_r, self.err_r, self.log_r, code_w):
                os.close(fd)
            if self.info_r is not None:
                os.close(self.info_r)
            raise ExecutionError(f"cannot start the sandbox ({argv[0]}): {exc}") from None
        finally:
            for fd in [*child_fds, code_r, log_w]:
                os.close(fd)
        code = supervisor_code()
        with contextlib.suppress(OSError):  # a process that died at once is seen by its pipes
            if len(code) > 60000:
                fcntl.fcntl(code_w, fcntl.F_SETPIPE_SZ, len(code))
            os.write(code_w, code)
        os.close(code_w)
        self.preread = bytearray()  # reports read before the run (the ready frame)
        self.released = False
        self._closed = False
        self._retiring = False
        self._lock = threading.Lock()

    def claim_retirement(self) -> bool:
        """True for the first caller only: that one retires this sandbox."""
        with self._lock:
            first, self._retiring = not self._retiring, True
        return first

    def release(self, timeout: float) -> None:
        """Put the sandbox's first process into the run's cgroup, then let it start the procedure.

        The supervisor forks the procedure's process only after this, so all
        of the run is inside the cgroup. (Entering a fresh cgroup costs an RCU
        grace period on cgroup v1; done here it overlaps the interpreter's start.)
        """
        if self.released:
            return
        self.released = True
        if self.cgroup is not None:
            pid = self._sandbox_pid(timeout)
            if pid is None:
                return  # it died at once: its run reports that
            try:
                self.cgroup.attach(pid)
            except OSError as exc:
                if self.alive():  # never let it run outside its cgroup
                    self.kill()
                    raise ExecutionError(f"cannot put the sandbox into its cgroup: {exc}") from None
                return
        with contextlib.suppress(OSError):
            os.write(self.req_w, b"g")

    def _sandbox_pid(self, timeout: float) -> int | None:
        """The host pid of the supervisor (bubblewrap reports it on its info descriptor)."""
        if self.info_r is None:
            return self.proc.pid
        deadline = time.monotonic() + timeout
        text = b""
        while b"child-pid" not in text or not re.search(rb'"child-pid":\s*\d+\s*[,}\n]', text):
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self.info_r], [], [], wait)[0]:
                return None
            chunk = os.read(self.info_r, 4096)
            if not chunk:
                return None
            text += chunk
        found = re.search(rb'"child-pid":\s*(\d+)', text)
        return int(found.group(1)) if found else None

    def wait_ready(self, timeout: float) -> bool:
        """Read the supervisor's ``ready`` frame (kept for the run's reports); False if none."""
        deadline = time.monotonic() + timeout
        header = sup.RESULT_HEADER
        while True:
            if len(self.preread) >= header:
                size = int.from_bytes(self.preread[:header], "big")
                if size > sup.MAX_META_BYTES:
                    return False
                if len(self.preread) >= header + size:
                    return True
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self.res_r], [], [], wait)[0]:
                return False
            chunk = os.read(self.res_r, header + sup.MAX_META_BYTES - len(self.preread))
            if not chunk:
                return False
            self.preread += chunk

    def engine_said(self) -> str:
        """What the engine process wrote (bubblewrap's own errors), once it has exited."""
        said = b""
        with contextlib.suppress(OSError):
            os.set_blocking(self.log_r, False)
            said = os.read(self.log_r, 8192)
        return said.decode("utf-8", "replace").strip() or f"exit status {self.proc.poll()}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """End the whole sandbox now: every process of the run dies with its engine process."""
        with contextlib.suppress(OSError):
            os.kill(self.proc.pid, signal.SIGKILL)  # bubblewrap: its pid 1 dies with it
        if self.cgroup is not None:
            self.cgroup.kill_all()
        if self.plain and self.slot.uid is not None:
            kill_uid(self.slot.uid)

    def finish(self) -> bool:
        """Wait until every process of the sandbox is gone; True when it went cleanly.

        With bubblewrap the pid namespace ends with its init, so the engine's
        exit means the run is gone; without it, the run's uid is swept. The
        cgroup is removed. Safe to call twice.
        """
        try:
            self.proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("sandbox %s did not exit; killing it", self.proc.pid)
            self.kill()
            self.proc.wait()
        clean = True
        if self.plain and self.slot.uid is not None:
            kill_uid(self.slot.uid)
        if self.cgroup is not None:
            clean = self.cgroup.remove()
        if self.plain:
            shutil.rmtree(self.scratch, ignore_errors=True)
        return clean

    def close(self) -> None:
        """Close the host's ends of the pipes (safe to repeat)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for fd in (self.req_w, self.res_r, self.out_r, self.err_r, self.log_r, self.info_r):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.proxy is not None:
            self.proxy.close()


# ``python -c`` code that runs the supervisor from the host's compiled copy on
# stdin: compiling it in the sandbox would cost the cold path milliseconds,
# and its source is not inside the sandbox at all.
BOOT = (
    "import sys,marshal\n"
    "d=sys.stdin.buffer.read()\n"
    "m=sys.modules['_frozen_importlib_external'].MAGIC_NUMBER\n"
    "if d[:4]!=m:raise SystemExit('procreg: the sandbox python is not the host python version')\n"
    "c=marshal.loads(d[4:])\n"
    "exec(c,{'__name__':'__main__','__file__':c.co_filename,'__builtins__':__builtins__})\n"
)
_CODE: bytes | None = None
_CODE_LOCK = threading.Lock()


def supervisor_code() -> bytes:
    """The supervisor compiled once by the host: magic number, then marshalled code."""
    global _CODE
    with _CODE_LOCK:
        if _CODE is None:
            source = SUPERVISOR_SCRIPT.read_bytes()
            code = compile(source, "procreg-supervisor", "exec", dont_inherit=True)
            _CODE = MAGIC_NUMBER + marshal.dumps(code)
        return _CODE


def supervisor_command(python: str) -> list[str]:
    """The interpreter and options that start the supervisor (its arguments follow)."""
    return [python, "-I", "-S", "-B", "-c", BOOT, "supervisor"]


def sandbox_python() -> str:
    """The interpreter sandboxes run: one whose files the sandbox uid can read.

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
                    _PYTHON = str(real)
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
