"""Hostile procedures against the isolation engine itself (issue 10), validation skipped.

Every attack runs through :class:`registry.sandbox.Sandbox` directly, with the OS
layers alone (``audit_hook=False``: an attacker who has defeated the audit hook)
and, where the hook changes the outcome, with it. Each test asserts three things:
the attack is contained (what the procedure reports, or the host's own state,
shows that nothing of the host was reached), the outcome has the expected class,
and the next normal run works. The same attacks through the full path
(validation on, recorded in the index) are in ``tests/sandbox/test_hostile_full_path.py``.

Expected outcomes (``ok`` means the procedure returns an observation that proves
nothing was reachable):

=====================================  ===================================================
attack                                 expected
=====================================  ===================================================
host file-system Unix socket           ok: path absent, connect FileNotFoundError
                                       (hook: SandboxViolation); host accepted nothing
abstract socket of the host            ok: ConnectionRefusedError (hook: SandboxViolation)
abstract socket of a concurrent run    ok both: A bound and accepted 0, B refused
other processes' /proc                 ok: pids <= 3, no host secret in anything read
.git, index, sources, /etc, /root ...  ok: every path absent (FileNotFoundError)
files left for a later run             ok: later runs (warm, cold) find none; host clean
symlink to /proc/1/environ, host path  ok: PermissionError / FileNotFoundError, no secret
memory across processes (cgroup)       MemoryLimitExceeded, or its children SIGKILLed
OOM kill of children only              MemoryLimitExceeded (not Timeout)
/dev/shm, /tmp, scratch filled         ok: ENOSPC at <= tmpfs size
many files                             ok ENOSPC/ENOMEM, MemoryLimitExceeded or Timeout
fork bomb (OS layers only)             ProcessLimitExceeded (or Timeout)
result nested 100000 deep (returned)   ResultNotSerializable
result nested 100000 deep (raw frame)  MalformedResult
wide raw result (millions of [])       decoded within the run's time, bounded host memory;
                                       in every uid slot: the next run does not stall
forged frames on every descriptor      MalformedResult, never "forged"; pid 1's fds closed
kill pid 1 / parent / host pid         ok: init alive, host pid ProcessLookupError
                                       (hook: SandboxViolation for each)
raw NaN / 1e999 / 5000 digits          MalformedResult or ResultNotSerializable
i386 (int 0x80) / x32 system calls     killed by seccomp: SandboxViolation (or Crashed)
ptrace, process_vm_readv, unshare ...  ok: EPERM each, EAFNOSUPPORT for other socket
                                       families (hook: SandboxViolation on ctypes)
payload in a data file, run by a child ok: the child is as confined (hook:
                                       ProcessLimitExceeded)
every uid slot filled by misbehaving   the next normal run succeeds, slots drain
=====================================  ===================================================
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.config import SandboxSection
from registry.sandbox import RunOutcome, RunRequest, Sandbox
from tests.helpers import HOSTILE, REPO_ROOT, hostile, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="the isolation engine's uids and cgroups need root",
)

NORMAL = "def main(text):\n    return text[::-1]\n"


def run(
    box: Sandbox,
    name: str,
    kwargs: dict[str, Any] | None = None,
    *,
    warm: bool = True,
    files: dict[str, str] | None = None,
    **limits: Any,
) -> RunOutcome:
    limits.setdefault("timeout_s", 5)
    request = RunRequest(files=files or hostile(name), kwargs=kwargs or {}, **limits)
    return box.run(request, warm=warm)


def check_next_run_works(box: Sandbox, *, warm: bool = True) -> None:
    outcome = box.run(RunRequest(files={"main.py": NORMAL}, kwargs={"text": "abc"}), warm=warm)
    assert outcome.ok and outcome.result == "cba", outcome.error


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def with_hook() -> Iterator[Sandbox]:
    with Sandbox(pool_size=1, audit_hook=True) as box:
        box.wait_warm(30)
        yield box


@pytest.fixture(params=["os-only", "audit-hook"])
def box(request: pytest.FixtureRequest) -> Sandbox:
    return request.getfixturevalue("os_only" if request.param == "os-only" else "with_hook")


@pytest.fixture(scope="module")
def small_tmpfs() -> Iterator[Sandbox]:
    """16 MB tmpfs folders, so that filling them is quick."""
    with Sandbox(SandboxSection(tmpfs_mb=16), pool_size=1, audit_hook=False) as box:
        box.wait_warm(30)
        yield box


def blocked(box: Sandbox) -> str:
    """The class a refused socket operation reports in ``box``."""
    return "SandboxViolation" if box.audit_hook else "FileNotFoundError"


# --------------------------------------------------------------------------- 1. unix sockets


def test_host_filesystem_unix_sockets_are_unreachable(box: Sandbox) -> None:
    folder = Path(tempfile.mkdtemp(prefix="procreg-hostile-sock-"))
    folder.chmod(0o777)
    path = folder / "host.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        path.chmod(0o777)
        listener.listen(8)
        listener.setblocking(False)
        pg = "/var/run/postgresql/.s.PGSQL.5432"
        outcome = run(box, "unix_socket_connect", {"paths": [str(path), pg]})
        assert outcome.ok, outcome.error
        for target in (str(path), pg):
            seen = outcome.result[target]
            assert seen["exists"] is False
            assert seen["connect"] in {blocked(box), "FileNotFoundError"}, seen
        with pytest.raises(BlockingIOError):
            listener.accept()  # the host's listener accepted nothing
    finally:
        listener.close()
        path.unlink(missing_ok=True)
        folder.rmdir()
    check_next_run_works(box)


# --------------------------------------------------------------------------- 2. abstract sockets


def test_abstract_socket_of_the_host_is_unreachable(box: Sandbox) -> None:
    name = f"procreg-host-{uuid.uuid4().hex}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind("\0" + name)
        listener.listen(8)
        listener.setblocking(False)
        outcome = run(box, "abstract_connect", {"names": [name], "retry_s": 0.2})
        assert outcome.ok, outcome.error
        expected = "SandboxViolation" if box.audit_hook else "ConnectionRefusedError"
        assert outcome.result == {name: [expected]}
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    check_next_run_works(box)


def test_abstract_socket_is_not_shared_between_concurrent_runs(os_only: Sandbox) -> None:
    name = f"procreg-shared-{uuid.uuid4().hex[:8]}"
    outcomes: dict[str, RunOutcome] = {}

    def listen() -> None:
        outcomes["a"] = run(os_only, "abstract_listen", {"name": name, "wait_s": 3.0})

    a = threading.Thread(target=listen)
    a.start()
    try:
        outcomes["b"] = run(
            os_only, "abstract_connect", {"names": [name], "retry_s": 2.0}, warm=False
        )
    finally:
        a.join(timeout=20)
    assert not a.is_alive()
    assert outcomes["a"].ok, outcomes["a"].error
    assert outcomes["a"].result == {"bound": True, "accepted": 0}
    assert outcomes["b"].ok, outcomes["b"].error
    assert outcomes["b"].result == {name: ["ConnectionRefusedError"]}
    check_next_run_works(os_only)


# --------------------------------------------------------------------------- 3. /proc


def test_other_processes_proc_is_invisible(
    box: Sandbox, host_process: tuple[subprocess.Popen[bytes], str]
) -> None:
    proc, secret = host_process
    wait_for(
        lambda: secret.encode() in Path(f"/proc/{proc.pid}/cmdline").read_bytes(),
        "the host process to start",
        timeout=10,
    )
    outcome = run(box, "proc_scan", warm=False)
    assert outcome.ok, outcome.error
    assert set(outcome.result["pids"]) <= {1, 2, 3}, outcome.result["pids"]  # its own only
    assert secret not in json.dumps(outcome.result)
    assert proc.poll() is None  # untouched
    check_next_run_works(box)


# --------------------------------------------------------------------------- 4. host paths


def test_registry_git_index_sources_and_host_folders_do_not_exist(
    box: Sandbox, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git" / "procreg").mkdir(parents=True)
    (repo / ".git" / "config").write_text("[core]\n# secret-git-config\n")
    (repo / ".git" / "procreg" / "index.sqlite3").write_text("secret-index")
    (repo / "procedures" / "other").mkdir(parents=True)
    (repo / "procedures" / "other" / "main.py").write_text("# secret-other-source\n")
    tmp_path.chmod(0o755)
    paths = [
        str(repo),
        str(repo / ".git"),
        str(repo / ".git" / "config"),
        str(repo / ".git" / "procreg" / "index.sqlite3"),
        str(repo / "procedures" / "other" / "main.py"),
        str(REPO_ROOT / ".git"),
        str(REPO_ROOT / ".git" / "config"),
        str(REPO_ROOT / "registry"),
        str(REPO_ROOT / ".venv"),
        "/etc/passwd",
        "/etc/shadow",
        "/root",
        "/home",
        "/run",
        "/var",
        "/var/run/postgresql",
        "/sys/fs/cgroup",
        "/work",
        "/srv",
        "/opt",
    ]
    outcome = run(box, "read_host_paths", {"paths": paths})
    assert outcome.ok, outcome.error
    for path in paths:
        seen = outcome.result[path]
        assert seen == {"exists": False, "error": "FileNotFoundError"}, (path, seen)
    assert "secret" not in json.dumps(outcome.result)
    check_next_run_works(box)


# --------------------------------------------------------------------------- 5. persistence


def host_entries(marker: str) -> list[str]:
    found = []
    for place in ("/tmp", "/dev/shm", "/var/tmp"):
        with os.scandir(place) as it:
            found += [f"{place}/{e.name}" for e in it if marker in e.name]
    return found


@pytest.mark.parametrize("warm", [True, False], ids=["then-warm", "then-cold"])
def test_nothing_persists_between_runs(box: Sandbox, warm: bool) -> None:
    marker = f"procreg-left-{uuid.uuid4().hex}"
    assert host_entries(marker) == []
    wrote = run(box, "persist", {"marker": marker, "mode": "write"})
    assert wrote.ok, wrote.error
    assert wrote.result["/tmp/run"] == "written"
    if not box.audit_hook:  # the OS layers let it write its private tmpfs folders
        assert wrote.result["/tmp"] == "written" and wrote.result["/dev/shm"] == "written"
    for place in ("/var/tmp", "/run", "/run/lock"):  # read-only root: none can be made
        assert wrote.result[place] != "written", place
    looked = run(box, "persist", {"marker": marker, "mode": "look"}, warm=warm)
    assert looked.ok, looked.error
    for place, seen in looked.result.items():
        assert seen["exists"] is False, (place, seen)
        assert not any(marker in entry for entry in seen["listing"]), (place, seen)
    assert host_entries(marker) == []  # nothing reached the host's folders either
    check_next_run_works(box)


# --------------------------------------------------------------------------- 6. symlinks


def test_symlinks_to_proc_and_host_paths_read_nothing_of_the_host(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"SECRET-{uuid.uuid4().hex}"
    monkeypatch.setenv("PROCREG_HOST_SECRET", secret)
    targets = [
        "/proc/1/environ",
        "/proc/self/../1/environ",
        f"/proc/{os.getpid()}/environ",
        "/proc/1/root/etc/passwd",
        "/proc/1/cwd/../../etc/passwd",
        str(REPO_ROOT / ".git" / "config"),
        "/etc/passwd",
    ]
    outcome = run(box, "symlink_proc", {"targets": targets}, warm=False)  # started after setenv
    assert outcome.ok, outcome.error
    assert secret not in json.dumps(outcome.result)
    for target in targets:
        seen = outcome.result[target]
        assert "data" not in seen, (target, seen)
        assert seen["error"] in {"PermissionError", "FileNotFoundError", "SandboxViolation"}
    check_next_run_works(box)


# --------------------------------------------------------------------------- 7. limits per run


def test_memory_across_processes_is_limited_per_run(os_only: Sandbox) -> None:
    kwargs = {"children": 4, "mb": 40, "parent_mb": 40, "hold_s": 2}
    outcome = run(os_only, "memory_children", kwargs, memory_mb=64, timeout_s=10)
    if outcome.ok:  # the OOM killer took only children: each of those died of SIGKILL
        statuses = outcome.result["statuses"]
        killed = [s for s in statuses if os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL]
        assert killed, statuses  # 5 x 40 MB never fit into 64 + 32 MB
    else:
        assert outcome.error is not None
        assert outcome.error.type == "MemoryLimitExceeded", outcome.error
    check_next_run_works(os_only)


def test_oom_kill_of_children_is_reported_as_memory_limit(os_only: Sandbox) -> None:
    """The run's cgroup killed its processes: the run is MemoryLimitExceeded, whoever waits.

    A small parent that waits for its big children: the OOM killer takes the
    children that do not fit, the parent waits for the rest until the wall clock.
    """
    kwargs = {"children": 3, "mb": 45, "parent_mb": 0, "hold_s": 60}
    outcome = run(os_only, "memory_children", kwargs, memory_mb=64, timeout_s=3)
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.type == "MemoryLimitExceeded", outcome.error
    check_next_run_works(os_only)


@pytest.mark.parametrize("folder", ["/dev/shm", "/tmp", "/tmp/run"])
def test_filling_a_tmpfs_stops_at_its_size(small_tmpfs: Sandbox, folder: str) -> None:
    size = small_tmpfs.config.tmpfs_mb * 1024 * 1024
    outcome = run(
        small_tmpfs, "fill_tmpfs", {"folder": folder, "files": 0, "chunk_kb": 256}, memory_mb=64
    )
    assert outcome.ok, outcome.error
    assert outcome.result["error"] == ["OSError", 28]  # ENOSPC
    assert 0 < outcome.result["written"] <= size
    check_next_run_works(small_tmpfs)


def test_many_small_files_are_bounded(small_tmpfs: Sandbox) -> None:
    size = small_tmpfs.config.tmpfs_mb * 1024 * 1024
    kwargs = {"folder": "/tmp/run/many", "files": 100_000, "chunk_kb": 1}
    outcome = run(small_tmpfs, "fill_tmpfs", kwargs, memory_mb=64)
    assert outcome.ok, outcome.error
    assert outcome.result["error"] == ["OSError", 28]
    assert outcome.result["files"] * 4096 <= size


def test_many_empty_files_are_bounded(small_tmpfs: Sandbox) -> None:
    marker = f"procreg-many-{uuid.uuid4().hex}"
    kwargs = {"folder": f"/dev/shm/{marker}", "files": 2_000_000, "chunk_kb": 0}
    outcome = run(small_tmpfs, "fill_tmpfs", kwargs, memory_mb=64, timeout_s=4)
    if outcome.ok:
        assert outcome.result["error"] is not None and outcome.result["error"][1] in (12, 28)
    else:
        assert outcome.error is not None
        assert outcome.error.type in {"MemoryLimitExceeded", "Timeout"}, outcome.error
    assert host_entries(marker) == []
    check_next_run_works(small_tmpfs)


# --------------------------------------------------------------------------- 8. fork bomb


def test_fork_bomb_with_the_os_layers_only(os_only: Sandbox) -> None:
    outcome = run(os_only, "fork_bomb", timeout_s=5)
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.type in {"ProcessLimitExceeded", "Timeout"}, outcome.error
    check_next_run_works(os_only)
    check_next_run_works(os_only, warm=False)


# --------------------------------------------------------------------------- 9. host trusts nothing


def test_deeply_nested_result_is_not_serializable(box: Sandbox) -> None:
    outcome = run(box, "deep_result", {"depth": 100_000})
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.type == "ResultNotSerializable", outcome.error
    check_next_run_works(box)


def test_deeply_nested_raw_frame_is_malformed(box: Sandbox) -> None:
    outcome = run(box, "deep_raw_result", {"depth": 100_000})
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.type == "MalformedResult", outcome.error
    check_next_run_works(box)


def test_wide_raw_result_costs_the_host_bounded_time_and_memory(os_only: Sandbox) -> None:
    """2 million empty lists (6 MB, under the 16 MB result cap) cost the sandbox nothing.

    The host must not pay for them with seconds of CPU and hundreds of MB: the
    frame is refused on a count of its brackets, before anything is decoded, and
    the host process's peak memory grows by less than 200 MB.
    """
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = run(os_only, "wide_raw_result", {"n": 2_000_000}, timeout_s=3)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert outcome.error is not None and outcome.error.type == "MalformedResult", outcome
    assert "lists and objects" in outcome.error.message
    assert grown_mb < 200, f"the host's peak memory grew {grown_mb:.0f} MB"
    check_next_run_works(os_only)


@pytest.mark.parametrize("value", ["NaN", "-Infinity", "1e999", "[1, -1e999]", "9" * 5000])
def test_raw_result_the_worker_would_refuse_is_refused(os_only: Sandbox, value: str) -> None:
    """The host accepts only what the worker's own encoder could have sent (no NaN, no inf)."""
    outcome = run(os_only, "nan_raw_result", {"value": value})
    assert not outcome.ok, f"the host accepted {value[:20]!r} as {outcome.result!r}"
    assert outcome.error is not None
    assert outcome.error.type in {"MalformedResult", "ResultNotSerializable"}, outcome.error
    check_next_run_works(os_only)


