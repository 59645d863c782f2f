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
suite (validation skipped) is ``tests/sandbox/test_sandbox.py``.

Validation is a review aid, not a boundary (issue 10): the ``test_open_*`` half uses a
registry whose ``procreg.toml`` allows os, socket, sys, signal, subprocess..., so the
attacks of ``tests/sandbox/test_hostile_sandbox.py`` pass ``procreg check`` and ``release``;
run from their tags (with the audit hook, and with it off) each is contained by the
isolation engine, recorded with its class, and the next run works.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from registry.core.model import Limits, Parameter
from registry.git.store import GitStore
from registry.index.connect import open_backend
from registry.runs import execution
from registry.sandbox import Sandbox
from tests.helpers import HOSTILE, REPO_ROOT, commit_all, make_repo, release, write_code

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
    root = make_repo(tmp_path_factory.mktemp("hostile") / "repo")
    write_code(
        root,
        "well-behaved",
        "return text[::-1]",
        [Parameter(name="text", type="string")],
        signature="text: str",
        returns="string",
    )
    for pid, (body, params, limits, _, _) in RUNNABLE.items():
        write_code(root, pid, body, params, limits=limits)
    commit_all(root, "feat: hostile procedures that pass validation")
    for pid in ["well-behaved", *RUNNABLE]:
        assert release(root, pid) == "1.0.0"
    for pid, (body, params, _) in DENIED.items():
        write_code(root, pid, body, params)
    commit_all(root, "feat: hostile procedures that validation refuses")
    return root


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
    from registry.errors import ValidationFailed
    from registry.releases import release as releases

    with pytest.raises(ValidationFailed, match="fork-bomb"):
        releases.release(GitStore.open(repo), ["fork-bomb"])


# --------------------------------------------------------------------------- issue 10
#
# Validation is bypassable, so nothing may depend on it: a registry whose
# procreg.toml allows os, socket, sys, signal, subprocess... lets the attacks of
# tests/sandbox/test_hostile_sandbox.py pass `procreg check` and `release`. Released and
# run from their tags through execution.run, each is contained by the isolation
# engine alone, recorded in the index with its class, and the next run works.
# ``os_only`` is the same path with the audit hook off (an attacker who beat it).


PERMISSIVE_CONFIG = (
    "[validation]\n"
    'allow_imports = ["os", "socket", "sys", "signal", "mmap", "threading", "subprocess", '
    '"time"]\n'
)


def _params(*spec: tuple[str, str]) -> list[Parameter]:
    return [Parameter(name=name, type=kind) for name, kind in spec]


Entry = tuple[str, list[Parameter], Limits, dict[str, str]]


def _entry(
    module: str, *params: tuple[str, str], timeout_s: float = 5, memory_mb: int = 128
) -> Entry:
    """(file in tests/hostile, parameters, limits, extra data files)."""
    return module, _params(*params), Limits(timeout_s=timeout_s, memory_mb=memory_mb), {}


MEMORY_PARAMS = (("children", "integer"), ("mb", "integer"), ("parent_mb", "integer"))
OPEN: dict[str, Entry] = {
    "unix-socket-connect": _entry("unix_socket_connect", ("paths", "array")),
    "abstract-connect": _entry("abstract_connect", ("names", "array"), ("retry_s", "number")),
    "proc-scan": _entry("proc_scan"),
    "read-host-paths": _entry("read_host_paths", ("paths", "array")),
    "persist": _entry("persist", ("marker", "string"), ("mode", "string")),
    "symlink-proc": _entry("symlink_proc", ("targets", "array")),
    "deep-result": _entry("deep_result", ("depth", "integer")),
    "deep-raw-result": _entry("deep_raw_result", ("depth", "integer")),
    "nan-raw-result": _entry("nan_raw_result", ("value", "string")),
    "forge-frames": _entry("forge_frames", ("then", "string")),
    "kill-init": _entry("kill_init", ("host_pid", "integer")),
    "fork-bomb-allowed": _entry("fork_bomb"),
    "memory-children": _entry(
        "memory_children", *MEMORY_PARAMS, ("hold_s", "number"), timeout_s=10, memory_mb=64
    ),
    "memory-children-wait": _entry(
        "memory_children", *MEMORY_PARAMS, ("hold_s", "number"), timeout_s=3, memory_mb=64
    ),
    "payload-runner": _entry("payload_runner", ("payload", "string"), timeout_s=10),
}


