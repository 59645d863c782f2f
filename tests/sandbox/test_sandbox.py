"""The sandbox layer, with real processes: results, limits and hostile procedures.

Each hostile procedure in ``tests/sandbox/hostile/`` runs directly through the sandbox
(validation skipped), warm and cold; it must end within its limits with the
right failure class, leave the test process and the next run unharmed, and
leave no scratch folder and no process of its uid behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from registry import sandbox as sb
from registry.config import SandboxSection
from registry.errors import ExecutionError
from registry.sandbox import RunRequest, Sandbox
from registry.sandbox.slots import UID_BASE
from tests.helpers import hostile, wait_for

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="uid drop and the uid sweep need root")


def uid_processes(uid: int) -> list[int]:
    """Pids (zombies included) whose real uid is ``uid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) == uid:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def scratch_dir():
    """A host folder that must stay empty: nothing of a run is written on the host."""
    path = Path(tempfile.mkdtemp(prefix="procreg-sbtest-"))
    yield path
    leftovers = list(path.iterdir())
    shutil.rmtree(path)
    assert leftovers == [], f"files left behind: {leftovers}"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(pool_size=2) as box:
        yield box


@pytest.fixture(scope="module")
def bare_sandbox():
    """Only the OS layers: the audit hook is off."""
    with Sandbox(pool_size=1, audit_hook=False) as box:
        yield box


@pytest.fixture(params=["warm", "cold"])
def warm(request) -> bool:
    return request.param == "warm"


NOOP = {"main.py": "def main():\n    return 'ok'\n"}


def assert_healthy(box: Sandbox, warm: bool, scratch_dir: Path) -> None:
    """The next run works and nothing of the previous one is left."""
    outcome = box.run(RunRequest(files=NOOP), warm=warm)
    assert outcome.ok, outcome
    assert outcome.result == "ok"
    assert list(scratch_dir.iterdir()) == []


# --------------------------------------------------------------------------- ordinary runs


def test_noop_returns_result_with_duration_and_usage(sandbox, warm):
    outcome = sandbox.run(RunRequest(files=NOOP), warm=warm)
    assert outcome.ok
    assert outcome.result == "ok"
    assert outcome.error is None
    assert outcome.duration_ms > 0
    assert outcome.usage is not None and outcome.usage.max_rss_kb > 0


def test_arguments_helpers_and_output_are_passed_through(sandbox, warm):
    files = {
        "main.py": (
            "import sys\nfrom helpers.text import shout\n"
            "def main(name, times=1):\n"
            "    print('to stdout')\n"
            "    print('to stderr', file=sys.stderr)\n"
            "    return {'greeting': shout(name) * times, 'data': open('data.txt').read()}\n"
        ),
        "helpers/__init__.py": "",
        "helpers/text.py": "def shout(s):\n    return s.upper() + '!'\n",
        "data.txt": "bundled",
    }
    outcome = sandbox.run(RunRequest(files=files, kwargs={"name": "hi", "times": 2}), warm=warm)
    assert outcome.ok, outcome
    assert outcome.result == {"greeting": "HI!HI!", "data": "bundled"}
    assert outcome.stdout == "to stdout\n"
    assert outcome.stderr == "to stderr\n"
    assert not outcome.stdout_truncated and not outcome.stderr_truncated


def test_async_entry_point_is_awaited(sandbox):
    files = {
        "main.py": (
            "import asyncio\nasync def main(x):\n    await asyncio.sleep(0)\n    return x * 2\n"
        )
    }
    outcome = sandbox.run(RunRequest(files=files, kwargs={"x": 21}))
    assert outcome.ok, outcome
    assert outcome.result == 42


@pytest.mark.parametrize(
    ("files", "kwargs", "kind", "fragment"),
    [
        ({"main.py": "def main(a):\n    return a\n"}, {"b": 1}, "ArgumentError", "'b'"),
        ({"main.py": "def main(:\n"}, {}, "InvalidProcedure", "line 1"),
        ({"main.py": "def run():\n    pass\n"}, {}, "InvalidProcedure", "'main'"),
        ({"helper.py": ""}, {}, "InvalidProcedure", "no main.py"),
        ({"main.py": "", "../escape.py": ""}, {}, "InvalidProcedure", "escape"),
        ({"main.py": "def main():\n    return float('nan')\n"}, {}, "ResultNotSerializable", ""),
        ({"main.py": "def main():\n    return object()\n"}, {}, "ResultNotSerializable", "object"),
        (
            {"main.py": "def main():\n    raise ValueError('bad input: 3')\n"},
            {},
            "ValueError",
            "bad input: 3",
        ),
        (
            {"main.py": "def main():\n    return [1 for _ in range(1)][5]\n"},
            {},
            "IndexError",
            "out of range",
        ),
        ({"main.py": "import sys\ndef main():\n    sys.exit(3)\n"}, {}, "SystemExit", "3"),
        (
            {"main.py": "import os\ndef main():\n    os._exit(0)\n"},
            {},
            "Crashed",
            "without a result",
        ),
    ],
)
def test_procedure_failures_have_stable_classes(sandbox, files, kwargs, kind, fragment):
    outcome = sandbox.run(RunRequest(files=files, kwargs=kwargs))
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.type == kind, outcome
    assert fragment in outcome.error.message
    assert "\n" not in outcome.error.message


