"""The Python API: :class:`AsyncRegistry` (the async core) and :class:`Registry` (sync).

.. code-block:: python

    from registry.api import Registry

    with Registry.open("path/to/repo") as reg:           # or database_url="postgresql://..."
        hits = reg.search("csv", category="data")
        proc = reg.get("slugify", "^1.2")                 # exact, range, channel or "HEAD"
        print(proc.version, proc.source)
        reg.release(["slugify"])                          # the write side: release, rollback,
        reg.promote("slugify", proc.version, "stable")    # promote, health, test

    async with await AsyncRegistry.open("path/to/repo") as reg:
        hits = await reg.search("csv")

The whole public API is here: queries and runs (:mod:`registry.api.core`), the
write side (:mod:`registry.api.writes`), what queries return
(:mod:`registry.api.results`) and the blocking facade (:mod:`registry.api.facade`).
"""

from __future__ import annotations

from registry.api.core import AsyncRegistry
from registry.api.facade import DEFAULT_TIMEOUT, Registry
from registry.api.results import (
    HistoryEntry,
    ProcedureDetail,
    ProcedureDiff,
    ProcedureSummary,
    VersionInfo,
)
from registry.errors import RegistryTimeout

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncRegistry",
    "HistoryEntry",
    "ProcedureDetail",
    "ProcedureDiff",
    "ProcedureSummary",
    "Registry",
    "RegistryTimeout",
    "VersionInfo",
]
