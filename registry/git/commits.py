"""Writing a commit of whole procedure folders and moving its branch by compare-and-swap.

The tree is built on the branch's tip, the commit written, and the branch
moved only if it still points at that tip: two concurrent writers never lose
an update. A writer that lost the race rebuilds on the new tip, unless the
winner changed the same procedures (or the caller expected a given tip).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pygit2

from registry.core.snapshot import FileEntry
from registry.errors import ConflictError, LockedError
from registry.git import refs, trees
from registry.git.locks import is_lock_error, lock_path, lock_wait, wait_for_lock, write_error

Changes = Mapping[str, Mapping[str, FileEntry | bytes] | None]
"""Per procedure id: its complete new files (replacing the folder), or None to delete it."""

_RETRY = object()
"""A live lock was waited for: try the same write again."""


class BranchWriter:
    """Commits on branch ``ref_name`` of ``repo``; ``where`` is (repository name, common dir)."""

    def __init__(
        self,
        repo: pygit2.Repository,
        where: tuple[str, Path],
        folder: str,
        ref_name: str,
        sig: pygit2.Signature,
    ) -> None:
        self.repo = repo
        self.name, self.common_dir = where
        self.where = where
        self.folder = folder
        self.ref_name = ref_name
        self.sig = sig

    def write(self, changes: Changes, message: str, expected_tip: str | None, retries: int) -> str:
        """Commit ``changes``; the new commit id (the tip when nothing changed)."""
        deadline = time.monotonic() + lock_wait()
        attempt = 0
        while True:
            ref = refs.lookup(self.repo, self.ref_name)
            tip = str(ref.target) if ref is not None else None
            if expected_tip is not None and tip != expected_tip:
                raise ConflictError(
                    f"{self.name}: {self.ref_name} is at {tip or 'nothing'}, expected "
                    f"{expected_tip}; someone else wrote first. Re-read and try again."
                )
            commit_id = self._commit(tip, changes, message)
            if commit_id is None:
                return tip or ""  # nothing to change: no empty commit
            outcome = self._move(ref, commit_id, message, deadline)
            if outcome is None:
                return str(commit_id)
            if outcome is _RETRY:
                continue
            assert isinstance(outcome, BaseException)
            # Lost the race: the ref moved (CAS mismatch) or was created meanwhile.
            self._after_lost(outcome, tip, changes, expected_tip)
            attempt += 1
            if attempt > retries:
                raise ConflictError(
                    f"{self.name}: {self.ref_name} kept moving; gave up after {retries} retries"
                ) from outcome
            time.sleep(random.uniform(0.001, 0.01))  # noqa: S311 - jitter, not crypto

    def _commit(self, tip: str | None, changes: Changes, message: str) -> pygit2.Oid | None:
        """Write the commit of ``changes`` on ``tip`` (None when the tree would not change)."""
        base_commit = self.repo.get(tip) if tip else None
        base_tree = base_commit.tree if isinstance(base_commit, pygit2.Commit) else None
        try:
            tree_id = trees.build_tree(self.repo, base_tree, self.folder, changes)
            if base_tree is not None and tree_id == base_tree.id:
                return None
            parents = [tip] if tip else []
            return self.repo.create_commit(None, self.sig, self.sig, message, tree_id, parents)
        except (pygit2.GitError, OSError) as exc:
            raise write_error(
                self.name, exc, f"cannot write a commit for {self.ref_name}", self.common_dir
            ) from exc

    def _move(
        self,
        ref: pygit2.Reference | None,
        commit_id: pygit2.Oid,
        message: str,
        deadline: float,
    ) -> object:
        """Point the branch at ``commit_id``: None when done, :data:`_RETRY` after waiting for
        a live lock, else the error that says the race was lost."""
        reflog = f"procreg: {message.splitlines()[0]}"
        try:
            if ref is None:
                refs.create_ref(self.repo, self.where, self.ref_name, commit_id, reflog)
            else:
                ref.set_target(commit_id, reflog)
            return None
        except ConflictError as exc:  # created by another writer meanwhile: a lost race
            if isinstance(exc, LockedError):
                raise
            return exc
        except (pygit2.AlreadyExistsError, pygit2.GitError, OSError, ValueError) as exc:
            if is_lock_error(exc):
                lock = lock_path(exc, self.common_dir / f"{self.ref_name}.lock")
                wait_for_lock(lock, self.ref_name, deadline)
                return _RETRY
            text = str(exc)
            if not any(word in text for word in ("exists", "modified", "match")):
                raise write_error(
                    self.name,
                    exc,
                    f"cannot move {self.ref_name}",
                    self.common_dir,
                    ref=self.ref_name,
                ) from exc
            return exc

    def _after_lost(
        self, lost: BaseException, tip: str | None, changes: Changes, expected_tip: str | None
    ) -> None:
        """Raise :class:`ConflictError` unless the write may be rebuilt on the new tip."""
        if expected_tip is not None:
            raise ConflictError(
                f"{self.name}: {self.ref_name} moved while writing; re-read and try again"
            ) from lost
        new = refs.lookup(self.repo, self.ref_name)
        new_tip = str(new.target) if new is not None else None
        if tip and new_tip and new_tip != tip and self._touched(tip, new_tip, changes):
            raise ConflictError(
                f"{self.name}: {self.ref_name} moved to {new_tip[:12]} with changes to the same "
                f"procedure(s) ({', '.join(sorted(changes))}); re-read and try again"
            ) from lost

    def _touched(self, old: str, new: str, ids: Iterable[str]) -> bool:
        old_commit, new_commit = self.repo.get(old), self.repo.get(new)
        assert isinstance(old_commit, pygit2.Commit) and isinstance(new_commit, pygit2.Commit)
        changed = trees.changed_procedures(self.repo, self.folder, old_commit, new_commit)
        return any(pid in changed for pid in ids)