def test_exception_traceback_goes_to_captured_stderr(sandbox):
    files = {"main.py": "def main():\n    raise KeyError('missing')\n"}
    outcome = sandbox.run(RunRequest(files=files))
    assert outcome.error is not None and outcome.error.type == "KeyError"
    assert "main.py" in outcome.stderr and "KeyError" in outcome.stderr


def test_failure_types_are_documented():
    for kind in (
        "Timeout",
        "CpuLimitExceeded",
        "MemoryLimitExceeded",
        "OutputLimitExceeded",
        "ProcessLimitExceeded",
        "SandboxViolation",
        "Crashed",
        "ArgumentError",
        "ResultNotSerializable",
        "InvalidProcedure",
    ):
        assert kind in sb.FAILURE_TYPES


def test_concurrent_runs_are_isolated(sandbox):
    from concurrent.futures import ThreadPoolExecutor

    files = {
        "main.py": "import os\ndef main(i):\n    open(f'mark-{i}', 'w').write('x')\n"
        "    return [i, os.getuid(), sorted(os.listdir('.'))]\n"
    }
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(
            pool.map(lambda i: sandbox.run(RunRequest(files=files, kwargs={"i": i})), range(8))
        )
    assert [o.result[0] for o in outcomes] == list(range(8))
    # each run sees its own scratch folder only: its own mark (modules come from memory)
    assert [o.result[2] for o in outcomes] == [[f"mark-{i}"] for i in range(8)]


# --------------------------------------------------------------------------- hostile procedures


def test_infinite_loop_times_out(sandbox, warm, scratch_dir):
    started = time.monotonic()
    outcome = sandbox.run(RunRequest(files=hostile("infinite_loop"), timeout_s=1.0), warm=warm)
    assert outcome.error is not None and outcome.error.type == "Timeout"
    assert "1 s wall-clock" in outcome.error.message
    assert time.monotonic() - started < 10
    assert_healthy(sandbox, warm, scratch_dir)


def test_cpu_burner_hits_cpu_limit(sandbox, warm, scratch_dir):
    outcome = sandbox.run(
        RunRequest(files=hostile("cpu_burner"), timeout_s=20.0, cpu_s=1), warm=warm
    )
    assert outcome.error is not None and outcome.error.type == "CpuLimitExceeded", outcome
    assert_healthy(sandbox, warm, scratch_dir)


def test_memory_bomb_hits_memory_limit(sandbox, warm, scratch_dir):
    outcome = sandbox.run(
        RunRequest(files=hostile("memory_bomb"), memory_mb=128, timeout_s=10), warm=warm
    )
    assert outcome.error is not None and outcome.error.type == "MemoryLimitExceeded", outcome
    assert "128 MB" in outcome.error.message
    assert_healthy(sandbox, warm, scratch_dir)


@pytest.mark.parametrize("name", ["fork_bomb", "subprocess_bomb"])
def test_fork_bombs_are_refused(sandbox, warm, scratch_dir, name):
    outcome = sandbox.run(RunRequest(files=hostile(name), timeout_s=5), warm=warm)
    assert outcome.error is not None and outcome.error.type == "ProcessLimitExceeded", outcome
    assert_healthy(sandbox, warm, scratch_dir)


@pytest.mark.parametrize("name", ["deep_recursion", "deep_recursion_unlimited"])
def test_deep_recursion_is_a_recursion_error(sandbox, warm, scratch_dir, name):
    outcome = sandbox.run(RunRequest(files=hostile(name), timeout_s=5), warm=warm)
    assert outcome.error is not None and outcome.error.type == "RecursionError", outcome
    assert_healthy(sandbox, warm, scratch_dir)


