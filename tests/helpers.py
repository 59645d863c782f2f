"""Plain helper functions shared by the test modules (the fixtures are in conftest.py).

- git: ``git`` (the CLI, the way a person drives it), ``make_repo``, ``commit_all``,
  ``tag_release``, ``tag_channel``;
- procedures: ``write_proc`` (a valid procedure folder in a working tree),
  ``write_code`` (the same for arbitrary code with tight limits), ``proc_files`` /
  ``invalid_files`` (a procedure's files as bytes), ``write_files``, ``release``,
  ``hostile`` (the files of a hostile payload in ``HOSTILE``);
- the CLI: ``run_cli`` (in-process), ``run_process`` (``python -m registry``), ``Result``;
- waiting: ``wait_for`` (poll until true, bounded);
- disks: ``mount_tmpfs``, ``fill_disk``, ``remount_read_only``;
- processes: ``stop`` (signal, wait, kill), ``hold_open`` (a process holding a file open).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from registry.cli import main as cli_main
from registry.core.model import Example, Limits, Metadata, Parameter, ParamType, Returns
from registry.git.store import GitStore
from registry.releases import release as releases

T = TypeVar("T")

#: The checkout this suite belongs to (its procedures/, examples/, docs/ and .git).
REPO_ROOT = Path(__file__).resolve().parent.parent

# -- git -------------------------------------------------------------------------------


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run the git CLI in ``cwd`` and return its stdout (tests drive git like a person)."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def make_repo(path: Path) -> Path:
    """``git init`` at ``path`` (made if missing), on branch main."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    return path


def commit_all(root: Path, message: str = "feat: change") -> str:
    """``git add -A`` and commit (empty commits allowed); the new commit's id."""
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message)
    return git(root, "rev-parse", "HEAD").strip()


def tag_release(root: Path, pid: str, version: str, ref: str = "HEAD") -> str:
    """A release tag made by hand (annotated, with the trailers procreg writes)."""
    name = f"procedure-{pid}-v{version}"
    message = f"Release {pid} {version}\n\nBump: minor\nBreaking: false\nReason: test release\n"
    git(root, "tag", "-a", name, "-m", message, ref)
    return name


def tag_channel(root: Path, pid: str, channel: str, seq: int, version: str) -> str:
    """A channel move made by hand (annotated, with the trailers procreg writes)."""
    name = f"channel/{pid}/{channel}/{seq:06d}"
    message = (
        f"Promote {pid} {version} to {channel}\n\nProcedure: {pid}\nChannel: {channel}\n"
        f"Version: {version}\nAction: promote\nReason: tested\n"
    )
    git(root, "tag", "-a", name, "-m", message)
    return name


# -- procedures ------------------------------------------------------------------------

TEXT_PARAMETER = Parameter(name="text", type="string", description="input")
#: The limits ``write_code`` gives a procedure unless told otherwise.
TIGHT_LIMITS = Limits(timeout_s=10, memory_mb=256)


def write_proc(
    root: Path,
    pid: str,
    body: str = "return text",
    parameters: list[Parameter] | None = None,
    *,
    signature: str | None = None,
    doc: str = "Do it.",
    returns: ParamType = "string",
    examples: list[Example] | None = None,
    **meta: Any,
) -> Path:
    """Write a valid procedure folder (main.py + metadata.json) under ``root/procedures``.

    main.py is ``def main(SIGNATURE): BODY`` (every line of BODY indented into the
    function; ``-> str`` when it returns a string). Without ``parameters`` it takes one
    string ``text``; ``signature`` defaults to ``text: str`` then, else to the names of the
    required parameters. Other keywords go to the metadata (description, tags, limits...).
    """
    if signature is None:
        signature = (
            "text: str"
            if parameters is None
            else ", ".join(p.name for p in parameters if p.required)
        )
    code = "\n".join("    " + line if line else "" for line in body.strip("\n").splitlines())
    arrow = " -> str" if returns == "string" else ""
    metadata = Metadata(
        id=pid,
        name=meta.pop("name", pid.replace("-", " ").title()),
        description=meta.pop("description", None) or f"The {pid} procedure.",
        parameters=parameters if parameters is not None else [TEXT_PARAMETER],
        returns=Returns(type=returns),
        examples=examples if examples is not None else [],
        **meta,
    )
    source = f'"""{pid}."""\n\n\ndef main({signature}){arrow}:\n    """{doc}"""\n{code}\n'
    return write_files(
        root, pid, {"main.py": source.encode(), "metadata.json": metadata.to_json().encode()}
    )