def _payload() -> str:
    return (HOSTILE / "ptrace_ctypes.py").read_text() + "\nimport json\nprint(json.dumps(main()))\n"


def _write_hostile(root: Path, pid: str) -> None:
    name, params, limits, _ = OPEN[pid]
    write_code(root, pid, "return None", params, limits=limits)  # metadata.json
    folder = root / "procedures" / pid
    (folder / "main.py").write_text((HOSTILE / f"{name}.py").read_text())
    if pid == "payload-runner":
        (folder / "payload.txt").write_text(_payload())


@pytest.fixture(scope="module")
def open_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry whose procreg.toml allows the modules the attacks need."""
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("the isolation engine's uids and cgroups need root")
    root = make_repo(tmp_path_factory.mktemp("hostile-open") / "repo")
    (root / "procreg.toml").write_text(PERMISSIVE_CONFIG)
    write_code(
        root,
        "well-behaved",
        "return text[::-1]",
        [Parameter(name="text", type="string")],
        signature="text: str",
        returns="string",
    )
    for pid in OPEN:
        _write_hostile(root, pid)
    commit_all(root, "feat: hostile procedures that pass a permissive validation")
    for pid in ["well-behaved", *OPEN]:
        assert release(root, pid) == "1.0.0", pid  # `procreg check` and release both pass
    return root


@pytest.fixture(params=["audit-hook", "os-only"])
def any_box(request: pytest.FixtureRequest) -> Sandbox:
    return request.getfixturevalue("sandbox" if request.param == "audit-hook" else "os_only")


def run_open(root: Path, box: Any, pid: str, kwargs: dict[str, Any]) -> Any:
    """Run the released ``pid``; check the run is recorded with its outcome and class."""
    result, records = run(root, box, pid, None, kwargs)
    assert result.version == "1.0.0"  # the released code ran, from its tag
    (record,) = [r for r in records if r.run_id == result.run_id]
    assert record.outcome == ("success" if result.ok else "failure")
    assert record.error_type == (result.error.type if result.error else None)
    assert record.version == "1.0.0" and record.commit == result.commit
    return result


def check_open_next_run(root: Path, box: Any) -> None:
    check_next_run_works(root, box)


def test_open_unix_sockets_are_unreachable(open_repo: Path, any_box: Sandbox) -> None:
    folder = Path(tempfile.mkdtemp(prefix="procreg-hostile-sock-"))
    folder.chmod(0o777)
    path = folder / "host.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"procreg-host-{uuid.uuid4().hex}"
    try:
        listener.bind(str(path))
        path.chmod(0o777)
        listener.listen(8)
        listener.setblocking(False)
        abstract.bind("\0" + name)
        abstract.listen(8)
        abstract.setblocking(False)
        pg = "/var/run/postgresql/.s.PGSQL.5432"
        result = run_open(open_repo, any_box, "unix-socket-connect", {"paths": [str(path), pg]})
        assert result.ok, result.error
        for target in (str(path), pg):
            assert result.result[target]["exists"] is False
            assert result.result[target]["connect"] in {"FileNotFoundError", "SandboxViolation"}
        result = run_open(open_repo, any_box, "abstract-connect", {"names": [name], "retry_s": 0.2})
        assert result.ok, result.error
        assert result.result[name][0] in {"ConnectionRefusedError", "SandboxViolation"}
        for sock in (listener, abstract):
            with pytest.raises(BlockingIOError):
                sock.accept()
    finally:
        listener.close()
        abstract.close()
        path.unlink(missing_ok=True)
        folder.rmdir()
    check_open_next_run(open_repo, any_box)


def test_open_proc_of_other_processes_is_invisible(
    open_repo: Path, any_box: Sandbox, host_process: tuple[subprocess.Popen[bytes], str]
) -> None:
    proc, secret = host_process
    result = run_open(open_repo, any_box, "proc-scan", {})
    assert result.ok, result.error
    assert len(result.result["pids"]) <= 3
    assert secret not in json.dumps(result.result)
    assert proc.poll() is None
    check_open_next_run(open_repo, any_box)


def test_open_git_index_and_sources_are_unreachable(open_repo: Path, any_box: Sandbox) -> None:
    paths = [
        str(open_repo),
        str(open_repo / ".git"),
        str(open_repo / ".git" / "config"),
        str(open_repo / ".git" / "procreg" / "index.sqlite3"),
        str(open_repo / "procedures" / "well-behaved" / "main.py"),
        str(REPO_ROOT / ".git"),
        str(REPO_ROOT / ".git" / "config"),
        "/etc/passwd",
        "/root",
        "/home",
        "/run",
        "/var",
    ]
    assert (open_repo / ".git" / "procreg" / "index.sqlite3").exists()  # the host has it
    result = run_open(open_repo, any_box, "read-host-paths", {"paths": paths})
    assert result.ok, result.error
    for path in paths:
        assert result.result[path] == {"exists": False, "error": "FileNotFoundError"}, path
    check_open_next_run(open_repo, any_box)


def test_open_nothing_persists_between_runs(open_repo: Path, any_box: Sandbox) -> None:
    marker = f"procreg-left-{uuid.uuid4().hex}"
    wrote = run_open(open_repo, any_box, "persist", {"marker": marker, "mode": "write"})
    assert wrote.ok and wrote.result["/tmp/run"] == "written", wrote.error
    looked = run_open(open_repo, any_box, "persist", {"marker": marker, "mode": "look"})
    assert looked.ok, looked.error
    for place, seen in looked.result.items():
        assert seen["exists"] is False and marker not in json.dumps(seen["listing"]), place
    for place in ("/tmp", "/dev/shm", "/var/tmp"):
        assert not [e for e in os.listdir(place) if marker in e], place
    check_open_next_run(open_repo, any_box)


def test_open_symlinks_read_nothing_of_the_host(
    open_repo: Path, any_box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"SECRET-{uuid.uuid4().hex}"
    monkeypatch.setenv("PROCREG_HOST_SECRET", secret)
    targets = [
        "/proc/1/environ",
        f"/proc/{os.getpid()}/environ",
        str(open_repo / ".git" / "config"),
    ]
    result = run_open(open_repo, any_box, "symlink-proc", {"targets": targets})
    assert result.ok, result.error
    assert secret not in json.dumps(result.result)
    for target in targets:
        assert "data" not in result.result[target], target
    check_open_next_run(open_repo, any_box)


@pytest.mark.parametrize(
    ("pid", "kwargs", "expected"),
    [
        ("deep-result", {"depth": 100_000}, "ResultNotSerializable"),
        ("deep-raw-result", {"depth": 100_000}, "MalformedResult"),
        ("forge-frames", {"then": "raise"}, "MalformedResult"),
        ("forge-frames", {"then": "return"}, "MalformedResult"),
        ("nan-raw-result", {"value": "NaN"}, "MalformedResult"),
        ("nan-raw-result", {"value": "1e999"}, "MalformedResult"),
    ],
    ids=["deep-result", "deep-raw-result", "forge-raise", "forge-return", "raw-nan", "raw-1e999"],
)
def test_open_host_trusts_nothing_and_records_it(
    open_repo: Path, any_box: Sandbox, pid: str, kwargs: dict[str, Any], expected: str
) -> None:
    result = run_open(open_repo, any_box, pid, kwargs)
    assert not result.ok and result.error is not None
    assert result.error.type == expected, result.error
    assert result.result != "forged"
    check_open_next_run(open_repo, any_box)


def test_open_killing_pid1_parent_and_host(open_repo: Path, any_box: Sandbox) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        result = run_open(open_repo, any_box, "kill-init", {"host_pid": proc.pid})
        assert result.ok, result.error
        if any_box.audit_hook:
            assert result.result["init"] == "SandboxViolation"
        else:
            assert result.result["init_alive"] is True
            assert result.result["host"] == "ProcessLookupError"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    check_open_next_run(open_repo, any_box)


def test_open_fork_bomb_and_memory_across_processes(open_repo: Path, os_only: Sandbox) -> None:
    result = run_open(open_repo, os_only, "fork-bomb-allowed", {})
    assert not result.ok and result.error is not None
    assert result.error.type in {"ProcessLimitExceeded", "Timeout"}, result.error
    kwargs = {"children": 4, "mb": 40, "parent_mb": 40, "hold_s": 2}
    result = run_open(open_repo, os_only, "memory-children", kwargs)
    if result.ok:
        killed = [
            s
            for s in result.result["statuses"]
            if os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL
        ]
        assert killed, result.result
    else:
        assert result.error is not None and result.error.type == "MemoryLimitExceeded"
    check_open_next_run(open_repo, os_only)


def test_open_payload_in_a_data_file(open_repo: Path, any_box: Sandbox) -> None:
    """ctypes is denied by every config, but a data file is never parsed: the OS refuses."""
    result = run_open(open_repo, any_box, "payload-runner", {"payload": "payload.txt"})
    if any_box.audit_hook:
        assert not result.ok and result.error is not None
        assert result.error.type == "ProcessLimitExceeded", result.error
    else:
        assert result.ok, result.error
        assert result.result["returncode"] == 0, result.result["stderr"]
        found = json.loads(result.result["stdout"])
        for call in (
            "ptrace_attach_1",
            "process_vm_readv",
            "unshare_user",
            "mount_tmpfs",
            "setns",
            "keyctl",
            "bpf",
        ):
            assert found[call] == 1, (call, found)  # EPERM
        assert found["AF_INET"] == 97  # EAFNOSUPPORT
    check_open_next_run(open_repo, any_box)


def test_open_oom_kill_of_children_is_recorded_as_memory_limit(
    open_repo: Path, os_only: Sandbox
) -> None:
    """The cgroup OOM-killed the run's children while the parent waited: MemoryLimitExceeded."""
    kwargs = {"children": 3, "mb": 45, "parent_mb": 0, "hold_s": 60}
    result, records = run(open_repo, os_only, "memory-children-wait", None, kwargs)
    (record,) = [r for r in records if r.run_id == result.run_id]
    assert record.error_type == "MemoryLimitExceeded", (record.error_type, record.error_message)
    check_open_next_run(open_repo, os_only)


def test_open_abstract_socket_not_shared_between_concurrent_runs(
    open_repo: Path, os_only: Sandbox
) -> None:
    # the listener runs through the sandbox layer; the connecting run is the released one
    name = f"procreg-shared-{uuid.uuid4().hex[:8]}"
    from registry.sandbox import RunRequest

    found: dict[str, Any] = {}
    files = {"main.py": (HOSTILE / "abstract_listen.py").read_text()}

    def listen() -> None:
        found["a"] = os_only.run(
            RunRequest(files=files, kwargs={"name": name, "wait_s": 3.0}, timeout_s=6)
        )

    a = threading.Thread(target=listen)
    a.start()
    try:
        result = run_open(open_repo, os_only, "abstract-connect", {"names": [name], "retry_s": 2.0})
    finally:
        a.join(timeout=20)
    assert result.ok and result.result == {name: ["ConnectionRefusedError"]}, result
    assert found["a"].ok and found["a"].result == {"bound": True, "accepted": 0}
    check_open_next_run(open_repo, os_only)