@pytest.mark.parametrize("then", ["raise", "return"])
def test_forged_frames_never_become_the_outcome(box: Sandbox, then: str) -> None:
    outcome = run(box, "forge_frames", {"then": then})
    assert outcome.result != "forged"
    assert not outcome.ok and outcome.error is not None
    assert outcome.error.type == "MalformedResult", outcome.error
    if then == "raise":  # its message lists pid 1's descriptors: none could be opened
        assert "forging into" in outcome.stderr
        assert "'written'" not in outcome.stderr
    check_next_run_works(box)


def test_forged_pid1_descriptors_are_refused(os_only: Sandbox) -> None:
    src = (
        (HOSTILE / "forge_frames.py")
        .read_text()
        .replace(
            '    wrote = []\n    for name in os.listdir("/proc/self/fd"):',
            "    wrote = []\n    for name in []:",
        )
    )
    outcome = run(os_only, "forge_frames", {"then": "return"}, files={"main.py": src})
    assert outcome.ok, outcome.error  # only pid 1's descriptors were tried: its own result
    assert outcome.result["wrote"] == []
    assert outcome.result["pid1"]["listing"] == "PermissionError"
    assert set(outcome.result["pid1"].values()) == {"PermissionError"}, outcome.result
    check_next_run_works(os_only)


