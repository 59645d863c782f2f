"""Giving the memory of a rebuild back to the operating system (a watcher lives for days)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (process-wide), as it was afterwards.

    A rebuild builds about a million short-lived objects (rows, their dicts and
    lists) and no reference cycles: the collector's passes over them meanwhile
    are a third of a warm rebuild's time and free nothing. :func:`release_memory`
    collects once at the end.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def release_memory() -> None:
    """Give the memory of a rebuild back to the OS (a watcher lives on for days).

    A rebuild allocates ~150 MB of short-lived rows at 10,000 procedures; once they
    are freed, glibc keeps the pages unless asked. Yield first: the finished
    worker future (and so the change set) is referenced until the loop turns.
    """
    await asyncio.sleep(0)
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _libc_malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None


_MALLOC_TRIM = _libc_malloc_trim()