def test_huge_output_is_cut_short(sandbox, warm, scratch_dir):
    started = time.monotonic()
    outcome = sandbox.run(
        RunRequest(files=hostile("huge_output"), timeout_s=30, max_output_bytes=4096), warm=warm
    )
    assert outcome.error is not None and outcome.error.type == "OutputLimitExceeded", outcome
    assert outcome.stdout_truncated
    assert len(outcome.stdout) == 4096
    assert time.monotonic() - started < 20  # far from the time 1 GiB would take
    assert_healthy(sandbox, warm, scratch_dir)


def test_moderate_output_is_truncated_and_flagged(sandbox, warm):
    outcome = sandbox.run(RunRequest(files=hostile("chatty"), max_output_bytes=1000), warm=warm)
    assert outcome.ok, outcome
    assert outcome.result == "done"
    assert outcome.stdout_truncated and outcome.stderr_truncated
    assert outcome.stdout == "o" * 1000 and outcome.stderr == "e" * 1000


@pytest.mark.parametrize("where", ["tmp", "etc"])
def test_writes_outside_scratch_are_refused(sandbox, warm, scratch_dir, where):
    base = Path(tempfile.gettempdir()) if where == "tmp" else Path("/etc")
    target = base / f"procreg-pwned-{uuid.uuid4().hex}"
    try:
        outcome = sandbox.run(
            RunRequest(files=hostile("write_outside"), kwargs={"path": str(target)}), warm=warm
        )
        assert outcome.error is not None and outcome.error.type == "SandboxViolation", outcome
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)
    assert_healthy(sandbox, warm, scratch_dir)


def test_host_secrets_are_invisible(sandbox, warm, scratch_dir, monkeypatch):
    monkeypatch.setenv("PROCREG_TEST_SECRET", "hunter2")
    outcome = sandbox.run(RunRequest(files=hostile("read_environment")), warm=warm)
    assert outcome.ok, outcome
    assert "PROCREG_TEST_SECRET" not in outcome.result
    assert "hunter2" not in str(outcome.result)
    assert set(outcome.result) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PYTHONIOENCODING"}

    outcome = sandbox.run(
        RunRequest(files=hostile("read_parent_environ"), kwargs={"host_pid": os.getpid()}),
        warm=warm,
    )
    assert outcome.error is not None and outcome.error.type == "SandboxViolation", outcome
    assert "hunter2" not in outcome.stdout + outcome.stderr + outcome.error.message
    assert_healthy(sandbox, warm, scratch_dir)


def test_network_is_unreachable(sandbox, warm, scratch_dir):
    outcome = sandbox.run(RunRequest(files=hostile("network"), timeout_s=5), warm=warm)
    assert outcome.error is not None and outcome.error.type == "SandboxViolation", outcome
    assert_healthy(sandbox, warm, scratch_dir)


def test_killing_the_parent_fails(sandbox, warm, scratch_dir):
    outcome = sandbox.run(
        RunRequest(files=hostile("kill_parent"), kwargs={"host_pid": os.getpid()}), warm=warm
    )
    assert outcome.error is not None and outcome.error.type == "SandboxViolation", outcome
    assert_healthy(sandbox, warm, scratch_dir)  # the pool, too, still serves runs


def test_background_child_is_refused(sandbox, warm, scratch_dir):
    outcome = sandbox.run(RunRequest(files=hostile("background_child"), timeout_s=5), warm=warm)
    assert outcome.error is not None and outcome.error.type == "ProcessLimitExceeded", outcome
    assert_healthy(sandbox, warm, scratch_dir)


# --------------------------------------------------------------------------- OS layers alone


@needs_root
def test_os_layers_kill_escaped_background_children(bare_sandbox, warm, scratch_dir):
    started = time.monotonic()
    outcome = bare_sandbox.run(
        RunRequest(files=hostile("background_child"), timeout_s=5), warm=warm
    )
    assert outcome.ok, outcome
    uid = outcome.result
    assert uid >= UID_BASE
    # The sleeper died with the sandbox's pid namespace: no process of that uid is left.
    wait_for(lambda: uid_processes(uid) == [], "the run's uid still has processes")
    assert time.monotonic() - started < 5  # nobody waited for the 60 s sleeper
    assert_healthy(bare_sandbox, warm, scratch_dir)


@needs_root
def test_os_layers_stop_a_fork_bomb(bare_sandbox, warm, scratch_dir):
    outcome = bare_sandbox.run(RunRequest(files=hostile("fork_bomb"), timeout_s=10), warm=warm)
    assert outcome.error is not None
    assert outcome.error.type == "ProcessLimitExceeded", outcome
    assert_healthy(bare_sandbox, warm, scratch_dir)