def test_killing_pid1_the_parent_and_the_host(
    box: Sandbox, host_process: tuple[subprocess.Popen[bytes], str]
) -> None:
    proc, _ = host_process
    outcome = run(box, "kill_init", {"host_pid": proc.pid})
    assert outcome.ok, outcome.error
    found = outcome.result
    if box.audit_hook:
        assert {found[k] for k in ("init", "parent", "host", "all")} == {"SandboxViolation"}
    else:
        assert found["init"] == "sent" and found["parent"] == "sent"  # ignored by init
        assert found["init_alive"] is True and found["ppid"] == 1
        assert found["host"] == "ProcessLookupError"  # no such pid in its namespace
        assert found["all"] in {"ProcessLookupError", "sent"}
    assert proc.poll() is None  # the host process lives on
    os.kill(os.getpid(), 0)
    check_next_run_works(box)


EPERM, EAFNOSUPPORT = 1, 97
KERNEL_CALLS = [
    "ptrace_attach_1",
    "ptrace_traceme",
    "process_vm_readv",
    "unshare_user",
    "unshare_mount",
    "unshare_net",
    "mount_tmpfs",
    "mount_bind_root",
    "chroot",
    "keyctl",
    "bpf",
    "perf_event_open",
    "setns",
    "io_uring_setup",
    "pidfd_getfd",
    "init_module",
]


