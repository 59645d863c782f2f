"""``procreg lock ID``: pin a procedure's ``requirements`` into ``pylock.toml`` with uv.

The lock is resolved for the sandbox's interpreter (the one runs use), with
hashes, from the index and folders ``[envs]`` in ``procreg.toml`` names plus
what the command line adds (``--find-links``, ``--no-index``, ``--index-url``),
and written into the procedure's folder in the working tree, for review and
commit like any other file. A procedure with no requirements has no lock: an
old one is removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from registry.config import Config
from registry.core.model import Metadata
from registry.core.pylock import LOCK_FILE, LockedDistribution, parse_lock
from registry.core.snapshot import METADATA_FILE, PROCEDURES_DIR
from registry.errors import NotFoundError, UsageError, ValidationFailed
from registry.git.store import GitStore


class LockReport(BaseModel):
    """What ``procreg lock`` wrote (its ``--json``)."""

    id: str
    path: str
    requirements: list[str]
    lock: str | None
    """sha256 of the new ``pylock.toml``; None when the procedure needs none (it was removed)."""
    locked: list[LockedDistribution] = Field(default_factory=list)
    changed: bool
    python: str


def lock_source(
    config: Config,
    find_links: Sequence[str] = (),
    no_index: bool | None = None,
    index_url: str | None = None,
) -> object:
    """Where uv looks: ``[envs]`` in ``procreg.toml``, then the command line's additions."""
    from registry.sandbox.envs import IndexSource

    base = IndexSource.of(config.envs)
    return IndexSource(
        index_url=index_url or base.index_url,
        find_links=(*base.find_links, *find_links),
        no_index=base.no_index if no_index is None else no_index,
    )


def lock_procedure(
    store: GitStore,
    proc_id: str,
    config: Config,
    *,
    find_links: Sequence[str] = (),
    no_index: bool | None = None,
    index_url: str | None = None,
) -> LockReport:
    """Resolve ``proc_id``'s requirements with uv and write ``procedures/<id>/pylock.toml``."""
    from registry.sandbox import sandbox_python
    from registry.sandbox.envs import EnvCache, IndexSource, resolve_lock

    if store.workdir is None:
        raise UsageError(f"{store.name}: a bare repository has no working tree to lock in")
    folder = Path(store.workdir) / config.registry.procedures_dir / proc_id
    meta_file = folder / METADATA_FILE
    if not meta_file.is_file():
        raise NotFoundError(
            f"no {config.registry.procedures_dir}/{proc_id}/{METADATA_FILE} in the working "
            "tree; `procreg list` shows what there is",
            kind="procedure",
            name=proc_id,
        )
    meta = _metadata(meta_file, proc_id)
    lock_file = folder / LOCK_FILE
    old = lock_file.read_text(encoding="utf-8") if lock_file.is_file() else None
    python = sandbox_python()
    rel = f"{config.registry.procedures_dir or PROCEDURES_DIR}/{proc_id}/{LOCK_FILE}"
    if not meta.requirements:
        if old is not None:
            lock_file.unlink()
        return LockReport(
            id=proc_id, path=rel, requirements=[], lock=None, changed=old is not None, python=python
        )
    source = lock_source(config, find_links, no_index, index_url)
    assert isinstance(source, IndexSource)
    cache = EnvCache.default(config.envs)
    cache.root.mkdir(parents=True, exist_ok=True)
    text = resolve_lock(meta.requirements, python, source, cache.uv_cache)
    if text != old:
        lock_file.write_text(text, encoding="utf-8")
    lock = parse_lock(text, rel)
    return LockReport(
        id=proc_id,
        path=rel,
        requirements=list(meta.requirements),
        lock=lock.hash,
        locked=list(lock.packages),
        changed=text != old,
        python=python,
    )


def _metadata(path: Path, proc_id: str) -> Metadata:
    from registry.core.problems import Problem

    try:
        return Metadata.model_validate_json(path.read_bytes())
    except ValueError as exc:
        problem = Problem(
            path=f"{PROCEDURES_DIR}/{proc_id}/{METADATA_FILE}",
            rule="metadata-schema",
            message=f"cannot lock: metadata.json does not validate ({exc.__class__.__name__}); "
            "`procreg check` says why",
        )
        raise ValidationFailed([problem]) from None
