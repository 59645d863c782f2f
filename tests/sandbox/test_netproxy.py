"""The network proxy on its own: what a hostile client can send down its Unix socket.

A real :class:`ProxyService` and a real socket, driven from the test the way the
relay (or a procedure that talks to the socket itself) would.
"""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from registry.core.network import NetworkAccess
from registry.sandbox.netproxy import MAX_CONNECTIONS, ProxyEndpoint, ProxyService


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"path={self.path} host={self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def endpoint(upstream: int) -> Iterator[ProxyEndpoint]:
    service = ProxyService()
    ep = service.open(None, None)
    ep.permit(NetworkAccess(allow=[f"127.0.0.1:{upstream}"]).endpoints())
    yield ep
    ep.close()
    service.close()


def ask(ep: ProxyEndpoint, data: bytes) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(15)
        sock.connect(ep.socket_path)
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks).decode("latin-1")


@pytest.mark.parametrize(
    ("head", "status", "recorded"),
    [
        (b"CONNECT [::1 HTTP/1.1\r\nHost: x\r\n\r\n", "400", "[::1"),
        (b"CONNECT 127.0.0.1:99999 HTTP/1.1\r\nHost: x\r\n\r\n", "400", "127.0.0.1:99999"),
        (b"CONNECT 127.0.0.1 HTTP/1.1\r\nHost: x\r\n\r\n", "400", "127.0.0.1"),
        (b"GET /relative HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "400", "/relative"),
        (b"GET ftp://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n", "400", "ftp://127.0.0.1/"),
        (b"CONNECT 2130706433:80 HTTP/1.1\r\nHost: x\r\n\r\n", "403", "2130706433:80"),
        (b"CONNECT 127.1:80 HTTP/1.1\r\nHost: x\r\n\r\n", "403", "127.1:80"),
        (b"\x00\x01\x02 garbage\r\n\r\n", "400", "??? garbage"),
        (b"GET http://x/ HTTP/1.1\r\n" + b"A: " + b"b" * 20000 + b"\r\n\r\n", "400", "GET"),
    ],
)
def test_what_is_not_an_allowed_request_is_refused_and_recorded(
    endpoint: ProxyEndpoint, head: bytes, status: str, recorded: str
) -> None:
    answer = ask(endpoint, head)
    assert answer.startswith(f"HTTP/1.1 {status}"), answer
    (denial,) = endpoint.denials()
    assert denial.target.startswith(recorded), denial


def test_a_spelling_of_an_allowed_address_is_not_that_address(
    endpoint: ProxyEndpoint, upstream: int
) -> None:
    """What is checked is what is connected: no alternative spelling gets through."""
    for target in (
        f"127.000.000.001:{upstream}",
        f"0x7f000001:{upstream}",
        f"localhost:{upstream}",
    ):
        answer = ask(endpoint, f"CONNECT {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert answer.startswith("HTTP/1.1 403"), (target, answer)
    assert len(endpoint.denials()) == 3


def test_plain_http_goes_upstream_in_origin_form(endpoint: ProxyEndpoint, upstream: int) -> None:
    head = f"GET http://127.0.0.1:{upstream}/a?b=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    answer = ask(endpoint, (head + "Proxy-Authorization: x\r\n\r\n").encode())
    assert answer.startswith("HTTP/1.0 200") and "path=/a?b=1" in answer, answer
    assert endpoint.denials() == []


def test_a_pipelined_request_for_another_host_stays_on_the_allowed_connection(
    endpoint: ProxyEndpoint, upstream: int
) -> None:
    first = f"GET http://127.0.0.1:{upstream}/one HTTP/1.1\r\nHost: a\r\n\r\n"
    second = "GET http://example.com/two HTTP/1.1\r\nHost: example.com\r\n\r\n"
    answer = ask(endpoint, (first + second).encode())
    assert "path=/one" in answer  # the allowed server answered; example.com was never reached


def test_more_connections_than_the_limit_are_turned_away(endpoint: ProxyEndpoint) -> None:
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(15)
            sock.connect(endpoint.socket_path)
            sock.sendall(b"CONNECT 127.0.0.1:1")  # an unfinished head: the connection stays
            held.append(sock)
        answer = ask(endpoint, b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith("HTTP/1.1 503"), answer
    finally:
        for sock in held:
            sock.close()


def test_closing_the_service_right_after_its_endpoint_closes_every_relay_socket() -> None:
    # the relays' sockets close one loop turn after their tasks end: a loop stopped at
    # once left them open (ResourceWarnings at a later garbage collection, in another test)
    for _ in range(20):
        before = len(os.listdir("/proc/self/fd"))
        service = ProxyService()
        ep = service.open(None, None)
        held = []
        for _ in range(3):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(ep.socket_path)
            sock.sendall(b"CONNECT 127.0.0.1:1")  # an unfinished head: the relay waits
            held.append(sock)
        deadline = time.monotonic() + 15
        while len(ep.tasks) < len(held):  # every relay is reading its unfinished head
            assert time.monotonic() < deadline, "the proxy never took the connections"
            time.sleep(0.005)
        ep.close()
        service.close()
        try:
            assert [sock.recv(100) for sock in held] == [b""] * 3
        finally:
            for sock in held:
                sock.close()
        assert len(os.listdir("/proc/self/fd")) == before  # no socket of the proxy left open


def test_closing_the_endpoint_ends_its_tunnels(upstream: int) -> None:
    service = ProxyService()
    ep = service.open(None, None)
    ep.permit(NetworkAccess(allow=[f"127.0.0.1:{upstream}"]).endpoints())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(15)
    sock.connect(ep.socket_path)
    sock.sendall(f"CONNECT 127.0.0.1:{upstream} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    ep.close()
    assert sock.recv(100) == b""  # the tunnel is gone with its sandbox's endpoint
    sock.close()
    service.close()
