"""Turning what a sandbox sent back into a :class:`RunOutcome`, trusting none of it.

Pure functions over bytes. The supervisor's reports are three frames (4-byte
big-endian length, then the body): ``ready`` and ``exit`` (JSON objects) and
the procedure's raw result, itself one frame of JSON. Whatever is cut short,
mis-framed, not JSON, of the wrong shape or nested deeper than
:data:`MAX_RESULT_DEPTH` is a failure of its own class, never an exception.
"""

from __future__ import annotations

import json
import math
import os
import signal
from dataclasses import dataclass, field
from typing import Any

import registry.sandbox.supervisor as sup
from registry.sandbox.models import (
    CPU_LIMIT,
    CRASHED,
    MALFORMED_RESULT,
    MEMORY_LIMIT,
    OUTPUT_LIMIT,
    SANDBOX_VIOLATION,
    ResourceUsage,
    RunError,
    RunOutcome,
)

MAX_RESULT_DEPTH = 100
"""Nesting beyond this (lists and objects) is refused: the host's own code must stay safe."""
MAX_RESULT_CONTAINERS = 100_000
"""Lists and objects in one result, counted on the raw bytes before anything is decoded."""
MAX_RESULT_ITEMS = 1_000_000
"""Values in one result (commas, counted likewise): decoding cost stays bounded."""
MAX_TYPE_CHARS = 200
MAX_MESSAGE_CHARS = 2000


@dataclass
class Reports:
    """The supervisor's frames, as far as they parsed."""

    ready: dict[str, Any] | None = None
    exit: dict[str, Any] | None = None
    result: bytes | None = None
    problems: list[str] = field(default_factory=list)


def split_reports(data: bytes) -> Reports:
    """Parse ``ready``, ``exit`` and the raw result out of the supervisor's bytes."""
    reports = Reports()
    frames: list[bytes] = []
    pos = 0
    while pos < len(data) and len(frames) < 3:
        if len(data) - pos < sup.RESULT_HEADER:
            reports.problems.append("a report frame was cut short")
            break
        size = int.from_bytes(data[pos : pos + sup.RESULT_HEADER], "big")
        body = data[pos + sup.RESULT_HEADER : pos + sup.RESULT_HEADER + size]
        if len(body) != size:
            reports.problems.append("a report frame was cut short")
            break
        frames.append(body)
        pos += sup.RESULT_HEADER + size
    if pos < len(data) and not reports.problems:
        reports.problems.append("extra bytes after the reports")
    metas = [_meta(body) for body in frames[:2]]
    if metas and metas[0] is not None and metas[0].get("op") == "ready":
        reports.ready = metas[0]
    if len(metas) > 1 and metas[1] is not None and metas[1].get("op") == "exit":
        reports.exit = metas[1]
        if len(frames) > 2:
            reports.result = frames[2]
    return reports


def reports_complete(data: bytes | bytearray) -> bool:
    """Whether ``data`` holds three whole frames (ready, exit, result): the run is over."""
    pos = 0
    for _ in range(3):
        if len(data) - pos < sup.RESULT_HEADER:
            return False
        pos += sup.RESULT_HEADER + int.from_bytes(data[pos : pos + sup.RESULT_HEADER], "big")
    return pos <= len(data)


