"""Calls the kernel directly through ctypes: ptrace, process_vm_readv, unshare, mount,
setns, keyctl, bpf, perf_event_open, and sockets of other families.

Expected: SandboxViolation with the audit hook (ctypes); without it, ok with the
errno of every call: EPERM (1) from seccomp, EAFNOSUPPORT (97) for sockets.
"""

import ctypes
import os
import socket

# x86_64 system call numbers
SYSCALLS = {
    "keyctl": (250, [0, 0, 0, 0, 0]),
    "bpf": (321, [0, 0, 0]),
    "perf_event_open": (298, [0, 0, -1, -1, 0]),
    "setns": (308, [0, 0]),
    "io_uring_setup": (425, [1, 0]),
    "pidfd_getfd": (438, [0, 0, 0]),
    "init_module": (175, [0, 0, 0]),
}


def main():
    """Try each call; its errno (0 when it worked)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.ptrace.restype = ctypes.c_long
    found = {}

    def call(name, fn, *args):
        ctypes.set_errno(0)
        ret = fn(*args)
        found[name] = ctypes.get_errno() if ret == -1 else 0

    call("ptrace_attach_1", libc.ptrace, 16, 1, None, None)
    call("ptrace_traceme", libc.ptrace, 0, 0, None, None)
    buf = ctypes.create_string_buffer(64)

    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    local = IoVec(ctypes.cast(buf, ctypes.c_void_p), 64)
    remote = IoVec(0x400000, 64)
    call(
        "process_vm_readv",
        libc.process_vm_readv,
        1,
        ctypes.byref(local),
        1,
        ctypes.byref(remote),
        1,
        0,
    )
    call("unshare_user", libc.unshare, 0x10000000)
    call("unshare_mount", libc.unshare, 0x00020000)
    call("unshare_net", libc.unshare, 0x40000000)
    call("mount_tmpfs", libc.mount, b"none", b"/tmp/run", b"tmpfs", 0, None)
    call("mount_bind_root", libc.mount, b"/", b"/tmp/run", None, 4096, None)
    call("chroot", libc.chroot, b"/tmp")
    for name, (number, args) in SYSCALLS.items():
        call(name, libc.syscall, number, *args)
    for family in ("AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"):
        try:
            socket.socket(
                getattr(socket, family),
                socket.SOCK_RAW if family == "AF_PACKET" else socket.SOCK_DGRAM,
            ).close()
            found[family] = 0
        except OSError as exc:
            found[family] = exc.errno
    found["uid"] = os.getuid()
    return found
