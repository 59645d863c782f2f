"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from registry.sandbox import Sandbox


@pytest.fixture(scope="module")
def os_only() -> Iterator[Sandbox]:
    """The OS layers alone: the attacker has defeated the audit hook."""
    with Sandbox(pool_size=1, audit_hook=False) as box:
        box.wait_warm(30)
        yield box


@pytest.fixture
def host_process() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A host process with a secret in its command line and its environment."""
    secret = f"SECRET-{uuid.uuid4().hex}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; time.sleep(60)", secret],
        env={"PATH": "/usr/bin:/bin", "PROCREG_TEST_SECRET": secret},
    )
    try:
        yield proc, secret
    finally:
        proc.kill()
        proc.wait()
