"""``procreg doctor``: what isolation, index and tooling this machine really gives.

Nothing silently pretends: each sandbox layer is probed and reported as in
force or not, with the reason.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel

from registry.git.info import library_versions
from registry.git.store import GitStore


class LayerInfo(BaseModel):
    """One sandbox layer (:class:`registry.sandbox.LayerStatus`)."""

    name: str
    active: bool
    detail: str


class IndexCheck(BaseModel):
    """Whether the index answers."""

    target: str
    reachable: bool
    detail: str


class EnvCacheInfo(BaseModel):
    """The environment cache (:mod:`registry.sandbox.envs`)."""

    path: str
    environments: int
    size_bytes: int
    reachable: bool
    """Whether the sandbox's users can reach it (they read every environment in it)."""
    detail: str


class DoctorReport(BaseModel):
    """What ``procreg doctor`` found."""

    layers: list[LayerInfo]
    index: IndexCheck
    spool: str | None
    spool_pending: int
    """Run records spooled for this index (delivered on its next connection)."""
    spool_other_index: int = 0
    """Run records spooled for another index (another database URL): they wait for it."""
    git: str | None
    libgit2: str
    pygit2: str
    python: str
    sandbox_python: str
    uv: str | None = None
    """``uv --version`` (locks and environments need it), or None when uv is missing."""
    env_cache: EnvCacheInfo | None = None


def env_cache_info(config: object | None = None) -> EnvCacheInfo:
    """Where environments are cached, how many, how large, and whether sandboxes can read them."""
    import os

    from registry.config import EnvsSection
    from registry.sandbox.envs import EnvCache

    cache = EnvCache.default(config if isinstance(config, EnvsSection) else None)
    entries = cache.entries()
    folder = cache.envs if cache.envs.exists() else cache.root
    reachable = True
    probe: Path | None = folder
    while probe is not None and not probe.exists():
        probe = probe.parent if probe != probe.parent else None
    if os.geteuid() == 0 and probe is not None:
        reachable = all(p.stat().st_mode & 0o001 for p in (probe, *probe.parents))
    detail = f"{len(entries)} environment(s)"
    if not reachable:
        detail += "; NOT reachable by the sandbox's users: set PROCREG_CACHE_DIR"
    return EnvCacheInfo(
        path=str(cache.envs),
        environments=len(entries),
        size_bytes=sum(e.size_bytes for e in entries),
        reachable=reachable,
        detail=detail,
    )


def diagnose(path: Path, database_url: str | None = None) -> DoctorReport:
    """Probe the sandbox layers, the index, the spool and the git tooling (never raises)."""
    import platform
    import shutil
    import subprocess

    from registry.config import worktree_config
    from registry.errors import RegistryError
    from registry.index.connect import index_target, open_backend
    from registry.runs.recorder import spool_counts, spool_dir
    from registry.sandbox import probe_layers, sandbox_python
    from registry.sandbox.envs import uv_version

    spool, pending, other = None, 0, 0
    store = None
    envs_section = None
    try:
        store = GitStore.open(path)
        config = worktree_config(store)
        section, envs_section = config.sandbox, config.envs
    except RegistryError:
        section = None  # no registry here (reported below): the default sandbox settings
    try:
        layers = [LayerInfo(**s.model_dump()) for s in probe_layers(section)]
    except RegistryError as exc:
        layers = [LayerInfo(name="sandbox", active=False, detail=f"cannot start: {exc}")]
    try:
        if store is None:
            store = GitStore.open(path)
    except RegistryError as exc:
        index = IndexCheck(target="-", reachable=False, detail=f"no registry here: {exc}")
    else:
        spool_path = spool_dir(store.git_dir)
        spool = str(spool_path)

        async def probe() -> str:
            backend = await open_backend(store, database_url)
            try:
                runs = await backend.count_executions()
                migrations = await backend.schema_migrations()
                return f"reachable, {runs} run records, schema migrations {migrations}"
            finally:
                await backend.close()

        shown = "-"
        try:
            target = index_target(store, database_url)
            pending, other = spool_counts(spool_path, target)
            shown = str(target) if not isinstance(target, str) else _hide_password(target)
            index = IndexCheck(target=shown, reachable=True, detail=asyncio.run(probe()))
        except RegistryError as exc:
            index = IndexCheck(target=shown, reachable=False, detail=str(exc))
    git = None
    if shutil.which("git"):
        out = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False)
        git = out.stdout.strip().removeprefix("git version ") or None
    versions = library_versions()
    return DoctorReport(
        layers=layers,
        index=index,
        spool=spool,
        spool_pending=pending,
        spool_other_index=other,
        git=git,
        libgit2=versions.libgit2,
        pygit2=versions.binding,
        python=platform.python_version(),
        sandbox_python=sandbox_python(),
        uv=uv_version(),
        env_cache=env_cache_info(envs_section),
    )


def _hide_password(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