def check_kernel_calls(found: dict[str, int]) -> None:
    for call in KERNEL_CALLS:
        assert found[call] == EPERM, (call, found[call])
    for family in ("AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"):
        assert found[family] == EAFNOSUPPORT, (family, found[family])
    assert 61000 <= found["uid"] < 65534  # an unprivileged uid, not root


def test_ptrace_unshare_mount_via_ctypes(box: Sandbox) -> None:
    outcome = run(box, "ptrace_ctypes")
    if box.audit_hook:
        assert not outcome.ok and outcome.error is not None
        assert outcome.error.type == "SandboxViolation", outcome.error
    else:
        assert outcome.ok, outcome.error
        check_kernel_calls(outcome.result)
    check_next_run_works(box)


@pytest.mark.parametrize("abi", ["i386", "x32"])
def test_other_abi_system_calls_are_killed(os_only: Sandbox, abi: str) -> None:
    """A filter that checks x86_64 numbers only would let int 0x80 or x32 calls through."""
    outcome = run(os_only, "compat_syscalls", {"abi": abi})
    assert not outcome.ok, f"{abi} system calls got through: {outcome.result}"
    assert outcome.error is not None
    assert outcome.error.type in {"SandboxViolation", "Crashed"}, outcome.error
    check_next_run_works(os_only)


