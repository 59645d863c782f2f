"""The MCP server: procedures as tools, meta tools, sources as resources, a live tool list.

Built on the official ``mcp`` SDK's lowlevel :class:`mcp.server.lowlevel.Server`
(no protocol code here), over an :class:`~registry.api.AsyncRegistry`. The same
:class:`ProcregServer` runs over stdio (``procreg mcp``) and streamable HTTP
(``procreg serve``, :mod:`registry.serve.http`).

- Every served procedure (:mod:`registry.serve.catalog`) is a tool named by
  its id; a call runs that exact release like ``Registry.run``, recorded with
  the caller ``mcp:<client name>`` (the client's ``clientInfo.name``).
- Failures never become protocol errors: bad arguments, a failing procedure,
  a timeout, an unknown tool or a missing right come back as a tool result
  with ``isError: true``, the error class and its message (text, and
  ``structuredContent.error`` with ``type`` and ``message``).
- The index is kept in sync by :func:`registry.index.watcher.watch`; when a sync
  changes the served set, every connected client gets
  ``notifications/tools/list_changed`` (and 2026-07-28 clients a
  ``subscriptions/listen`` event).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, cast

import anyio
import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from registry.api import AsyncRegistry
from registry.config import Config, worktree_config
from registry.core.model import Metadata
from registry.core.tags import check_channel
from registry.errors import (
    NotFoundError,
    PermissionDenied,
    RegistryError,
    UsageError,
    ValidationFailed,
)
from registry.index.connect import open_backend
from registry.index.sync import SyncReport
from registry.runs.execution import RunResult
from registry.serve import tools as tooldefs
from registry.serve.catalog import Fallback, ServedTool, served_tools, touched_ids
from registry.serve.process import claimed_stdin, stop_signals
from registry.serve.tokens import LOCAL, Grant

log = logging.getLogger(__name__)

Context = ServerRequestContext[Any, Any]
GrantOf = Callable[[Context], Grant]

CLIENT_NAME_MAX = 64
_URI_RE = re.compile(
    r"^procedure://(?P<id>[a-z0-9][a-z0-9_-]{0,63})@(?P<spec>[^/]+)/(?P<file>main\.py|metadata\.json)$"
)
INSTRUCTIONS = (
    "procreg serves reviewed, versioned procedures as tools; each runs one released version "
    "in a sandbox. search_procedures and get_procedure explore the registry; run_procedure "
    "runs any procedure at a version spec; propose_procedure submits new code for human "
    "review on a branch (it is not callable until merged and released)."
)


def _package_version() -> str:
    try:
        return version("procedure-registry")
    except PackageNotFoundError:
        return "0"


def client_name(ctx: Context) -> str:
    """The connected client's ``clientInfo.name`` (``unknown`` when it sent none), bounded."""
    name = None
    params = ctx.session.client_params
    if params is not None:
        name = params.client_info.name
    elif ctx.meta:
        info = ctx.meta.get(types.CLIENT_INFO_META_KEY)
        if isinstance(info, dict) and isinstance(info.get("name"), str):
            name = info["name"]
    cleaned = " ".join(str(name or "").split())[:CLIENT_NAME_MAX]
    return cleaned or "unknown"


def error_result(kind: str, message: str, **extra: Any) -> types.CallToolResult:
    """A tool result with ``isError: true``: the error class and message, for the model."""
    payload: dict[str, Any] = {"type": kind, "message": message, **extra}
    return types.CallToolResult(
        content=[types.TextContent(text=f"{kind}: {message}")],
        structured_content={"error": payload},
        is_error=True,
    )


def _json_result(data: Any) -> types.CallToolResult:
    plain = data.model_dump(mode="json", by_alias=True) if isinstance(data, BaseModel) else data
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(plain, ensure_ascii=False, default=str))],
        structured_content=plain if isinstance(plain, dict) else {"result": plain},
    )


