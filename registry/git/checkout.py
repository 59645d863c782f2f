"""The checkout: bringing a working tree and its index up to commits the registry wrote.

The registry writes commits without touching the working tree (see
:meth:`GitStore.write`); when it wrote on the checked-out branch, the
procedure folders that changed are brought up to date here, file by file,
never overwriting what the user changed, and the index is written under its
lock. The commit the checkout reflects is recorded first
(``.git/procreg/checkout-base``), so an interrupted run is caught up later.
Reading what the checkout holds is here too: the procedures as staged in an
index (:func:`staged_snapshots`) and a folder on disk (:func:`read_worktree_folder`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pygit2

from registry.core.snapshot import MODE_SYMLINK, FileEntry, Snapshot
from registry.errors import GitError
from registry.git.locks import is_lock_error, lock_path, lock_wait, wait_for_lock, write_error
from registry.git.trees import Changed, walk_blobs

CHECKOUT_MARKER = Path("procreg") / "checkout-base"
"""Per checkout: the commit its files and index reflect while the registry writes commits."""

Blob = tuple[pygit2.Oid, int]
"""A file as git records it: blob id and mode."""


class Checkout:
    """The working tree ``workdir`` and index of repository ``repo`` (named ``name``)."""

    def __init__(self, repo: pygit2.Repository, workdir: Path, folder: str, name: str) -> None:
        self.repo = repo
        self.workdir = workdir
        self.folder = folder
        self.name = name
        self.git_dir = Path(repo.path)

    def _error(self, exc: BaseException, doing: str, path: Path) -> GitError:
        return write_error(self.name, exc, doing, path)

    # -- updating ----------------------------------------------------------------

    def update(self, changed: Changed) -> list[str]:
        """Update the files of the ``changed`` folders; the paths that kept local changes."""
        index = self.repo.index
        index.read()
        skipped: list[str] = []
        for proc_id, (old_tree, new_tree) in changed.items():
            before = self.blobs(old_tree, f"{self.folder}/{proc_id}/")
            after = self.blobs(new_tree, f"{self.folder}/{proc_id}/")
            for path in sorted(before.keys() | after.keys()):
                if not self._update_file(index, path, before.get(path), after.get(path)):
                    skipped.append(path)
            folder = self.workdir / self.folder / proc_id
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self._write_index(index)
        return skipped

    def _update_file(
        self, index: pygit2.Index, path: str, old: Blob | None, new: Blob | None
    ) -> bool:
        """Bring ``path`` from ``old`` to ``new``; False when the user's change there is kept."""
        index_ours, file_ours = self._only_ours(path, old, new, index)
        if not index_ours:  # the user staged something of their own there
            return False
        target = self.workdir / path
        try:
            if not file_ours:
                # the user edited the file: keep it, but never leave the index behind
                _set_index(index, path, new)
                return False
            if new is not None:
                oid, mode = new
                blob = self.repo.get(oid)
                assert isinstance(blob, pygit2.Blob)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.is_file() or pygit2.hash(target.read_bytes()) != oid:
                    target.write_bytes(blob.data)
                target.chmod(0o755 if mode == 0o100755 else 0o644)
            else:
                target.unlink(missing_ok=True)
            _set_index(index, path, new)
        except OSError as exc:
            raise self._error(exc, f"cannot update {path}", target) from exc
        return True

    def _write_index(self, index: pygit2.Index) -> None:
        """Write the checkout's index, clearing an ``index.lock`` a killed process left."""
        deadline = time.monotonic() + lock_wait()
        while True:
            try:
                index.write()
                return
            except (pygit2.GitError, OSError) as exc:
                if not is_lock_error(exc):
                    raise self._error(exc, "cannot write the index", self.git_dir) from exc
                lock = lock_path(exc, self.git_dir / "index.lock")
                wait_for_lock(lock, "the index of the checkout", deadline)

    def _only_ours(
        self, path: str, old: Blob | None, new: Blob | None, index: pygit2.Index
    ) -> tuple[bool, bool]:
        """Whether the index, and the working tree, each hold ``old`` or ``new`` at ``path``."""
        allowed = {entry[0] if entry else None for entry in (old, new)}
        in_index = index[path].id if path in index else None
        target = self.workdir / path
        if target.is_symlink() or target.is_dir():
            return in_index in allowed, False
        on_disk = pygit2.hash(target.read_bytes()) if target.is_file() else None
        return in_index in allowed, on_disk in allowed

    # -- comparing ---------------------------------------------------------------

    def differences(self, head: dict[str, str], wanted: list[str]) -> list[str]:
        """Paths of the ``wanted`` folders where the index differs from ``head``'s subtrees."""
        index = self.repo.index
        index.read()
        prefix = self.folder + "/"
        staged: dict[str, dict[str, pygit2.Oid]] = {}
        for entry in index:
            if entry.path.startswith(prefix):
                proc_id, _, _ = entry.path[len(prefix) :].partition("/")
                staged.setdefault(proc_id, {})[entry.path] = entry.id
        out: list[str] = []
        for proc_id in wanted:
            committed = {
                path: oid
                for path, (oid, _) in self.blobs(head.get(proc_id), f"{prefix}{proc_id}/").items()
            }
            mine = staged.get(proc_id, {})
            out += sorted(
                p for p in committed.keys() | mine.keys() if committed.get(p) != mine.get(p)
            )
        return out

    def blobs(self, tree_id: str | None, prefix: str) -> dict[str, Blob]:
        if tree_id is None:
            return {}
        tree = self.repo.get(tree_id)
        assert isinstance(tree, pygit2.Tree)
        return {prefix + path: (oid, mode) for path, mode, oid in walk_blobs(self.repo, tree)}

    # -- the record of the checkout's commit --------------------------------------

    def record_base(self, base: str) -> None:
        """Record ``base`` (a commit id; ``""`` on an unborn branch) as what the checkout holds."""
        marker = self.git_dir / CHECKOUT_MARKER
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
            with tmp.open("w") as fh:
                fh.write(base + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(marker)
        except OSError as exc:
            raise self._error(exc, "cannot record the checkout's commit", marker) from exc

    def recorded_base(self) -> tuple[bool, str | None]:
        """``(recorded, commit)``: whether a base is recorded, and which (None: unborn)."""
        marker = self.git_dir / CHECKOUT_MARKER
        try:
            return True, marker.read_text().strip() or None
        except FileNotFoundError:
            return False, None
        except OSError as exc:
            raise self._error(exc, "cannot read the checkout's commit", marker) from exc

    def forget_base(self) -> None:
        (self.git_dir / CHECKOUT_MARKER).unlink(missing_ok=True)


def _set_index(index: pygit2.Index, path: str, new: Blob | None) -> None:
    if new is not None:
        oid, mode = new
        index.add(pygit2.IndexEntry(path, oid, pygit2.enums.FileMode(mode)))
    elif path in index:
        index.remove(path)


def staged_snapshots(repo: pygit2.Repository, index: pygit2.Index, folder: str) -> list[Snapshot]:
    """The procedures under ``folder/`` as ``index`` holds them, by id."""
    grouped: dict[str, dict[str, FileEntry]] = {}
    prefix = folder + "/"
    for entry in index:
        if not entry.path.startswith(prefix):
            continue
        rest = entry.path[len(prefix) :]
        if "/" not in rest:
            continue  # a stray file directly under procedures/: not a procedure
        proc_id, name = rest.split("/", 1)
        blob = repo.get(entry.id)
        data = blob.data if isinstance(blob, pygit2.Blob) else b""
        grouped.setdefault(proc_id, {})[name] = FileEntry(data, entry.mode)
    return [Snapshot(pid, files, None, None, folder) for pid, files in sorted(grouped.items())]


def read_worktree_folder(folder: Path, proc_id: str | None = None) -> Snapshot:
    """A procedure folder on disk (people editing by hand), without following symlinks."""
    files: dict[str, FileEntry] = {}
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names) + [d for d in dirs if (Path(root) / d).is_symlink()]:
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                files[rel] = FileEntry(str(path.readlink()).encode(), MODE_SYMLINK)
                continue
            if name.endswith(".pyc"):
                continue
            mode = 0o100755 if os.access(path, os.X_OK) else 0o100644
            files[rel] = FileEntry(path.read_bytes(), mode)
    return Snapshot(proc_id or folder.name, files, None, None, folder.parent.name)
