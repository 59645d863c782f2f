"""`procreg serve`: a real server process on a free loopback port, the SDK's HTTP client, tokens."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from registry.api import AsyncRegistry
from tests.helpers import git, write_proc
from tests.serve.mcp_helpers import CLIENT, WAIT_S, Inbox, build_registry, procreg, serving

AGENT = "agent-secret-123"
READER = "reader-secret-456"
LIMITED = "limited-secret-789"

CONFIG = """\
[serve]
max_body_bytes = 100000
max_argument_bytes = 2000
max_concurrent_runs = 2

[[serve.tokens]]
name = "agent"
env = "PROCREG_TEST_AGENT_TOKEN"
rights = ["read", "run", "propose"]

[[serve.tokens]]
name = "reader"
hash_file = "reader.sha256"
rights = ["read"]

[[serve.tokens]]
name = "limited"
env = "PROCREG_TEST_LIMITED_TOKEN"
rights = ["read", "run"]
run_ids = ["slugify"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("http")
    repo = build_registry(root)
    (repo / "procreg.toml").write_text((repo / "procreg.toml").read_text() + "\n" + CONFIG)
    (repo / "reader.sha256").write_text(hashlib.sha256(READER.encode()).hexdigest() + "  -\n")
    env = {"PROCREG_TEST_AGENT_TOKEN": AGENT, "PROCREG_TEST_LIMITED_TOKEN": LIMITED}
    with serving(repo, root / "serve.log", env) as base:
        yield repo, base


@asynccontextmanager
async def http_session(
    base: str, token: str, inbox: Inbox | None = None
) -> AsyncIterator[ClientSession]:
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with (
        client,
        streamable_http_client(f"{base}/mcp", http_client=client) as (read, write),
        ClientSession(read, write, client_info=CLIENT, message_handler=inbox) as session,
    ):
        with anyio.fail_after(WAIT_S):
            await session.initialize()
        yield session


def test_without_a_valid_token_the_answer_is_401_and_bodies_are_bounded(
    server: tuple[Path, str],
) -> None:
    _, base = server
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "curl", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    assert httpx2.post(f"{base}/mcp", json=body, headers=headers).status_code == 401
    wrong = headers | {"Authorization": "Bearer not-a-token"}
    assert httpx2.post(f"{base}/mcp", json=body, headers=wrong).status_code == 401
    # a valid token still has its request bodies bounded
    huge = body | {"padding": "x" * 200_000}
    agent = headers | {"Authorization": f"Bearer {AGENT}"}
    assert httpx2.post(f"{base}/mcp", json=huge, headers=agent).status_code == 413


def test_a_token_with_run_calls_tools_and_is_recorded(server: tuple[Path, str]) -> None:
    repo, base = server

    async def go() -> None:
        async with http_session(base, AGENT) as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert tools["slugify"].input_schema["required"] == ["text"]
            assert "draft" not in tools
            ok = await session.call_tool("slugify", {"text": "Over HTTP"})
            assert not ok.is_error
            assert ok.structured_content == {"result": "over-http"}
            failed = await session.call_tool("boom", {"text": "x"})
            assert failed.is_error
            assert failed.structured_content is not None
            assert failed.structured_content["error"]["type"] == "ValueError"
            big = await session.call_tool("slugify", {"text": "x" * 5000})
            assert big.is_error and "ArgumentsTooLarge" in big.content[0].text  # type: ignore[union-attr]

    anyio.run(go)

    async def callers() -> set[str | None]:
        async with await AsyncRegistry.open(repo, auto_sync=False) as reg:
            return {r.caller for r in await reg.backend.executions("slugify")}

    deadline = time.monotonic() + WAIT_S  # the server delivers its run records in batches
    while "mcp:pytest-client" not in asyncio.run(callers()):
        assert time.monotonic() < deadline, "the run was not recorded"
        time.sleep(0.1)


def test_a_read_only_token_can_list_but_not_run_or_propose(server: tuple[Path, str]) -> None:
    _, base = server

    async def go() -> None:
        async with http_session(base, READER) as session:
            tools = {t.name for t in (await session.list_tools()).tools}
            assert "slugify" in tools
            found = await session.call_tool("search_procedures", {"text": "slug"})
            assert not found.is_error
            denied = await session.call_tool("slugify", {"text": "x"})
            assert denied.is_error
            assert denied.structured_content is not None
            assert denied.structured_content["error"]["type"] == "PermissionDenied"
            assert "'run' right" in denied.structured_content["error"]["message"]
            also = await session.call_tool(
                "run_procedure", {"id": "slugify", "arguments": {"text": "x"}}
            )
            assert also.is_error and "'run' right" in also.content[0].text  # type: ignore[union-attr]
            nope = await session.call_tool(
                "propose_procedure", {"id": "x", "main_py": "", "metadata": {}}
            )
            assert nope.is_error and "'propose' right" in nope.content[0].text  # type: ignore[union-attr]

    anyio.run(go)


def test_run_rights_can_be_limited_to_ids(server: tuple[Path, str]) -> None:
    _, base = server

    async def go() -> None:
        async with http_session(base, LIMITED) as session:
            ok = await session.call_tool("slugify", {"text": "Limited"})
            assert ok.structured_content == {"result": "limited"}
            other = await session.call_tool("semver-compare", {"a": "1.0.0", "b": "1.0.0"})
            assert other.is_error
            assert isinstance(other.content[0], types.TextContent)
            assert "PermissionDenied" in other.content[0].text
            assert "ids slugify" in other.content[0].text

    anyio.run(go)


def test_a_release_reaches_a_connected_http_client(server: tuple[Path, str]) -> None:
    repo, base = server

    async def go() -> None:
        inbox = Inbox()
        async with http_session(base, AGENT, inbox) as session:
            assert "web-echo" not in {t.name for t in (await session.list_tools()).tools}
            write_proc(repo, "web-echo", description="echo over the web")
            git(repo, "add", "procedures/web-echo")
            git(repo, "commit", "-qm", "feat: web-echo")
            await anyio.to_thread.run_sync(
                lambda: procreg("-C", str(repo), "release", "web-echo", "--skip-examples")
            )
            await inbox.wait_list_changed(0)
            assert "web-echo" in {t.name for t in (await session.list_tools()).tools}

    anyio.run(go)
