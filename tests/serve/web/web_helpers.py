"""Shared for the web view tests: a real registry with releases, runs and a health move,
a real ``procreg serve`` on a free loopback port, and the system's Chromium.

The registry: ``flaky`` released as 1.0.0 (healthy: five successful runs) and 1.0.1
(a regression: every run fails), ``stable`` promoted to 1.0.1, and the health
policy (window 5, at least 3 runs) moving ``stable`` back to 1.0.0 after the
failures; ``xss``, whose name and description hold markup and a script; a few
more procedures in other categories; ``broken``, committed but invalid.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from registry.api import Registry
from registry.core.model import Example, Parameter
from tests.helpers import REPO_ROOT, git, invalid_files, write_files, write_proc
from tests.serve.mcp_helpers import procreg

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCRIPT = "<script>window.__pwned = 1; document.title = 'pwned'</script>"
XSS_DESCRIPTION = f'Looks harmless. {SCRIPT} <img src=x onerror="window.__pwned = 2"> & more'

FLAKY_V1 = "if text == 'boom':\n    raise ValueError('boom')\nreturn text.upper()"
FLAKY_V2 = "# a regression: every call fails now\nraise RuntimeError('upstream changed: ' + text)"


def chromium_or_skip() -> Path:
    """The system Chromium; without it the test skips, except in CI, where it fails."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI") == "true" or os.environ.get("PROCREG_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests must run here: {message}")
    pytest.skip(message)


def build_web_registry(root: Path, *, runs: bool = True) -> Path:
    """The registry described in the module docstring (runs through the real sandbox)."""
    repo = root / "reg"
    procreg("init", str(repo))
    git(repo, "config", "user.name", "Ada Reviewer")
    git(repo, "config", "user.email", "ada@example.com")
    config = repo / "procreg.toml"
    text = config.read_text()
    for old, new in (("window = 20", "window = 5"), ("min_runs = 10", "min_runs = 3")):
        assert old in text, f"procreg init's procreg.toml no longer says {old!r}"
        text = text.replace(old, new)
    config.write_text(text)
    for name in ("slugify", "csv-to-rows", "humanize-bytes"):
        shutil.copytree(REPO_ROOT / "procedures" / name, repo / "procedures" / name)
    write_proc(
        repo,
        "flaky",
        FLAKY_V1,
        name="Shout the text",
        description="Upper-cases the text.\nFails on 'boom'.",
        category="text",
        tags=["demo", "health"],
        examples=[Example(input={"text": "hi"}, output="HI", description="shouts")],
    )
    write_proc(
        repo,
        "xss",
        name="<b>Bold</b> name",
        description=XSS_DESCRIPTION,
        category="security",
        tags=["<i>tag</i>"],
        parameters=[Parameter(name="text", type="string", description="<u>under</u>")],
        signature="text: str",
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: procedures for the web view <script>alert(1)</script>")
    procreg("-C", str(repo), "release", "--skip-examples")
    procreg("-C", str(repo), "promote", "flaky", "1.0.0", "--channel", "stable")
    if runs:
        with Registry.open(repo) as reg:
            for i in range(5):
                assert reg.run("flaky", "1.0.0", text=f"run {i}").ok
    write_proc(
        repo,
        "flaky",
        FLAKY_V2,
        name="Shout the text",
        description="Upper-cases the text.\nFails on 'boom'.",
        category="text",
        tags=["demo", "health"],
        examples=[Example(input={"text": "hi"}, output="HI", description="shouts")],
    )
    write_files(repo, "broken", invalid_files("broken"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "fix: flaky calls upstream")
    procreg("-C", str(repo), "release", "flaky", "--skip-examples")
    procreg("-C", str(repo), "promote", "flaky", "1.0.1", "--channel", "stable")
    if runs:
        with Registry.open(repo) as reg:
            for i in range(5):
                assert not reg.run("flaky", "stable", text=f"run {i}").ok
        # the records are delivered, and the policy applied after them, by the close above
        with Registry.open(repo) as reg:
            reg.health(["flaky"])
            reg.sync()
            assert reg.get("flaky", "stable").version == "1.0.0", "the policy did not move stable"
    return repo
