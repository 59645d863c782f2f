"""Run untrusted procedure code in a sandbox of its own: bubblewrap, seccomp, cgroup, uid.

Every run gets a whole sandbox (started ahead in the warm pool, or for the
run) that serves that one run and is then torn down. The layers, each
probed by :func:`probe_layers` rather than assumed (``procreg doctor``):

- bubblewrap: new user, mount, pid, ipc, uts, network and cgroup namespaces;
  a read-only root holding only the interpreter, its standard library and
  shared libraries; private size-limited tmpfs for the scratch folder,
  ``/tmp`` and ``/dev/shm``; a private ``/proc``; a minimal read-only
  ``/dev``; no capabilities, ``no_new_privs``, a session of its own, death
  with its parent; the supervisor is pid 1, so every process of the run dies
  with it;
- a seccomp filter (:mod:`registry.sandbox.policy`): no ptrace, mount, new
  namespaces, keyctl, bpf, perf_event_open, io_uring, kernel modules, reboot,
  and no socket family but AF_UNIX;
- a cgroup per run: memory of all its processes and its tmpfs, process count;
- a distinct unprivileged uid per live sandbox, and rlimits (CPU, address
  space, open files, file size, processes, no core);
- a host that trusts nothing that comes back: results arrive on a channel the
  procedure has no descriptor of, bounded in size and depth, and anything
  malformed is a failure of its own class (:mod:`registry.sandbox.decode`);
- the audit hook and validation: defence in depth and review aids, never
  the boundary.

Failures are reported with the stable classes in ``FAILURE_TYPES``.
"""

from __future__ import annotations

from registry.sandbox.instance import sandbox_python
from registry.sandbox.models import (
    FAILURE_TYPES,
    LayerStatus,
    ResourceUsage,
    RunError,
    RunOutcome,
    RunRequest,
)
from registry.sandbox.runner import Sandbox, probe_layers, unavailable

__all__ = [
    "FAILURE_TYPES",
    "LayerStatus",
    "ResourceUsage",
    "RunError",
    "RunOutcome",
    "RunRequest",
    "Sandbox",
    "probe_layers",
    "sandbox_python",
    "unavailable",
]
