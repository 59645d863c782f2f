"""The web view's routes, mounted into the ``procreg serve`` app (GET and HEAD only).

Each page is answered as HTML, or as JSON (the page model, the API's models inside)
when asked with ``?format=json`` or ``Accept: application/json``. Access follows the
serve app's tokens: a bearer token with the ``read`` right (a browser gives it once
at ``/login``, which keeps it in an HttpOnly, SameSite=Strict cookie), or, when no token is
configured and the server listens on loopback, anyone on this machine (the Host
header must then name a loopback address, so a web page elsewhere cannot rebind a
name to 127.0.0.1 and read it). Every answer carries a strict Content-Security-Policy:
no script at all, styles and images from procreg itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from registry.api import AsyncRegistry
from registry.config import HealthSection
from registry.errors import IndexUnavailable, NotFoundError, PermissionDenied, RegistryError
from registry.serve.tokens import Grant
from registry.serve.web import charts, pages, render

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
TOKEN_COOKIE = "procreg_token"  # noqa: S105 - the name of a cookie, not a secret
"""The cookie ``/login`` sets: the token itself, for the web view's pages only."""
STATIC_TYPES = {".css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Access:
    """Who may read: ``open`` (no tokens configured, loopback only) or a ``read`` token."""

    open: bool
    lookup: Callable[[str], Grant | None] = lambda _secret: None
    """The grant of a presented token (the serve app's token table)."""

    def refused(self, request: Request) -> Response | None:
        """The answer that refuses ``request``, or None when it may read."""
        if self.open:
            host = request.headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name in LOOPBACK_HOSTS:
                return None
            return _error(request, 403, "Forbidden", f"host {host!r} is not a loopback address")
        user = request.scope.get("user")
        if isinstance(user, AuthenticatedUser):
            if "read" in user.scopes:
                return None
            return _error(request, 403, "PermissionDenied", "this token lacks the 'read' right")
        response = _error(
            request,
            401,
            "Unauthorized",
            "a token with the 'read' right is needed: send Authorization: Bearer TOKEN, "
            "or give it at /login",
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        return response


class Sources:
    """Where the routes find the running registry and the health policy (read per request)."""

    def __init__(
        self, reg: Callable[[], AsyncRegistry], policy: Callable[[], HealthSection]
    ) -> None:
        self.reg = reg
        self.policy = policy


def wants_json(request: Request) -> bool:
    """``?format=json``, or an Accept header that names JSON and not HTML."""
    fmt = request.query_params.get("format")
    if fmt is not None:
        return fmt == "json"
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _error(request: Request, status: int, kind: str, message: str) -> Response:
    if wants_json(request):
        return _secure(JSONResponse({"error": {"type": kind, "message": message}}, status))
    html = render.render(
        "error.html", status=status, kind=kind, message=message, path=request.url.path
    )
    return _secure(Response(html, status, media_type="text/html"))


def _page(request: Request, model: BaseModel, template: str, **extra: Any) -> Response:
    if wants_json(request):
        return _secure(JSONResponse(model.model_dump(mode="json", by_alias=True)))
    given = {k: v for k, v in request.query_params.items() if v and k != "format"}
    as_json = urlencode({**given, "format": "json"})
    html = render.render(
        template, page=model, path=request.url.path, json_url=f"{request.url.path}?{as_json}",
        **extra,
    )  # fmt: skip
    return _secure(Response(html, media_type="text/html"))


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(access: Access, handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        refused = access.refused(request)
        if refused is not None:
            return refused
        try:
            return await handler(request)
        except NotFoundError as exc:
            return _error(request, 404, type(exc).__name__, str(exc))
        except IndexUnavailable as exc:
            return _error(request, 503, type(exc).__name__, str(exc))
        except RegistryError as exc:
            return _error(request, 400, type(exc).__name__, str(exc))

    return endpoint


def _view(request: Request) -> Literal["split", "unified"]:
    return "unified" if request.query_params.get("view") == "unified" else "split"


def web_routes(sources: Sources, access: Access) -> list[BaseRoute]:
    """The pages, the stylesheets; each answers GET and HEAD (405 otherwise)."""

    async def index(request: Request) -> Response:
        filters = pages.Filters.parse(request.query_params)
        page = await pages.index_page(sources.reg(), filters, sources.policy())
        return _page(request, page, "index.html")

    async def procedure(request: Request) -> Response:
        version = request.query_params.get("version") or None
        page = await pages.procedure_page(sources.reg(), request.path_params["id"], version)
        source = render.highlight_lines(page.selected.source, "main.py")
        return _page(request, page, "procedure.html", source=source)

    async def diff(request: Request) -> Response:
        p = request.path_params
        page = await pages.diff_page(sources.reg(), p["id"], p["range"], _view(request))
        files = []
        for f in page.files:
            rows = render.diff_rows(f.name, f.a, f.b)
            files.append((f, rows if page.view == "split" else render.unified_rows(rows)))
        return _page(request, page, "diff.html", files=files)

    async def runs(request: Request) -> Response:
        policy = sources.policy()
        page, chart_runs = await pages.runs_page(sources.reg(), request.path_params["id"], policy)
        data = charts.series(chart_runs, policy.window)
        markers = [
            charts.Marker(m.move.date, _move_label(m))
            for m in page.moves
            if m.move.date is not None
        ]
        svg = {
            "success": charts.success_chart(data, policy.threshold, policy.window, markers),
            "duration": charts.duration_chart(data, policy.window, markers),
        }
        return _page(request, page, "runs.html", charts=svg)

    async def health(request: Request) -> Response:
        page = await pages.health_page(sources.reg(), sources.policy())
        return _page(request, page, "health.html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "pygments.css":
            body = render.pygments_css()
        elif name == "web.css":
            body = (render.STATIC / "web.css").read_text(encoding="utf-8")
        else:
            return _error(request, 404, "NotFound", f"no static file {name!r}")
        response = Response(body, media_type=STATIC_TYPES[".css"])
        response.headers["Cache-Control"] = "public, max-age=3600"
        return _secure(response)

    def route(path: str, handler: Handler) -> Route:
        return Route(path, _guarded(access, handler), methods=["GET"])

    async def login(request: Request) -> Response:
        return await _login(request, access)

    return [
        route("/", index),
        route("/p/{id}", procedure),
        route("/p/{id}/diff/{range}", diff),
        route("/p/{id}/runs", runs),
        route("/health", health),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/login", login, methods=["GET", "POST"]),
    ]


def _next(target: str | None) -> str:
    """Where to go after logging in: a path of this site only (never ``//host``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def _login(request: Request, access: Access) -> Response:
    """``GET``: the form; ``POST``: check the token and keep it in a cookie (303 to ``next``)."""
    target = _next(request.query_params.get("next"))
    if request.method == "GET":
        html = render.render("login.html", path="/login", target=target, message="")
        return _secure(Response(html, media_type="text/html"))
    form = await request.form()
    secret = str(form.get("token", "")).strip()
    grant = access.lookup(secret) if secret else None
    try:
        if grant is None:
            raise PermissionDenied("That token is not configured.", "read")
        grant.require("read")
    except PermissionDenied as exc:
        html = render.render("login.html", path="/login", target=target, message=str(exc))
        return _secure(Response(html, 401, media_type="text/html"))
    response = RedirectResponse(_next(str(form.get("next", target))), 303)
    response.set_cookie(
        TOKEN_COOKIE,
        secret,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return _secure(response)


def _move_label(move: pages.PolicyMove) -> str:
    m = move.move
    where = "out of service" if m.out_of_service else f"to {m.version}"
    return f"health policy: {move.channel} {where}"
