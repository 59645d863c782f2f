"""The host side of a network sandbox: a filtering HTTP proxy on a Unix socket of its own.

A run whose metadata lists ``network.allow`` gets a sandbox whose only way out
is this proxy. Each such sandbox has a :class:`ProxyEndpoint`: a private folder
holding one listening Unix socket, bind-mounted read-only into that sandbox
alone (at :data:`~registry.sandbox.supervisor.NET_MOUNT`), owned by the run's uid.
Inside, the supervisor's relay carries ``127.0.0.1:3128`` (what ``HTTP_PROXY``
names) to that socket; the sandbox's network namespace has nothing else.

The proxy reads one request head with h11 (the HTTP/1.1 parser httpcore and
uvicorn use): ``CONNECT host:port`` (HTTPS and any TCP protocol) or a plain
``GET http://host:port/...``. A target that is not exactly on the run's
allowlist gets ``403`` and is recorded as a :class:`NetworkDenial` with the
run; an allowed one is resolved here (never inside the sandbox), connected,
and relayed both ways until either side closes or the sandbox is retired.
All endpoints of a :class:`~registry.sandbox.Sandbox` share one asyncio loop
on one thread of the host process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import h11

from registry.core.network import Endpoint, NetworkDenial, allowed
from registry.errors import ExecutionError
from registry.sandbox.supervisor import PROXY_SOCKET

HEAD_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
END_WAIT_S = 1.0  # how long closing waits for its relays to end
MAX_HEAD_BYTES = 16384
MAX_CONNECTIONS = 32  # at once, per run
MAX_DENIALS = 100  # kept per run; the rest are counted
CHUNK = 65536
NOT_ALLOWED = "not in the procedure's network allowlist (metadata.json network.allow)"


class ProxyEndpoint:
    """One sandbox's proxy socket, its allowlist (empty until the run) and its denials."""

    def __init__(self, service: ProxyService, folder: str) -> None:
        self.service = service
        self.folder = folder
        self.socket_path = f"{folder}/{PROXY_SOCKET}"
        self.allow: frozenset[Endpoint] = frozenset()
        self.server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self._denials: list[NetworkDenial] = []
        self._dropped = 0
        self._lock = threading.Lock()

    def permit(self, allow: frozenset[Endpoint]) -> None:
        """Set the run's allowlist (before the run starts; everything is denied until then)."""
        self.allow = allow

    def deny(self, target: str, reason: str) -> None:
        denial = NetworkDenial(
            target=target[:300],
            at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            reason=reason,
        )
        with self._lock:
            if len(self._denials) < MAX_DENIALS:
                self._denials.append(denial)
            else:
                self._dropped += 1

    def denials(self) -> list[NetworkDenial]:
        """Every denial so far (the first :data:`MAX_DENIALS`, then one that counts the rest)."""
        with self._lock:
            kept = list(self._denials)
            if self._dropped:
                kept.append(
                    NetworkDenial(
                        target="*",
                        at=kept[-1].at,
                        reason=f"{self._dropped} more denied requests were not kept",
                    )
                )
            return kept

    def close(self) -> None:
        """Stop listening, end every relay of this sandbox, remove its folder (idempotent)."""
        self.service.call(self._close_async())
        shutil.rmtree(self.folder, ignore_errors=True)

    async def _close_async(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        await _end(list(self.tasks))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        busy = len(self.tasks) >= MAX_CONNECTIONS
        self.tasks.add(task)
        try:
            if busy:
                await _read_request(reader)  # read, so the client sees the answer, not a reset
                await _respond(writer, 503, f"more than {MAX_CONNECTIONS} connections at once")
            else:
                await self._serve(reader, writer)
        except (OSError, asyncio.CancelledError, TimeoutError):
            pass
        finally:
            self.tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parsed = await _read_request(reader)
        if isinstance(parsed, str):
            self.deny(
                parsed,
                "not an HTTP proxy request (CONNECT host:port, or a GET of an "
                "absolute http:// URL)",
            )
            await _respond(writer, 400, "procreg proxy: send CONNECT host:port or an absolute URL")
            return
        request, rest = parsed
        target = _target(request)
        if target is None:
            self.deny(request.target.decode("latin-1"), "the target names no host:port")
            await _respond(writer, 400, "procreg proxy: the request names no host:port")
            return
        host, port, head = target
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if not allowed(self.allow, host, port):
            self.deny(shown, NOT_ALLOWED)
            await _respond(writer, 403, f"procreg proxy: {shown} is {NOT_ALLOWED}")
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            await _respond(writer, 502, f"procreg proxy: cannot reach {shown}: {exc}")
            return
        try:
            if head is None:  # CONNECT: a tunnel
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                up_writer.write(head)
            if rest:
                up_writer.write(rest)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()


class ProxyService:
    """The asyncio loop (one thread) that serves every proxy endpoint of a sandbox."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="sandbox-netproxy", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def call(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` on the proxy's loop and wait for it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            if asyncio.iscoroutine(coro):
                coro.close()
            return
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)  # type: ignore[arg-type]

    def open(self, uid: int | None, gid: int | None) -> ProxyEndpoint:
        """A new endpoint listening on a fresh socket that only ``uid`` can reach."""
        folder = tempfile.mkdtemp(prefix="procreg-net-")
        endpoint = ProxyEndpoint(self, folder)
        loop = self._running_loop()
        try:
            future = asyncio.run_coroutine_threadsafe(_listen(endpoint), loop)
            endpoint.server = future.result(timeout=30)
            os.chmod(endpoint.socket_path, 0o600)  # noqa: PTH101
            if uid is not None and gid is not None:
                os.chown(folder, uid, gid)
                os.chown(endpoint.socket_path, uid, gid)
        except (OSError, RuntimeError, TimeoutError) as exc:
            endpoint.close()
            raise ExecutionError(f"cannot start the network proxy for the run: {exc}") from None
        return endpoint

    def close(self) -> None:
        """Stop the loop (every endpoint should be closed already)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        # relays of endpoints left open end here too, their sockets closed before the loop stops
        with contextlib.suppress(RuntimeError, TimeoutError):
            asyncio.run_coroutine_threadsafe(_end_all(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


async def _end(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel relays and wait until each has closed its sockets.

    A task's ``finally`` closes its writers, and a transport closes its socket one loop
    turn later: without the wait, a loop stopped just after would leave both open. The
    wait is bounded, so that a relay that does not end cannot hold a sandbox's teardown.
    """
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=END_WAIT_S)
    await asyncio.sleep(0)


async def _end_all() -> None:
    current = asyncio.current_task()
    await _end([t for t in asyncio.all_tasks() if t is not current])


async def _listen(endpoint: ProxyEndpoint) -> asyncio.AbstractServer:
    return await asyncio.start_unix_server(endpoint.handle, path=endpoint.socket_path)


async def _read_request(reader: asyncio.StreamReader) -> tuple[h11.Request, bytes] | str:
    """The request head (and the bytes after it), or the raw start of what was not one."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    seen = b""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return _printable(seen)
        if isinstance(event, h11.Request):
            rest, _closed = conn.trailing_data
            return event, bytes(rest)
        if event is not h11.NEED_DATA:
            return _printable(seen)
        async with asyncio.timeout(HEAD_TIMEOUT_S):  # not wait_for: 3.11's can lose a cancel
            data = await reader.read(CHUNK)
        if len(seen) < 200:
            seen += data[:200]
        try:
            conn.receive_data(data)
        except h11.RemoteProtocolError:
            return _printable(seen)
        if not data:
            return _printable(seen)


def _target(request: h11.Request) -> tuple[str, int, bytes | None] | None:
    """(host, port, the head to send upstream, None for a tunnel) of a proxy request."""
    try:
        return _parse_target(request)
    except ValueError:  # urlsplit's "Invalid IPv6 URL", a port out of range
        return None


def _parse_target(request: h11.Request) -> tuple[str, int, bytes | None] | None:
    text = request.target.decode("latin-1")
    if request.method == b"CONNECT":
        parts = urlsplit("//" + text)
        head = None
    else:
        parts = urlsplit(text)
        if parts.scheme.lower() != "http":
            return None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{request.method.decode('latin-1')} {path} HTTP/1.1"]
        for name, value in request.headers:
            if name in (b"proxy-connection", b"proxy-authorization", b"connection", b"keep-alive"):
                continue
            lines.append(f"{name.decode('latin-1')}: {value.decode('latin-1')}")
        lines.append("connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    host, port = parts.hostname, parts.port
    if not host:
        return None
    if port is None:
        if request.method == b"CONNECT":
            return None
        port = 80
    return host, port, head


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _respond(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = (message + "\n").encode("utf-8", "replace")
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway", 503: "Busy"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError, ConnectionError):
        writer.write(head.encode() + body)
        await writer.drain()


def _printable(data: bytes) -> str:
    text = data.split(b"\r\n", 1)[0].decode("latin-1")
    return "".join(c if c.isprintable() else "?" for c in text)[:200] or "(nothing)"