def payload_files() -> dict[str, str]:
    payload = (HOSTILE / "ptrace_ctypes.py").read_text()
    payload += "\nimport json\nprint(json.dumps(main()))\n"
    return hostile("payload_runner", **{"payload.txt": payload})


def test_payload_in_a_data_file_run_by_a_child(box: Sandbox) -> None:
    outcome = run(
        box, "payload_runner", {"payload": "payload.txt"}, files=payload_files(), timeout_s=10
    )
    if box.audit_hook:
        assert not outcome.ok and outcome.error is not None
        assert outcome.error.type == "ProcessLimitExceeded", outcome.error
    else:
        assert outcome.ok, outcome.error
        assert outcome.result["returncode"] == 0, outcome.result["stderr"]
        check_kernel_calls(json.loads(outcome.result["stdout"]))
    check_next_run_works(box)


# --------------------------------------------------------------------------- 11. uid slots


def test_misbehaving_runs_in_every_uid_slot_do_not_stall_the_next() -> None:
    config = SandboxSection(uids=3, uid_wait_s=20)
    with Sandbox(config, pool_size=0, audit_hook=False) as box:
        bad: list[tuple[str, dict[str, Any], float]] = [
            ("deep_raw_result", {"depth": 100_000}, 5),
            ("crash_exit", {}, 5),
            ("forge_frames", {"then": "raise"}, 5),
            ("infinite_loop", {}, 0.5),
            ("deep_result", {"depth": 100_000}, 5),
            ("wide_raw_result", {"n": 10_000}, 5),
        ]
        outcomes: dict[str, RunOutcome] = {}
        errors: list[BaseException] = []

        def go(name: str, kwargs: dict[str, Any], timeout_s: float) -> None:
            try:
                outcomes[name] = run(box, name, kwargs, timeout_s=timeout_s, warm=False)
            except BaseException as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=go, args=item) for item in bad]
        for thread in threads:
            thread.start()
        wait_for(
            lambda: len(box.slots.held) == 3 or len(outcomes) == len(bad),
            "the misbehaving runs to take every slot",
            timeout=20,
        )
        normal: dict[str, RunOutcome] = {}

        def normal_run() -> None:
            normal["outcome"] = box.run(
                RunRequest(files={"main.py": NORMAL}, kwargs={"text": "abc"}), warm=False
            )

        runner = threading.Thread(target=normal_run)
        runner.start()
        runner.join(timeout=15)  # well before uid_wait_s (20 s)
        assert not runner.is_alive(), "the normal run stalled behind misbehaving runs"
        assert normal["outcome"].ok and normal["outcome"].result == "cba"
        for thread in threads:
            thread.join(timeout=20)
        assert not errors, errors
        assert outcomes["crash_exit"].error is not None
        assert outcomes["crash_exit"].error.type == "Crashed"
        assert outcomes["infinite_loop"].error is not None
        assert outcomes["infinite_loop"].error.type == "Timeout"
        assert outcomes["deep_raw_result"].error is not None
        assert outcomes["deep_raw_result"].error.type == "MalformedResult"
        assert outcomes["forge_frames"].error is not None
        assert outcomes["forge_frames"].error.type == "MalformedResult"
        wait_for(lambda: not box.slots.held, "every uid slot to be given back", timeout=20)
        check_next_run_works(box, warm=False)


