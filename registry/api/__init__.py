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

The whole public API is here, and only here: its private modules hold queries and
runs (``_core``), the write side (``_writes``), what queries return (``_results``) and
the blocking facade (``_facade``); import from ``registry.api`` (or ``registry``).
"""

from __future__ import annotations

from registry.api._core import AsyncRegistry
from registry.api._facade import DEFAULT_TIMEOUT, Registry
from registry.api._results import (
    HistoryEntry,
    ProcedureDetail,
    ProcedureDiff,
    ProcedureSummary,
    VersionInfo,
)
from registry.errors import RegistryTimeout  # noqa: F401 - importable here, as it always was

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncRegistry",
    "HistoryEntry",
    "ProcedureDetail",
    "ProcedureDiff",
    "ProcedureSummary",
    "Registry",
    "VersionInfo",
]
