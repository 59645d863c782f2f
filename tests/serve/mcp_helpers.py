"""Shared for the MCP tests: a registry of this repo's own procedures, released, and clients."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, redirect_stdout
from io import StringIO
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
from mcp import ClientSession, StdioServerParameters, stdio_client

from registry.cli import main
from registry.core.model import Example, Limits, Parameter
from tests.helpers import REPO_ROOT, git, stop, write_proc

OWN = REPO_ROOT / "procedures"
CLIENT = types.Implementation(name="pytest-client", version="1.0")
WAIT_S = 30.0


def procreg(*args: str) -> str:
    """Run the CLI in-process; fail the test on a non-zero exit."""
    out = StringIO()
    with redirect_stdout(out):
        code = main(list(args))
    assert code == 0, f"procreg {' '.join(args)} exited {code}: {out.getvalue()}"
    return out.getvalue()


def build_registry(root: Path) -> Path:
    """A registry holding this repo's procedures plus a failing and a slow one, all released."""
    repo = root / "reg"
    procreg("init", str(repo))
    for folder in sorted(OWN.iterdir()):
        shutil.copytree(folder, repo / "procedures" / folder.name)
    write_proc(repo, "boom", body='raise ValueError("it went boom")')
    write_proc(
        repo,
        "sleepy",
        body="while True:\n        pass",
        limits=Limits(timeout_s=1.0),
        examples=[],
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: procedures")
    procreg("-C", str(repo), "release", "--skip-examples")
    # one procedure committed but never released: it must not be served
    write_proc(
        repo,
        "draft",
        parameters=[Parameter(name="text", type="string")],
        examples=[Example(input={"text": "a"}, output="a")],
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: draft")
    return repo


def server_env() -> dict[str, str]:
    keep = ("HOME", "PATH", "GIT_CONFIG_NOSYSTEM", "LANG", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.startswith("GIT_")})
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(repo: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``procreg serve`` on a free loopback port until the block ends; yields its base URL."""
    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry", "-C", str(repo), "serve", "--port", str(port)],
        env=server_env() | (env or {}),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S * 2
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx2.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline, "procreg serve did not start"
            time.sleep(0.1)
        yield base
    finally:
        stop(proc, signal.SIGTERM)
        out.close()
    assert "Traceback" not in log.read_text()


class Inbox:
    """Server notifications a client received, with a way to wait for one."""

    def __init__(self) -> None:
        self.list_changed = 0
        self._event = anyio.Event()

    async def __call__(self, message: object) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.list_changed += 1
            self._event.set()

    async def wait_list_changed(self, seen: int) -> None:
        with anyio.fail_after(WAIT_S):
            while self.list_changed <= seen:
                await self._event.wait()
                self._event = anyio.Event()


@asynccontextmanager
async def stdio_session(repo: Path, *extra: str) -> AsyncIterator[tuple[ClientSession, Inbox]]:
    """``python -m registry -C REPO mcp``, and an initialized SDK client session on it."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "registry", "-C", str(repo), *extra, "mcp"],
        env=server_env(),
    )
    inbox = Inbox()
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, client_info=CLIENT, message_handler=inbox) as session,
    ):
        with anyio.fail_after(WAIT_S * 2):
            await session.initialize()
        yield session, inbox
