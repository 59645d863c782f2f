"""Run failure classes that are not the procedure's, and which of them metrics count.

The sandbox's stable classes are in :data:`registry.sandbox.FAILURE_TYPES` (which lists
these too); this module holds the ones the index must know about, so the index need not
depend on the sandbox.
"""

from __future__ import annotations

WORKER_LOST = "WorkerLost"
"""The run record of a queued job's attempt whose worker died (no heartbeat): the job was
put back and ran again. Not the version's failure: metrics and health do not count it."""

NOT_COUNTED = (WORKER_LOST,)
"""``error_type`` values whose run records metrics, success rates and health ignore."""