@needs_root
@pytest.mark.parametrize(
    ("name", "kwargs", "kind"),
    [
        # seccomp refuses every socket family but AF_UNIX
        ("network", {}, "SandboxViolation"),
        # the host's pid does not exist in the run's pid namespace; pid 1 ignores SIGKILL
        ("kill_parent", "host", "ProcessLookupError"),
        # its parent is the supervisor, which is not dumpable: its /proc files are closed
        ("read_parent_environ", "host", "SandboxViolation"),
        # the sandbox's root is read-only, and holds no /etc at all
        ("write_outside", {"path": "/usr/procreg-pwned"}, "SandboxViolation"),
        ("write_outside", {"path": "/etc/procreg-pwned"}, "FileNotFoundError"),
    ],
)
def test_os_layers_alone_refuse(bare_sandbox, warm, scratch_dir, name, kwargs, kind):
    if kwargs == "host":
        kwargs = {"host_pid": os.getpid()}
    outcome = bare_sandbox.run(
        RunRequest(files=hostile(name), kwargs=kwargs, timeout_s=5), warm=warm
    )
    assert outcome.error is not None and outcome.error.type == kind, outcome
    assert not Path("/etc/procreg-pwned").exists()
    assert not Path("/usr/procreg-pwned").exists()
    assert_healthy(bare_sandbox, warm, scratch_dir)


# --------------------------------------------------------------------------- pool and layers


def test_a_sandbox_never_serves_two_runs(sandbox):
    files = {
        "main.py": "import os\nSEEN = []\ndef main():\n    SEEN.append(1)\n"
        "    return [os.getpid(), os.getppid(), len(SEEN)]\n"
    }
    results = [sandbox.run(RunRequest(files=files)).result for _ in range(4)]
    # a fresh interpreter each time, the second process of a pid namespace of its own
    assert results == [[2, 1, 1]] * 4


def test_pool_recovers_when_a_warm_sandbox_is_killed():
    with Sandbox(pool_size=1) as box:
        assert box.run(RunRequest(files=NOOP)).ok
        assert box.wait_warm(30)
        idle = box._pool.idle[0]
        os.kill(idle.pid, signal.SIGKILL)
        idle.proc.wait()
        outcome = box.run(RunRequest(files=NOOP))
        assert outcome.ok, outcome
        assert box.run(RunRequest(files=NOOP)).ok


def test_pool_size_zero_runs_cold():
    with Sandbox(pool_size=0) as box:
        assert box.run(RunRequest(files=NOOP)).result == "ok"
        pool = next(layer for layer in box.layers() if layer.name == "warm-pool")
        assert not pool.active


def test_layers_report_what_is_in_force(sandbox):
    layers = {layer.name: layer for layer in sandbox.layers()}
    for name in (
        "isolation-engine",
        "mnt-namespace",
        "pid-namespace",
        "ipc-namespace",
        "uts-namespace",
        "net-namespace",
        "user-namespace",
        "seccomp",
        "capabilities",
        "tmpfs",
        "rlimits",
        "clean-environment",
        "audit-hook",
        "warm-pool",
        "network-allowlist",
    ):
        assert layers[name].active, layers[name]
    assert layers["uid-drop"].active == ROOT
    assert layers["cgroup"].active == ROOT  # this machine lets root make cgroups
    assert "not a boundary" in layers["audit-hook"].detail  # said plainly
    assert all(layer.detail for layer in layers.values())


def test_layers_say_when_the_audit_hook_is_off(bare_sandbox):
    hook = next(layer for layer in bare_sandbox.layers() if layer.name == "audit-hook")
    assert not hook.active
    assert "audit_hook=False" in hook.detail


def test_closed_sandbox_leaves_no_sandbox_running():
    box = Sandbox(pool_size=2)
    assert box.run(RunRequest(files=NOOP)).ok
    assert box.wait_warm(30)
    waiting = list(box._pool.idle)
    box.close()
    assert waiting and all(not instance.alive() for instance in waiting)
    assert box.slots.held == set()  # every uid given back
    with pytest.raises(ExecutionError):
        box.run(RunRequest(files=NOOP))


def test_arguments_that_are_not_json_are_refused(sandbox):
    for kwargs in ({"x": float("nan")}, {"x": object()}):
        outcome = sandbox.run(RunRequest(files=NOOP, kwargs=kwargs))
        assert outcome.error is not None and outcome.error.type == "ArgumentError", outcome


