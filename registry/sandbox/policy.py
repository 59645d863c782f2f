"""The isolation policy as data: what bubblewrap is told, which system calls are refused.

Pure: no process is started here. :func:`bwrap_argv` turns a :class:`Mounts`
plan into bubblewrap's command line; :data:`DENIED_SYSCALLS` and friends are
what :mod:`registry.sandbox.seccomp` compiles into a BPF filter.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path

SCRATCH = "/tmp/run"  # noqa: S108  (inside the sandbox: a private tmpfs, not the host's /tmp)
"""The run's working folder inside the sandbox: its data files, HOME, the cwd."""

HOSTNAME = "procreg-sandbox"

ENV_MOUNT = "/opt/procreg/env"
"""Where a run's locked environment is mounted read-only inside the sandbox (never under /tmp,
whose private tmpfs would hide it)."""

# System calls no procedure needs and every escape wants. Refused with EPERM.
DENIED_SYSCALLS: tuple[str, ...] = (
    # debugging and reading other processes' memory
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "move_pages",
    "migrate_pages",
    # file systems and namespaces
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    # the kernel's keyring, BPF, perf, io_uring, userfaultfd
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    # kernel modules, reboot, the machine's clock and swap
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "syslog",
    "quotactl",
    "iopl",
    "ioperm",
    "vhangup",
    "uselib",
    "personality",
    "lookup_dcookie",
)

# clone() flags that make a new namespace: refused, so a run cannot build its own.
CLONE_NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
    | 0x00000080  # CLONE_NEWTIME
)

ALLOWED_SOCKET_FAMILIES: tuple[int, ...] = (socket.AF_UNIX,)
"""Every other family (AF_INET, AF_NETLINK, AF_PACKET, ...) is refused with EAFNOSUPPORT."""
NETWORK_SOCKET_FAMILIES: tuple[int, ...] = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)
"""A network sandbox's: IP sockets too, whose only reachable peer is the relay to the proxy
(its network namespace holds nothing but loopback)."""

TIOCSTI = 0x5412  # push characters into a terminal's input: refused


@dataclass(frozen=True)
class SeccompPolicy:
    """What the filter refuses; :func:`registry.sandbox.seccomp.compile_filter` compiles it."""

    denied: tuple[str, ...] = DENIED_SYSCALLS
    clone_flags: int = CLONE_NAMESPACE_FLAGS
    socket_families: tuple[int, ...] = ALLOWED_SOCKET_FAMILIES
    eperm: int = errno.EPERM
    eafnosupport: int = errno.EAFNOSUPPORT
    enosys: int = errno.ENOSYS
    tiocsti: int = TIOCSTI

    def as_dict(self) -> dict[str, object]:
        """The policy as JSON-ready data (what the compiler reads, and the cache key)."""
        return {
            "denied": list(self.denied),
            "clone_flags": self.clone_flags,
            "socket_families": list(self.socket_families),
            "eperm": self.eperm,
            "eafnosupport": self.eafnosupport,
            "enosys": self.enosys,
            "tiocsti": self.tiocsti,
        }


@dataclass(frozen=True)
class Mounts:
    """The sandbox's file system: read-only binds from the host, symlinks, tmpfs sizes."""

    ro_binds: tuple[str, ...]
    symlinks: tuple[tuple[str, str], ...] = ()  # (target, link)
    ro_binds_at: tuple[tuple[str, str], ...] = ()  # (host path, path inside)
    tmpfs_bytes: int = 64 * 1024 * 1024


def bwrap_argv(
    bwrap: str, mounts: Mounts, *, seccomp_fd: int | None, info_fd: int | None = None
) -> list[str]:
    """bubblewrap's options for one run; the command follows them.

    Every namespace is new (user, mount, pid, ipc, uts, network, cgroup), the
    root holds only ``mounts`` (read-only) and private tmpfs folders, the
    sandbox's command is pid 1 (so nothing of the run outlives it), it dies with
    its parent, has a session of its own, no capabilities and no way to make
    user namespaces; ``no_new_privs`` is set by bubblewrap itself.
    """
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--cap-drop",
        "ALL",
        "--hostname",
        HOSTNAME,
        "--clearenv",
    ]
    for path in mounts.ro_binds:
        argv += ["--ro-bind", path, path]
    for source, dest in mounts.ro_binds_at:
        argv += ["--ro-bind", source, dest]
    for target, link in mounts.symlinks:
        argv += ["--symlink", target, link]
    size = str(mounts.tmpfs_bytes)
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for private in ("/tmp", "/dev/shm"):  # noqa: S108  (the sandbox's own, not the host's)
        argv += ["--size", size, "--tmpfs", private]
    argv += ["--dir", SCRATCH]
    argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", SCRATCH]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    argv.append("--")
    return argv


def interpreter_mounts(python: str, tmpfs_bytes: int) -> Mounts:
    """The minimal root for ``python``: the interpreter, its standard library, shared libraries.

    Nothing else of the host is visible: no ``/etc``, ``/home``, ``/root``,
    ``/run``, ``/var``, no other program, no repository.
    """
    exe = Path(python).resolve()
    prefix = exe.parent.parent
    binds: list[str] = []
    if prefix == Path("/usr"):
        version = exe.name.removeprefix("python")
        binds += [str(exe), f"/usr/lib/python{version}"]
    else:  # a private build (pyenv, a venv's base): its whole prefix, read-only
        binds.append(str(prefix))
    for pattern in ("/usr/lib/*-linux-*", "/lib/*-linux-*"):
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        binds += [str(p) for p in found if _real_dir(p) and not p.parent.is_symlink()]
    binds += [lib for lib in ("/usr/lib64", "/lib64") if _real_dir(Path(lib))]
    symlinks: list[tuple[str, str]] = []
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if Path(top).is_symlink():
            symlinks.append((str(Path(top).readlink()), top))
    unique = tuple(dict.fromkeys(b for b in binds if Path(b).exists()))
    return Mounts(ro_binds=unique, symlinks=tuple(symlinks), tmpfs_bytes=tmpfs_bytes)


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


@dataclass(frozen=True)
class Ceilings:
    """The most any run may ask for (``[sandbox] max_timeout_s`` / ``max_memory_mb``)."""

    timeout_s: float
    memory_mb: int


def clamp_limits(timeout_s: float, memory_mb: int, ceilings: Ceilings) -> tuple[float, int]:
    """A run's limits: what it asked for, never more than the ceilings."""
    return min(timeout_s, ceilings.timeout_s), min(memory_mb, ceilings.memory_mb)
