"""SIGTERM stops ``procreg watch``, ``serve`` and ``mcp`` as Ctrl-C does: cleanly, with exit 0.

Each is a real process on a registry made with ``procreg init``; the test waits
for it to be ready (a line it prints, or the answer to ``initialize``), never
for a fixed time, then signals it. SIGTERM must also work when the process was
started with SIGINT ignored (``nohup``, some service managers).
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry.api import Registry
from tests.helpers import git, write_proc
from tests.serve.mcp_helpers import procreg, server_env

WAIT_S = 30.0
TOKEN = "signal-test-token-123"
SERVE_CONFIG = """
[[serve.tokens]]
name = "agent"
env = "PROCREG_TEST_SIGNAL_TOKEN"
rights = ["read", "run"]
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with ``echo`` released, and a token for ``procreg serve``."""
    root = tmp_path_factory.mktemp("signals") / "reg"
    procreg("init", str(root))
    write_proc(root, "echo", description="say it back")
    (root / "procreg.toml").write_text((root / "procreg.toml").read_text() + SERVE_CONFIG)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "feat: echo")
    procreg("-C", str(root), "release", "--skip-examples")
    return root


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Procreg:
    """``python -m registry ARGS`` with stdout and stderr read line by line as they come."""

    def __init__(self, repo: Path, args: list[str], *, ignore_sigint: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "registry", "-C", str(repo), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=server_env() | {"PROCREG_TEST_SIGNAL_TOKEN": TOKEN},
            preexec_fn=_ignore_sigint if ignore_sigint else None,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, ready: Callable[[str], bool], what: str) -> str:
        """The first line (from now on) for which ``ready`` holds; fails after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"not ready within {WAIT_S} s ({what}): {self.seen}") from None
            if line is None:
                raise AssertionError(f"exited {self.proc.wait()} before {what}: {self.seen}")
            self.seen.append(line)
            if ready(line):
                return line

    def send(self, message: dict[str, object]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def stop(self, sig: signal.Signals) -> tuple[int, list[str]]:
        """Send ``sig``; the exit code (within WAIT_S) and every line printed after it."""
        before = len(self.seen)
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"running {WAIT_S} s after {sig.name}: {self.seen}") from None
        self._reader.join(5)
        while (line := self.lines.get_nowait()) is not None:
            self.seen.append(line)
        return code, self.seen[before:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def started() -> Iterator[Callable[..., Procreg]]:
    procs: list[Procreg] = []

    def start(repo: Path, *args: str, ignore_sigint: bool = False) -> Procreg:
        procs.append(Procreg(repo, list(args), ignore_sigint=ignore_sigint))
        return procs[-1]

    yield start
    for proc in procs:
        proc.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


STOPS = [
    pytest.param(signal.SIGTERM, False, id="SIGTERM"),
    pytest.param(signal.SIGINT, False, id="Ctrl-C"),
    pytest.param(signal.SIGTERM, True, id="SIGTERM-with-SIGINT-ignored"),
]


@pytest.mark.parametrize(("sig", "ignore_sigint"), STOPS)
def test_watch_stops_cleanly(
    repo: Path, started: Callable[..., Procreg], sig: signal.Signals, ignore_sigint: bool
) -> None:
    watch = started(repo, "watch", ignore_sigint=ignore_sigint)
    # the repo is shared: after the first test its index is current, and a start-up sync
    # that changes nothing prints no line
    watch.wait_for(lambda line: line.startswith("watching "), "the start-up line")
    code, after = watch.stop(sig)
    assert code == 0, after
    # the closing line Ctrl-C prints, after at most the sync of the first tick
    assert after[-1] == "stopped", after
    assert all(line.startswith(("synced", "rebuilt")) for line in after[:-1]), after


@pytest.mark.parametrize(("sig", "ignore_sigint"), STOPS)
def test_serve_stops_cleanly(
    repo: Path, started: Callable[..., Procreg], sig: signal.Signals, ignore_sigint: bool
) -> None:
    port = free_port()
    serve = started(repo, "serve", "--port", str(port), ignore_sigint=ignore_sigint)
    serve.wait_for(lambda line: line.startswith("procreg: serving MCP at"), "serving")
    assert accepts(port)
    code, after = serve.stop(sig)
    assert code == 0, after
    assert after == []  # no "Aborted.", no traceback
    assert not accepts(port)


def _initialize(mcp: Procreg) -> None:
    mcp.send(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "signal-test", "version": "1"},
            },
        }
    )
    mcp.wait_for(lambda line: line.startswith('{"jsonrpc":"2.0","id":1,"result"'), "initialize")
    mcp.send({"jsonrpc": "2.0", "method": "notifications/initialized"})


@pytest.mark.parametrize(("sig", "ignore_sigint"), STOPS)
def test_mcp_stdio_stops_cleanly_with_stdin_still_open(
    repo: Path, started: Callable[..., Procreg], sig: signal.Signals, ignore_sigint: bool
) -> None:
    mcp = started(repo, "mcp", ignore_sigint=ignore_sigint)
    _initialize(mcp)
    code, after = mcp.stop(sig)  # stdin stays open: the signal ends it, not an EOF
    assert code == 0, after
    assert after == []


def test_mcp_stdio_keeps_the_run_records_of_a_session_stopped_by_sigterm(
    repo: Path, started: Callable[..., Procreg]
) -> None:
    with Registry.open(repo, auto_sync=False) as reg:
        before = reg.metrics("echo").runs
    mcp = started(repo, "mcp")
    _initialize(mcp)
    mcp.send(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hello"}},
        }
    )
    answer = mcp.wait_for(lambda line: line.startswith('{"jsonrpc":"2.0","id":2'), "the call")
    assert "hello" in answer and '"isError":true' not in answer
    code, after = mcp.stop(signal.SIGTERM)
    assert code == 0 and after == []
    with Registry.open(repo, auto_sync=False) as reg:
        stats = reg.metrics("echo")
    assert stats.runs == before + 1 and stats.callers.get("mcp:signal-test") == 1
