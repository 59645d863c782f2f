"""The git store: a git repository seen as a store of procedures, and what it hands out.

The :mod:`registry.git` package is the only one that talks to pygit2 or reads
git's formats; :class:`GitStore` is its face, and gives the rest of the
registry plain values (ids as ``str``, :mod:`~registry.git.info` dataclasses,
:class:`~registry.core.snapshot.Snapshot`). Reads come from git objects
(commits, trees, blobs), so they work on bare repositories and at any ref or
tag without a working tree. Writes build trees and a commit with pygit2 and
move the branch with a compare-and-swap on its old target: two concurrent
writers never lose an update. libgit2 errors are turned into the project's
own errors here, with the repository and ref named.

The pieces: :mod:`~registry.git.refs` (reading refs, creating them under their
lock, tag objects), :mod:`~registry.git.locks` (lock files, the release lock),
:mod:`~registry.git.trees` (which folders changed, building trees),
:mod:`~registry.git.walk` (the folder-history walk) and
:mod:`~registry.git.checkout` (the working tree and index).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path

import pygit2

from registry.core.snapshot import (
    MODE_TREE,
    PROCEDURES_DIR,
    FileEntry,
    Snapshot,
)
from registry.errors import GitError, NotFoundError
from registry.git import refs, trees
from registry.git.checkout import Checkout, staged_snapshots
from registry.git.commits import BranchWriter, Changes
from registry.git.info import CommitInfo, Person, TagInfo, person
from registry.git.locks import (
    RELEASE_LOCK,
    RELEASE_LOCK_WAIT_S,
    hold_release_lock,
    lock_path,
    wait_for_lock,
    write_error,
)
from registry.git.walk import folder_history

log = logging.getLogger(__name__)


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
                "or pass -C PATH.",
                path=str(path),
            )
        try:
            return cls(pygit2.Repository(found))
        except pygit2.GitError as exc:
            raise GitError(f"{found}: cannot open repository: {exc}", path=str(found)) from exc

    @classmethod
    def init(cls, path: str | os.PathLike[str], *, bare: bool = False) -> GitStore:
        """Create a repository (or open the one already there) with branch ``main``."""
        try:
            repo = pygit2.init_repository(str(path), bare=bare, initial_head="main")
        except pygit2.GitError as exc:
            raise GitError(f"{path}: cannot create repository: {exc}", path=str(path)) from exc
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
                raise GitError(
                    f"{self.name}: HEAD is detached; name a branch to write to", ref="HEAD"
                )
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
                    f"{self.name}: the branch has no commits yet; commit a procedure first",
                    kind="ref",
                    name=ref,
                ) from exc
            raise NotFoundError(
                f"{self.name}: unknown revision {ref!r}", kind="ref", name=ref
            ) from exc
        return str(commit.id)

    def has_commit(self, commit: str) -> bool:
        """True when the full id ``commit`` names a commit in this repository's objects."""
        try:
            obj = self.repo.get(commit)
        except (KeyError, ValueError, pygit2.GitError):
            return False
        return isinstance(obj, pygit2.Commit)

    def try_resolve(self, ref: str) -> str | None:
        try:
            return self.resolve(ref)
        except NotFoundError:
            return None

    def symbolic_target(self, name: str) -> str | None:
        """Where a symbolic ref (``refs/remotes/origin/HEAD``) points, or None."""
        try:
            target = self.repo.lookup_reference(name).target
        except (KeyError, ValueError, pygit2.GitError):
            return None
        return target if isinstance(target, str) else None

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

    def ancestors_among(self, commit: str, candidates: Iterable[str]) -> set[str]:
        """The ``candidates`` that are ``commit`` or its ancestors, in one walk from ``commit``.

        :meth:`is_ancestor` for many commits at once: the walk stops when every
        candidate is found (it covers the whole history when one is not an
        ancestor). A missing commit is none.
        """
        wanted = set(candidates)
        found: set[str] = set()
        try:
            walker = self.repo.walk(commit, pygit2.enums.SortMode.NONE)
        except (KeyError, ValueError, pygit2.GitError):
            return found
        for seen in walker:
            hexid = str(seen.id)
            if hexid in wanted:
                found.add(hexid)
                if len(found) == len(wanted):
                    break
        return found

    def ref_names(self, prefix: str) -> list[str]:
        """Every ref name starting with ``prefix`` (e.g. ``refs/tags/procedure-slug-v``), sorted.

        Reads only the refs under that prefix (a binary search in
        ``packed-refs`` and the matching loose refs), not the whole namespace.
        """
        return [name for name, _ in refs.targets_under(self.repo, prefix)]

    def refs_under(self, prefix: str) -> list[tuple[str, str | None]]:
        """``(ref name, target id)`` of every ref starting with ``prefix``, sorted by name.

        :meth:`ref_names` with the targets (``None`` for a symbolic ref), from the same listing.
        """
        return refs.targets_under(self.repo, prefix)

    def has_ref_under(self, prefix: str) -> bool:
        """True when some ref name starts with ``prefix`` (stops at the first one found)."""
        return refs.any_under(self.repo, prefix)

    def ref_targets(self, prefixes: tuple[str, ...]) -> dict[str, str]:
        """``{ref name: target id}`` of every ref under one of ``prefixes``, in one listing.

        One pass over the refs with their targets (the target of a symbolic ref
        is the name it points at): cheaper than listing names, then looking
        each one up, when there are tens of thousands of them.
        """
        return refs.listed_targets(self.repo, prefixes)

    def tags_fingerprint(self) -> tuple[object, ...] | None:
        """A value that changes whenever any tag is created, deleted or moved.

        Inode, size and mtime of ``packed-refs`` and of every loose tag ref;
        ``None`` (always list the tags) for layouts where that does not hold:
        linked worktrees and reftable.
        """
        return refs.tags_fingerprint(self.git_dir)

    # -- trees and snapshots ----------------------------------------------------

    def _commit(self, ref: str) -> pygit2.Commit:
        commit = self.repo.get(self.resolve(ref))
        assert isinstance(commit, pygit2.Commit)
        return commit

    def _folder_tree(self, commit: pygit2.Commit) -> pygit2.Tree | None:
        return trees.folder_tree(commit, self.folder)

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

    def subtree_ids(self, commit: str, ids: Iterable[str]) -> dict[str, str | None]:
        """``{id: folder tree id or None}`` at ``commit``: one tree read, one lookup per id.

        Unlike :meth:`tree_ids`, no dict of every folder is built, which
        matters when ``procedures/`` holds 10,000 entries. A missing commit is a
        :class:`NotFoundError`.
        """
        obj = self.repo.get(commit)
        if not isinstance(obj, pygit2.Commit):
            raise NotFoundError(
                f"{self.name}: commit {commit} is missing", kind="commit", name=commit
            )
        folder = self._folder_tree(obj)
        return {proc_id: trees.subtree_id(folder, proc_id) for proc_id in ids}

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
                f"(no folder {self.folder}/{proc_id}/); `procreg list` shows what there is",
                kind="procedure",
                name=proc_id,
            )
        return self._snapshot(proc_id, entry, str(commit.id))

    def read_tree(self, proc_id: str, tree_id: str, commit: str | None = None) -> Snapshot:
        """A snapshot from a known subtree id (sync uses this after comparing ids)."""
        tree = self.repo.get(tree_id)
        if not isinstance(tree, pygit2.Tree):
            raise NotFoundError(
                f"{self.name}: tree {tree_id} of {proc_id!r} is missing", kind="tree", name=tree_id
            )
        return self._snapshot(proc_id, tree, commit)

    def read_some(
        self, proc_id: str, tree_id: str, names: Collection[str]
    ) -> tuple[list[str], dict[str, bytes]]:
        """Every file path under a known subtree (tree order) and the bytes of those in ``names``.

        What :meth:`read_tree` gives of them (its ``files`` keys, and ``data`` of the
        named), without reading the other blobs: ``get`` shows ``main.py`` and the list.
        """
        tree = self.repo.get(tree_id)
        if not isinstance(tree, pygit2.Tree):
            raise NotFoundError(
                f"{self.name}: tree {tree_id} of {proc_id!r} is missing", kind="tree", name=tree_id
            )
        paths: list[str] = []
        data: dict[str, bytes] = {}
        for path, _, blob_id in trees.walk_blobs(self.repo, tree):
            paths.append(path)
            if path in names:
                blob = self.repo.get(blob_id)
                data[path] = blob.data if isinstance(blob, pygit2.Blob) else b""
        return paths, data

    def _snapshot(self, proc_id: str, tree: pygit2.Tree, commit: str | None) -> Snapshot:
        files: dict[str, FileEntry] = {}
        for path, mode, blob_id in trees.walk_blobs(self.repo, tree):
            blob = self.repo.get(blob_id)
            data = blob.data if isinstance(blob, pygit2.Blob) else b""
            files[path] = FileEntry(data, mode)
        return Snapshot(proc_id, files, str(tree.id), commit, self.folder)

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
        return staged_snapshots(self.repo, index, self.folder)

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

        ``old_commit`` and ``new_commit`` are revisions (``None``: no old commit).
        The raw ``procedures/`` trees are compared as bytes, so the time is
        proportional to the change (see :mod:`registry.git.trees`).
        """
        new = self._commit(new_commit)
        old = self._commit(old_commit) if old_commit else None
        return trees.changed_procedures(self.repo, self.folder, old, new)

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
            raise NotFoundError(
                f"{self.name}: tree {old_tree_id} or {new_tree_id} is missing",
                kind="tree",
                name=new_tree_id
                if old_tree_id is None or isinstance(old, pygit2.Tree)
                else old_tree_id,
            )
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
        start = self.resolve(since) if since else None
        return self.folder_history({proc_id: start}, self.resolve(until))[proc_id]

    def folder_history(
        self, since: Mapping[str, str | None], until: str
    ) -> dict[str, list[CommitInfo]]:
        """:meth:`folder_commits` for many ids at once, in one walk of the commit graph.

        ``since[id]`` (a commit id, or None for the whole history) starts each
        id's range; ``until`` is a commit id.
        """
        return folder_history(self.repo, self.folder, since, until, repo_name=self.name)

    # -- writing ----------------------------------------------------------------

    def signature(self) -> pygit2.Signature:
        """The committer/tagger identity from git config (user.name, user.email)."""
        try:
            return self.repo.default_signature
        except (KeyError, pygit2.GitError) as exc:
            raise GitError(
                f"{self.name}: no git identity; run `git config user.name 'Your Name'` and "
                "`git config user.email you@example.com`",
                path=str(self.git_dir),
            ) from exc

    def identity(self) -> Person:
        """Who commits and tags here (git config ``user.name``, ``user.email``), as of now.

        :class:`GitError` saying how to set it when there is none.
        """
        found = person(self.signature())
        assert found is not None
        return found

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
        writer = BranchWriter(
            self.repo, (self.name, self.common_dir), self.folder, ref_name, self.signature()
        )
        return writer.write(changes, message, expected_tip, retries)

    def create_branch(self, branch: str, commit: str) -> str:
        """Create ``branch`` at ``commit``; :class:`ConflictError` if it already exists.

        Created under the ref's lock (:meth:`_create_ref`), so two writers
        picking the same new name never both get it.
        """
        ref_name = self.branch_ref(branch)
        self._create_ref(ref_name, commit, f"procreg: create {branch}")
        return ref_name

    def _lookup(self, ref_name: str) -> pygit2.Reference | None:
        return refs.lookup(self.repo, ref_name)

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
        changed = self.changed_procedures(old_commit, new_commit)
        return self._checkout(self.workdir).update(changed)

    def _checkout(self, workdir: Path) -> Checkout:
        return Checkout(self.repo, workdir, self.folder, self.name)

    def checkout_differences(self, ids: Iterable[str] | None = None) -> list[str]:
        """Paths under the procedure folders where the checkout's index differs from HEAD.

        ``ids`` limits the check to those procedures. Empty for a bare repository
        or an unborn branch. What ``git diff --cached --name-only`` would list there.
        """
        if self.workdir is None or self.is_unborn():
            return []
        head = self.tree_ids("HEAD")
        wanted = sorted(set(ids) if ids is not None else set(head))
        return self._checkout(self.workdir).differences(head, wanted)

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
        base = "" if self.is_unborn() else self.resolve("HEAD")
        self._checkout(self.workdir).record_base(base)
        return skipped

    def finish_checkout_update(self) -> list[str]:
        """Bring the checkout up to its branch after the registry wrote commits on it.

        Uses the commit :meth:`begin_checkout_update` recorded (nothing to do
        without one). Files the user changed are left alone and returned; the
        record is removed either way, so the next run does not redo it.
        """
        checkout = self._checkout(self.workdir or self.git_dir)
        recorded, base = checkout.recorded_base()
        if not recorded:
            return []
        skipped: list[str] = []
        if self.workdir is not None and not self.is_unborn():
            head = self.resolve("HEAD")
            if base != head:
                skipped = self.update_worktree(base, head)
        checkout.forget_base()
        return skipped

    # -- tags -------------------------------------------------------------------

    def tags(self, prefix: str, *, ignored: list[str] | None = None) -> list[TagInfo]:
        """Tags whose name starts with ``prefix``, with their targets and messages, by name.

        Tags that point at no commit (a tag of a tree or a blob) are left out;
        their names are appended to ``ignored`` when it is given.
        """
        out = []
        for ref_name, target in refs.targets_under(self.repo, "refs/tags/" + prefix):
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
            return TagInfo(name, str(commit.id), str(obj.id), person(obj.tagger), obj.message or "")
        if isinstance(obj, pygit2.Commit):
            return TagInfo(name, str(obj.id), None, None, "")
        return None

    def tag_messages(self, targets: Iterable[str]) -> dict[str, tuple[str, str] | None]:
        """``{target: (commit, message)}`` of annotated tag objects, as :meth:`tag_at` reads them.

        Read from the raw objects: no tagger parsed, no commit loaded (only
        looked up), so scanning 10,000 release tags costs one object read each.
        ``None`` for anything else (a lightweight tag's commit, a tag of a tag,
        tree or blob, a missing object): the caller asks :meth:`tag_at`.
        """
        with trees.unverified_reads():
            return {target: self._tag_message(target) for target in targets}

    def _tag_message(self, target: str) -> tuple[str, str] | None:
        try:
            kind, data = self.repo.odb.read(target)
        except (KeyError, ValueError, pygit2.GitError):
            return None
        if kind != pygit2.enums.ObjectType.TAG:
            return None
        header, _, body = bytes(data).partition(b"\n\n")
        lines = header.split(b"\n", 2)
        if len(lines) < 2 or not lines[0].startswith(b"object ") or lines[1] != b"type commit":
            return None
        commit = lines[0][len(b"object ") :].decode("ascii", "replace")
        try:
            if commit not in self.repo.odb:
                return None
        except ValueError:
            return None
        # as pygit2 reads a tag message: up to the first NUL, undecodable bytes replaced
        return commit, body.split(b"\0", 1)[0].decode("utf-8", "replace")

    def create_tag(self, name: str, commit: str, message: str) -> TagInfo:
        """Create an annotated tag; an existing tag of that name is a :class:`ConflictError`.

        The ref is created through libgit2 under its lock (see :meth:`_create_ref`),
        in the common git dir, so a tag made in a linked worktree is everyone's.
        A lock left by a killed process is cleared; a live one is waited for,
        then reported (:class:`~registry.errors.LockedError`).
        """
        sig = self.signature()
        tag_id = refs.write_tag_object(
            self.repo, (self.name, self.common_dir), name, commit, message, sig
        )
        self._create_ref("refs/tags/" + name, tag_id, f"procreg: tag {name}")
        return TagInfo(name, commit, tag_id, person(sig), message)

    def _create_ref(self, ref_name: str, target: str | pygit2.Oid, message: str) -> None:
        """Create ``ref_name`` at ``target`` under its lock; :class:`ConflictError` if it exists."""
        refs.create_ref(self.repo, (self.name, self.common_dir), ref_name, target, message)

    def _wait_for_ref_lock(self, exc: BaseException, ref_name: str, deadline: float) -> None:
        lock = lock_path(exc, self.common_dir / f"{ref_name}.lock")
        wait_for_lock(lock, ref_name, deadline)

    def _git_error(
        self, exc: BaseException, doing: str, *, ref: str | None = None, path: Path | None = None
    ) -> GitError:
        """A libgit2 or OS error as a :class:`GitError` naming the repository and what failed."""
        return write_error(self.name, exc, doing, path or self.common_dir, ref=ref)

    @contextlib.contextmanager
    def release_lock(self, wait_s: float = RELEASE_LOCK_WAIT_S) -> Iterator[None]:
        """Hold the repository's release lock: one releaser at a time, across processes.

        One open file under the common git dir, locked with ``flock``; the kernel
        drops it when its holder exits, so a killed release never blocks the next
        one (see :func:`registry.git.locks.hold_release_lock`).
        """
        with hold_release_lock(self.common_dir / RELEASE_LOCK, self.name, wait_s):
            yield

    def add_alternate(self, objects_dir: str | os.PathLike[str]) -> None:
        """Also read objects from ``objects_dir`` (a push's quarantine directory)."""
        self.repo.odb.add_disk_alternate(str(objects_dir))

    def free(self) -> None:
        """Drop the object cache (every tree and tag object read so far)."""
        self.repo.free()

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two revisions, or None when they share none."""
        try:
            oid = self.repo.merge_base(self.resolve(a), self.resolve(b))
        except (KeyError, ValueError, pygit2.GitError):
            return None
        return str(oid) if oid is not None else None
