"""Network by allowlist: a run's only way out is procreg's filtering proxy.

Real servers on the host's loopback, real sandboxes: an allowed host:port is
reached (plain HTTP and a CONNECT tunnel), any other port or any name is refused
by the proxy and recorded with the run, and a run without ``network`` reaches
nothing. The OS layers are tested alone too (audit hook off), as an attacker who
has defeated the hook would meet them.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.config import SandboxSection
from registry.errors import ExecutionError
from registry.sandbox import RunRequest, Sandbox


class _Server:
    """A loopback HTTP server that counts the requests it got."""

    def __init__(self, body: bytes) -> None:
        hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.hits = hits
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[_Server, _Server]]:
    allowed, other = _Server(b"hello from the allowed server"), _Server(b"secret")
    yield allowed, other
    allowed.close()
    other.close()


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(pool_size=0) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def os_only_box() -> Iterator[Sandbox]:
    with Sandbox(pool_size=0, audit_hook=False) as sandbox:
        yield sandbox


FETCH = """
import urllib.error
import urllib.request


def main(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return {"status": response.status, "body": response.read().decode()}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode()}
    except OSError as exc:
        return {"status": None, "body": f"{type(exc).__name__}: {exc}"}
"""

TUNNEL = """
import http.client


def main(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
    conn.set_tunnel("127.0.0.1", port)
    conn.request("GET", "/through-the-tunnel")
    response = conn.getresponse()
    return {"status": response.status, "body": response.read().decode()}
"""


def _fetch(box: Sandbox, url: str, allow: list[str] | None) -> tuple[dict[str, object], list[str]]:
    outcome = box.run(
        RunRequest(files={"main.py": FETCH}, kwargs={"url": url}, network_allow=allow)
    )
    assert outcome.ok, outcome.error
    assert isinstance(outcome.result, dict)
    return outcome.result, [d.target for d in outcome.network_denied]


def test_an_allowed_host_port_is_reached_through_the_proxy(
    box: Sandbox, servers: tuple[_Server, _Server]
) -> None:
    allowed, _other = servers
    result, denied = _fetch(
        box, f"http://127.0.0.1:{allowed.port}/hi", [f"127.0.0.1:{allowed.port}"]
    )
    assert result == {"status": 200, "body": "hello from the allowed server"}
    assert denied == []
    assert "/hi" in allowed.hits


def test_a_tunnel_to_an_allowed_port_is_opened(
    box: Sandbox, servers: tuple[_Server, _Server]
) -> None:
    allowed, _other = servers
    outcome = box.run(
        RunRequest(
            files={"main.py": TUNNEL},
            kwargs={"port": allowed.port},
            network_allow=[f"127.0.0.1:{allowed.port}"],
        )
    )
    assert outcome.ok, outcome.error
    assert outcome.result == {"status": 200, "body": "hello from the allowed server"}
    assert "/through-the-tunnel" in allowed.hits


def test_another_port_and_any_name_are_refused_and_recorded(
    box: Sandbox, servers: tuple[_Server, _Server]
) -> None:
    allowed, other = servers
    allow = [f"127.0.0.1:{allowed.port}"]
    result, denied = _fetch(box, f"http://127.0.0.1:{other.port}/steal", allow)
    assert result["status"] == 403
    assert denied == [f"127.0.0.1:{other.port}"]
    result, denied = _fetch(box, f"http://localhost:{allowed.port}/by-name", allow)
    assert result["status"] == 403  # the name is not the allowed address
    assert denied == [f"localhost:{allowed.port}"]
    result, denied = _fetch(box, "http://example.com/", allow)
    assert result["status"] == 403
    assert denied == ["example.com:80"]
    assert other.hits == []
    assert "/by-name" not in allowed.hits


def test_a_denial_says_when_and_why(box: Sandbox, servers: tuple[_Server, _Server]) -> None:
    _allowed, other = servers
    outcome = box.run(
        RunRequest(
            files={"main.py": FETCH},
            kwargs={"url": f"http://127.0.0.1:{other.port}/"},
            network_allow=["api.example.com:443"],
        )
    )
    (denial,) = outcome.network_denied
    assert denial.target == f"127.0.0.1:{other.port}"
    assert "network.allow" in denial.reason
    assert denial.at.endswith("+00:00")


def test_a_run_without_network_reaches_nothing(
    box: Sandbox, os_only_box: Sandbox, servers: tuple[_Server, _Server]
) -> None:
    allowed, _other = servers
    before = len(allowed.hits)
    result, denied = _fetch(box, f"http://127.0.0.1:{allowed.port}/no-network", None)
    assert result["status"] is None and "not allowed in the sandbox" in str(result["body"])
    assert denied == []
    direct = os_only_box.run(RunRequest(files={"main.py": DIRECT}, kwargs={"port": allowed.port}))
    assert direct.ok, direct.error
    assert direct.result["inet"] == "EAFNOSUPPORT"
    assert len(allowed.hits) == before


DIRECT = """
import errno
import socket


def main(port: int) -> dict:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        return {"inet": errno.errorcode[exc.errno]}
    sock.settimeout(5)
    try:
        sock.connect(("127.0.0.1", port))
        return {"inet": "connected"}
    except OSError as exc:
        return {"inet": errno.errorcode.get(exc.errno, str(exc))}
"""

RAW = """
import errno
import socket

PROXY = "/run/procreg-net/proxy.sock"


def ask(line: bytes) -> str:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(PROXY)
    sock.sendall(line)
    return sock.recv(200).decode("latin-1").split("\\r\\n", 1)[0]


def code(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc))


