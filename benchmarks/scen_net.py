"""Network by allowlist: what a network sandbox and its proxy cost.

Figures, each beside its baseline in the same run:

- warm ``Sandbox.run`` of a no-op in a network sandbox (its own proxy endpoint, the
  relay inside, the IP-socket seccomp filter) beside the same run in a sandbox
  without network;
- one HTTP GET of a loopback server from inside a warm network sandbox (relay, Unix
  socket, h11 head parse, allowlist, upstream connection) beside the same GET made
  by the host process directly (the floor: no sandbox, no proxy), and beside a warm
  no-op run (the sandbox's own share).
"""

from __future__ import annotations

import http.server
import threading
import urllib.request

from benchmarks.common import Context, Row, log, stats, timed, timed_after
from registry.sandbox import RunRequest, Sandbox

NOOP = '''"""noop."""


def main(n: int) -> int:
    """Return n."""
    return n
'''

FETCH = '''"""fetch: one GET through the proxy."""

import urllib.request


def main(url: str) -> int:
    """The body's length."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())
'''


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def scenario_network(ctx: Context) -> list[Row]:
    """Warm network sandbox overhead, and one proxied GET beside a direct one."""
    n = ctx.reps(200, 500)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    url = f"http://127.0.0.1:{port}/"
    allow = [f"127.0.0.1:{port}"]
    try:
        direct = stats(timed(lambda: urllib.request.urlopen(url, timeout=10).read(), n, 5))
        with Sandbox(pool_size=2) as box:
            log(f"warm no-op runs with and without network x{n}")
            plain = RunRequest(files={"main.py": NOOP}, kwargs={"n": 1})
            noop_net = RunRequest(files={"main.py": NOOP}, kwargs={"n": 1}, network_allow=allow)
            fetch = RunRequest(files={"main.py": FETCH}, kwargs={"url": url}, network_allow=allow)
            without = stats(timed_after(lambda: box.run(plain), lambda: box.wait_warm(30), n, 5))

            def warm_net() -> object:
                return box.wait_warm(30, network=True)

            with_net = stats(timed_after(lambda: box.run(noop_net), warm_net, n, 5))
            log(f"warm runs that GET a loopback server through the proxy x{n}")

            def fetched() -> None:
                outcome = box.run(fetch)
                if not outcome.ok:
                    raise RuntimeError(f"the proxied GET failed: {outcome.error}")

            proxied = stats(timed_after(fetched, warm_net, n, 5))
    finally:
        httpd.shutdown()
        httpd.server_close()
    overhead = with_net["median_ms"] - without["median_ms"]
    request = proxied["median_ms"] - with_net["median_ms"]
    return [
        Row("network", "warm Sandbox.run, network sandbox", "no-op", with_net,
            "warm Sandbox.run without network", without,
            note=f"overhead {overhead:+.2f} ms median"),
        Row("network", "warm Sandbox.run with one GET through the proxy", "1 request", proxied,
            "the same GET from the host process, no sandbox or proxy", direct,
            note=f"the GET's share {request:.2f} ms median (run minus warm no-op)"),
    ]  # fmt: skip
