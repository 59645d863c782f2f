"""MCP scenario: a warm tool call through the SDK's stdio client, and tools/list at 1,000.

A no-op procedure is called three ways, all warm, all through the whole
isolation engine: ``Registry.run`` in-process (the floor), a tool call through
the official SDK's ``ClientSession`` over stdio to a running ``procreg mcp``
(what an agent pays: JSON-RPC framing, the pipe, the server's dispatch, the
same run), and ``procreg run`` as a process (what an agent that shells out
pays). ``tools/list`` is timed against a server over 1,000 released
procedures (the served set is computed when the index changes, not per list).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import anyio
import mcp_types as types
from mcp import ClientSession, StdioServerParameters, stdio_client

from benchmarks.common import (
    ROOT,
    Context,
    Row,
    bench_env,
    drop_copy,
    log,
    run_process,
    stats,
    timed,
    timed_after,
    working_copy,
)
from benchmarks.scen_run import make_repo
from benchmarks.synthetic import Spec
from registry.api import Registry

CLIENT = types.Implementation(name="procreg-bench", version="1")
PAGE = 100
NOTE = (
    "the server answers from a wire form computed once per change; most of a full listing "
    "is the SDK client's own parsing and per-version validation of 1,004 tools"
)


def _params(repo: Path) -> StdioServerParameters:
    env = bench_env() | {"PYTHONPATH": str(ROOT)}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "registry", "-C", str(repo), "mcp"], env=env
    )


async def _mcp_calls(repo: Path, n: int) -> tuple[list[float], float]:
    started = time.perf_counter()
    async with (
        stdio_client(_params(repo)) as (read, write),
        ClientSession(read, write, client_info=CLIENT) as session,
    ):
        await session.initialize()
        await session.list_tools()
        ready = (time.perf_counter() - started) * 1000
        for i in range(10):  # warm the sandbox pool and the server
            await session.call_tool("noop", {"n": i})
        samples = []
        for i in range(n):
            await anyio.sleep(0.02)  # let the pool refill, as the warm Registry.run row does
            t0 = time.perf_counter()
            result = await session.call_tool("noop", {"n": i})
            samples.append((time.perf_counter() - t0) * 1000)
            if result.is_error or result.structured_content != {"result": i}:
                raise RuntimeError(f"MCP call failed: {result.content}")
    return samples, ready


async def _list_tools(repo: Path, n: int) -> tuple[list[float], int, float]:
    """``n`` timed ``tools/list`` calls (the first page; all tools when there are no pages)."""
    started = time.perf_counter()
    async with (
        stdio_client(_params(repo)) as (read, write),
        ClientSession(read, write, client_info=CLIENT) as session,
    ):
        await session.initialize()
        ready = (time.perf_counter() - started) * 1000
        count = len((await session.list_tools()).tools)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            await session.list_tools()
            samples.append((time.perf_counter() - t0) * 1000)
    return samples, count, ready


def scenario_mcp(ctx: Context) -> list[Row]:
    """Warm MCP tool call beside Registry.run and procreg run; tools/list at 1,000 procedures."""
    warm_n, proc_n, list_n = ctx.reps(100, 300), ctx.reps(10, 30), ctx.reps(50, 200)
    with tempfile.TemporaryDirectory(prefix="procreg-bench-mcp-") as tmp:
        root = make_repo(Path(tmp))
        log(f"Registry.run warm x{warm_n}")
        with Registry.open(root) as reg:
            for i in range(10):
                reg.run("noop", n=i)
            box = reg._core.runner._sandbox
            assert box is not None
            direct = stats(
                timed_after(lambda: reg.run("noop", n=1), lambda: box.wait_warm(30), warm_n, 0)
            )
        log(f"MCP tool call over stdio x{warm_n}")
        samples, mcp_ready = anyio.run(_mcp_calls, root, warm_n)
        mcp_call = stats(samples)
        log(f"procreg run as a process x{proc_n}")
        argv = [sys.executable, "-m", "registry", "-C", str(root), "run", "noop", "--arg", "n=1"]
        process = stats(timed(lambda: run_process(argv), proc_n))
    spec = Spec(procedures=1_000, tags=1_000, commits=20)
    repo = working_copy(spec, "mcp", checkout=True)
    try:
        log(f"tools/list at 1,000 procedures x{list_n} (the first start builds the index)")
        list_samples, count, list_ready = anyio.run(_list_tools, repo, list_n)
        with (repo / "procreg.toml").open("a") as config:
            config.write(f"\n[mcp]\npage_size = {PAGE}\n")
        log(f"tools/list, pages of {PAGE}, x{list_n}")
        page_samples, page_count, _ = anyio.run(_list_tools, repo, list_n)
    finally:
        drop_copy(repo)
    listing, page = stats(list_samples), stats(page_samples)
    extra = {"server_ready_ms": round(mcp_ready, 1)}
    return [
        Row("mcp", "warm: MCP tool call over stdio (SDK ClientSession)", "no-op", mcp_call,
            "Registry.run in-process (warm)", direct, target="< 10 ms median",
            met=mcp_call["median_ms"] < 10, extra=extra),
        Row("mcp", "warm: Registry.run in-process", "no-op", direct, None, None),
        Row("mcp", "procreg run as a process (cold sandbox)", "no-op", process,
            "MCP tool call over stdio (warm)", mcp_call),
        Row("mcp", "tools/list over stdio", f"{count} tools (1,000 procedures)", listing,
            None, None, target="< 50 ms median", met=listing["median_ms"] < 50,
            extra={"server_ready_ms": round(list_ready, 1), "note": NOTE}),
        Row("mcp", f"tools/list over stdio, [mcp] page_size = {PAGE}", f"{page_count} tools a page",
            page, "the whole list in one page", listing, target="< 50 ms median",
            met=page["median_ms"] < 50),
    ]  # fmt: skip
