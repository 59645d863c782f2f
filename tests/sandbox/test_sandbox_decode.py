"""The host's decoding of what a sandbox sends back: every malformed report is a failure class.

Pure: bytes in, an outcome out, no process. The hostile suite sends the same
shapes from inside a real sandbox (``tests/sandbox/test_hostile_sandbox.py``).
"""

from __future__ import annotations

import json
import signal

import pytest

from registry.sandbox import decode


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def reports(result: bytes | None, *, status: int = 0, ready: bool = True) -> bytes:
    out = frame(json.dumps({"op": "ready"}).encode()) if ready else b""
    exit_msg = {"op": "exit", "status": status, "usage": [0.001, 0.0, 9000.0], "oversize": False}
    out += frame(json.dumps(exit_msg).encode())
    if result is not None:
        out += frame(result)
    return out


FACTS = decode.Facts(killed=None, memory_mb=64, cpu_s=2, out_of_memory=False, stderr="")


def outcome_of(data: bytes, facts: decode.Facts = FACTS):
    return decode.classify(decode.split_reports(data), facts)


@pytest.mark.parametrize(
    ("result", "kind"),
    [
        (frame(b'{"ok":true,"result":[1,2]}'), None),
        (frame(b'{"ok":false,"error":{"type":"KeyError","message":"x"}}'), "KeyError"),
        (b"", "Crashed"),  # an empty result frame: the process died before answering
        (frame(b'{"ok":true,"result":NaN}'), "MalformedResult"),
        (frame(b'{"ok":true,"result":' + b"[" * 101 + b"]" * 101 + b"}"), "MalformedResult"),
        (frame(b'{"ok":true,"result":' + b"[" * 100000 + b"]" * 100000 + b"}"), "MalformedResult"),
        (frame(b'{"ok":true,"result":' + b"9" * 5000 + b"}"), "MalformedResult"),
        (frame(b"\xff\xfe not utf-8"), "MalformedResult"),
        (frame(b'["ok", true]'), "MalformedResult"),
        (frame(b'{"ok":"yes"}'), "MalformedResult"),
        (frame(b'{"ok":false}'), "MalformedResult"),
        (frame(b'{"ok":false,"error":{"type":1,"message":"x"}}'), "MalformedResult"),
        (b"\x00\x00\x00\x10short", "MalformedResult"),  # a frame that says more than it has
        (frame(b'{"ok":true,"result":1}') + b"tail", "MalformedResult"),
    ],
)
def test_results_are_decoded_defensively(result: bytes, kind: str | None) -> None:
    ok, value, error = outcome_of(reports(result))
    if kind is None:
        assert ok and value == [1, 2]
    else:
        assert not ok and error is not None and error.type == kind, error


def test_depth_at_the_limit_is_accepted() -> None:
    body = b'{"ok":true,"result":' + b"[" * 99 + b"]" * 99 + b"}"
    ok, _, error = outcome_of(reports(frame(body)))
    assert ok, error


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "Crashed"),  # nothing at all: the sandbox died before its supervisor spoke
        (frame(b'{"op":"ready"}'), "Crashed"),  # ready, then gone
        (b"\x00\x00", "MalformedResult"),  # a header cut short
        (frame(b"not json") + frame(b"{}"), "Crashed"),
        (frame(b'{"op":"ready"}') + frame(b'{"op":"exit","status":"x"}'), "Crashed"),
        (frame(b'{"op":"ready"}') + frame(b'{"op":"exit","status":99999999999999}'),
         "MalformedResult"),
    ],
)  # fmt: skip
def test_broken_reports_are_failures_not_exceptions(data: bytes, kind: str) -> None:
    ok, _, error = outcome_of(data)
    assert not ok and error is not None and error.type == kind, error


@pytest.mark.parametrize(
    ("status", "facts", "kind"),
    [
        (signal.SIGSYS, FACTS, "SandboxViolation"),
        (signal.SIGXCPU, FACTS, "CpuLimitExceeded"),
        (signal.SIGKILL, decode.Facts(None, 64, 2, True, ""), "MemoryLimitExceeded"),
        (signal.SIGSEGV, FACTS, "Crashed"),
        (3 << 8, FACTS, "Crashed"),  # exit code 3, no result
    ],
)
def test_deaths_without_a_result_are_classified(status, facts, kind) -> None:
    ok, _, error = outcome_of(reports(None, status=int(status)), facts)
    assert not ok and error is not None and error.type == kind, error


def test_the_hosts_kill_reason_wins() -> None:
    facts = decode.Facts(("Timeout", "ran longer"), 64, 2, False, "")
    ok, _, error = outcome_of(reports(frame(b'{"ok":true,"result":1}')), facts)
    assert not ok and error is not None and error.type == "Timeout"


def test_reports_complete_needs_all_three_frames() -> None:
    whole = reports(frame(b'{"ok":true,"result":1}'))
    assert decode.reports_complete(whole)
    assert not decode.reports_complete(whole[:-1])
    assert not decode.reports_complete(reports(None))
