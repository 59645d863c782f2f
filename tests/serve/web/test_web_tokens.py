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

from tests.serve.mcp_helpers import server_env
from tests.serve.web.web_helpers import build_web_registry, serving

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
    [("/", "flaky"), ("/p/flaky", "flaky"), ("/p/flaky/runs", "flaky"), ("/health", "Failing")],
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
