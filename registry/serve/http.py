"""``procreg serve``: one ASGI app, MCP over streamable HTTP at ``/mcp``, bearer tokens.

Built from the SDK's pieces: its :class:`StreamableHTTPSessionManager` (with a
bound on the request body), its :class:`BearerAuthBackend` over our
:class:`TokenVerifier` (the tokens of ``procreg.toml`` ``[serve]``) and its
``RequireAuthMiddleware`` (401 without a valid token). What a token may do is
checked per tool call by :class:`~registry.serve.mcp.ProcregServer` (a tool
error naming the missing right). Other routes (a web view, a JSON API) mount
beside ``/mcp`` on the same app; ``/healthz`` answers without a token.
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
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from registry.config import Config
from registry.errors import ConfigError
from registry.serve.catalog import Fallback
from registry.serve.mcp import Context, ProcregServer
from registry.serve.process import stop_signals
from registry.serve.tokens import Grant, TokenTable

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


def load_tokens(repo: str | Path, config: Config) -> TokenTable:
    """The ``[serve]`` tokens; :class:`ConfigError` when none is configured (HTTP needs one)."""
    from registry.git.store import GitStore

    store = GitStore.open(repo)
    root = store.workdir or store.git_dir
    table = TokenTable.from_config(
        config.serve.tokens,
        root=root,
        max_concurrent_runs=config.serve.max_concurrent_runs,
    )
    if not len(table):
        raise ConfigError(
            "procreg serve needs at least one token: add [[serve.tokens]] to procreg.toml "
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
    """The ASGI app: ``/mcp`` (streamable HTTP, tokens required) and ``/healthz``."""
    from registry.config import worktree_config
    from registry.git.store import GitStore

    config = config or worktree_config(GitStore.open(repo))
    table = load_tokens(repo, config)
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

    app = Starlette(
        routes=[Route(MCP_PATH, endpoint=endpoint), Route("/healthz", healthz)],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(TokenVerifier(table))),
            Middleware(AuthContextMiddleware),
        ],
        lifespan=lifespan,
    )
    app.state.procreg = server
    return app


async def serve_http(
    repo: str | Path,
    database_url: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8700,
    channel: str | None = None,
    fallback: Fallback | None = None,
    announce: Callable[[str], Any] | None = None,
) -> None:
    """Run :func:`build_app` with uvicorn until SIGTERM or Ctrl-C; then return (exit 0).

    ``announce(url)`` is called once it serves. Either signal shuts down
    gracefully: requests in flight finish, the lifespan closes the registry
    (run records delivered). uvicorn would then raise the signal again (the
    process dies of SIGTERM, or Ctrl-C aborts); here a stop that was asked for
    is a clean end.
    """
    app = build_app(repo, database_url, host=host, channel=channel, fallback=fallback)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    where = f"[{host}]" if ":" in host else host
    url = f"http://{where}:{port}{MCP_PATH}"
    server = _Server(config, on_ready=None if announce is None else lambda: announce(url))
    await server.serve()
