"""Which branch releases are cut from, and whether a release would be cut elsewhere.

Releases are computed from the tracked branch's history; a tag made on a feature
branch or a detached commit releases code nobody merged. :func:`off_branch` says so
in one line, and the CLI asks for ``--from-branch`` before going on.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class OffBranch:
    """Why a release would not be cut from the tracked branch.

    ``merged``: the commit is already on the tracked branch (a linked worktree's branch
    at main's commit, say), so the release is main's own and only worth a warning.
    """

    reason: str
    merged: bool


def off_branch(store: GitStore, ref: str = "HEAD") -> OffBranch | None:
    """Whether releasing ``ref`` would not be releasing the tracked branch (None: it would).

    ``HEAD`` must be the tracked branch checked out, or a branch whose commit the tracked
    branch already holds; a detached HEAD never is. Another ref must name a commit the
    tracked branch holds.
    """
    tracked = release_branch(store)
    if tracked is None:
        return None
    name = _short(tracked)
    commit = store.try_resolve(ref)
    tip = store.try_resolve(tracked)
    merged = commit is not None and tip is not None and store.is_ancestor(commit, tip)
    if ref != "HEAD":
        return (
            None
            if merged
            else OffBranch(f"{ref} is not on {name}, the branch releases come from", False)
        )
    current = store.current_branch()
    if current is None:
        return OffBranch(f"HEAD is detached, not on {name}, the branch releases come from", False)
    if current == tracked:
        return None
    here = _short(current)
    if merged:
        return OffBranch(f"releasing from {here}, whose commit {name} already holds", True)
    return OffBranch(
        f"the checked-out branch is {here}, not {name}, which releases come from", False
    )


def _short(ref: str | None) -> str | None:
    return ref[len(HEADS) :] if ref and ref.startswith(HEADS) else ref
