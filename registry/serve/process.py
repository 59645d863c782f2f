"""What a serving process needs from the OS: the signals that stop it, and a stdin a stop can end.

``procreg mcp`` and ``procreg serve`` stop on SIGTERM exactly as on Ctrl-C
(:func:`stop_signals`): they close what they hold (the index, the run
records) and exit 0. SIGINT is left ignored when the parent ignored it
(``nohup``, some service managers); SIGTERM then still stops them.

The SDK's stdio transport reads stdin in a worker thread, which a cancel
cannot interrupt: a stop would wait for the client's next line. :func:`claimed_stdin`
reads it on the event loop instead (``wait_readable``, then ``os.read``), so a
stop ends it at once; like the SDK, it points fd 0 at the null device while
serving, so that nothing else reads the protocol's bytes.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import anyio.lowlevel

CHUNK = 64 * 1024


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGTERM, and SIGINT unless this process was started with it ignored."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return (signal.SIGTERM,)
    return (signal.SIGTERM, signal.SIGINT)


class StdinLines:
    """The lines of a file descriptor as an async iterator, read without a thread.

    Waits with :func:`anyio.wait_readable` (cancellable), then reads what is
    there. Descriptors that cannot be polled (a regular file, ``/dev/null``)
    never block a read for long and are read directly.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""
        self._eof = False
        self._poll = not stat.S_ISREG(os.fstat(fd).st_mode)

    def __aiter__(self) -> StdinLines:
        return self

    async def __anext__(self) -> str:
        while b"\n" not in self._buffer and not self._eof:
            await self._wait()
            chunk = os.read(self.fd, CHUNK)
            self._eof = not chunk
            self._buffer += chunk
        if not self._buffer:
            raise StopAsyncIteration
        line, newline, self._buffer = self._buffer.partition(b"\n")
        return (line + newline).decode("utf-8", errors="replace")

    async def _wait(self) -> None:
        if not self._poll:
            await anyio.lowlevel.checkpoint()
            return
        try:
            await anyio.wait_readable(self.fd)
        except OSError:  # epoll refuses some descriptors (/dev/null): read them directly
            self._poll = False


@contextmanager
def claimed_stdin() -> Iterator[StdinLines]:
    """Read the protocol from a private copy of fd 0; fd 0 is the null device meanwhile."""
    private = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
    finally:
        os.close(null)
    try:
        yield StdinLines(private)
    finally:
        os.dup2(private, 0)
        os.close(private)