def run_result(result: RunResult, meta: Metadata | None) -> types.CallToolResult:
    """A :class:`RunResult` as a tool result: structured content, or ``isError`` with the class."""
    info = {
        "dev.procreg/run_id": result.run_id,
        "dev.procreg/id": result.id,
        "dev.procreg/version": result.version,
        "dev.procreg/duration_ms": round(result.duration_ms, 3),
    }
    if not result.ok:
        assert result.error is not None
        out = error_result(result.error.type, result.error.message, run_id=result.run_id)
        out.meta = info
        return out
    if meta is not None and not tooldefs.result_fits(meta, result.result):
        out = error_result(
            "ResultMismatch",
            f"{result.id}@{result.version} returned {type(result.result).__name__}, "
            f"but its metadata declares {meta.returns.type}",
            run_id=result.run_id,
        )
        out.meta = info
        return out
    content = tooldefs.structured(meta, result.result)
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(result.result, ensure_ascii=False))],
        structured_content=content,
        _meta=info,
    )


class ProcregServer:
    """One MCP server over one registry: tools pinned to ``channel``, kept live by a watcher.

    Construct, then ``async with server.running():`` opens the registry, builds
    the served set and starts the watcher; the SDK's :attr:`server` is handed
    to a transport (:meth:`serve_stdio`, or the HTTP app). ``grant_of`` says
    what the caller of a request may do (stdio: :data:`LOCAL`, everything).
    """

    def __init__(
        self,
        repo: str | Path,
        database_url: str | None = None,
        *,
        channel: str | None = None,
        fallback: Fallback | None = None,
        config: Config | None = None,
        grant_of: GrantOf | None = None,
        watch: bool = True,
        reconcile_every: float = 30.0,
    ) -> None:
        if channel is not None:
            check_channel(channel)
        self.repo = repo
        self.database_url = database_url
        self._config = config
        self._channel = channel
        self._fallback = fallback
        local = dataclasses.replace(LOCAL)  # its run slots belong to this server's loop
        self.grant_of: GrantOf = grant_of or (lambda _ctx: local)
        self.watch = watch
        self.reconcile_every = reconcile_every
        self._reg: AsyncRegistry | None = None
        self.tools: dict[str, ServedTool] = {}
        self._listing: list[types.Tool] = []
        self._fingerprint: dict[str, str] = {}
        self._sessions: list[ServerSession] = []
        self._pending: set[str] | None = set()
        self._wake = anyio.Event()
        self.refreshed = 0
        self.bus = InMemorySubscriptionBus()
        self.server: Server[Any] = Server(
            "procreg",
            version=_package_version(),
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
            on_subscriptions_listen=ListenHandler(self.bus),
        )
        self.server.add_notification_handler(
            "notifications/initialized", types.NotificationParams, self._on_initialized
        )
        self.server.middleware.append(self._cached_listing)
        self._wire_listing: dict[str, dict[str, Any]] = {}

    # -- configuration ---------------------------------------------------------

    @property
    def reg(self) -> AsyncRegistry:
        if self._reg is None:
            raise RegistryError("the MCP server is not running; use `async with server.running()`")
        return self._reg

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = worktree_config(self.reg.store)
        return self._config

    @property
    def channel(self) -> str:
        return self._channel or self.config.mcp.channel

    @property
    def fallback(self) -> Fallback:
        return self._fallback or self.config.mcp.fallback

    def initialization_options(self) -> InitializationOptions:
        """What ``initialize`` answers: tools with ``listChanged``, resources."""
        return self.server.create_initialization_options(NotificationOptions(tools_changed=True))

    # -- life cycle ------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ProcregServer]:
        """Open the registry, build the served set, watch git until the block ends."""
        reg = await AsyncRegistry.open(self.repo, self.database_url)
        self._reg = reg
        try:
            await self.refresh(None)
            async with anyio.create_task_group() as tg:
                if self.watch:
                    tg.start_soon(self._watch)
                    tg.start_soon(self._refresher)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        finally:
            self._reg = None
            await reg.close()

    async def serve_stdio(self) -> None:
        """Serve one client over this process's stdin and stdout until it disconnects.

        SIGTERM stops it as Ctrl-C does (:func:`registry.serve.process.stop_signals`):
        the session ends at once, and the registry is closed (run records delivered).
        """
        from mcp.server.stdio import stdio_server

        async def stop_on_signal(scope: anyio.CancelScope) -> None:
            with anyio.open_signal_receiver(*stop_signals()) as signals:
                async for _ in signals:
                    scope.cancel()
                    return

        async with self.running(), anyio.create_task_group() as tg:
            tg.start_soon(stop_on_signal, tg.cancel_scope)
            with claimed_stdin() as lines:
                # the transport only iterates over stdin's lines
                async with stdio_server(stdin=cast(Any, lines)) as (read, write):
                    await self.server.run(read, write, self.initialization_options())
            tg.cancel_scope.cancel()

    async def _watch(self) -> None:
        from registry.index.watcher import watch

        store = self.reg.store

        async def factory() -> Any:
            return await open_backend(store, self.database_url)

        await watch(
            store,
            factory,
            on_sync=self._on_sync,
            reconcile_every=self.reconcile_every,
        )

    def _on_sync(self, report: SyncReport) -> None:
        if not report.changed:
            return
        ids = touched_ids(report)
        if ids is None or self._pending is None:
            self._pending = None
        else:
            self._pending |= ids
        self._wake.set()

    async def _refresher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            pending, self._pending = self._pending, set()
            try:
                await self.refresh(pending)
            except RegistryError as exc:
                log.warning("refreshing the served tools failed: %s", exc)

    async def refresh(self, ids: set[str] | None) -> bool:
        """Recompute the served set (only ``ids`` when given); notify clients if it changed."""
        served = await served_tools(
            self.reg, self.channel, self.fallback, previous=self.tools, ids=ids
        )
        served = {k: v for k, v in served.items() if k not in tooldefs.META_TOOL_NAMES}
        fingerprint = tooldefs.fingerprint({k: v.tool for k, v in served.items()})
        self.tools = served
        self._listing = [
            types.Tool.model_validate(tooldefs.to_mcp(t))
            for t in [*tooldefs.META_TOOLS, *(s.tool for s in served.values())]
        ]
        self._wire_listing = {}
        changed = fingerprint != self._fingerprint
        first = not self._fingerprint and self.refreshed == 0
        self._fingerprint = fingerprint
        self.refreshed += 1
        if changed and not first:
            await self._notify_changed()
        return changed

    async def _notify_changed(self) -> None:
        for session in list(self._sessions):
            try:
                await session.send_tool_list_changed()
            except Exception as exc:  # noqa: BLE001 - a gone client must not stop the others
                log.debug("dropping a client that cannot be notified: %s", exc)
                self._sessions.remove(session)
        await self.bus.publish(ToolsListChanged())

    async def _on_initialized(self, ctx: Context, _params: types.NotificationParams) -> None:
        session = ctx.session
        self._sessions.append(session)
        # Forget the client when its connection closes: the SDK unwinds the
        # connection's exit stack then (the lowlevel context only hands out the
        # session, whose connection attribute is not public).
        connection = getattr(session, "_connection", None)
        stack = getattr(connection, "exit_stack", None)
        if stack is not None:
            stack.callback(self._forget, session)

    def _forget(self, session: ServerSession) -> None:
        if session in self._sessions:
            self._sessions.remove(session)

    # -- tools -----------------------------------------------------------------

    async def _cached_listing(self, ctx: Context, call_next: CallNext) -> HandlerResult:
        """``tools/list`` answered from the wire form computed once per served-set change.

        The SDK shapes every result for the connection's protocol version (a
        validating pass over every tool, most of a 1,000-tool listing's cost);
        the served set only changes on a sync, so that work is done once.
        Only handshake-era versions, whose envelope needs nothing per request.
        """
        version = ctx.protocol_version
        params = ctx.params or {}
        if (
            ctx.method != "tools/list"
            or version in MODERN_PROTOCOL_VERSIONS
            or not set(params) <= {"cursor"}
        ):
            return await call_next(ctx)
        key = f"{version} {params.get('cursor')}"
        cached = self._wire_listing.get(key)
        if cached is None:
            generation = self.refreshed
            fresh = await call_next(ctx)
            if isinstance(fresh, dict) and generation == self.refreshed:  # still current
                self._wire_listing[key] = fresh
            return fresh
        _require_read(self.grant_of(ctx))
        return cached

    async def _list_tools(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        _require_read(self.grant_of(ctx))
        size = self.config.mcp.page_size
        cursor = params.cursor if params is not None else None
        if not size and cursor is None:
            return types.ListToolsResult(tools=self._listing)
        start = _offset(cursor, len(self._listing))
        end = start + size if size else len(self._listing)
        following = str(end) if end < len(self._listing) else None
        return types.ListToolsResult(tools=self._listing[start:end], next_cursor=following)

    def tool_defs(self) -> list[tooldefs.ToolDef]:
        """Every tool served now: the meta tools, then the procedures by id."""
        return [*tooldefs.META_TOOLS, *(s.tool for s in self.tools.values())]

    async def _call_tool(
        self, ctx: Context, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        args = params.arguments or {}
        try:
            grant = self.grant_of(ctx)
            limit = self.config.serve.max_argument_bytes
            size = len(json.dumps(args, ensure_ascii=False).encode("utf-8"))
            if size > limit:
                return error_result(
                    "ArgumentsTooLarge",
                    f"the arguments are {size} bytes; at most {limit} are taken",
                )
            meta_tool = self._meta_tools.get(params.name)
            if meta_tool is not None:
                return await meta_tool(ctx, grant, args)
            served = self.tools.get(params.name)
            if served is None:
                raise NotFoundError(
                    f"no tool {params.name!r} is served on channel {self.channel}; "
                    "list the tools again, or use run_procedure"
                )
            grant.require_run(served.meta)
            return await self._run(ctx, grant, served.meta.id, served.version, args, served.meta)
        except RegistryError as exc:
            return error_result(type(exc).__name__, str(exc))
        except Exception as exc:  # an agent gets a tool error, never a dead session
            log.exception("tool %s failed unexpectedly", params.name)
            return error_result("InternalError", f"{type(exc).__name__}: {exc}")

    async def _run(
        self,
        ctx: Context,
        grant: Grant,
        proc_id: str,
        spec: str | None,
        args: dict[str, Any],
        meta: Metadata | None,
    ) -> types.CallToolResult:
        async with grant.slots:
            result = await self.reg.run(
                proc_id, spec, caller=f"mcp:{client_name(ctx)}", arguments=args
            )
        return run_result(result, meta)

    @property
    def _meta_tools(
        self,
    ) -> dict[str, Callable[[Context, Grant, dict[str, Any]], Awaitable[types.CallToolResult]]]:
        return {
            "search_procedures": self._search,
            "get_procedure": self._get,
            "run_procedure": self._run_any,
            "propose_procedure": self._propose,
        }

    async def _search(
        self, _ctx: Context, grant: Grant, args: dict[str, Any]
    ) -> types.CallToolResult:
        grant.require("read")
        limit = args.get("limit", 20)
        if not isinstance(limit, int) or not 1 <= limit <= 200:
            raise UsageError("limit must be an integer from 1 to 200")
        sort = args.get("sort")
        if sort not in (None, "relevance", "name", "health"):
            raise UsageError("sort must be relevance, name or health")
        hits = await self.reg.search(
            args.get("text"),
            args.get("category"),
            tuple(args.get("tags") or ()),
            limit=limit,
            min_success_rate=args.get("min_success_rate"),
            sort=sort,
        )
        procedures = []
        for hit in hits:
            row = hit.model_dump(mode="json")
            served = self.tools.get(hit.id)
            row["tool"] = hit.id if served is not None else None
            row["served_version"] = served.version if served is not None else None
            procedures.append(row)
        return _json_result({"procedures": procedures, "channel": self.channel})

    async def _get(self, _ctx: Context, grant: Grant, args: dict[str, Any]) -> types.CallToolResult:
        grant.require("read")
        proc_id = _required_str(args, "id")
        detail = await self.reg.get(proc_id, args.get("spec"))
        versions = await self.reg.versions(proc_id)
        data = detail.model_dump(mode="json", by_alias=True)
        if args.get("source", True) is False:
            data.pop("source", None)
        served = self.tools.get(proc_id)
        return _json_result(
            {
                "procedure": data,
                "versions": [v.model_dump(mode="json") for v in versions],
                "tool": {"name": proc_id, "version": served.version} if served else None,
            }
        )

    async def _run_any(
        self, ctx: Context, grant: Grant, args: dict[str, Any]
    ) -> types.CallToolResult:
        proc_id = _required_str(args, "id")
        spec = args.get("spec")
        arguments = args.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise UsageError("arguments must be an object of the procedure's arguments")
        grant.require("run")
        detail = await self.reg.get(proc_id, spec)
        if detail.metadata is None:
            raise UsageError(f"{proc_id}@{detail.version or 'HEAD'} has no valid metadata")
        grant.require_run(detail.metadata)
        # run exactly what was resolved and checked above
        pinned = detail.version if detail.version and detail.resolved_from != "head" else spec
        return await self._run(ctx, grant, proc_id, pinned, arguments, detail.metadata)

    async def _propose(
        self, ctx: Context, grant: Grant, args: dict[str, Any]
    ) -> types.CallToolResult:
        grant.require("propose")
        proc_id = _required_str(args, "id")
        main_py = _required_str(args, "main_py")
        metadata = args.get("metadata")
        if not isinstance(metadata, dict | str):
            raise UsageError("metadata must be the metadata.json object")
        message = args.get("message")
        try:
            proposal = await self.reg.propose(
                proc_id,
                main_py,
                metadata,
                message if isinstance(message, str) else None,
                proposer=f"mcp:{client_name(ctx)}",
            )
        except ValidationFailed as exc:
            return error_result(
                "ValidationFailed",
                str(exc),
                problems=[p.format() for p in exc.problems],
            )
        return _json_result(proposal)

    # -- resources ---------------------------------------------------------------

    async def _list_resources(
        self, ctx: Context, _params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        _require_read(self.grant_of(ctx))
        resources = []
        for served in self.tools.values():
            for name, mime in (("main.py", "text/x-python"), ("metadata.json", "application/json")):
                resources.append(
                    types.Resource(
                        uri=f"procedure://{served.meta.id}@{served.version}/{name}",
                        name=f"{served.meta.id}@{served.version}/{name}",
                        mime_type=mime,
                    )
                )
        return types.ListResourcesResult(resources=resources)

    async def _list_templates(
        self, ctx: Context, _params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        _require_read(self.grant_of(ctx))
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template="procedure://{id}@{version}/main.py",
                    name="procedure source",
                    description="main.py of a procedure at a version (or a spec such as ^1)",
                    mime_type="text/x-python",
                ),
                types.ResourceTemplate(
                    uri_template="procedure://{id}@{version}/metadata.json",
                    name="procedure metadata",
                    mime_type="application/json",
                ),
            ]
        )

    async def _read_resource(
        self, ctx: Context, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        _require_read(self.grant_of(ctx))
        match = _URI_RE.match(str(params.uri))
        if match is None:
            raise MCPError(
                types.INVALID_PARAMS,
                f"unknown resource {params.uri}; use procedure://ID@VERSION/main.py "
                "or procedure://ID@VERSION/metadata.json",
            )
        try:
            detail = await self.reg.get(match["id"], match["spec"])
        except RegistryError as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from exc
        if match["file"] == "main.py":
            text, mime = detail.source, "text/x-python"
        else:
            meta = detail.metadata
            text = meta.to_json() if meta is not None else "null"
            mime = "application/json"
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=str(params.uri), mime_type=mime, text=text)]
        )


def _required_str(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{key!r} is required (a string)")
    return value


def _offset(cursor: str | None, total: int) -> int:
    # a cursor is an offset into the listing; a list_changed tells clients to start over
    if cursor is None:
        return 0
    if not cursor.isdigit() or int(cursor) > total:
        raise MCPError(types.INVALID_PARAMS, f"invalid cursor {cursor!r}; list from the start")
    return int(cursor)


def _require_read(grant: Grant) -> None:
    # outside a tool call a missing right is a request error (a tool call returns isError)
    try:
        grant.require("read")
    except PermissionDenied as exc:
        raise MCPError(types.INVALID_REQUEST, str(exc)) from exc
