"""The registry as people use it by hand: init a repo, scaffold a procedure, check folders.

Everything here works on the working tree (or the git index for
``--staged``); registry-made commits go through :mod:`registry.git.store`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry.core.ids import ID_RE
from registry.core.model import Example, Metadata, Parameter, Returns
from registry.core.problems import Problem
from registry.core.pylock import LockedDistribution
from registry.core.snapshot import MAIN_FILE, METADATA_FILE, PROCEDURES_DIR, Snapshot
from registry.errors import NotFoundError, UsageError
from registry.git.checkout import read_worktree_folder
from registry.git.store import GitStore

if TYPE_CHECKING:
    from registry.config import Config

# registry.config and registry.core.validation are imported where they are used:
# `procreg show` needs neither, and building their models costs more than
# the rest of the command.

CONFIG_TEMPLATE = """\
# procreg registry config. Every key is optional; these are the defaults.

[registry]
# branch = "main"              # the ref the index tracks (default: the current branch)

[validation]
allow_imports = []             # modules to allow beyond the built-in allowlist, e.g. ["requests"]
deny_imports = []              # built-in modules to forbid in this registry

[health]
enabled = true                 # move the channel back when a version turns unhealthy
window = 20                    # judge a version by its last N runs
min_runs = 10                  # ... once it has at least this many
threshold = 0.9                # success rate below which a version is unhealthy
channel = "stable"
"""

MAIN_TEMPLATE = '''\
"""{name}."""


def main(text: str) -> str:
    """Return the text unchanged. Replace this with what the procedure does."""
    return text
'''


class CheckedProcedure(BaseModel):
    """The outcome of checking one procedure folder."""

    model_config = ConfigDict(defer_build=True)

    id: str
    path: str
    ok: bool
    problems: list[Problem]


class CheckReport(BaseModel):
    """What ``procreg check`` found."""

    model_config = ConfigDict(defer_build=True)

    ok: bool
    checked: int
    procedures: list[CheckedProcedure]

    @property
    def problems(self) -> list[Problem]:
        return [p for proc in self.procedures for p in proc.problems]


def load_config(store: GitStore, ref: str | None = None) -> Config:
    """The registry config: from the working tree, or at ``ref`` (bare repos, releases)."""
    from registry.config import CONFIG_FILE, parse_config

    if ref is None and store.workdir is not None:
        path = store.workdir / CONFIG_FILE
        return parse_config(path.read_bytes() if path.is_file() else None)
    try:
        data = store.read_path(CONFIG_FILE, ref or "HEAD")
    except NotFoundError:
        data = None
    return parse_config(data)


def init_registry(path: Path) -> tuple[GitStore, list[str]]:
    """Make ``path`` a registry: a git repo with ``procedures/`` and ``procreg.toml``.

    Existing files are kept; returns the store and what was created.
    """
    from registry.config import CONFIG_FILE

    created: list[str] = []
    try:
        store = GitStore.open(path)
        if store.workdir is None or store.workdir.resolve() != path.resolve():
            store = GitStore.init(path)
            created.append("git repository")
    except Exception:  # noqa: BLE001 - "no repository here" in any form means: create one
        path.mkdir(parents=True, exist_ok=True)
        store = GitStore.init(path)
        created.append("git repository")
    procedures = path / PROCEDURES_DIR
    if not procedures.exists():
        procedures.mkdir()
        (procedures / ".gitkeep").write_text("")
        created.append(f"{PROCEDURES_DIR}/")
    config = path / CONFIG_FILE
    if not config.exists():
        config.write_text(CONFIG_TEMPLATE)
        created.append(CONFIG_FILE)
    return store, created


def new_procedure(
    root: Path,
    proc_id: str,
    *,
    name: str | None = None,
    description: str = "",
    category: str = "general",
) -> Path:
    """Scaffold ``procedures/<id>/`` with a valid main.py and metadata.json."""
    if not ID_RE.match(proc_id):
        raise UsageError(
            f"invalid procedure id {proc_id!r}: use 1-64 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    folder = root / PROCEDURES_DIR / proc_id
    if folder.exists():
        raise UsageError(f"{folder}: already exists; edit it, or choose another id")
    title = name or proc_id.replace("-", " ").replace("_", " ").capitalize()
    meta = Metadata(
        id=proc_id,
        name=title,
        description=description or f"{title}: describe what it does and when to use it.",
        category=category,
        parameters=[Parameter(name="text", type="string", description="The input text.")],
        returns=Returns(type="string", description="The text, unchanged."),
        examples=[Example(description="echoes its input", input={"text": "hello"}, output="hello")],
    )
    folder.mkdir(parents=True)
    (folder / MAIN_FILE).write_text(MAIN_TEMPLATE.format(name=title))
    (folder / METADATA_FILE).write_text(meta.to_json())
    return folder


def _folder_for(path: Path) -> Iterable[Path]:
    """The procedure folders a path names: a folder, a file in one, or a parent of many."""
    path = path.resolve() if path.exists() or path.is_symlink() else path
    if path.is_file() or (path.is_symlink() and not path.is_dir()):
        if not _is_procedures_root(path.parent):
            yield path.parent
        # A file directly in procedures/ (the .gitkeep `procreg init` writes, a README)
        # is part of no procedure: the pre-commit framework passes such files too.
    elif (path / MAIN_FILE).exists() or (path / METADATA_FILE).exists():
        yield path
    elif path.is_dir():
        sub = path / PROCEDURES_DIR if (path / PROCEDURES_DIR).is_dir() else path
        yield from sorted(p for p in sub.iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        raise NotFoundError(f"{path}: no such file or folder")


def _is_procedures_root(folder: Path) -> bool:
    return (
        folder.name == PROCEDURES_DIR
        and not (folder / MAIN_FILE).exists()
        and not (folder / METADATA_FILE).exists()
    )


def worktree_snapshots(store: GitStore, paths: Sequence[Path]) -> list[Snapshot]:
    """Snapshots of the procedure folders named by ``paths`` on disk."""
    root = store.workdir
    if not paths:
        if root is None:
            return [store.read(pid) for pid in store.list_procedures()]
        paths = [root / PROCEDURES_DIR]
    seen: dict[Path, Snapshot] = {}
    for path in paths:
        for folder in _folder_for(path):
            if folder in seen:
                continue
            snap = read_worktree_folder(folder)
            rel_parent = _relative(folder.parent, root)
            seen[folder] = Snapshot(snap.id, snap.files, None, None, rel_parent)
    return list(seen.values())


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def staged_snapshots(store: GitStore) -> list[Snapshot]:
    """The procedures that ``git commit`` would change, as staged in the index."""
    return store.read_changed_staged()


def check(snapshots: Sequence[Snapshot], config: Config) -> CheckReport:
    """Validate every snapshot; never raises for a bad procedure."""
    from registry.core.validation import validate_snapshot

    results = []
    for snap in snapshots:
        result = validate_snapshot(snap, config.validation)
        results.append(
            CheckedProcedure(id=snap.id, path=snap.path, ok=result.ok, problems=result.problems)
        )
    return CheckReport(ok=all(r.ok for r in results), checked=len(results), procedures=results)


class ListedProcedure(BaseModel):
    """One row of ``procreg list``."""

    model_config = ConfigDict(defer_build=True)

    id: str
    name: str
    version: str | None
    category: str
    description: str
    valid: bool
    problems: list[str]


def list_procedures(store: GitStore, ref: str = "HEAD") -> list[ListedProcedure]:
    """Every procedure at ``ref`` with its latest release tag, read from git alone."""
    from registry.core.tags import RELEASE_TAG_PREFIX, parse_release_tag
    from registry.core.validation import validate_snapshot

    latest: dict[str, Any] = {}
    for name in store.ref_names("refs/tags/" + RELEASE_TAG_PREFIX):
        parsed = parse_release_tag(name[len("refs/tags/") :])
        if parsed is not None:
            pid, ver = parsed
            if pid not in latest or ver > latest[pid]:
                latest[pid] = ver
    config = load_config(store, None if ref == "HEAD" else ref)
    rows = []
    for pid in store.list_procedures(ref):
        result = validate_snapshot(store.read(pid, ref), config.validation)
        meta = result.metadata
        rows.append(
            ListedProcedure(
                id=pid,
                name=meta.name if meta else pid,
                version=str(latest[pid]) if pid in latest else None,
                category=meta.category if meta else "-",
                description=meta.description if meta else "",
                valid=result.ok,
                problems=[p.format() for p in result.problems],
            )
        )
    return rows


class ShownProcedure(BaseModel):
    """What ``procreg show`` prints: one procedure at one version or ref."""

    id: str
    version: str | None
    commit: str
    tree_id: str | None
    metadata: Metadata
    source: str
    lock: str | None = None
    """sha256 of the version's ``pylock.toml``; None without one."""
    locked: list[LockedDistribution] = Field(default_factory=list)
    """The distributions that lock pins (a run of this version gets exactly these)."""


