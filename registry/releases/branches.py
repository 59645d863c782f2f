"""Which branch releases are cut from, and whether a release would be cut elsewhere.

Releases are computed from the tracked branch's history; a tag made on a feature
branch or a detached commit releases code nobody merged. :func:`off_branch` says so
in one line, and the CLI asks for ``--from-branch`` before going on.
"""

from __future__ import annotations

from registry.config import worktree_config
from registry.git import remotes
from registry.git.store import GitStore

HEADS = "refs/heads/"


def release_branch(store: GitStore) -> str | None:
    """The full ref releases come from: ``[registry] branch``, else the remote's default
    branch (``refs/remotes/<remote>/HEAD``), else ``main`` or ``master`` when one exists.
    """
    configured = worktree_config(store).registry.branch
    if configured:
        return store.branch_ref(configured)
    remote = remotes.default_remote(store, _short(store.current_branch()))
    if remote is not None:
        target = store.symbolic_target(f"refs/remotes/{remote}/HEAD")
        prefix = f"refs/remotes/{remote}/"
        if target and target.startswith(prefix):
            return HEADS + target[len(prefix) :]
    for name in ("main", "master"):
        if store.try_resolve(HEADS + name) is not None:
            return HEADS + name
    return None


def off_branch(store: GitStore, ref: str = "HEAD") -> str | None:
    """Why releasing ``ref`` would not be releasing the tracked branch, or None when it is.

    ``HEAD`` must be the tracked branch checked out; another ref must name a commit
    the tracked branch already holds.
    """
    tracked = release_branch(store)
    if tracked is None:
        return None
    name = _short(tracked)
    if ref == "HEAD":
        current = store.current_branch()
        if current is None:
            return f"HEAD is detached, not on {name}, the branch releases come from"
        if current != tracked:
            here = _short(current)
            return f"the checked-out branch is {here}, not {name}, which releases come from"
        return None
    commit = store.try_resolve(ref)
    tip = store.try_resolve(tracked)
    if commit is None or tip is None or store.is_ancestor(commit, tip):
        return None
    return f"{ref} is not on {name}, the branch releases come from"


def _short(ref: str | None) -> str | None:
    return ref[len(HEADS) :] if ref and ref.startswith(HEADS) else ref
