"""Makes i386 (``int 0x80``) or x32 system calls from the 64-bit interpreter, where a
filter written for x86_64 numbers alone would not look (getpid, then ptrace,
unshare, mount under the other ABI's numbers).

Expected: the seccomp filter kills the process at the first such call:
SandboxViolation (or Crashed); never ok.
"""

import ctypes
import mmap


def int80(number, a, b, c):
    """Run ``int 0x80`` with eax=number, ebx=a, ecx=b, edx=c from executable memory."""
    code = (
        b"\x53"  # push rbx
        + b"\xb8"
        + number.to_bytes(4, "little")
        + b"\xbb"
        + a.to_bytes(4, "little")
        + b"\xb9"
        + b.to_bytes(4, "little")
        + b"\xba"
        + c.to_bytes(4, "little")
        + b"\x31\xf6\xcd\x80\x5b\xc3"  # xor esi, esi; int 0x80; pop rbx; ret
    )
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return ctypes.CFUNCTYPE(ctypes.c_int)(address)()


def main(abi):
    """Each call's return value (negative: -errno) under ``abi``: "i386" or "x32"."""
    found = {}
    if abi == "i386":
        for name, number, a, b in [
            ("getpid", 20, 0, 0),
            ("ptrace", 26, 16, 1),
            ("unshare", 310, 0x20000, 0),
            ("mount", 21, 0, 0),
        ]:
            found[name] = int80(number, a, b, 0)
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        x32 = 0x40000000
        for name, number, args in [
            ("getpid", 39, []),
            ("ptrace", 521, [16, 1, 0, 0]),
            ("unshare", 272, [0x20000]),
            ("mount", 165, [0, 0, 0, 0, 0]),
        ]:
            ctypes.set_errno(0)
            found[name] = [libc.syscall(x32 | number, *args), ctypes.get_errno()]
    return found