def _meta(body: bytes) -> dict[str, Any] | None:
    if len(body) > sup.MAX_META_BYTES:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def decode_result(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The procedure's ``{"ok": ..., "result"|"error": ...}`` frame, or why it is malformed."""
    if len(raw) < sup.RESULT_HEADER:
        return None, "no result frame" if not raw else "the result frame was cut short"
    size = int.from_bytes(raw[: sup.RESULT_HEADER], "big")
    if len(raw) != sup.RESULT_HEADER + size:
        return None, f"the result frame says {size} bytes but carries {len(raw) - 4}"
    body = raw[sup.RESULT_HEADER :]
    # Counted in C before decoding, so that a cheap frame of millions of tiny values
    # never costs the host seconds and hundreds of MB. Brackets and commas inside
    # strings count too: the bound errs towards refusing.
    containers = body.count(b"[") + body.count(b"{")
    if containers > MAX_RESULT_CONTAINERS:
        return None, f"the result has over {MAX_RESULT_CONTAINERS} lists and objects"
    if body.count(b",") >= MAX_RESULT_ITEMS:
        return None, f"the result has over {MAX_RESULT_ITEMS} values"
    try:
        data = json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        return None, f"the result is nested deeper than {MAX_RESULT_DEPTH} levels"
    except ValueError as exc:  # UnicodeDecodeError included
        return None, f"the result is not JSON: {str(exc)[:200]}"
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        return None, "the result frame is not an object with a boolean 'ok'"
    if depth_exceeds(data, MAX_RESULT_DEPTH + 1):
        return None, f"the result is nested deeper than {MAX_RESULT_DEPTH} levels"
    if not data["ok"]:
        error = data.get("error")
        if not (
            isinstance(error, dict)
            and isinstance(error.get("type"), str)
            and isinstance(error.get("message"), str)
        ):
            return None, "a failed result without an error type and message"
    return data, None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is out of range (JSON has no infinities)")
    return value


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` deep (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item  # type: ignore[assignment]
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def usage_of(exit_msg: dict[str, Any] | None) -> ResourceUsage | None:
    raw = (exit_msg or {}).get("usage")
    if not (isinstance(raw, list) and len(raw) == 3):
        return None
    try:
        return ResourceUsage(
            cpu_user_ms=float(raw[0]) * 1000,
            cpu_system_ms=float(raw[1]) * 1000,
            max_rss_kb=int(raw[2]),
        )
    except (TypeError, ValueError):
        return None


@dataclass
class Facts:
    """What the host itself knows about the run, beside what the sandbox said."""

    killed: tuple[str, str] | None
    memory_mb: int
    cpu_s: int
    out_of_memory: bool  # the run's cgroup reports an OOM kill
    stderr: str


def classify(reports: Reports, facts: Facts) -> tuple[bool, Any, RunError | None]:
    """``(ok, result, error)`` of a run from its reports and the host's own facts.

    The host's facts come first: a process of the run killed for memory makes
    the run a ``MemoryLimitExceeded`` whatever else happened (a parent that
    waited on it until the timeout, or one that returned without it).
    """
    if facts.out_of_memory:
        return False, None, _out_of_memory(facts)
    if facts.killed is not None:
        return False, None, RunError(type=facts.killed[0], message=facts.killed[1])
    exit_msg = reports.exit
    if exit_msg is not None and exit_msg.get("oversize"):
        return (
            False,
            None,
            RunError(type=OUTPUT_LIMIT, message="the result is larger than the sandbox accepts"),
        )
    if exit_msg is not None and reports.result:
        payload, problem = decode_result(reports.result)
        if payload is None:
            return False, None, RunError(type=MALFORMED_RESULT, message=problem or "malformed")
        if payload["ok"]:
            return True, payload.get("result"), None
        error = payload["error"]
        kind = error["type"][:MAX_TYPE_CHARS] or CRASHED
        return False, None, RunError(type=kind, message=error["message"][:MAX_MESSAGE_CHARS])
    return False, None, _died(exit_msg, reports, facts)


def _out_of_memory(facts: Facts) -> RunError:
    return RunError(
        type=MEMORY_LIMIT,
        message=f"a process of the run was killed for using more than its memory limit "
        f"({facts.memory_mb} MB for all its processes and files)",
    )


def _died(exit_msg: dict[str, Any] | None, reports: Reports, facts: Facts) -> RunError:
    """Why a run that sent no result ended."""
    memoryish = "MemoryError" in facts.stderr or "Cannot allocate memory" in facts.stderr
    status = (exit_msg or {}).get("status")
    if exit_msg is None or not isinstance(status, int):
        if reports.problems:
            return RunError(type=MALFORMED_RESULT, message="; ".join(reports.problems))
        return RunError(type=CRASHED, message="the sandbox ended without reporting the run")
    usage = usage_of(exit_msg)
    cpu_used = (usage.cpu_user_ms + usage.cpu_system_ms) / 1000 if usage else 0.0
    try:
        signalled = os.WIFSIGNALED(status)
        sig = os.WTERMSIG(status) if signalled else 0
        code = 0 if signalled else os.waitstatus_to_exitcode(status)
    except (ValueError, OverflowError):
        return RunError(type=MALFORMED_RESULT, message=f"an impossible wait status {status}")
    if signalled:
        if sig == signal.SIGSYS:
            return RunError(
                type=SANDBOX_VIOLATION,
                message="killed for a system call the sandbox refuses (seccomp)",
            )
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= facts.cpu_s):
            return RunError(
                type=CPU_LIMIT, message=f"used more than its {facts.cpu_s} s of CPU time"
            )
        if memoryish:
            return RunError(
                type=MEMORY_LIMIT, message=f"died out of memory (limit {facts.memory_mb} MB)"
            )
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return RunError(type=CRASHED, message=f"killed by {name}")
    if memoryish and code != 0:
        return RunError(
            type=MEMORY_LIMIT, message=f"died out of memory (limit {facts.memory_mb} MB)"
        )
    return RunError(
        type=CRASHED,
        message=f"exited with code {code} without a result "
        "(sys.exit or os._exit in the procedure?)",
    )


def outcome(
    reports: Reports,
    facts: Facts,
    *,
    duration_ms: float,
    stdout: bytes,
    stderr: bytes,
    truncated: tuple[bool, bool],
    isolation: str,
) -> RunOutcome:
    """The whole :class:`RunOutcome` of a run."""
    ok, result, error = classify(reports, facts)
    return RunOutcome(
        ok=ok,
        result=result if ok else None,
        error=error,
        duration_ms=round(duration_ms, 3),
        stdout=stdout.decode("utf-8", "replace"),
        stderr=stderr.decode("utf-8", "replace"),
        stdout_truncated=truncated[0],
        stderr_truncated=truncated[1],
        usage=usage_of(reports.exit),
        isolation=isolation,
    )