def test_scratch_folder_is_private_to_each_run(sandbox, warm, scratch_dir):
    files = {
        "main.py": "import os\ndef main(mark):\n    before = sorted(os.listdir('.'))\n"
        "    open(mark, 'w').write('x')\n    return [os.getcwd(), before]\n"
    }
    first = sandbox.run(RunRequest(files=files, kwargs={"mark": "first.txt"}), warm=warm)
    second = sandbox.run(RunRequest(files=files, kwargs={"mark": "second.txt"}), warm=warm)
    assert first.ok and second.ok, (first, second)
    assert first.result[0] == second.result[0] == "/tmp/run"
    assert second.result[1] == []  # nothing of the first run: its tmpfs is gone
    assert not Path("/tmp/run").exists()  # and nothing was ever written on the host


def test_modules_import_from_memory_like_files(sandbox, warm):
    files = {
        "main.py": (
            "import inspect, os\nfrom pkg.mod import f\n"
            "def main():\n"
            "    here = os.path.dirname(__file__) == os.getcwd()\n"
            "    return [f(), inspect.getsource(f).strip(), here, open('notes.txt').read()]\n"
        ),
        "pkg/mod.py": "def f():\n    return 'namespace'\n",
        "notes.txt": "data files are on disk",
    }
    outcome = sandbox.run(RunRequest(files=files), warm=warm)
    assert outcome.ok, outcome
    assert outcome.result == [
        "namespace",
        "def f():\n    return 'namespace'",
        True,
        "data files are on disk",
    ]

    files = {"main.py": "def main():\n    raise KeyError('missing')\n"}
    outcome = sandbox.run(RunRequest(files=files), warm=warm)
    assert "raise KeyError('missing')" in outcome.stderr  # the source line, read from memory


@needs_root
def test_uids_go_back_when_runs_end(sandbox):
    """No hoarding: once runs are over, only the warm sandboxes hold a uid."""
    files = {"main.py": "import os\ndef main():\n    return os.getuid()\n"}
    uids = {sandbox.run(RunRequest(files=files)).result for _ in range(50)}
    assert all(uid >= UID_BASE for uid in uids)
    wait_for(
        lambda: len(sandbox.slots.held) <= sandbox.pool_size,
        f"uids still held after the runs: {sandbox.slots.held}",
    )


def test_limits_never_exceed_the_configured_ceilings():
    config = SandboxSection(max_timeout_s=1, max_memory_mb=64, pool_size=0)
    files = {
        "main.py": "import resource\ndef main():\n"
        "    return resource.getrlimit(resource.RLIMIT_AS)[0] // (1024 * 1024)\n"
    }
    with Sandbox(config) as box:
        outcome = box.run(RunRequest(files=files, timeout_s=60, memory_mb=4096))
        assert outcome.ok, outcome
        assert outcome.result == 64  # asked for 4096 MB, got the ceiling
        slow = box.run(RunRequest(files=hostile("infinite_loop"), timeout_s=60))
        assert slow.error is not None and slow.error.type == "Timeout", slow
        assert "1 s wall-clock" in slow.error.message


def test_outcomes_name_the_isolation_engine(sandbox):
    assert sandbox.run(RunRequest(files=NOOP)).isolation == "bubblewrap"


def test_missing_bubblewrap_fails_closed_unless_configured(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # a machine without bubblewrap
    with Sandbox(pool_size=1) as box, pytest.raises(ExecutionError, match="fail closed"):
        box.run(RunRequest(files=NOOP))  # warm or cold: nothing runs without the engine
    layers = sb.probe_layers()
    assert [(lay.name, lay.active) for lay in layers] == [("isolation-engine", False)]
    assert "require_isolation = false" in layers[0].detail
    config = SandboxSection(require_isolation=False, pool_size=0)
    with Sandbox(config) as box:
        outcome = box.run(RunRequest(files=NOOP))
        assert outcome.ok, outcome
        assert outcome.isolation == "none"
        engine_layer = next(lay for lay in box.layers() if lay.name == "isolation-engine")
        assert not engine_layer.active and "NONE" in engine_layer.detail


@needs_root
def test_run_cgroups_of_a_dead_host_are_removed():
    from registry.sandbox import cgroup

    root = cgroup.detect()
    if not root.usable:
        assert os.environ.get("CI") != "true", f"no cgroup layer in CI: {root.problem}"
        pytest.skip(root.problem)
    assert root.memory is not None
    stale = root.memory / "procreg-run-999999999-7"  # no such pid can exist
    stale.mkdir()
    with Sandbox(pool_size=0) as box:
        assert box.run(RunRequest(files=NOOP), warm=False).ok
    assert not stale.exists()
