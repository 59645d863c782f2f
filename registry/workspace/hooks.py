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
# Installed by `procreg hooks install`. A hook that was here before is kept as
# {name}.local and runs first; remove this file to uninstall.
here=$(dirname "$0")
{chain}if [ -n "${{PROCREG_PYTHON:-}}" ]; then
    "$PROCREG_PYTHON" -m registry {command}
elif command -v procreg >/dev/null 2>&1; then
    procreg {command}
else
    python3 -m registry {command}
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


def install(store: GitStore, *, server: bool = False) -> list[InstalledHook]:
    """Install the client hooks (or, with ``server``, the pre-receive hook).

    Re-running is safe: our own hooks are replaced, a foreign hook is moved to
    ``<name>.local`` once and chained.
    """
    hooks_dir = store.git_dir / "hooks"
    hooks_dir.mkdir(exist_ok=True)
    names = SERVER_HOOKS if server else CLIENT_HOOKS
    installed = []
    for name in names:
        target = hooks_dir / name
        kept = None
        if target.exists() or target.is_symlink():
            text = _read(target)
            if MARKER not in text:
                local = hooks_dir / f"{name}.local"
                if local.exists():
                    raise UsageError(
                        f"{target}: a hook is installed and {local.name} exists too; "
                        "merge them by hand, then rerun `procreg hooks install`"
                    )
                target.rename(local)
                local.chmod(local.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
                kept = str(local)
        # Pin the interpreter that ran the installer (its venv has procreg);
        # PROCREG_PYTHON still overrides it.
        script = hook_script(name).replace(
            "\nhere=", f'\n: "${{PROCREG_PYTHON:={sys.executable}}}"\nhere=', 1
        )
        target.write_text(script)
        target.chmod(0o755)
        installed.append(InstalledHook(name=name, path=str(target), kept_existing=kept))
    return installed


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