def main(port: int, other: int) -> dict:
    out = {}
    targets = {"host-loopback": ("127.0.0.1", other), "allowed-direct": ("127.0.0.1", port)}
    for name, target in targets.items():
        sock = socket.socket()
        sock.settimeout(5)
        try:
            sock.connect(target)
            out[name] = "connected"
        except OSError as exc:
            out[name] = code(exc)
    try:
        socket.getaddrinfo("example.com", 80)
        out["resolve"] = "resolved"
    except OSError as exc:
        out["resolve"] = "failed"
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
        out["netlink"] = "created"
    except OSError as exc:
        out["netlink"] = code(exc)
    end = b" HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
    out["connect-other"] = ask(b"CONNECT 127.0.0.1:%d" % other + end)
    out["connect-allowed"] = ask(b"CONNECT 127.0.0.1:%d" % port + end)
    out["absolute-https"] = ask(b"GET https://127.0.0.1:%d/" % port + end)
    out["garbage"] = ask(b"\\x16\\x03\\x01 not http\\r\\n\\r\\n")
    return out
"""


def test_the_os_layers_alone_leave_only_the_proxy(
    os_only_box: Sandbox, servers: tuple[_Server, _Server]
) -> None:
    """Without the audit hook: the network namespace holds nothing, the proxy still filters."""
    allowed, other = servers
    outcome = os_only_box.run(
        RunRequest(
            files={"main.py": RAW},
            kwargs={"port": allowed.port, "other": other.port},
            network_allow=[f"127.0.0.1:{allowed.port}"],
        )
    )
    assert outcome.ok, (outcome.error, outcome.stderr)
    got = outcome.result
    assert isinstance(got, dict)
    assert got["host-loopback"] == "ECONNREFUSED"  # the sandbox's loopback is its own
    assert got["allowed-direct"] == "ECONNREFUSED"  # even the allowed port: only via the proxy
    assert got["resolve"] == "failed"  # no resolver inside: the proxy resolves names
    assert got["netlink"] == "EAFNOSUPPORT"
    assert got["connect-other"].startswith("HTTP/1.1 403")
    assert got["connect-allowed"].startswith("HTTP/1.1 200")
    assert got["absolute-https"].startswith("HTTP/1.1 400")
    assert got["garbage"].startswith("HTTP/1.1 400")
    targets = [d.target for d in outcome.network_denied]
    assert f"127.0.0.1:{other.port}" in targets
    assert len(targets) == 3  # the other port, the https URL, the garbage
    assert other.hits == []


def test_a_warm_network_sandbox_takes_its_allowlist_from_its_run(
    servers: tuple[_Server, _Server],
) -> None:
    allowed, other = servers
    with Sandbox(pool_size=1) as warm:
        assert warm.wait_warm(60, network=True)
        result, denied = _fetch(
            warm, f"http://127.0.0.1:{other.port}/w", [f"127.0.0.1:{other.port}"]
        )
        assert result["status"] == 200 and denied == []
        assert warm.wait_warm(60, network=True)
        # the next warm sandbox does not inherit that allowlist
        result, denied = _fetch(
            warm, f"http://127.0.0.1:{other.port}/w2", [f"127.0.0.1:{allowed.port}"]
        )
        assert result["status"] == 403 and denied == [f"127.0.0.1:{other.port}"]
    assert "/w2" not in other.hits


def test_a_network_sandbox_leaves_no_proxy_socket_behind(
    servers: tuple[_Server, _Server],
) -> None:
    allowed, _other = servers
    before = set(Path("/tmp").glob("procreg-net-*"))
    with Sandbox(pool_size=1) as warm:
        assert warm.wait_warm(60, network=True)
        waiting = set(Path("/tmp").glob("procreg-net-*")) - before
        assert len(waiting) == 1  # the warm sandbox's endpoint, made before its run
        url = f"http://127.0.0.1:{allowed.port}/"
        result, _denied = _fetch(warm, url, [f"127.0.0.1:{allowed.port}"])
        assert result["status"] == 200
    # closed: every endpoint of that sandbox (the one that ran, the one that waited) is gone
    assert not set(Path("/tmp").glob("procreg-net-*")) - before


def test_without_the_isolation_engine_a_network_run_fails_closed(
    monkeypatch: pytest.MonkeyPatch, servers: tuple[_Server, _Server]
) -> None:
    allowed, _other = servers
    monkeypatch.setenv("PATH", "/nonexistent")  # a machine without bubblewrap
    config = SandboxSection(require_isolation=False, pool_size=0)
    with Sandbox(config) as plain:
        request = RunRequest(
            files={"main.py": FETCH},
            kwargs={"url": f"http://127.0.0.1:{allowed.port}/plain"},
            network_allow=[f"127.0.0.1:{allowed.port}"],
        )
        with pytest.raises(ExecutionError, match="needs the isolation engine"):
            plain.run(request)
        # the same engine still runs what needs no network (not isolated, and it says so)
        other = plain.run(RunRequest(files={"main.py": "def main():\n    return 1\n"}))
        assert other.ok and other.result == 1 and other.isolation == "none"
    assert "/plain" not in allowed.hits
