"""The git store: the one module that talks to pygit2.

Reads come from git objects (commits, trees, blobs), so they work on bare
repositories and at any ref or tag without a working tree. Writes build trees
and a commit with pygit2 and move the branch with a compare-and-swap on its
old target: two concurrent writers never lose an update. libgit2 errors are
turned into the project's own errors here, with the repository and ref named.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import random
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pygit2
from pygit2.enums import ObjectType

from registry.core.snapshot import (
    MODE_SYMLINK,
    MODE_TREE,
    PROCEDURES_DIR,
    FileEntry,
    Snapshot,
)
from registry.errors import ConflictError, GitError, LockedError, NotFoundError

log = logging.getLogger(__name__)

LOCK_GRACE_S = 2.0
"""A ``*.lock`` file older than this that no process holds open was left by a dead one."""
LOCK_WAIT_S = 10.0
"""How long a write waits for a live lock on a ref (or the git index) before giving up
(``$PROCREG_LOCK_WAIT`` overrides it)."""
RELEASE_LOCK_WAIT_S = 120.0
"""How long a release waits for another release in the same repository to finish."""
RELEASE_LOCK = Path("procreg") / "release.lock"
"""The release lock, relative to the common git dir (shared by every worktree)."""
CHECKOUT_MARKER = Path("procreg") / "checkout-base"
"""Per checkout: the commit its files and index reflect while the registry writes commits."""

Changes = Mapping[str, Mapping[str, FileEntry | bytes] | None]
"""Per procedure id: its complete new files (replacing the folder), or None to delete it."""


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    when: datetime


@dataclass(frozen=True)
class TagInfo:
    """An annotated (or lightweight) tag and what it points at."""

    name: str
    commit: str
    tag_id: str | None
    tagger: Person | None
    message: str


@dataclass(frozen=True)
class CommitInfo:
    id: str
    message: str
    author: Person
    parents: tuple[str, ...]


def _person(sig: pygit2.Signature | None) -> Person | None:
    if sig is None:
        return None
    tz = timezone(timedelta(minutes=sig.offset))
    return Person(sig.name, sig.email, datetime.fromtimestamp(sig.time, tz))


class GitStore:
    """A git repository seen as a store of procedures under ``procedures/``."""

    def __init__(self, repo: pygit2.Repository, folder: str = PROCEDURES_DIR) -> None:
        self.repo = repo
        self.folder = folder

    # -- opening ----------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".") -> GitStore:
        """Open the repository containing ``path`` (bare or not)."""
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise GitError(
                f"{path}: not a git repository. Run `procreg init {path}` or `git init` first, "
                "or pass -C PATH."
            )
        try:
            return cls(pygit2.Repository(found))
        except pygit2.GitError as exc:
            raise GitError(f"{found}: cannot open repository: {exc}") from exc

    @classmethod
    def init(cls, path: str | os.PathLike[str], *, bare: bool = False) -> GitStore:
        """Create a repository (or open the one already there) with branch ``main``."""
        try:
            repo = pygit2.init_repository(str(path), bare=bare, initial_head="main")
        except pygit2.GitError as exc:
            raise GitError(f"{path}: cannot create repository: {exc}") from exc
        return cls(repo)

    @property
    def git_dir(self) -> Path:
        return Path(self.repo.path)

    @property
    def common_dir(self) -> Path:
        """The git dir shared by every worktree (``git rev-parse --git-common-dir``).

        A linked worktree's own git dir names it in its ``commondir`` file; refs
        under ``refs/heads`` and ``refs/tags`` live there, and so does the release lock.
        """
        try:
            text = (self.git_dir / "commondir").read_text().strip()
        except OSError:
            return self.git_dir
        path = Path(text)
        return (path if path.is_absolute() else self.git_dir / path).resolve()

    @property
    def workdir(self) -> Path | None:
        return Path(self.repo.workdir) if self.repo.workdir else None

    @property
    def is_bare(self) -> bool:
        return bool(self.repo.is_bare)

    @property
    def name(self) -> str:
        return str(self.workdir or self.git_dir)

    def config_value(self, key: str) -> str | None:
        """A git config value as git resolves it (repository, global, system), or None."""
        try:
            return str(self.repo.config[key])
        except KeyError:
            return None

    def config_keys(self, prefix: str) -> list[str]:
        """The config keys (as git spells them) that start with ``prefix``."""
        return sorted({entry.name for entry in self.repo.config if entry.name.startswith(prefix)})

    def set_local_config(self, key: str, value: str | None) -> None:
        """Set (or, with ``None``, remove) a value in this repository's own config."""
        config = self.repo.config
        if value is not None:
            config[key] = value
        elif key in config:
            del config[key]

    # -- refs -------------------------------------------------------------------

    def current_branch(self) -> str | None:
        """The full ref HEAD points at (``refs/heads/main``), even if unborn."""
        try:
            head = self.repo.lookup_reference("HEAD")
        except (KeyError, pygit2.GitError):
            return None
        target = head.target
        return target if isinstance(target, str) else None

    def branch_ref(self, branch: str | None) -> str:
        """A full branch ref for ``main``, ``refs/heads/main`` or ``None`` (HEAD's)."""
        if branch is None:
            current = self.current_branch()
            if current is None:
                raise GitError(f"{self.name}: HEAD is detached; name a branch to write to")
            return current
        return branch if branch.startswith("refs/") else f"refs/heads/{branch}"

    def resolve(self, ref: str = "HEAD") -> str:
        """The commit id a ref, tag, branch or (abbreviated) sha names."""
        try:
            obj = self.repo.revparse_single(ref)
            commit = obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as exc:
            if self.is_unborn() and ref in ("HEAD", self.current_branch()):
                raise NotFoundError(
                    f"{self.name}: the branch has no commits yet; commit a procedure first"
                ) from exc
            raise NotFoundError(f"{self.name}: unknown revision {ref!r}") from exc
        return str(commit.id)

    def try_resolve(self, ref: str) -> str | None:
        try:
            return self.resolve(ref)
        except NotFoundError:
            return None

    def is_unborn(self) -> bool:
        return bool(self.repo.head_is_unborn)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when ``ancestor`` is ``descendant`` or one of its ancestors."""
        if ancestor == descendant:
            return True
        try:
            return bool(self.repo.descendant_of(descendant, ancestor))
        except (KeyError, ValueError, pygit2.GitError):
            return False

    def ref_names(self, prefix: str) -> list[str]:
        """Every ref name starting with ``prefix`` (e.g. ``refs/tags/procedure-slug-v``), sorted.

        Reads only the refs under that prefix (a binary search in
        ``packed-refs`` and the matching loose refs), not the whole namespace.
        """
        return [name for name, _ in self._ref_targets(prefix)]

    def _ref_targets(self, prefix: str) -> list[tuple[str, str | None]]:
        """``(ref name, target id)`` of every ref starting with ``prefix``, sorted by name.

        The target is ``None`` for a symbolic ref (the caller resolves it).
        Git's files backend is read directly: loose refs first, then packed
        ones (``git pack-refs`` writes ``packed-refs`` before it deletes the
        loose files, so a ref being packed is seen in one or the other), a
        loose ref overriding its packed copy. Other layouts (reftable, a linked
        worktree whose refs live in the common dir) go through libgit2.
        """
        if not self._files_backend():
            return self._ref_targets_libgit2(prefix)
        found = _loose_refs(self.git_dir, prefix)
        for name, target in _packed_refs(self.git_dir / "packed-refs", prefix):
            found.setdefault(name, target)
        return sorted(found.items())

    def _files_backend(self) -> bool:
        """True when refs are plain files under this git dir (not reftable, not a worktree)."""
        git_dir = self.git_dir
        try:
            storage = self.repo.config["extensions.refStorage"]
        except (KeyError, pygit2.GitError, ValueError):
            storage = None
        return (
            storage in (None, "files")
            and not (git_dir / "commondir").exists()
            and not (git_dir / "reftable").exists()
            and (git_dir / "refs").is_dir()
        )

    def _ref_targets_libgit2(self, prefix: str) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for ref in self.repo.listall_reference_objects():
            if ref.name.startswith(prefix):
                target = ref.target
                out.append((ref.name, str(target) if isinstance(target, pygit2.Oid) else None))
        return sorted(out)

    # -- trees and snapshots ----------------------------------------------------

    def _commit(self, ref: str) -> pygit2.Commit:
        commit = self.repo.get(self.resolve(ref))
        assert isinstance(commit, pygit2.Commit)
        return commit

    def _folder_tree(self, commit: pygit2.Commit) -> pygit2.Tree | None:
        try:
            entry = commit.tree[self.folder]
        except KeyError:
            return None
        return entry if isinstance(entry, pygit2.Tree) else None

    def procedures_tree_id(self, ref: str = "HEAD") -> str | None:
        """The id of the ``procedures/`` tree at ``ref`` (None if there is none)."""
        tree = self._folder_tree(self._commit(ref))
        return str(tree.id) if tree is not None else None

    def tree_ids(self, ref: str = "HEAD") -> dict[str, str]:
        """``{procedure id: subtree id}`` for every folder under ``procedures/``."""
        tree = self._folder_tree(self._commit(ref))
        if tree is None:
            return {}
        return {str(e.name): str(e.id) for e in tree if e.filemode == MODE_TREE}

    def list_procedures(self, ref: str = "HEAD") -> list[str]:
        """The procedure folder names at ``ref``, sorted."""
        return sorted(self.tree_ids(ref))

    def read(self, proc_id: str, ref: str = "HEAD") -> Snapshot:
        """The files of ``procedures/<id>/`` at ``ref``, read from git objects."""
        commit = self._commit(ref)
        tree = self._folder_tree(commit)
        entry = tree[proc_id] if tree is not None and proc_id in tree else None
        if not isinstance(entry, pygit2.Tree):
            raise NotFoundError(
                f"{self.name}: no procedure {proc_id!r} at {ref} "
                f"(no folder {self.folder}/{proc_id}/); `procreg list` shows what there is"
            )
        return self._snapshot(proc_id, entry, str(commit.id))

    def read_tree(self, proc_id: str, tree_id: str, commit: str | None = None) -> Snapshot:
        """A snapshot from a known subtree id (sync uses this after comparing ids)."""
        tree = self.repo.get(tree_id)
        if not isinstance(tree, pygit2.Tree):
            raise NotFoundError(f"{self.name}: tree {tree_id} of {proc_id!r} is missing")
        return self._snapshot(proc_id, tree, commit)

    def _snapshot(self, proc_id: str, tree: pygit2.Tree, commit: str | None) -> Snapshot:
        files: dict[str, FileEntry] = {}
        for path, mode, blob_id in self._walk(tree, ""):
            blob = self.repo.get(blob_id)
            data = blob.data if isinstance(blob, pygit2.Blob) else b""
            files[path] = FileEntry(data, mode)
        return Snapshot(proc_id, files, str(tree.id), commit, self.folder)

    def _walk(self, tree: pygit2.Tree, prefix: str) -> Iterator[tuple[str, int, pygit2.Oid]]:
        for entry in tree:
            path = f"{prefix}{entry.name}"
            if entry.filemode == MODE_TREE:
                sub = self.repo.get(entry.id)
                assert isinstance(sub, pygit2.Tree)
                yield from self._walk(sub, path + "/")
            else:
                yield path, entry.filemode, entry.id

    def read_path(self, path: str, ref: str = "HEAD") -> bytes | None:
        """A file's bytes at ``ref`` (e.g. ``procreg.toml``), or None if absent."""
        try:
            entry = self._commit(ref).tree[path]
        except (KeyError, NotFoundError):
            return None
        blob = self.repo.get(entry.id)
        return blob.data if isinstance(blob, pygit2.Blob) else None

    def read_staged(self) -> list[Snapshot]:
        """Procedures as they are in the git index (what ``git commit`` would record).

        Honours ``GIT_INDEX_FILE``, which git sets for hooks during
        ``git commit -a`` and ``git commit <paths>``.
        """
        index_file = os.environ.get("GIT_INDEX_FILE")
        if index_file:
            path = Path(index_file)
            if not path.is_absolute():
                path = (self.workdir or self.git_dir) / path
            index = pygit2.Index(str(path))
        else:
            index = self.repo.index
            index.read()
        grouped: dict[str, dict[str, FileEntry]] = {}
        prefix = self.folder + "/"
        for entry in index:
            if not entry.path.startswith(prefix):
                continue
            rest = entry.path[len(prefix) :]
            if "/" not in rest:
                continue  # a stray file directly under procedures/: not a procedure
            proc_id, name = rest.split("/", 1)
            blob = self.repo.get(entry.id)
            data = blob.data if isinstance(blob, pygit2.Blob) else b""
            grouped.setdefault(proc_id, {})[name] = FileEntry(data, entry.mode)
        return [
            Snapshot(pid, files, None, None, self.folder) for pid, files in sorted(grouped.items())
        ]

    def read_changed_staged(self) -> list[Snapshot]:
        """The staged procedures whose files differ from HEAD (deleted ones are left out)."""
        staged = self.read_staged()
        if self.is_unborn():
            return staged
        head = self.tree_ids("HEAD")
        changed = []
        for snap in staged:
            if snap.id not in head:
                changed.append(snap)
                continue
            if self.read_tree(snap.id, head[snap.id]).files != snap.files:
                changed.append(snap)
        return changed

    # -- history ----------------------------------------------------------------

    def changed_procedures(
        self, old_commit: str | None, new_commit: str
    ) -> dict[str, tuple[str | None, str | None]]:
        """``{id: (old subtree id, new subtree id)}`` for folders that differ.

        Compares the ``procedures/`` tree ids first and the subtree ids next,
        so unchanged folders are never read.
        """
        new_tree = self._folder_tree(self._commit(new_commit))
        old_tree = self._folder_tree(self._commit(old_commit)) if old_commit else None
        if old_tree is not None and new_tree is not None and old_tree.id == new_tree.id:
            return {}
        old = {str(e.name): str(e.id) for e in old_tree or () if e.filemode == MODE_TREE}
        new = {str(e.name): str(e.id) for e in new_tree or () if e.filemode == MODE_TREE}
        return {
            pid: (old.get(pid), new.get(pid))
            for pid in old.keys() | new.keys()
            if old.get(pid) != new.get(pid)
        }

    def diff_stats(self, old_tree_id: str | None, new_tree_id: str | None) -> tuple[int, int, int]:
        """``(lines added, lines removed, files changed)`` between two folder trees.

        The same numbers ``git diff --numstat`` prints for that folder (binary
        files count no lines).
        """
        if old_tree_id == new_tree_id:
            return (0, 0, 0)
        stats = self._tree_diff(old_tree_id, new_tree_id).stats
        return (stats.insertions, stats.deletions, stats.files_changed)

    def diff_text(self, old_tree_id: str | None, new_tree_id: str | None, prefix: str) -> str:
        """A unified diff between two folder trees, with paths shown under ``prefix``."""
        if old_tree_id == new_tree_id:
            return ""
        patch = self._tree_diff(old_tree_id, new_tree_id).patch or ""
        out = []
        for line in patch.splitlines(keepends=True):
            if line.startswith("diff --git a/"):
                a, _, b = line[len("diff --git a/") :].partition(" b/")
                line = f"diff --git a/{prefix}/{a} b/{prefix}/{b}"
            elif line.startswith(("--- a/", "+++ b/")):
                line = f"{line[:6]}{prefix}/{line[6:]}"
            out.append(line)
        return "".join(out)

    def _tree_diff(self, old_tree_id: str | None, new_tree_id: str | None) -> pygit2.Diff:
        """A diff between two trees; a missing side is the empty tree (read-only: no write)."""
        old = self.repo.get(old_tree_id) if old_tree_id else None
        new = self.repo.get(new_tree_id) if new_tree_id else None
        if (old_tree_id and not isinstance(old, pygit2.Tree)) or (
            new_tree_id and not isinstance(new, pygit2.Tree)
        ):
            raise NotFoundError(f"{self.name}: tree {old_tree_id} or {new_tree_id} is missing")
        if isinstance(old, pygit2.Tree) and isinstance(new, pygit2.Tree):
            return old.diff_to_tree(new)
        if isinstance(new, pygit2.Tree):
            return new.diff_to_tree(swap=True)  # the empty tree -> new
        assert isinstance(old, pygit2.Tree), "callers compare two equal missing trees first"
        return old.diff_to_tree()  # old -> the empty tree

    def folder_commits(
        self, proc_id: str, until: str, since: str | None = None
    ) -> list[CommitInfo]:
        """Commits in ``since..until`` that changed ``procedures/<id>/``, newest first.

        A merge commit counts only when its folder differs from every parent
        (as ``git log -- path`` simplifies history), so the commits of a
        merged feature branch are reported once, by themselves.
        """
        walker = self.repo.walk(self.resolve(until), pygit2.enums.SortMode.TOPOLOGICAL)
        if since:
            walker.hide(self.resolve(since))
        out: list[CommitInfo] = []
        for commit in walker:
            mine = self._subtree_id(commit, proc_id)
            parents = commit.parents
            if not parents and mine is None:
                continue
            if any(self._subtree_id(p, proc_id) == mine for p in parents):
                continue  # TREESAME to a parent: the change (if any) came from that side
            author = _person(commit.author)
            assert author is not None
            out.append(
                CommitInfo(
                    str(commit.id), commit.message, author, tuple(str(p) for p in commit.parent_ids)
                )
            )
        return out

    def _subtree_id(self, commit: pygit2.Commit, proc_id: str) -> str | None:
        try:
            return str(commit.tree[f"{self.folder}/{proc_id}"].id)
        except KeyError:
            return None

    # -- writing ----------------------------------------------------------------

    def signature(self) -> pygit2.Signature:
        """The committer/tagger identity from git config (user.name, user.email)."""
        try:
            return self.repo.default_signature
        except (KeyError, pygit2.GitError) as exc:
            raise GitError(
                f"{self.name}: no git identity; run `git config user.name 'Your Name'` and "
                "`git config user.email you@example.com`"
            ) from exc

    def write(
        self,
        changes: Changes,
        message: str,
        *,
        branch: str | None = None,
        expected_tip: str | None = None,
        retries: int = 3,
    ) -> str:
        """Commit ``changes`` (whole procedure folders) on ``branch`` as one commit.

        The working tree is not touched. The branch moves by compare-and-swap:
        if another writer moved it first, the write is rebuilt on the new tip
        (up to ``retries`` times) as long as that writer did not change the
        same procedures; otherwise :class:`ConflictError`. With
        ``expected_tip``, any move of the branch is a conflict. A branch lock
        left by a killed process is cleared; a live one is waited for, then
        reported (:class:`~registry.errors.LockedError`).
        """
        ref_name = self.branch_ref(branch)
        sig = self.signature()
        deadline = time.monotonic() + _lock_wait()
        attempt = 0
        while True:
            ref = self._lookup(ref_name)
            tip = str(ref.target) if ref is not None else None
            if expected_tip is not None and tip != expected_tip:
                raise ConflictError(
                    f"{self.name}: {ref_name} is at {tip or 'nothing'}, expected {expected_tip}; "
                    "someone else wrote first. Re-read and try again."
                )
            base_commit = self.repo.get(tip) if tip else None
            base_tree = base_commit.tree if isinstance(base_commit, pygit2.Commit) else None
            try:
                tree_id = self._build_tree(base_tree, changes)
                if base_tree is not None and tree_id == base_tree.id:
                    return tip or ""  # nothing to change: no empty commit
                parents = [tip] if tip else []
                commit_id = self.repo.create_commit(None, sig, sig, message, tree_id, parents)
            except (pygit2.GitError, OSError) as exc:
                raise self._git_error(exc, f"cannot write a commit for {ref_name}") from exc
            try:
                if ref is None:
                    self._create_ref(ref_name, commit_id, f"procreg: {message.splitlines()[0]}")
                else:
                    ref.set_target(commit_id, f"procreg: {message.splitlines()[0]}")
                return str(commit_id)
            except ConflictError as exc:  # created by another writer meanwhile: a lost race
                if isinstance(exc, LockedError):
                    raise
                lost: BaseException = exc
            except (pygit2.AlreadyExistsError, pygit2.GitError, OSError, ValueError) as exc:
                if _is_lock_error(exc):
                    self._wait_for_lock(self._lock_path(exc, ref_name), ref_name, deadline)
                    continue
                text = str(exc)
                if not any(word in text for word in ("exists", "modified", "match")):
                    raise self._git_error(exc, f"cannot move {ref_name}", ref=ref_name) from exc
                lost = exc
            # Lost the race: the ref moved (CAS mismatch) or was created meanwhile.
            if expected_tip is not None:
                raise ConflictError(
                    f"{self.name}: {ref_name} moved while writing; re-read and try again"
                ) from lost
            new = self._lookup(ref_name)
            new_tip = str(new.target) if new is not None else None
            if tip and new_tip and new_tip != tip and self._touched(tip, new_tip, changes):
                raise ConflictError(
                    f"{self.name}: {ref_name} moved to {new_tip[:12]} with changes to the same "
                    f"procedure(s) ({', '.join(sorted(changes))}); re-read and try again"
                ) from lost
            attempt += 1
            if attempt > retries:
                raise ConflictError(
                    f"{self.name}: {ref_name} kept moving; gave up after {retries} retries"
                ) from lost
            time.sleep(random.uniform(0.001, 0.01))  # noqa: S311 - jitter, not crypto

    def create_branch(self, branch: str, commit: str) -> str:
        """Create ``branch`` at ``commit``; :class:`ConflictError` if it already exists.

        Created under the ref's lock (:meth:`_create_ref`), so two writers
        picking the same new name never both get it.
        """
        ref_name = self.branch_ref(branch)
        self._create_ref(ref_name, commit, f"procreg: create {branch}")
        return ref_name

    def _lookup(self, ref_name: str) -> pygit2.Reference | None:
        try:
            return self.repo.lookup_reference(ref_name)
        except (KeyError, pygit2.InvalidSpecError):
            return None

    def _touched(self, old: str, new: str, ids: Iterable[str]) -> bool:
        changed = self.changed_procedures(old, new)
        return any(pid in changed for pid in ids)

    def _build_tree(self, base: pygit2.Tree | None, changes: Changes) -> pygit2.Oid:
        folder = None
        if base is not None and self.folder in base:
            candidate = base[self.folder]
            folder = candidate if isinstance(candidate, pygit2.Tree) else None
        folder_builder = (
            self.repo.TreeBuilder(folder) if folder is not None else self.repo.TreeBuilder()
        )
        for proc_id, files in changes.items():
            if files is None:
                if folder_builder.get(proc_id) is not None:
                    folder_builder.remove(proc_id)
                continue
            folder_builder.insert(proc_id, self._files_tree(files), MODE_TREE)
        root = self.repo.TreeBuilder(base) if base is not None else self.repo.TreeBuilder()
        if len(folder_builder):
            root.insert(self.folder, folder_builder.write(), MODE_TREE)
        elif root.get(self.folder) is not None:
            root.remove(self.folder)
        return root.write()

    def _files_tree(self, files: Mapping[str, FileEntry | bytes]) -> pygit2.Oid:
        nested: dict[str, dict[str, FileEntry | bytes]] = {}
        builder = self.repo.TreeBuilder()
        for name, value in files.items():
            head, sep, rest = name.partition("/")
            if sep:
                nested.setdefault(head, {})[rest] = value
                continue
            entry = value if isinstance(value, FileEntry) else FileEntry(value)
            blob = self.repo.create_blob(entry.data)
            builder.insert(name, blob, entry.mode)
        for name, sub in nested.items():
            builder.insert(name, self._files_tree(sub), MODE_TREE)
        return builder.write()

    def update_worktree(self, old_commit: str | None, new_commit: str) -> list[str]:
        """Bring the working tree and index up to a commit the registry wrote on HEAD's branch.

        Only procedure folders that differ between the two commits are
        touched. A file whose working-tree copy and index entry each hold
        ``old_commit``'s content or already ``new_commit``'s is updated (an
        update cut short half-way is finished); a file the user edited keeps
        its working-tree copy while its index entry moves to the branch's, so
        the index is never left behind the branch; an index entry the user
        staged is left alone. Returns the paths that kept local changes. A
        bare repository, or a branch other than the checked-out one, is left
        as is.
        """
        if self.workdir is None or self.is_unborn() or self.resolve("HEAD") != new_commit:
            return []
        index = self.repo.index
        index.read()
        skipped: list[str] = []
        for proc_id, (old_tree, new_tree) in self.changed_procedures(
            old_commit, new_commit
        ).items():
            before = self._blobs(old_tree, f"{self.folder}/{proc_id}/")
            after = self._blobs(new_tree, f"{self.folder}/{proc_id}/")
            for path in sorted(before.keys() | after.keys()):
                old, new = before.get(path), after.get(path)
                index_ours, file_ours = self._only_ours(path, old, new, index)
                if not index_ours:  # the user staged something of their own there
                    skipped.append(path)
                    continue
                target = self.workdir / path
                try:
                    if not file_ours:
                        # the user edited the file: keep it, but never leave the index behind
                        skipped.append(path)
                        if new is not None:
                            oid, mode = new
                            index.add(pygit2.IndexEntry(path, oid, pygit2.enums.FileMode(mode)))
                        elif path in index:
                            index.remove(path)
                    elif new is not None:
                        oid, mode = new
                        blob = self.repo.get(oid)
                        assert isinstance(blob, pygit2.Blob)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        if not target.is_file() or pygit2.hash(target.read_bytes()) != oid:
                            target.write_bytes(blob.data)
                        target.chmod(0o755 if mode == 0o100755 else 0o644)
                        index.add(pygit2.IndexEntry(path, oid, pygit2.enums.FileMode(mode)))
                    else:
                        target.unlink(missing_ok=True)
                        if path in index:
                            index.remove(path)
                except OSError as exc:
                    raise self._git_error(exc, f"cannot update {path}", path=target) from exc
            folder = self.workdir / self.folder / proc_id
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self._write_index(index)
        return skipped

    def _write_index(self, index: pygit2.Index) -> None:
        """Write the checkout's index, clearing an ``index.lock`` a killed process left."""
        deadline = time.monotonic() + _lock_wait()
        while True:
            try:
                index.write()
                return
            except (pygit2.GitError, OSError) as exc:
                if not _is_lock_error(exc):
                    raise self._git_error(exc, "cannot write the index", path=self.git_dir) from exc
                found = _LOCK_IN_MESSAGE.search(str(exc))
                lock = Path(found.group(1)) if found else self.git_dir / "index.lock"
                self._wait_for_lock(lock, "the index of the checkout", deadline)

    def _only_ours(
        self,
        path: str,
        old: tuple[pygit2.Oid, int] | None,
        new: tuple[pygit2.Oid, int] | None,
        index: pygit2.Index,
    ) -> tuple[bool, bool]:
        """Whether the index, and the working tree, each hold ``old`` or ``new`` at ``path``."""
        assert self.workdir is not None
        allowed = {entry[0] if entry else None for entry in (old, new)}
        in_index = index[path].id if path in index else None
        target = self.workdir / path
        if target.is_symlink() or target.is_dir():
            return in_index in allowed, False
        on_disk = pygit2.hash(target.read_bytes()) if target.is_file() else None
        return in_index in allowed, on_disk in allowed

    def checkout_differences(self, ids: Iterable[str] | None = None) -> list[str]:
        """Paths under the procedure folders where the checkout's index differs from HEAD.

        ``ids`` limits the check to those procedures. Empty for a bare repository
        or an unborn branch. What ``git diff --cached --name-only`` would list there.
        """
        if self.workdir is None or self.is_unborn():
            return []
        index = self.repo.index
        index.read()
        head = self.tree_ids("HEAD")
        wanted = sorted(set(ids) if ids is not None else set(head))
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
                for path, (oid, _) in self._blobs(head.get(proc_id), f"{prefix}{proc_id}/").items()
            }
            mine = staged.get(proc_id, {})
            out += sorted(
                p for p in committed.keys() | mine.keys() if committed.get(p) != mine.get(p)
            )
        return out

    def begin_checkout_update(self) -> list[str]:
        """Before writing commits on HEAD's branch: say which commit the checkout reflects.

        First finishes what an interrupted run left (:meth:`finish_checkout_update`),
        then records HEAD's commit in ``.git/procreg/checkout-base``, so a run
        killed after its commits but before updating the checkout is caught up
        by the next one. Returns the paths the catch-up left alone.
        """
        skipped = self.finish_checkout_update()
        if self.workdir is None:
            return skipped
        marker = self.git_dir / CHECKOUT_MARKER
        base = "" if self.is_unborn() else self.resolve("HEAD")
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
            with tmp.open("w") as fh:
                fh.write(base + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(marker)
        except OSError as exc:
            raise self._git_error(exc, "cannot record the checkout's commit", path=marker) from exc
        return skipped

    def finish_checkout_update(self) -> list[str]:
        """Bring the checkout up to its branch after the registry wrote commits on it.

        Uses the commit :meth:`begin_checkout_update` recorded (nothing to do
        without one). Files the user changed are left alone and returned; the
        record is removed either way, so the next run does not redo it.
        """
        marker = self.git_dir / CHECKOUT_MARKER
        try:
            base = marker.read_text().strip() or None
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._git_error(exc, "cannot read the checkout's commit", path=marker) from exc
        skipped: list[str] = []
        if self.workdir is not None and not self.is_unborn():
            head = self.resolve("HEAD")
            if base != head:
                skipped = self.update_worktree(base, head)
        marker.unlink(missing_ok=True)
        return skipped

    def _blobs(self, tree_id: str | None, prefix: str) -> dict[str, tuple[pygit2.Oid, int]]:
        if tree_id is None:
            return {}
        tree = self.repo.get(tree_id)
        assert isinstance(tree, pygit2.Tree)
        return {prefix + path: (oid, mode) for path, mode, oid in self._walk(tree, "")}

    # -- tags -------------------------------------------------------------------

    def tags(self, prefix: str, *, ignored: list[str] | None = None) -> list[TagInfo]:
        """Tags whose name starts with ``prefix``, with their targets and messages, by name.

        Tags that point at no commit (a tag of a tree or a blob) are left out;
        their names are appended to ``ignored`` when it is given.
        """
        out = []
        for ref_name, target in self._ref_targets("refs/tags/" + prefix):
            name = ref_name[len("refs/tags/") :]
            info = self.tag(name) if target is None else self.tag_at(name, target)
            if info is not None:
                out.append(info)
            elif ignored is not None:
                ignored.append(name)
        return out

    def tag(self, name: str) -> TagInfo | None:
        """One tag by name, or None if it does not exist (or tags no commit)."""
        ref_name = "refs/tags/" + name
        if not pygit2.reference_is_valid_name(ref_name):
            return None
        # revparse, not lookup_reference: pygit2 1.21's lookup_reference (and
        # references.get) keeps its name argument alive, ~100 bytes a call.
        try:
            obj = self.repo.revparse_single(ref_name)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            return None
        return self.tag_at(name, str(obj.id))

    def tag_at(self, name: str, target: str) -> TagInfo | None:
        """The tag ``name`` whose ref points at object ``target`` (a tag object or a commit).

        For callers that already listed the refs: no ref lookup at all.
        """
        try:
            obj = self.repo.get(target)
        except (ValueError, pygit2.GitError):
            return None
        if isinstance(obj, pygit2.Tag):
            try:
                commit = obj.peel(pygit2.Commit)
            except (pygit2.GitError, ValueError, KeyError):
                return None  # a tag of a tree or blob: not a release
            return TagInfo(
                name, str(commit.id), str(obj.id), _person(obj.tagger), obj.message or ""
            )
        if isinstance(obj, pygit2.Commit):
            return TagInfo(name, str(obj.id), None, None, "")
        return None

    def create_tag(self, name: str, commit: str, message: str) -> TagInfo:
        """Create an annotated tag; an existing tag of that name is a :class:`ConflictError`.

        The ref is created through libgit2 under its lock (see :meth:`_create_ref`),
        in the common git dir, so a tag made in a linked worktree is everyone's.
        A lock left by a killed process is cleared; a live one is waited for,
        then reported (:class:`~registry.errors.LockedError`).
        """
        sig = self.signature()
        tag_id = self._write_tag_object(name, commit, message, sig)
        self._create_ref("refs/tags/" + name, tag_id, f"procreg: tag {name}")
        return TagInfo(name, commit, tag_id, _person(sig), message)

    def _create_ref(self, ref_name: str, target: str | pygit2.Oid, message: str) -> None:
        """Create ``ref_name`` pointing at ``target``; :class:`ConflictError` if it exists.

        libgit2's ``references.create(force=False)`` checks that the ref is absent
        *before* it takes the lock, so two creators could both succeed. A
        reference transaction takes the lock first (``<ref>.lock``, created
        exclusively, as git does), then the check is made while holding it.
        """
        deadline = time.monotonic() + _lock_wait()
        oid = target if isinstance(target, pygit2.Oid) else pygit2.Oid(hex=target)
        while True:
            try:
                with self.repo.transaction() as txn:
                    txn.lock_ref(ref_name)
                    if ref_name in self.repo.references:
                        short = ref_name.removeprefix("refs/tags/")
                        what = f"tag {short}" if short != ref_name else ref_name
                        raise ConflictError(
                            f"{self.name}: {what} already exists; tags are never moved or "
                            "overwritten"
                        )
                    txn.set_target(ref_name, oid, message=message)
                return
            except (pygit2.GitError, OSError) as exc:
                if not _is_lock_error(exc):
                    raise self._git_error(exc, f"cannot write {ref_name}", ref=ref_name) from exc
                self._wait_for_lock(self._lock_path(exc, ref_name), ref_name, deadline)

    def _lock_path(self, exc: BaseException, ref_name: str) -> Path:
        """The lock file a libgit2 lock error names (else where the ref's lock lives)."""
        found = _LOCK_IN_MESSAGE.search(str(exc))
        if found:
            return Path(found.group(1))
        return self.common_dir / f"{ref_name}.lock"

    def _wait_for_lock(self, lock: Path, what: str, deadline: float) -> None:
        """After a write found ``lock`` taken: clear it if its holder is dead, else wait a bit.

        Raises :class:`LockedError` naming the lock (and who holds it) at ``deadline``.
        """
        cleared, holders = clear_stale_lock(lock)
        if cleared:
            return
        if time.monotonic() > deadline:
            raise LockedError(_locked_message(lock, what, holders), path=str(lock), holders=holders)
        time.sleep(random.uniform(0.01, 0.05))  # noqa: S311 - jitter, not crypto

    def _git_error(
        self, exc: BaseException, doing: str, *, ref: str | None = None, path: Path | None = None
    ) -> GitError:
        """A libgit2 or OS error as a :class:`GitError` naming the repository and what failed."""
        where = path or self.common_dir
        if _is_disk_full(exc):
            return GitError(
                f"{self.name}: {doing}: the disk holding {where} is full ({exc}); free some "
                "space and run the command again (what was done is kept)",
                path=str(where),
                ref=ref,
            )
        return GitError(f"{self.name}: {doing}: {exc}", path=str(where), ref=ref)

    @contextlib.contextmanager
    def release_lock(self, wait_s: float = RELEASE_LOCK_WAIT_S) -> Iterator[None]:
        """Hold the repository's release lock: one releaser at a time, across processes.

        One open file under the common git dir, locked with ``flock``: exclusive by
        construction, and the kernel drops it when its holder exits, however it
        exits, so a killed release never blocks the next one. The holder writes its
        pid into the file so a waiter that gives up can say who holds it.
        """
        path = self.common_dir / RELEASE_LOCK
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._git_error(exc, "cannot open the release lock", path=path) from exc
        try:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        holder = _read_pid(fd)
                        raise LockedError(
                            f"{self.name}: another release holds {path}"
                            + (f" (pid {holder})" if holder else "")
                            + f" after {wait_s:.0f} s; wait for it to finish, then retry",
                            path=str(path),
                            holders=[holder] if holder else [],
                        ) from None
                    time.sleep(random.uniform(0.005, 0.03))  # noqa: S311 - jitter
            with contextlib.suppress(OSError):  # informative only: a full disk must not stop us
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _write_tag_object(self, name: str, commit: str, message: str, sig: pygit2.Signature) -> str:
        if not isinstance(self.repo.get(commit), pygit2.Commit):
            raise NotFoundError(f"{self.name}: cannot tag {commit}: no such commit")
        sign = "-" if sig.offset < 0 else "+"
        hours, minutes = divmod(abs(sig.offset), 60)
        body = message if message.endswith("\n") else message + "\n"
        raw = (
            f"object {commit}\ntype commit\ntag {name}\n"
            f"tagger {sig.name} <{sig.email}> {sig.time} {sign}{hours:02d}{minutes:02d}\n\n{body}"
        )
        try:
            return str(self.repo.write(ObjectType.TAG, raw.encode()))
        except (pygit2.GitError, OSError) as exc:
            raise self._git_error(exc, f"cannot write tag {name}", path=self.common_dir) from exc

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two revisions, or None when they share none."""
        try:
            oid = self.repo.merge_base(self.resolve(a), self.resolve(b))
        except (KeyError, ValueError, pygit2.GitError):
            return None
        return str(oid) if oid is not None else None


# -- lock files -------------------------------------------------------------------------------

_LOCK_IN_MESSAGE = re.compile(r"'([^']+\.lock)'")


def _lock_wait() -> float:
    try:
        return float(os.environ.get("PROCREG_LOCK_WAIT", LOCK_WAIT_S))
    except ValueError:
        return LOCK_WAIT_S


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "failed to lock" in text or "locked" in text or ".lock'" in text


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "no space left" in text or "disk quota exceeded" in text


def lock_holders(path: Path) -> list[int]:
    """Ids of the processes that have ``path`` open (read from ``/proc``; may be incomplete).

    libgit2 keeps a lock file open while it holds it; a process whose ``/proc``
    entry cannot be read (another user's) is not seen.
    """
    target = Path(os.path.realpath(path))
    found: list[int] = []
    try:
        procs = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return found
    for proc in procs:
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if fd.readlink() == target:
                    found.append(int(proc.name))
                    break
            except OSError:
                continue
    return found


def clear_stale_lock(path: Path, grace_s: float = LOCK_GRACE_S) -> tuple[bool, list[int]]:
    """Remove ``path`` if it is a lock its holder left behind; ``(gone now, live holders)``.

    Stale means: no process has it open and it is older than ``grace_s`` (git
    closes a ref lock just before it renames it into place, for microseconds).
    """
    try:
        before = path.stat()
    except FileNotFoundError:
        return True, []
    holders = lock_holders(path)
    if holders:
        return False, holders
    if time.time() - before.st_mtime < grace_s:
        return False, []
    try:
        now = path.stat()
    except FileNotFoundError:
        return True, []
    if (now.st_ino, now.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
        return False, []  # a new writer took it meanwhile
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    log.warning("procreg: removed the stale lock %s (the process that took it is gone)", path)
    return True, []


def _locked_message(lock: Path, what: str, holders: list[int]) -> str:
    if holders:
        who = ", ".join(f"pid {pid} ({_command_of(pid)})" for pid in holders)
        return (
            f"{lock} is held by {who}, which is writing {what}; wait for it to finish "
            "(or stop it), then retry"
        )
    return (
        f"{lock} keeps being recreated: another git command is writing {what}; wait for it "
        "to finish, then retry"
    )


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "unknown command"
    text = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return text[:80] or "unknown command"


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


# -- reading the files ref backend ---------------------------------------------------------


def _loose_refs(git_dir: Path, prefix: str) -> dict[str, str | None]:
    """Loose refs under ``git_dir`` starting with ``prefix``: ``{name: target or None}``.

    Only the directory holding the prefix's last component is listed (plus the
    subdirectories whose names match it); ``*.lock`` files (a write in
    progress) are skipped, as git does. ``None`` marks a symbolic ref.
    """
    head, _, base = prefix.rpartition("/")
    directory = git_dir / head if head else git_dir
    out: dict[str, str | None] = {}
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return out
    stem = f"{head}/" if head else ""
    for entry in entries:
        if not entry.name.startswith(base) or entry.name.endswith(".lock"):
            continue
        if not head and not entry.name.startswith("refs"):
            continue
        if entry.is_dir(follow_symlinks=False):
            for root, dirs, names in os.walk(entry.path):
                dirs[:] = [d for d in dirs if not d.endswith(".lock")]
                rel = Path(root).relative_to(directory).as_posix()
                for file_name in names:
                    if not file_name.endswith(".lock"):
                        _read_loose(Path(root, file_name), f"{stem}{rel}/{file_name}", out)
        elif entry.is_file(follow_symlinks=False):
            _read_loose(Path(entry.path), f"{stem}{entry.name}", out)
    return out


def _read_loose(path: Path, name: str, out: dict[str, str | None]) -> None:
    try:
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return  # deleted meanwhile, or not a ref: git ignores it too
    if text.startswith("ref:"):
        out[name] = None
    elif len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text):
        out[name] = text


def _packed_refs(path: Path, prefix: str) -> Iterator[tuple[str, str]]:
    """``(name, target)`` of the refs in a ``packed-refs`` file starting with ``prefix``.

    Git writes the file sorted by name (header trait ``sorted``), so the first
    match is found by binary search over line starts and the scan stops at the
    first name past the prefix; peeled lines (``^``) are skipped. A file
    without the ``sorted`` trait is scanned whole.
    """
    try:
        with path.open("rb") as fh:
            try:
                data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:
                return  # empty file
    except FileNotFoundError:
        return
    with data:
        key = prefix.encode()
        start = 0
        sorted_file = False
        while start < len(data) and data[start : start + 1] == b"#":
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end + 1
            line = bytes(data[start:end])
            if line.startswith(b"# pack-refs with:"):
                sorted_file = b"sorted" in line.split(b":", 1)[1].split()
            start = end
        end = len(data)
        if sorted_file:
            start = _packed_lower_bound(data, start, key)
            if key:
                # the first name past every name with this prefix
                after = key[:-1] + bytes([key[-1] + 1]) if key[-1] < 0xFF else key + b"\xff"
                end = _packed_lower_bound(data, start, after)
        for line in bytes(data[start:end]).splitlines():
            if not line or line[:1] in (b"^", b"#"):
                continue
            target, _, name = line.partition(b" ")
            if name.startswith(key):
                yield name.decode("utf-8", "surrogateescape"), target.decode("ascii", "replace")


def _packed_lower_bound(data: mmap.mmap, start: int, key: bytes) -> int:
    """Offset of the first record in ``data[start:]`` whose name is >= ``key``."""
    size = len(data)

    def record_start(pos: int) -> int:
        line = data.rfind(b"\n", start, pos) + 1
        line = max(line, start)
        while line > start and data[line : line + 1] == b"^":  # a peeled line: back up
            line = max(data.rfind(b"\n", start, line - 1) + 1, start)
        return line

    def record_end(pos: int) -> int:
        end = data.find(b"\n", pos)
        end = size if end < 0 else end + 1
        while end < size and data[end : end + 1] == b"^":
            nxt = data.find(b"\n", end)
            end = size if nxt < 0 else nxt + 1
        return end

    lo, hi = start, size
    while lo < hi:
        mid = lo + (hi - lo) // 2
        rec = record_start(mid)
        eol = data.find(b"\n", rec)
        line = bytes(data[rec : size if eol < 0 else eol]).rstrip(b"\r")
        name = line.partition(b" ")[2]
        if name < key:
            lo = record_end(mid)
        else:
            hi = rec
    return lo


def is_symlink_mode(mode: int) -> bool:
    return mode == MODE_SYMLINK


def now_utc() -> datetime:
    return datetime.now(UTC)


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
