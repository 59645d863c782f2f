"""Giving the memory of a rebuild back to the operating system (a watcher lives for days)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
    trim = _libc_malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _libc_malloc_trim() -> Any:
    """glibc's ``malloc_trim``, from the symbols already in the process (no ``ldconfig -p``
    run, as ``ctypes.util.find_library`` would at every start), or None (musl has none)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