def show_procedure(store: GitStore, ref_spec: str, *, ref: str | None = None) -> ShownProcedure:
    """``ID`` (latest release, else HEAD), ``ID@SPEC``, or ``ID`` at a git ``ref``."""
    from registry.core.specs import split_ref
    from registry.releases import history

    proc_id, spec = split_ref(ref_spec)
    if ref is not None:
        if spec is not None:
            raise UsageError("give either ID@SPEC or --ref REF, not both")
        snap = store.read(proc_id, ref)
        version = None
    else:
        resolved = history.resolve(store, proc_id, spec)
        snap, version = resolved.snapshot, resolved.version
    return ShownProcedure(
        id=proc_id,
        version=str(version) if version is not None else None,
        commit=snap.commit or "",
        tree_id=snap.tree_id,
        metadata=_shown_metadata(store, snap),
        source=snap.text(MAIN_FILE) or "",
        **_shown_lock(snap),
    )


def _shown_lock(snap: Snapshot) -> dict[str, Any]:
    """The lock's hash and distributions (an unreadable lock shows as none: check says why)."""
    from registry.core.pylock import LOCK_FILE, parse_lock
    from registry.errors import LockError

    text = snap.text(LOCK_FILE)
    if text is None:
        return {}
    try:
        lock = parse_lock(text, f"{snap.path}/{LOCK_FILE}")
    except LockError:
        return {}
    return {"lock": lock.hash, "locked": list(lock.packages)}


def _shown_metadata(store: GitStore, snap: Snapshot) -> Metadata:
    """``metadata.json`` parsed for display, or :class:`ValidationFailed` saying what is wrong.

    Only the metadata is read: showing a procedure does not run the code
    checks (``procreg check`` does). When the file does not parse, the
    validator is run to report the problems with file, line and rule.
    """
    entry = snap.files.get(METADATA_FILE)
    if entry is not None and entry.mode in (0o100644, 0o100755):
        try:
            return Metadata.model_validate(json.loads(entry.data.decode("utf-8")))
        except (UnicodeDecodeError, ValueError, ValidationError, RecursionError):
            pass  # reported below, the way `procreg check` reports it
    from registry.core.validation import validate_snapshot
    from registry.errors import ValidationFailed

    result = validate_snapshot(snap, load_config(store, snap.commit).validation)
    if result.metadata is None:
        raise ValidationFailed(result.problems)
    return result.metadata
