"""``procreg serve``: one ASGI app, MCP at ``/mcp``, the read-only web view, bearer tokens.

Built from the SDK's pieces: its :class:`StreamableHTTPSessionManager` (with a
bound on the request body), its :class:`BearerAuthBackend` over our
:class:`TokenVerifier` (the tokens of ``procreg.toml`` ``[serve]``) and its
``RequireAuthMiddleware`` (401 without a valid token). What a token may do is
checked per tool call by :class:`~registry.serve.mcp.ProcregServer` (a tool
error naming the missing right). The web view (:mod:`registry.serve.web`) mounts
beside ``/mcp`` on the same app and needs the ``read`` right; with no token
configured on a loopback host it is open to this machine (and ``/mcp``, which
always needs a token, answers 401). ``/healthz`` answers without a token.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable, Generator
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware, get_access_token
from mcp.server.auth.middleware.bearer_auth import (
    AuthenticatedUser,
    BearerAuthBackend,
    RequireAuthMiddleware,
)
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, BaseUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from registry.config import Config
from registry.errors import ConfigError
from registry.serve.catalog import Fallback
from registry.serve.mcp import Context, ProcregServer
from registry.serve.process import stop_signals
from registry.serve.tokens import Grant, TokenTable
from registry.serve.web.app import TOKEN_COOKIE, Access, Sources, web_routes

MCP_PATH = "/mcp"
NOBODY = Grant("anonymous", frozenset())
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class TokenVerifier:
    """The SDK's ``TokenVerifier`` over the configured tokens: the token name is the client id."""

    def __init__(self, table: TokenTable) -> None:
        self.table = table

    async def verify_token(self, token: str) -> AccessToken | None:
        grant = self.table.lookup(token)
        if grant is None:
            return None
        return AccessToken(token="", client_id=grant.name, scopes=sorted(grant.rights))


class CookieOrBearer(BearerAuthBackend):
    """The SDK's bearer backend; for the web view's pages also the ``/login`` cookie.

    ``/mcp`` takes only the ``Authorization`` header, never the cookie (no request a
    browser sends on its own can call a tool).
    """

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        found = await super().authenticate(conn)
        if found is not None or "authorization" in conn.headers or conn.url.path == MCP_PATH:
            return found
        secret = conn.cookies.get(TOKEN_COOKIE)
        access = await self.token_verifier.verify_token(secret) if secret else None
        if access is None:
            return None
        return AuthCredentials(access.scopes), AuthenticatedUser(access)


def grant_resolver(table: TokenTable) -> Callable[[Context], Grant]:
    """What the caller of an MCP request may do, from the token that authenticated it."""

    def grant_of(ctx: Context) -> Grant:
        access = None
        request = ctx.request
        if isinstance(request, Request):
            user = request.scope.get("user")
            if isinstance(user, AuthenticatedUser):
                access = user.access_token
        if access is None:
            access = get_access_token()
        if access is None:
            return NOBODY
        return table.by_name(access.client_id) or NOBODY

    return grant_of


def _security(host: str) -> TransportSecuritySettings | None:
    if host not in LOOPBACK:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )


def load_tokens(repo: str | Path, config: Config, host: str = "127.0.0.1") -> TokenTable:
    """The ``[serve]`` tokens; :class:`ConfigError` when none is configured off loopback.

    On a loopback ``host`` an empty table is allowed: the web view is then open to
    this machine, and ``/mcp`` refuses every request (no token can be valid).
    """
    from registry.git.store import GitStore

    store = GitStore.open(repo)
    root = store.workdir or store.git_dir
    table = TokenTable.from_config(
        config.serve.tokens,
        root=root,
        max_concurrent_runs=config.serve.max_concurrent_runs,
    )
    if not len(table) and host not in LOOPBACK:
        raise ConfigError(
            f"procreg serve on {host} (not loopback) needs at least one token: "
            "add [[serve.tokens]] to procreg.toml "
            '(name = "agent", env = "PROCREG_TOKEN", rights = ["read", "run"])'
        )
    return table


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by :func:`~registry.serve.process.stop_signals`, not re-raising.

    ``handle_exit`` is uvicorn's own (a second Ctrl-C forces the exit).
    ``on_ready`` is called once the app has started and the port listens, with
    the stop signals already handled.
    """

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], Any] | None = None) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit and self.on_ready is not None:
            self.on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in stop_signals()}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def build_app(
    repo: str | Path,
    database_url: str | None = None,
    *,
    host: str = "127.0.0.1",
    channel: str | None = None,
    fallback: Fallback | None = None,
    config: Config | None = None,
) -> Starlette:
    """The ASGI app: ``/mcp`` (streamable HTTP, tokens required), the web view, ``/healthz``."""
    from registry.config import worktree_config
    from registry.git.store import GitStore

    config = config or worktree_config(GitStore.open(repo))
    table = load_tokens(repo, config, host)
    server = ProcregServer(
        repo,
        database_url,
        channel=channel,
        fallback=fallback,
        config=config,
        grant_of=grant_resolver(table),
    )
    manager = StreamableHTTPSessionManager(
        app=server.server,
        security_settings=_security(host),
        max_request_body_size=config.serve.max_body_bytes,
    )
    endpoint = RequireAuthMiddleware(StreamableHTTPASGIApp(manager), [])

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "tools": len(server.tools), "channel": server.channel})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with server.running(), manager.run():
            yield

    sources = Sources(lambda: server.reg, lambda: server.config.health)
    pages = web_routes(sources, Access(open=not len(table), lookup=table.lookup))
    app = Starlette(
        routes=[Route(MCP_PATH, endpoint=endpoint), Route("/healthz", healthz), *pages],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=CookieOrBearer(TokenVerifier(table))),
            Middleware(AuthContextMiddleware),
        ],
        lifespan=lifespan,
    )
    app.state.procreg = server
    app.state.open_web = not len(table)
    return app


async def serve_http(
    repo: str | Path,
    database_url: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8700,
    channel: str | None = None,
    fallback: Fallback | None = None,
    announce: Callable[[list[str]], Any] | None = None,
) -> None:
    """Run :func:`build_app` with uvicorn until SIGTERM or Ctrl-C; then return (exit 0).

    ``announce(lines)`` is called once it serves, with what to tell the user (the
    addresses, and whether the web view is open without a token). Either signal shuts down
    gracefully: requests in flight finish, the lifespan closes the registry
    (run records delivered). uvicorn would then raise the signal again (the
    process dies of SIGTERM, or Ctrl-C aborts); here a stop that was asked for
    is a clean end.
    """
    app = build_app(repo, database_url, host=host, channel=channel, fallback=fallback)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = _Server(config)
    if announce is not None:
        server.on_ready = lambda: announce(_announcement(app, host, server))
    await server.serve()


def _announcement(app: Starlette, host: str, server: uvicorn.Server) -> list[str]:
    where = f"[{host}]" if ":" in host else host
    port = server.servers[0].sockets[0].getsockname()[1] if server.servers else 0
    base = f"http://{where}:{port}"
    lines = [f"serving the web view at {base}/", f"serving MCP at {base}{MCP_PATH}"]
    if app.state.open_web:
        lines.append(
            "no tokens configured ([[serve.tokens]] in procreg.toml): the web view is open "
            "to this machine (loopback only, read only); /mcp needs a token"
        )
    return lines
