"""The web view honours ``procreg serve``'s tokens: the ``read`` right, or open on loopback
only when no token is configured (and then it says so)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.serve.mcp_helpers import server_env, serving
from tests.serve.web.web_helpers import build_web_registry

READER = "reader-secret-web"
PROPOSER = "proposer-secret-web"
TOKENS = """
[[serve.tokens]]
name = "reader"
hash_file = "reader.sha256"
rights = ["read"]

[[serve.tokens]]
name = "proposer"
env = "PROCREG_TEST_PROPOSER_TOKEN"
rights = ["propose"]
"""


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("web-tokens")
    repo = build_web_registry(root, runs=False)
    with (repo / "procreg.toml").open("a") as config:
        config.write(TOKENS)
    (repo / "reader.sha256").write_text(hashlib.sha256(READER.encode()).hexdigest() + "  -\n")
    log = root / "serve.log"
    with serving(repo, log, {"PROCREG_TEST_PROPOSER_TOKEN": PROPOSER}) as base:
        yield base, log


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("path", "shows"),
    [
        ("/", "Shout the text"),
        ("/p/flaky", "Shout the text"),
        ("/p/flaky/runs", "Runs and charts"),
        ("/health", "Failing"),
    ],
)
def test_a_page_needs_a_token_with_the_read_right(
    guarded: tuple[str, Path], path: str, shows: str
) -> None:
    base, _ = guarded
    anonymous = httpx2.get(base + path)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert shows not in anonymous.text
    wrong = httpx2.get(base + path, headers=bearer("not-a-token"))
    assert wrong.status_code == 401
    lacking = httpx2.get(base + path, params={"format": "json"}, headers=bearer(PROPOSER))
    assert lacking.status_code == 403
    assert lacking.json()["error"]["type"] == "PermissionDenied"
    reader = httpx2.get(base + path, headers=bearer(READER))
    assert reader.status_code == 200
    assert shows in reader.text


def test_with_tokens_the_view_is_not_open_and_says_nothing_of_it(
    guarded: tuple[str, Path],
) -> None:
    base, log = guarded
    assert "the web view is open" not in log.read_text()
    assert "serving the web view at http://127.0.0.1:" in log.read_text()
    # the stylesheets hold nothing of the registry
    assert httpx2.get(base + "/static/web.css").status_code == 200


def test_without_tokens_off_loopback_serve_refuses_to_start(tmp_path: Path) -> None:
    from tests.serve.mcp_helpers import procreg

    repo = tmp_path / "reg"
    procreg("init", str(repo))
    done = subprocess.run(
        [sys.executable, "-m", "registry", "-C", str(repo), "serve", "--host", "0.0.0.0"],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "(not loopback) needs at least one token" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_browser_logs_in_once_and_the_cookie_serves_only_the_pages(
    guarded: tuple[str, Path],
) -> None:
    base, _ = guarded
    wrong = httpx2.post(base + "/login", data={"token": "nope"})
    assert wrong.status_code == 401 and "not configured" in wrong.text
    lacking = httpx2.post(base + "/login", data={"token": PROPOSER})
    assert lacking.status_code == 401 and "lacks the &#39;read&#39; right" in lacking.text
    done = httpx2.post(base + "/login", data={"token": READER, "next": "//evil.example/x"})
    assert done.status_code == 303
    assert done.headers["location"] == "/"  # never off this site
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    jar = {"procreg_token": READER}
    assert httpx2.get(base + "/p/flaky", cookies=jar).status_code == 200
    # /mcp takes only the Authorization header
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Accept": "application/json, text/event-stream"}
    assert httpx2.post(base + "/mcp", json=body, headers=headers, cookies=jar).status_code == 401


def test_log_in_in_a_real_browser(guarded: tuple[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    from tests.serve.web.web_helpers import CHROMIUM_ARGS, chromium_or_skip

    base, _ = guarded
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_or_skip()), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page()
            tab.goto(base + "/p/flaky")
            assert "401" in tab.inner_text("h1")
            tab.click("#login-link")
            tab.fill("input[name=token]", READER)
            tab.click("button[type=submit]")
            tab.wait_for_url(base + "/p/flaky")
            assert "Shout the text" in tab.inner_text("h1")
            tab.goto(base + "/")
            assert "flaky" in tab.inner_text("#results")
        finally:
            browser.close()