def test_results_slow_to_decode_in_every_uid_slot_do_not_stall_the_next() -> None:
    """Each run's uid is held until the host has decoded its result: cheap results only.

    Three runs (every slot) send 2 million empty lists each (6 MB); a normal run
    (well under a second on its own) must still get a slot and finish within 10 s,
    well before ``uid_wait_s``.
    """
    config = SandboxSection(uids=3, uid_wait_s=20)
    with Sandbox(config, pool_size=0, audit_hook=False) as box:
        done: list[RunOutcome] = []

        def wide() -> None:
            done.append(run(box, "wide_raw_result", {"n": 2_000_000}, timeout_s=3, warm=False))

        threads = [threading.Thread(target=wide) for _ in range(3)]
        for thread in threads:
            thread.start()
        normal: dict[str, RunOutcome] = {}

        def normal_run() -> None:
            normal["outcome"] = box.run(
                RunRequest(files={"main.py": NORMAL}, kwargs={"text": "abc"}), warm=False
            )

        runner = threading.Thread(target=normal_run)
        try:
            wait_for(
                lambda: len(box.slots.held) == 3 or len(done) == 3,
                "the wide runs to take every slot",
                timeout=20,
            )
            started = time.monotonic()
            runner.start()
            runner.join(timeout=10)  # well before uid_wait_s (20 s)
            waited = time.monotonic() - started
            assert not runner.is_alive(), (
                f"the normal run stalled {waited:.1f} s behind runs whose results the host decodes"
            )
            assert normal["outcome"].ok and normal["outcome"].result == "cba"
        finally:
            for thread in [*threads, runner]:
                if thread.ident is not None:
                    thread.join(timeout=60)
        wait_for(lambda: not box.slots.held, "every uid slot to be given back", timeout=20)