def write_code(
    root: Path,
    pid: str,
    body: str,
    parameters: list[Parameter] | None = None,
    *,
    returns: ParamType = "any",
    limits: Limits | None = None,
    **options: Any,
) -> Path:
    """``write_proc`` for procedures of arbitrary code: any result, ``TIGHT_LIMITS``."""
    limits = limits or TIGHT_LIMITS
    return write_proc(root, pid, body, parameters, returns=returns, limits=limits, **options)


def write_files(root: Path, pid: str, files: dict[str, bytes]) -> Path:
    """Replace ``procedures/<pid>/`` in the working tree with ``files``."""
    folder = root / "procedures" / pid
    if folder.exists():
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def proc_files(
    pid: str,
    params: tuple[str, ...] = ("text",),
    optional: tuple[str, ...] = (),
    body: str = "return text",
    doc: str = "Return the text.",
    extra: dict[str, bytes] | None = None,
) -> dict[str, bytes]:
    """``main.py`` + ``metadata.json`` of a valid procedure with string parameters."""
    args = [f"{p}: str" for p in params] + [f'{p}: str = ""' for p in optional]
    main = (
        f'"""{pid}: a procedure used by the release tests."""\n\n\n'
        f"def main({', '.join(args)}) -> str:\n"
        f'    """{doc}"""\n'
        f"    {body}\n"
    )
    meta = {
        "id": pid,
        "name": pid.replace("-", " ").title(),
        "description": f"{pid} for tests",
        "parameters": [{"name": p, "type": "string", "required": True} for p in params]
        + [{"name": p, "type": "string", "required": False, "default": ""} for p in optional],
        "returns": {"type": "string"},
    }
    out = {"main.py": main.encode(), "metadata.json": (json.dumps(meta, indent=2) + "\n").encode()}
    out.update(extra or {})
    return out


def invalid_files(pid: str) -> dict[str, bytes]:
    """A procedure that fails validation (it calls eval)."""
    return proc_files(pid, body="return eval(text)")


#: The hostile procedures (data: payloads the sandbox tests run, never imported).
HOSTILE = REPO_ROOT / "tests" / "sandbox" / "hostile"


def hostile(name: str, **extra: str) -> dict[str, str]:
    """The files of a sandbox run of ``HOSTILE/<name>.py`` (as main.py), plus ``extra``."""
    return {"main.py": (HOSTILE / f"{name}.py").read_text(), **extra}


def release(root: Path, pid: str) -> str:
    """Release ``pid`` from the repository at ``root``; the new version."""
    made = releases.release(GitStore.open(root), [pid])
    assert made, f"nothing to release for {pid}"
    return made[0].version


# -- the CLI ---------------------------------------------------------------------------


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
    code = cli_main(list(args))
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


# -- waiting ---------------------------------------------------------------------------


def wait_for(
    check: Callable[[], T],
    what: str,
    *,
    timeout: float = 30.0,
    poll: float = 0.02,
    tolerate: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``check`` until it returns a truthy value, and return it; fail after ``timeout``.

    A bounded wait, never a timing assertion. Exceptions in ``tolerate`` count as "not yet".
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except tolerate as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(poll)


# -- disks -----------------------------------------------------------------------------


def mount_tmpfs(where: Path, size: str) -> None:
    """Mount a tmpfs of ``size`` at ``where``; skip the test where that is impossible
    (not root, no CAP_SYS_ADMIN), except in CI (``CI=true``), where it fails."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs in CI: {proc.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here (not root?): {proc.stderr.strip()}")


def fill_disk(where: Path) -> None:
    """Fill the file system holding ``where`` until it has no space left."""
    with (where / "filler").open("wb") as fh:
        chunk = b"\0" * 65536
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    # a few more bytes fill the last partial block
    for i in range(64):
        try:
            (where / f"filler-{i}").write_bytes(b"\0" * 512)
        except OSError:
            break


def remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


# -- processes -------------------------------------------------------------------------


def stop(proc: subprocess.Popen[Any], sig: int, timeout: float = 15.0) -> None:
    """Send ``sig`` to ``proc`` and wait for it; SIGKILL it when it outlives ``timeout``."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def hold_open(path: Path, mode: str = "a") -> subprocess.Popen[str]:
    """A live process holding ``path`` open (as libgit2 or git hold a ref lock)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import time; f = open({str(path)!r}, {mode!r}); print('held', "
         "flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    holder.stdout.close()
    return holder
