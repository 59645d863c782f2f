"""The naive baseline: the registry's operations done the way the legacy store did them.

No index and no git library: the ``git`` command line through subprocess for
every git question, the procedures scanned from the working tree (``os.walk``
and ``json.load`` of every ``metadata.json``), versions from ``git tag -l``,
history from ``git log``. It is written to be honest, not slow: one ``git``
call where one does the job (``git tag -l PATTERN --format=...`` rather than a
call per tag), plain dict work in memory, no sleeps, no re-parsing.

Usage as a whole process (what a shell script would do)::

    python benchmarks/naive.py REPO list|search TEXT|get ID|log ID|release
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

PREFIX = "procedure-"
_TAG = re.compile(r"^procedure-(?P<id>[a-z0-9][a-z0-9_-]*)-v(?P<v>\d+\.\d+\.\d+)$")


def git(repo: Path, *args: str) -> str:
    """One ``git`` call; its stdout."""
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def latest_versions(repo: Path) -> dict[str, str]:
    """Every procedure's highest released version, from ``git tag -l``."""
    latest: dict[str, str] = {}
    for name in git(repo, "tag", "-l", f"{PREFIX}*").split():
        m = _TAG.match(name)
        if m and (m["id"] not in latest or _key(m["v"]) > _key(latest[m["id"]])):
            latest[m["id"]] = m["v"]
    return latest


def scan(repo: Path) -> list[dict[str, Any]]:
    """Walk ``procedures/`` in the working tree and load every ``metadata.json``."""
    found = []
    for folder, _dirs, files in os.walk(repo / "procedures"):
        if "metadata.json" in files:
            with open(os.path.join(folder, "metadata.json"), encoding="utf-8") as fh:
                found.append(json.load(fh))
    return found


def list_all(repo: Path) -> list[dict[str, Any]]:
    """Every procedure with its latest version (what ``procreg list``/``search`` show)."""
    versions = latest_versions(repo)
    rows = [meta | {"version": versions.get(meta["id"])} for meta in scan(repo)]
    rows.sort(key=lambda m: m["id"])
    return rows


def search(repo: Path, text: str, limit: int = 20) -> list[dict[str, Any]]:
    """Case-insensitive substring match of every word over name, description, tags, params."""
    words = text.lower().split()
    hits = []
    for meta in list_all(repo):
        hay = " ".join(
            [
                meta.get("name", ""),
                meta.get("description", ""),
                " ".join(meta.get("tags", [])),
                " ".join(p["name"] for p in meta.get("parameters", [])),
            ]
        ).lower()
        if all(w in hay for w in words):
            hits.append(meta)
    return hits[:limit]


def get(repo: Path, proc_id: str) -> dict[str, Any]:
    """One procedure: metadata and source from the working tree, latest version, commit."""
    folder = repo / "procedures" / proc_id
    with open(folder / "metadata.json", encoding="utf-8") as fh:
        meta = json.load(fh)
    source = (folder / "main.py").read_text(encoding="utf-8")
    names = git(repo, "tag", "-l", f"{PREFIX}{proc_id}-v*").split()
    versions = sorted((m["v"] for n in names if (m := _TAG.match(n))), key=_key)
    commit = git(repo, "rev-parse", "HEAD").strip()
    return {"metadata": meta, "source": source, "version": versions[-1] if versions else None,
            "commit": commit}  # fmt: skip


def log(repo: Path, proc_id: str) -> dict[str, Any]:
    """Releases of one procedure (one ``git tag -l`` with dates and messages) and its commits."""
    fmt = "%(refname:short)%00%(taggerdate:iso-strict)%00%(taggername)%00%(contents)%00%00"
    out = git(repo, "tag", "-l", f"{PREFIX}{proc_id}-v*", f"--format={fmt}")
    releases = []
    for chunk in out.split("\0\0"):
        parts = chunk.strip("\n").split("\0")
        if len(parts) >= 4 and (m := _TAG.match(parts[0])):
            releases.append({"version": m["v"], "date": parts[1], "tagger": parts[2],
                             "message": parts[3]})  # fmt: skip
    releases.sort(key=lambda r: _key(r["version"]), reverse=True)
    commits = git(repo, "log", "--format=%H %s", "--", f"procedures/{proc_id}").splitlines()
    return {"releases": releases, "commits": commits}


def release_changed(repo: Path, base: str = "HEAD~1") -> list[str]:
    """Tag every procedure changed between ``base`` and HEAD with a patch bump.

    ``git diff --name-only`` finds the folders; per procedure one ``git tag -l``
    finds its latest version and one ``git tag -a`` creates the next.
    """
    changed = sorted(
        {
            path.split("/")[1]
            for path in git(repo, "diff", "--name-only", base, "HEAD", "--", "procedures/").split()
            if path.count("/") >= 2
        }
    )
    made = []
    for proc_id in changed:
        names = git(repo, "tag", "-l", f"{PREFIX}{proc_id}-v*").split()
        versions = sorted((m["v"] for n in names if (m := _TAG.match(n))), key=_key)
        if versions:
            major, minor, patch = _key(versions[-1])
            version = f"{major}.{minor}.{patch + 1}"
        else:
            version = "1.0.0"
        tag = f"{PREFIX}{proc_id}-v{version}"
        git(repo, "tag", "-a", tag, "-m", f"Release {proc_id} {version}\n\nBump: patch\n")
        made.append(tag)
    return made


def main(argv: list[str]) -> int:
    """Whole-process use: print the operation's result as JSON."""
    repo, op, *rest = argv
    path = Path(repo)
    ops: dict[str, Any] = {
        "list": lambda: list_all(path),
        "search": lambda: search(path, rest[0]),
        "get": lambda: get(path, rest[0]),
        "log": lambda: log(path, rest[0]),
        "release": lambda: release_changed(path),
    }
    print(json.dumps(ops[op]()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
