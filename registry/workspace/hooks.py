"""Git hooks: thin shims that exec the installed CLI, and their installer.

The shims in this repository's ``hooks/`` folder are exactly what
:func:`hook_script` writes (a test keeps them equal). Each carries a marker
line so the installer recognises its own hooks; a user's existing hook is
kept as ``<name>.local`` and run first (chained, not overwritten).
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from pydantic import BaseModel

from registry.errors import UsageError
from registry.git.store import GitStore

MARKER = "# procreg-hook"

# What each client hook runs. pre-commit refuses the commit on a problem;
# post-merge and post-commit keep the index fresh and never fail the git command.
CLIENT_HOOKS: dict[str, str] = {
    "pre-commit": "check --staged",
    "post-commit": "sync --quiet || true",
    "post-merge": "sync --quiet || true",
}
SERVER_HOOKS: dict[str, str] = {"pre-receive": "hook pre-receive"}

_TEMPLATE = """\
#!/bin/sh
{marker}: {name}
# Installed by `procreg hooks install`; `procreg hooks uninstall` removes it. A hook
# that was here before is kept as {name}.local and runs first.
# procreg is found as: $PROCREG_PYTHON, `procreg` on PATH, this clone's
# `git config procreg.python` (set by the installer), then python3.
here=$(dirname "$0")
{chain}if [ -z "${{PROCREG_PYTHON:-}}" ] && ! command -v procreg >/dev/null 2>&1; then
    PROCREG_PYTHON=$(git config --get procreg.python 2>/dev/null || true)
    if [ -n "$PROCREG_PYTHON" ] && [ ! -x "$PROCREG_PYTHON" ]; then PROCREG_PYTHON=; fi
fi
if [ -n "${{PROCREG_PYTHON:-}}" ]; then
    "$PROCREG_PYTHON" -m registry {command}
elif command -v procreg >/dev/null 2>&1; then
    procreg {command}
elif python3 -c "import registry" >/dev/null 2>&1; then
    python3 -m registry {command}
else
    echo "procreg hook: procreg is not installed here;" \\
        "install it (pipx install procedure-registry) or set PROCREG_PYTHON" >&2
    exit 1
fi
"""

_CHAIN = """\
if [ -x "$here/{name}.local" ]; then
    "$here/{name}.local" "$@" || exit $?
fi
"""

# pre-receive reads the pushed refs on stdin: keep them for both hooks.
_CHAIN_STDIN = """\
input=$(cat)
if [ -x "$here/{name}.local" ]; then
    printf '%s\\n' "$input" | "$here/{name}.local" "$@" || exit $?
fi
printf '%s\\n' "$input" | {{
"""


def hook_script(name: str) -> str:
    """The shim for hook ``name`` (as committed in ``hooks/`` and installed)."""
    command = {**CLIENT_HOOKS, **SERVER_HOOKS}[name]
    if name in SERVER_HOOKS:
        body = _TEMPLATE.format(
            marker=MARKER, name=name, chain=_CHAIN_STDIN.format(name=name), command=command
        )
        return body + "}\n"
    return _TEMPLATE.format(
        marker=MARKER, name=name, chain=_CHAIN.format(name=name), command=command
    )


class InstalledHook(BaseModel):
    name: str
    path: str
    kept_existing: str | None = None


PYTHON_CONFIG = "procreg.python"
"""This clone's git config key naming the interpreter the installer ran in: the hooks'
fallback when procreg is not on PATH. It lives in the clone, not in the hook, so a hook
shared through ``core.hooksPath`` works for everyone whose procreg is installed anywhere."""


class RemovedHook(BaseModel):
    name: str
    path: str
    restored: str | None = None


def hooks_dir(store: GitStore) -> Path:
    """Where git runs hooks from: ``core.hooksPath`` when set (as git resolves it), else .git/hooks.

    A relative ``core.hooksPath`` is relative to the working tree's root (the git dir in a
    bare repository), as ``git help config`` says.
    """
    configured = store.config_value("core.hooksPath")
    if not configured:
        return store.common_dir / "hooks"
    path = Path(configured).expanduser()
    if not path.is_absolute():
        path = (store.workdir or store.git_dir) / path
    return path


def install(store: GitStore, *, server: bool = False) -> list[InstalledHook]:
    """Install the client hooks (or, with ``server``, the pre-receive hook).

    Hooks go where git runs them (``core.hooksPath`` is respected). Re-running is safe:
    our own hooks are replaced, a foreign hook is moved to ``<name>.local`` once and
    chained. The hooks pin no interpreter; this clone's ``procreg.python`` config names
    the installer's as a fallback for when procreg is not on PATH.
    """
    folder = hooks_dir(store)
    folder.mkdir(parents=True, exist_ok=True)
    names = SERVER_HOOKS if server else CLIENT_HOOKS
    installed = []
    for name in names:
        target = folder / name
        kept = None
        if target.exists() or target.is_symlink():
            text = _read(target)
            if MARKER not in text:
                local = folder / f"{name}.local"
                if local.exists():
                    raise UsageError(
                        f"{target}: a hook is installed and {local.name} exists too; "
                        "merge them by hand, then rerun `procreg hooks install`"
                    )
                target.rename(local)
                local.chmod(local.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
                kept = str(local)
        target.write_text(hook_script(name))
        target.chmod(0o755)
        installed.append(InstalledHook(name=name, path=str(target), kept_existing=kept))
    store.set_local_config(PYTHON_CONFIG, sys.executable)
    return installed


def uninstall(store: GitStore, *, server: bool = False) -> list[RemovedHook]:
    """Remove procreg's own hooks (those with its marker), putting back any ``.local`` one.

    A hook that is not procreg's is never touched.
    """
    folder = hooks_dir(store)
    removed = []
    for name in SERVER_HOOKS if server else CLIENT_HOOKS:
        target = folder / name
        if not (target.is_file() and MARKER in _read(target)):
            continue
        target.unlink()
        restored = None
        local = folder / f"{name}.local"
        if local.exists():
            local.rename(target)
            restored = str(target)
        removed.append(RemovedHook(name=name, path=str(target), restored=restored))
    if not server:
        store.set_local_config(PYTHON_CONFIG, None)
    return removed


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
