"""Network allowlists end to end: metadata, check, release, run, and the run's record.

A procedure whose ``metadata.json`` allows one loopback host:port (a server this
test starts) is released and run through the CLI; the same procedure cannot reach
a second loopback port or a name, and each refusal is in ``run --json`` and in the
run's record in the index (SQLite and PostgreSQL); widening the allowlist is a
minor release whose reason says so.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.core.model import Parameter
from registry.core.network import NetworkAccess
from registry.git.store import GitStore
from registry.index.connect import open_backend
from registry.index.contract import ExecutionRecord
from tests.helpers import commit_all, run_cli, write_proc

PROC = "fetch-status"
BODY = """import urllib.error
import urllib.request

try:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()
except urllib.error.HTTPError as exc:
    return f"refused {exc.status}"
"""


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    servers = []
    for body in (b"pong", b"secret"):

        class Handler(http.server.BaseHTTPRequestHandler):
            payload = body

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-length", str(len(self.payload)))
                self.end_headers()
                self.wfile.write(self.payload)

            def log_message(self, *args: object) -> None:
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    yield servers[0].server_address[1], servers[1].server_address[1]
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _write(repo: Path, allow: list[str] | None) -> None:
    write_proc(
        repo,
        PROC,
        BODY,
        [Parameter(name="url", type="string")],
        signature="url: str",
        description="Fetch a URL and return its body.",
        network=NetworkAccess(allow=allow) if allow is not None else None,
    )


def _run(capsys: pytest.CaptureFixture[str], repo: Path, url: str, *args: str) -> dict[str, object]:
    out = run_cli(capsys, "-C", str(repo), *args, "run", PROC, "--arg", f"url={url}", "--json")
    result: dict[str, object] = json.loads(out.out)
    return result


def _records(repo: Path, database_url: str | None) -> list[ExecutionRecord]:
    async def read() -> list[ExecutionRecord]:
        backend = await open_backend(GitStore.open(repo), database_url)
        try:
            return await backend.executions(PROC)
        finally:
            await backend.close()

    return asyncio.run(read())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_allowed_port_is_reached_and_every_refusal_is_recorded(
    repo: Path,
    ports: tuple[int, int],
    capsys: pytest.CaptureFixture[str],
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    url_args: tuple[str, ...] = ()
    database_url = None
    if backend == "postgres":
        database_url = request.getfixturevalue("pg_url")
        url_args = ("--database-url", database_url)
    allowed, other = ports
    _write(repo, [f"127.0.0.1:{allowed}"])
    assert run_cli(capsys, "-C", str(repo), "check").code == 0
    commit_all(repo, "feat: fetch-status")
    assert run_cli(capsys, "-C", str(repo), *url_args, "release", PROC).code == 0

    result = _run(capsys, repo, f"http://127.0.0.1:{allowed}/", *url_args)
    assert result["ok"] and result["result"] == "pong", result
    assert result["network_denied"] == []

    result = _run(capsys, repo, f"http://127.0.0.1:{other}/", *url_args)
    assert result["ok"] and result["result"] == "refused 403", result
    denied = result["network_denied"]
    assert isinstance(denied, list) and [d["target"] for d in denied] == [f"127.0.0.1:{other}"]

    url = "http://api.example.com/"
    out = run_cli(capsys, "-C", str(repo), *url_args, "run", PROC, "--arg", f"url={url}")
    assert out.code == 0 and "refused 403" in out.out
    assert "procreg: network: refused api.example.com:80" in out.err

    records = sorted(_records(repo, database_url), key=lambda r: r.started_at)
    assert [[d.target for d in r.network_denied] for r in records] == [
        [],
        [f"127.0.0.1:{other}"],
        ["api.example.com:80"],
    ]
    assert all("network.allow" in d.reason for r in records for d in r.network_denied)


def test_without_network_the_same_code_reaches_nothing(
    repo: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    allowed, _other = ports
    config = repo / "procreg.toml"  # validation is a review aid: let the code through to the box
    config.write_text(
        config.read_text().replace(
            "allow_imports = []", 'allow_imports = ["urllib.request", "urllib.error"]'
        )
    )
    _write(repo, None)
    commit_all(repo, "feat: fetch-status")
    assert run_cli(capsys, "-C", str(repo), "release", PROC).code == 0
    result = _run(capsys, repo, f"http://127.0.0.1:{allowed}/")
    assert not result["ok"]
    error = result["error"]
    assert isinstance(error, dict) and error["type"] in ("SandboxViolation", "URLError"), error
    assert "not allowed in the sandbox" in str(error["message"])
    assert result["network_denied"] == []


def test_widening_the_allowlist_is_a_minor_release_that_says_so(
    repo: Path, ports: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    allowed, other = ports
    _write(repo, [f"127.0.0.1:{allowed}"])
    commit_all(repo, "feat: fetch-status")
    assert run_cli(capsys, "-C", str(repo), "release", PROC).code == 0
    _write(repo, [f"127.0.0.1:{allowed}", f"127.0.0.1:{other}"])
    commit_all(repo, "chore: reach the other server too")
    out = run_cli(capsys, "-C", str(repo), "release", PROC, "--json")
    assert out.code == 0, out.err
    assert "1.1.0" in out.out
    assert f"network access widened: metadata.json now allows 127.0.0.1:{other}" in out.out
    _write(repo, [f"127.0.0.1:{other}"])
    commit_all(repo, "chore: only the other server")
    out = run_cli(capsys, "-C", str(repo), "release", PROC, "--json")
    assert "1.1.1" in out.out and "network access narrowed" in out.out


def test_check_names_the_bad_allowlist_entry(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(repo, None)
    meta_path = repo / "procedures" / PROC / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["network"] = {"allow": ["*.example.com:443"]}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    out = run_cli(capsys, "-C", str(repo), "check")
    assert out.code != 0
    text = out.out + out.err
    assert "metadata.json" in text and "network" in text and "wildcards" in text, text
    assert "Traceback" not in text
