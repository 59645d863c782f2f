"""The isolation engine: how this machine starts a sandbox, decided once per Sandbox.

bubblewrap with a seccomp filter is required. When it is missing or refused,
every run fails closed with a clear error, unless ``procreg.toml`` says
``[sandbox] require_isolation = false``: then the supervisor runs directly
(its uid, rlimits, cgroup and audit hook still apply) and every outcome and
run record says ``isolation: none``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import registry.sandbox.cgroup as cgroups
from registry.config import SandboxSection
from registry.errors import ExecutionError
from registry.sandbox.instance import (
    ENGINE_ENV,
    MAX_RESULT_BYTES,
    Instance,
    sandbox_python,
    supervisor_command,
)
from registry.sandbox.models import NPROC_LIMIT
from registry.sandbox.netproxy import ProxyEndpoint, ProxyService
from registry.sandbox.policy import (
    ENV_MOUNT,
    NETWORK_SOCKET_FAMILIES,
    SCRATCH,
    Mounts,
    SeccompPolicy,
    bwrap_argv,
    interpreter_mounts,
)
from registry.sandbox.seccomp import compile_filter
from registry.sandbox.slots import Slot
from registry.sandbox.supervisor import NET_MOUNT

log = logging.getLogger("registry.sandbox")

BUBBLEWRAP = "bubblewrap"
NO_ISOLATION = "none"
IDLE_MEMORY_MB = 64  # a waiting sandbox's cgroup limit, until its run sets its own


class Engine:
    """Starts sandboxes the one way this machine allows; :attr:`isolation` names it."""

    def __init__(self, config: SandboxSection) -> None:
        self.config = config
        self.python = sandbox_python()
        self.cgroups = cgroups.detect()
        self.mounts: Mounts | None = None
        self.seccomp: bytes | None = None
        self.problem = ""  # why bubblewrap is not used, when it is not
        self.refusal: str | None = None  # set: every start fails closed with this
        self.bwrap = shutil.which("bwrap")
        try:
            # A refusal shows at the first run (no "ready" from the sandbox) and fails it;
            # only a fallback needs to know beforehand, so only then is it probed now.
            self._check_bubblewrap(probe=not config.require_isolation)
        except ExecutionError as exc:
            self.problem = str(exc)
            if config.require_isolation:
                self.refusal = (
                    f"{exc}. Runs fail closed without the isolation engine; install it "
                    "(Debian: apt-get install bubblewrap python3-seccomp) or, knowing that "
                    "runs are then not isolated, set [sandbox] require_isolation = false "
                    "in procreg.toml"
                )
            else:
                log.warning("sandbox without isolation engine (require_isolation = false): %s", exc)
            self.bwrap = None
        self._scratch_root: Path | None = None
        self.proxies = ProxyService()
        self._network_seccomp: bytes | None = None

    @property
    def isolation(self) -> str:
        return BUBBLEWRAP if self.bwrap else NO_ISOLATION

    def _check_bubblewrap(self, probe: bool) -> None:
        if self.bwrap is None:
            raise ExecutionError("bubblewrap (bwrap) is not installed")
        self.mounts = interpreter_mounts(self.python, self.config.tmpfs_mb * 1024 * 1024)
        self.seccomp = compile_filter(self.python)
        if not probe:
            return
        argv = [*bwrap_argv(self.bwrap, self.mounts, seccomp_fd=None), self.python, "-I", "-S"]
        try:
            done = subprocess.run(
                [*argv, "-c", "pass"], capture_output=True, timeout=30, check=False, env=ENGINE_ENV
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ExecutionError(f"bubblewrap ({self.bwrap}) cannot run: {exc}") from None
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
            raise ExecutionError(f"bubblewrap refused to make a sandbox here: {said}")

    def start(self, slot: Slot, env: str | None = None, *, network: bool = False) -> Instance:
        """A new sandbox running as ``slot``'s uid, in a cgroup of its own where possible.

        ``env`` is a built environment's folder, bind-mounted read-only at ``ENV_MOUNT``
        (without bubblewrap, read where it is). ``network`` gives the sandbox a proxy
        endpoint of its own (:mod:`registry.sandbox.netproxy`), mounted at ``NET_MOUNT``,
        and the seccomp filter that allows IP sockets; it needs bubblewrap.
        """
        if self.refusal is not None:
            raise ExecutionError(self.refusal)
        if network:
            self.require_network()
        group = self.cgroups.create(IDLE_MEMORY_MB, self.nproc_limit)
        proxy: ProxyEndpoint | None = None
        try:
            if self.bwrap is not None:
                seccomp = self.seccomp
                if network:
                    proxy = self.proxies.open(slot.uid, slot.gid)
                    seccomp = self.network_seccomp()
                folder = proxy.folder if proxy is not None else None
                return Instance(
                    lambda *fds: self._bwrap_command(*fds, env=env, net=folder),
                    slot,
                    group,
                    seccomp=seccomp,
                    scratch=SCRATCH,
                    plain=False,
                    proxy=proxy,
                )
            scratch = self._plain_scratch(slot)
            return Instance(
                lambda *fds: self._plain_command(scratch, *fds),
                slot,
                group,
                seccomp=None,
                scratch=scratch,
                plain=True,
            )
        except BaseException:
            if proxy is not None:
                proxy.close()
            if group is not None:
                group.remove()
            raise

    def require_network(self) -> None:
        """Raise :class:`ExecutionError` when this engine cannot confine a network run."""
        if self.bwrap is None:
            raise ExecutionError(
                "a run with network access needs the isolation engine (bubblewrap): its only "
                f"way out is a proxy inside its own network namespace ({self.problem})"
            )

    def network_seccomp(self) -> bytes:
        """The filter of a network sandbox: the same, but IP sockets are allowed."""
        if self._network_seccomp is None:
            policy = SeccompPolicy(socket_families=NETWORK_SOCKET_FAMILIES)
            self._network_seccomp = compile_filter(self.python, policy)
        return self._network_seccomp

    @property
    def nproc_limit(self) -> int:
        return NPROC_LIMIT + 2  # the supervisor and the procedure process themselves

    def _bwrap_command(
        self,
        req: int,
        res: int,
        out: int,
        err: int,
        seccomp_fd: int | None,
        info_fd: int | None,
        *,
        env: str | None = None,
        net: str | None = None,
    ) -> list[str]:
        assert self.bwrap is not None and self.mounts is not None
        mounts = self.mounts
        extra = ([(env, ENV_MOUNT)] if env is not None else []) + (
            [(net, NET_MOUNT)] if net is not None else []
        )
        if extra:
            mounts = replace(mounts, ro_binds_at=tuple(extra))
        argv = bwrap_argv(self.bwrap, mounts, seccomp_fd=seccomp_fd, info_fd=info_fd)
        argv[-1:-1] = [a for key, value in ENGINE_ENV.items() for a in ("--setenv", key, value)]
        fds = [str(fd) for fd in (req, res, out, err)]
        flags = ["--network"] if net is not None else []
        return [
            *argv,
            *supervisor_command(self.python),
            *fds,
            SCRATCH,
            str(MAX_RESULT_BYTES),
            *flags,
        ]

    def _plain_command(
        self, scratch: str, req: int, res: int, out: int, err: int, *_unused: int | None
    ) -> list[str]:
        fds = [str(fd) for fd in (req, res, out, err)]
        return [*supervisor_command(self.python), *fds, scratch, str(MAX_RESULT_BYTES), "--plain"]

    def _plain_scratch(self, slot: Slot) -> str:
        """Without a mount namespace, a private host folder per sandbox (removed by the janitor)."""
        if self._scratch_root is None:
            self._scratch_root = Path(tempfile.mkdtemp(prefix="procreg-sandbox-"))
            self._scratch_root.chmod(0o711)
        folder = Path(tempfile.mkdtemp(dir=self._scratch_root))
        if slot.uid is not None and slot.gid is not None:
            os.chown(folder, slot.uid, slot.gid)
        return str(folder)

    def close(self) -> None:
        self.proxies.close()
        if self._scratch_root is not None:
            shutil.rmtree(self._scratch_root, ignore_errors=True)
