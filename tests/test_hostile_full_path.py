"""Hostile procedures through the FULL path: committed, released, validated, run, recorded.

Validation refuses most hostile code before it can run, so the suite has two halves:

- hostile procedures that *pass* validation (infinite loop, memory bomb, deep recursion,
  huge output, a write outside the scratch folder) are released and run from their
  tags; each ends within its limits with a recorded failure of the right class;
- hostile procedures that use denied constructs (fork, sockets, signals, the
  environment, subprocesses, ctypes, eval) cannot be released; run from the branch
  tip they are refused with ``InvalidProcedure`` before any process starts, and that
  refusal is recorded too.

After each, a well-behaved procedure runs fine in the same sandbox. The direct sandbox
suite (validation skipped) is ``tests/test_sandbox.py``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from registry import execution
from registry.gitstore import GitStore
from registry.model import Limits, Parameter
from registry.sandbox import Sandbox
from registry.sync import open_backend
from tests.test_execution import commit_all, make_repo, release, write_proc

NO_PARAMS: list[Parameter] = []
PATH_PARAM = [Parameter(name="path", type="string")]
PID_PARAM = [Parameter(name="host_pid", type="integer")]

# id -> (body, parameters, limits, kwargs, expected error type)
RUNNABLE: dict[str, tuple[str, list[Parameter], Limits, dict[str, Any], str]] = {
    "infinite-loop": (
        "while True:\n    pass",
        NO_PARAMS,
        Limits(timeout_s=1, memory_mb=256),
        {},
        "Timeout",
    ),
    "memory-bomb": (
        "hoard = []\nwhile True:\n    hoard.append([0] * 1_000_000)",
        NO_PARAMS,
        Limits(timeout_s=20, memory_mb=96),
        {},
        "MemoryLimitExceeded",
    ),
    "deep-recursion": (
        "def down(n):\n    return down(n + 1) + 1\n\nreturn down(0)",
        NO_PARAMS,
        Limits(timeout_s=10, memory_mb=256),
        {},
        "RecursionError",
    ),
    "huge-output": (
        "line = 'x' * (1024 * 1024 - 1)\nfor _ in range(1024):\n    print(line)\nreturn 'done'",
        NO_PARAMS,
        Limits(timeout_s=30, memory_mb=256),
        {},
        "OutputLimitExceeded",
    ),
    "write-outside": (
        "with open(path, 'w') as fh:\n    fh.write('pwned')\nreturn 'written'",
        PATH_PARAM,
        Limits(timeout_s=10, memory_mb=256),
        {},
        "SandboxViolation",
    ),
}

# id -> (body, parameters, the denied construct the refusal must name)
DENIED: dict[str, tuple[str, list[Parameter], str]] = {
    "fork-bomb": ("import os\nwhile True:\n    os.fork()", NO_PARAMS, "os"),
    "network": (
        "import socket\nsocket.create_connection(('1.1.1.1', 80))\nreturn 'online'",
        NO_PARAMS,
        "socket",
    ),
    "kill-parent": (
        "import os\nimport signal\nos.kill(host_pid, signal.SIGKILL)\nreturn 'killed'",
        PID_PARAM,
        "os",
    ),
    "read-environment": ("import os\nreturn dict(os.environ)", NO_PARAMS, "os"),
    "background-child": (
        "import subprocess\nsubprocess.Popen(['sleep', '600'])\nreturn 'left behind'",
        NO_PARAMS,
        "subprocess",
    ),
    "ctypes-escape": ("import ctypes\nreturn ctypes.CDLL(None).getpid()", NO_PARAMS, "ctypes"),
    "eval-escape": ("return eval('1 + 1')", NO_PARAMS, "eval"),
}


class CountingSandbox:
    """Delegates to a real sandbox and counts the processes it was asked to start."""

    def __init__(self, inner: Sandbox) -> None:
        self.inner = inner
        self.calls = 0

    def run(self, request: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.inner.run(request, **kwargs)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_repo(tmp_path_factory.mktemp("hostile"))
    write_proc(
        root,
        "well-behaved",
        "return text[::-1]",
        [Parameter(name="text", type="string")],
        signature="text: str",
        returns="string",
    )
    for pid, (body, params, limits, _, _) in RUNNABLE.items():
        write_proc(root, pid, body, params, limits=limits)
    commit_all(root, "feat: hostile procedures that pass validation")
    for pid in ["well-behaved", *RUNNABLE]:
        assert release(root, pid) == "1.0.0"
    for pid, (body, params, _) in DENIED.items():
        write_proc(root, pid, body, params)
    commit_all(root, "feat: hostile procedures that validation refuses")
    return root


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(pool_size=1) as box:
        yield box


def run(root: Path, box: Any, pid: str, spec: str | None, kwargs: dict[str, Any]):
    async def go():
        store = GitStore.open(root)
        async with await open_backend(store) as backend:
            result = await execution.run(store, backend, pid, spec, kwargs, sandbox=box)
            return result, await backend.executions(pid)

    return asyncio.run(go())


def check_next_run_works(root: Path, box: Any) -> None:
    result, _ = run(root, box, "well-behaved", None, {"text": "abc"})
    assert result.ok and result.result == "cba", result.error


@pytest.mark.parametrize("pid", list(RUNNABLE))
def test_hostile_release_fails_within_limits_and_is_recorded(
    repo: Path, sandbox: Sandbox, pid: str
) -> None:
    _, _, _, kwargs, expected = RUNNABLE[pid]
    # world-writable /tmp: only the sandbox, not file permissions, stops the write
    target = Path(tempfile.gettempdir()) / f"procreg-outside-{uuid.uuid4().hex}"
    if pid == "write-outside":
        kwargs = {"path": str(target)}
    try:
        result, records = run(repo, sandbox, pid, None, kwargs)
    finally:
        written = target.exists()
        target.unlink(missing_ok=True)
    assert not result.ok and result.error is not None
    assert result.error.type == expected, result.error
    assert result.version == "1.0.0"  # the released code ran, from its tag
    record = next(r for r in records if r.run_id == result.run_id)
    assert record.outcome == "failure" and record.error_type == expected
    assert record.version == "1.0.0" and record.commit == result.commit
    if pid == "huge-output":
        assert result.stdout_truncated
        assert len(result.stdout) <= 2 * 64 * 1024  # bounded, not a gigabyte
    if pid == "write-outside":
        assert not written
    check_next_run_works(repo, sandbox)


@pytest.mark.parametrize("pid", list(DENIED))
def test_denied_constructs_are_refused_before_any_process_starts(
    repo: Path, sandbox: Sandbox, pid: str
) -> None:
    _, params, construct = DENIED[pid]
    counting = CountingSandbox(sandbox)
    kwargs: dict[str, Any] = {"host_pid": os.getpid()} if params else {}
    result, records = run(repo, counting, pid, "HEAD", kwargs)
    assert not result.ok and result.error is not None
    assert result.error.type == "InvalidProcedure"
    assert construct in result.error.message and f"procedures/{pid}/main.py" in result.error.message
    assert counting.calls == 0  # no process was started
    assert result.usage.cpu_ms is None and result.stdout == ""
    (record,) = [r for r in records if r.run_id == result.run_id]
    assert record.outcome == "failure" and record.error_type == "InvalidProcedure"
    check_next_run_works(repo, sandbox)


def test_denied_procedures_cannot_be_released(repo: Path) -> None:
    from registry import releases
    from registry.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="fork-bomb"):
        releases.release(GitStore.open(repo), ["fork-bomb"])
