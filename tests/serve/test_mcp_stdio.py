"""`procreg mcp` as an agent uses it: the SDK's own ClientSession over stdio, a real process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import MCPError

from registry.api import AsyncRegistry
from registry.git.store import GitStore
from tests.helpers import git, write_proc
from tests.serve.mcp_helpers import WAIT_S, build_registry, procreg, stdio_session


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_registry(tmp_path_factory.mktemp("mcp"))


def test_tools_are_released_procedures_with_schemas_from_their_metadata(repo: Path) -> None:
    async def go() -> None:
        async with stdio_session(repo) as (session, _):
            listed = await session.list_tools()
            tools = {t.name: t for t in listed.tools}
            assert {
                "search_procedures",
                "get_procedure",
                "run_procedure",
                "propose_procedure",
            } <= set(tools)
            assert {"slugify", "url-parse", "semver-compare", "boom", "sleepy"} <= set(tools)
            assert "draft" not in tools  # committed, never released

            slugify = tools["slugify"]
            assert slugify.input_schema["required"] == ["text"]
            assert slugify.input_schema["properties"]["max_length"] == {
                "type": "integer",
                "description": "Maximum slug length; 0 means no limit.",
                "default": 0,
            }
            assert slugify.description is not None
            assert slugify.description.startswith("Slugify text: Turn any text")
            assert "Example (Punctuation becomes one separator)" in slugify.description
            assert slugify.output_schema == {
                "type": "object",
                "properties": {
                    "result": {
                        "type": "string",
                        "description": "The slug; empty when the text has no letters or digits.",
                    }
                },
                "required": ["result"],
            }
            assert (slugify.meta or {})["dev.procreg/version"] == "1.0.0"

            compare = tools["semver-compare"]
            assert compare.input_schema["required"] == ["a", "b"]
            assert compare.output_schema is not None
            assert compare.output_schema["properties"]["result"]["type"] == "integer"

            url = tools["url-parse"]
            assert url.output_schema is not None
            assert {"scheme", "host", "port", "query"} <= set(url.output_schema["properties"])

            resources = await session.list_resources()
            uris = {str(r.uri) for r in resources.resources}
            assert "procedure://slugify@1.0.0/main.py" in uris
            source = await session.read_resource("procedure://slugify@1.0.0/main.py")
            assert "def main(" in source.contents[0].text  # type: ignore[union-attr]
            meta = await session.read_resource("procedure://slugify@1.0.0/metadata.json")
            assert json.loads(meta.contents[0].text)["id"] == "slugify"  # type: ignore[union-attr]

    anyio.run(go)


def test_calls_give_structured_results_and_failures_are_tool_errors(repo: Path) -> None:
    async def go() -> None:
        async with stdio_session(repo) as (session, _):
            ok = await session.call_tool("slugify", {"text": "Hello, World!"})
            assert not ok.is_error
            assert ok.structured_content == {"result": "hello-world"}

            parsed = await session.call_tool("url-parse", {"url": "https://Example.COM:8443/a?q=1"})
            assert not parsed.is_error
            assert parsed.structured_content is not None
            assert parsed.structured_content["host"] == "example.com"
            assert parsed.structured_content["port"] == 8443

            bad = await session.call_tool("slugify", {"txt": "x"})
            assert bad.is_error
            assert bad.content[0].text.startswith("ArgumentError: ")  # type: ignore[union-attr]
            assert bad.structured_content is not None
            error = bad.structured_content["error"]
            assert error["type"] == "ArgumentError"
            assert "unknown argument 'txt'" in error["message"]

            wrong = await session.call_tool("slugify", {"text": 3})
            assert wrong.is_error and "ArgumentError" in wrong.content[0].text  # type: ignore[union-attr]

            failed = await session.call_tool("boom", {"text": "x"})
            assert failed.is_error
            assert failed.structured_content is not None
            assert failed.structured_content["error"]["type"] == "ValueError"
            assert "it went boom" in failed.structured_content["error"]["message"]

            slow = await session.call_tool("sleepy", {"text": "x"})
            assert slow.is_error
            assert slow.structured_content is not None
            assert slow.structured_content["error"]["type"] == "Timeout"

            missing = await session.call_tool("no-such-tool", {})
            assert missing.is_error and "NotFoundError" in missing.content[0].text  # type: ignore[union-attr]

            # meta tools
            found = await session.call_tool("search_procedures", {"text": "semver"})
            assert not found.is_error and found.structured_content is not None
            ids = [p["id"] for p in found.structured_content["procedures"]]
            assert "semver-compare" in ids
            query = {"category": "text", "sort": "health", "min_success_rate": 0.5}
            with anyio.fail_after(WAIT_S):  # run records reach the index in batches
                while True:
                    healthy = await session.call_tool("search_procedures", query)
                    assert healthy.structured_content is not None
                    hits = [p["id"] for p in healthy.structured_content["procedures"]]
                    if hits:
                        break
                    await anyio.sleep(0.1)
            assert hits == ["slugify"]  # the only text procedure with recorded runs
            bad_sort = await session.call_tool("search_procedures", {"sort": "random"})
            assert bad_sort.is_error and "UsageError" in bad_sort.content[0].text  # type: ignore[union-attr]
            got = await session.call_tool("get_procedure", {"id": "slugify", "spec": "^1"})
            assert got.structured_content is not None
            assert got.structured_content["procedure"]["version"] == "1.0.0"
            assert "def main(" in got.structured_content["procedure"]["source"]
            assert [v["version"] for v in got.structured_content["versions"]] == ["1.0.0"]
            ran = await session.call_tool(
                "run_procedure",
                {"id": "semver-compare", "spec": "^1", "arguments": {"a": "1.0.0", "b": "2.0.0"}},
            )
            assert not ran.is_error and ran.structured_content == {"result": -1}

    anyio.run(go)

    async def records() -> list[tuple[str, str | None, str | None]]:
        async with await AsyncRegistry.open(repo, auto_sync=False) as reg:
            out = []
            for pid in ("slugify", "url-parse", "boom", "sleepy", "semver-compare"):
                out += [(pid, r.caller, r.error_type) for r in await reg.backend.executions(pid)]
            return out

    runs = asyncio.run(records())
    # every run reached the index with the MCP caller; argument errors are not runs
    assert ("slugify", "mcp:pytest-client", None) in runs
    assert ("url-parse", "mcp:pytest-client", None) in runs
    assert ("boom", "mcp:pytest-client", "ValueError") in runs
    assert ("sleepy", "mcp:pytest-client", "Timeout") in runs
    assert ("semver-compare", "mcp:pytest-client", None) in runs
    assert all(caller == "mcp:pytest-client" for _, caller, _ in runs)
    metrics = json.loads(procreg("-C", str(repo), "metrics", "boom", "--json"))
    assert metrics["runs"] >= 1
    assert metrics["errors"] == {"ValueError": metrics["runs"]}
    assert metrics["callers"] == {"mcp:pytest-client": metrics["runs"]}  # who called, in metrics
    table = procreg("-C", str(repo), "metrics", "slugify")
    assert "mcp:pytest-client x" in table


def test_a_release_made_with_git_while_connected_changes_the_tool_list(repo: Path) -> None:
    async def go() -> None:
        async with stdio_session(repo) as (session, inbox):
            before = {t.name for t in (await session.list_tools()).tools}
            assert "shout" not in before
            seen = inbox.list_changed
            write_proc(repo, "shout", body="return text.upper()", description="Shout it")
            git(repo, "add", "procedures/shout")
            git(repo, "commit", "-qm", "feat: shout")
            await anyio.to_thread.run_sync(
                lambda: procreg("-C", str(repo), "release", "shout", "--skip-examples")
            )
            await inbox.wait_list_changed(seen)
            after = {t.name: t for t in (await session.list_tools()).tools}
            assert "shout" in after
            assert (after["shout"].meta or {})["dev.procreg/version"] == "1.0.0"
            loud = await session.call_tool("shout", {"text": "hey"})
            assert loud.structured_content == {"result": "HEY"}

            # promoting a channel re-pins the tool (and is announced too)
            seen = inbox.list_changed
            write_proc(repo, "shout", body="return text.upper() + '!'", description="Shout it")
            git(repo, "commit", "-qam", "fix: shout louder")
            await anyio.to_thread.run_sync(
                lambda: procreg("-C", str(repo), "release", "shout", "--skip-examples")
            )
            await inbox.wait_list_changed(seen)
            louder = await session.call_tool("shout", {"text": "hey"})
            assert louder.structured_content == {"result": "HEY!"}
            seen = inbox.list_changed
            await anyio.to_thread.run_sync(
                lambda: procreg("-C", str(repo), "promote", "shout", "1.0.0", "--channel", "stable")
            )
            await inbox.wait_list_changed(seen)
            pinned = await session.call_tool("shout", {"text": "hey"})
            assert pinned.structured_content == {"result": "HEY"}

            # a deletion merged with plain git takes the tool away
            seen = inbox.list_changed
            git(repo, "rm", "-rq", "procedures/shout")
            git(repo, "commit", "-qm", "chore: drop shout")
            await inbox.wait_list_changed(seen)
            assert "shout" not in {t.name for t in (await session.list_tools()).tools}
            gone = await session.call_tool("shout", {"text": "hey"})
            assert gone.is_error and "NotFoundError" in gone.content[0].text  # type: ignore[union-attr]

    anyio.run(go)


def test_proposals_land_on_their_own_branch_and_invalid_ones_write_nothing(repo: Path) -> None:
    store = GitStore.open(repo)
    main_before = store.resolve("refs/heads/main")
    source = store.read("slugify").text("main.py")
    meta = json.loads(store.read("slugify").text("metadata.json") or "{}")
    assert source is not None

    async def go() -> None:
        async with stdio_session(repo) as (session, _):
            new_source = source.replace('"""', '"""Proposed: ', 1)
            good = await session.call_tool(
                "propose_procedure",
                {
                    "id": "slugify",
                    "main_py": new_source,
                    "metadata": meta,
                    "message": "docs: wording",
                },
            )
            assert not good.is_error, good.content
            result = good.structured_content
            assert result is not None
            assert result["branch"] == "proposals/slugify/1"
            assert result["bump"] == "patch"
            assert result["version"] == "1.0.1"
            assert store.resolve("refs/heads/proposals/slugify/1") == result["commit"]
            assert store.read("slugify", result["commit"]).text("main.py") == new_source

            refs_before = set(store.ref_names("refs/heads/"))
            bad = await session.call_tool(
                "propose_procedure",
                {"id": "slugify", "main_py": "def main(:\n", "metadata": meta},
            )
            assert bad.is_error
            assert bad.structured_content is not None
            assert bad.structured_content["error"]["type"] == "ValidationFailed"
            assert bad.structured_content["error"]["problems"]
            assert set(store.ref_names("refs/heads/")) == refs_before

    anyio.run(go)
    assert store.resolve("refs/heads/main") == main_before  # never on the tracked branch
    log = git(repo, "log", "-1", "--format=%B", "proposals/slugify/1")
    assert "Proposed-By: mcp:pytest-client" in log


def test_tools_list_pages_when_a_page_size_is_configured(tmp_path: Path) -> None:
    small = tmp_path / "small"
    procreg("init", str(small))
    for pid in ("a1", "a2", "a3"):
        write_proc(small, pid)
    with (small / "procreg.toml").open("a") as config:
        config.write("\n[mcp]\npage_size = 3\n")
    git(small, "add", "-A")
    git(small, "commit", "-qm", "feat: three")
    procreg("-C", str(small), "release", "--skip-examples")

    async def go() -> None:
        async with stdio_session(small) as (session, _):
            names: list[str] = []
            cursor = None
            pages = 0
            while True:
                page = await session.list_tools(
                    params=None if cursor is None else types.PaginatedRequestParams(cursor=cursor)
                )
                pages += 1
                names += [t.name for t in page.tools]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert pages == 3  # 4 meta tools + 3 procedures, 3 a page
            assert names[4:] == ["a1", "a2", "a3"]
            with pytest.raises(MCPError):
                await session.list_tools(params=types.PaginatedRequestParams(cursor="nope"))

    anyio.run(go)


@pytest.mark.postgres
def test_procreg_mcp_on_a_postgresql_index(repo: Path, pg_url: str) -> None:
    async def go() -> None:
        async with stdio_session(repo, "--database-url", pg_url) as (session, inbox):
            tools = {t.name for t in (await session.list_tools()).tools}
            assert {"slugify", "semver-compare"} <= tools
            ok = await session.call_tool("semver-compare", {"a": "2.0.0", "b": "1.0.0"})
            assert ok.structured_content == {"result": 1}
            seen = inbox.list_changed
            write_proc(repo, "pg-echo", description="echo on postgres")
            git(repo, "add", "procedures/pg-echo")
            git(repo, "commit", "-qm", "feat: pg-echo")
            await anyio.to_thread.run_sync(
                lambda: procreg("-C", str(repo), "release", "pg-echo", "--skip-examples")
            )
            await inbox.wait_list_changed(seen)
            assert "pg-echo" in {t.name for t in (await session.list_tools()).tools}

    anyio.run(go)

    async def callers() -> set[str | None]:
        async with await AsyncRegistry.open(repo, pg_url, auto_sync=False) as reg:
            return {r.caller for r in await reg.backend.executions("semver-compare")}

    assert asyncio.run(callers()) == {"mcp:pytest-client"}
