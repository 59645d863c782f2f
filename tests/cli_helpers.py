"""Helpers for driving the CLI and writing valid procedures in tests."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry.cli import main
from registry.core.model import Example, Metadata, Parameter, Returns


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run ``procreg ARGS`` in-process and capture what it prints."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return Result(code, out, err)


def run_process(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | None = None
) -> Result:
    """Run ``python -m registry ARGS`` as a separate process (what a shell user sees)."""
    proc = subprocess.run(
        [sys.executable, "-m", "registry", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        input=input,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def write_procedure(
    root: Path,
    pid: str,
    *,
    body: str = "return text",
    params: str = "text: str",
    parameters: list[Parameter] | None = None,
    examples: list[Example] | None = None,
    **meta: Any,
) -> Path:
    """Write a valid procedure folder (main.py + metadata.json) under ``root/procedures``."""
    folder = root / "procedures" / pid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(
        f'"""{pid}."""\n\n\ndef main({params}) -> str:\n    """Do it."""\n    {body}\n'
    )
    if parameters is None:
        parameters = [Parameter(name="text", type="string", description="input")]
    metadata = Metadata(
        id=pid,
        name=meta.pop("name", pid.title()),
        description=meta.pop("description", f"{pid} procedure"),
        parameters=parameters,
        returns=Returns(type="string"),
        examples=examples if examples is not None else [],
        **meta,
    )
    (folder / "metadata.json").write_text(metadata.to_json())
    return folder
