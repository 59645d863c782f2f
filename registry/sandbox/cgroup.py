"""One cgroup per run: total memory (every process and the tmpfs) and process count.

cgroup v1 (separate ``memory`` and ``pids`` hierarchies) and v2 (the unified
hierarchy with those controllers delegated) are both handled. Each run's
cgroup is made under this process's own cgroup, entered by the sandbox's
first process before it execs (so everything the run starts is inside), and
removed once the run is over. Where the machine does not allow it, the
reason is kept in :attr:`CgroupRoot.problem` and ``procreg doctor`` says so.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
SUPERVISOR_ALLOWANCE_MB = 32
"""Memory beyond the run's own limit for the sandbox's supervisor process."""

_counter = itertools.count()


@dataclass
class CgroupRoot:
    """Where this process may make run cgroups, or why it may not."""

    version: int | None  # 1, 2, or None when no cgroup layer is possible
    memory: Path | None = None  # v1: the memory hierarchy's folder; v2: the one folder
    pids: Path | None = None  # v1 only
    problem: str = ""

    @property
    def usable(self) -> bool:
        return self.version is not None

    def create(self, memory_mb: int, nproc: int) -> RunCgroup | None:
        """A new run cgroup with these limits, or None when that fails (the reason is logged)."""
        if self.version is None or self.memory is None:
            return None
        name = f"procreg-run-{os.getpid()}-{next(_counter)}"
        folders = [self.memory / name] + ([self.pids / name] if self.pids else [])
        made: list[Path] = []
        try:
            for folder in folders:
                folder.mkdir()
                made.append(folder)
            group = RunCgroup(self.version, folders)
            group.set_memory(memory_mb)
            group.set_pids(nproc)
        except OSError as exc:
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            self.problem = f"cannot make a run cgroup in {self.memory}: {exc}"
            return None
        return group


class RunCgroup:
    """One run's cgroup folders (one for v2; memory and pids for v1)."""

    def __init__(self, version: int, folders: list[Path]) -> None:
        self.version, self.folders = version, folders

    @property
    def memory(self) -> Path:
        return self.folders[0]

    @property
    def pids(self) -> Path:
        return self.folders[-1]

    def set_memory(self, memory_mb: int) -> None:
        """Limit the run to ``memory_mb`` (plus the supervisor's allowance), swap included."""
        limit = str((memory_mb + SUPERVISOR_ALLOWANCE_MB) * 1024 * 1024)
        if self.version == 2:
            (self.memory / "memory.max").write_text(limit)
            with contextlib.suppress(OSError):
                (self.memory / "memory.swap.max").write_text("0")
            return
        files = [self.memory / "memory.limit_in_bytes"]
        if (self.memory / "memory.memsw.limit_in_bytes").exists():  # swap accounting on
            files.append(self.memory / "memory.memsw.limit_in_bytes")
        # memory <= memory+swap at every step: lowering goes memory first, raising swap first.
        try:
            for name in files:
                name.write_text(limit)
        except OSError:
            for name in reversed(files):
                name.write_text(limit)

    def set_pids(self, nproc: int) -> None:
        (self.pids / "pids.max").write_text(str(nproc))

    def attach(self, pid: int) -> None:
        """Move process ``pid`` in; what it forks from then on is born inside."""
        for folder in self.folders:
            (folder / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        """How many processes the kernel killed for the memory limit."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (self.memory / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pids_inside(self) -> list[int]:
        found: set[int] = set()
        for folder in self.folders:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
        return sorted(found)

    def kill_all(self) -> None:
        """SIGKILL every process in the run's cgroup."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                (self.memory / "cgroup.kill").write_text("1")
                return
        for pid in self.pids_inside():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, wait_s: float = 5.0) -> bool:
        """Kill what is left, then remove the folders; False if one would not go."""
        deadline = time.monotonic() + wait_s
        while self.pids_inside():
            self.kill_all()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        ok = True
        for folder in self.folders:
            for _ in range(100):  # a dying process can keep the folder busy for a moment
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)
            else:
                ok = False
        return ok


def detect() -> CgroupRoot:
    """Where run cgroups can be made on this machine (only root can make them)."""
    if os.geteuid() != 0:
        return CgroupRoot(None, problem="not root: run cgroups need root")
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError as exc:
        return CgroupRoot(None, problem=f"cannot read /proc/self/cgroup: {exc}")
    own: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            own[controller] = path
    memory_v1, pids_v1 = CGROUP_FS / "memory", CGROUP_FS / "pids"
    if "memory" in own and "pids" in own and (memory_v1 / "memory.limit_in_bytes").exists():
        root = CgroupRoot(
            1,
            memory=memory_v1 / own["memory"].lstrip("/"),
            pids=pids_v1 / own["pids"].lstrip("/"),
        )
        return _checked(root)
    if "" in own and (CGROUP_FS / "cgroup.controllers").exists():
        base = CGROUP_FS / own[""].lstrip("/")
        try:
            available = (base / "cgroup.subtree_control").read_text().split()
        except OSError as exc:
            return CgroupRoot(None, problem=f"cgroup v2 at {base} unreadable: {exc}")
        if not {"memory", "pids"} <= set(available):
            return CgroupRoot(
                None,
                problem=f"cgroup v2: memory and pids are not delegated to {base} "
                "(cgroup.subtree_control); run procreg under a delegated cgroup",
            )
        return _checked(CgroupRoot(2, memory=base))
    return CgroupRoot(None, problem="no cgroup memory and pids controllers are mounted")


def _checked(root: CgroupRoot) -> CgroupRoot:
    """Make and remove one cgroup, so that a read-only or refused hierarchy is found now.

    Run cgroups left by a host process that died mid-run (empty once its
    sandboxes died with it) are removed on the way.
    """
    for parent in {root.memory, root.pids} - {None}:
        assert parent is not None
        for folder in parent.glob("procreg-run-*"):
            owner = folder.name.split("-")[2]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                with contextlib.suppress(OSError):
                    folder.rmdir()
    group = root.create(64, 8)
    if group is None:
        return CgroupRoot(None, problem=root.problem)
    group.remove()
    return root
