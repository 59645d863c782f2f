"""The folder-history walk: the commits that changed ``procedures/<id>/``, for many ids at once.

:func:`folder_history` answers ``git log since..until -- procedures/<id>/`` for
every id in one walk of the commit graph, reading each commit's
``procedures/`` tree once. A merge commit counts only when the folder differs
from every parent (as ``git log -- path`` simplifies history), so the commits
of a merged feature branch are reported once, by themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pygit2

from registry.errors import NotFoundError
from registry.git.info import CommitInfo, commit_info
from registry.git.trees import changed_names, entry_id, folder_tree, unverified_reads

# Past this many procedures in one commit's ranges, one libgit2 diff of the
# two procedures/ trees is cheaper than a lookup per procedure.
_DIFF_OVER = 2_000
_TREE_CACHE = 64


def folder_history(
    repo: pygit2.Repository,
    folder: str,
    since: Mapping[str, str | None],
    until: str,
    *,
    repo_name: str = "",
) -> dict[str, list[CommitInfo]]:
    """Per id, the commits in ``since[id]..until`` that changed ``<folder>/<id>/``, newest first.

    ``since[id]`` is a commit id, or None for the whole history of ``until``;
    ``until`` is a commit id. A missing commit is a :class:`NotFoundError`.
    """
    out: dict[str, list[CommitInfo]] = {proc_id: [] for proc_id in since}
    if not since:
        return out
    walk = _Walk(repo, folder, list(since), repo_name)
    top = walk.commit(until)
    walker = repo.walk(top.id, pygit2.enums.SortMode.TOPOLOGICAL)
    for i, start in enumerate(since.values()):
        if start is not None:
            oid = walk.commit(start).id
            walk.hide(oid, 1 << i)
            walker.push(oid)
    walk.enter(top.id)
    with unverified_reads():  # a walk reads a procedures/ tree per commit
        for commit in walker:
            changed = walk.visit(commit)
            if changed:
                info = commit_info(commit)  # one value for every id the commit changed
                for proc_id in changed:
                    out[proc_id].append(info)
            if walk.done():
                break
    return out


class _Walk:
    """The state of one walk: which ids each commit is still in the range of.

    ``hidden[c]``: the ids whose range excludes ``c`` (it is one of their start
    commits' ancestors); topological order shows every child before its
    parents, so a commit's mask is complete when it is reached.
    """

    def __init__(self, repo: pygit2.Repository, folder: str, ids: list[str], name: str) -> None:
        self.repo = repo
        self.folder = folder
        self.ids = ids
        self.name = name
        self.everyone = (1 << len(ids)) - 1
        self.hidden: dict[pygit2.Oid, int] = {}
        self.inside: set[pygit2.Oid] = set()  # reachable from ``until``
        self.pending: set[pygit2.Oid] = set()  # may still be in some range
        self._trees: dict[pygit2.Oid, pygit2.Tree | None] = {}

    def commit(self, oid: str | pygit2.Oid) -> pygit2.Commit:
        obj = self.repo.get(oid)
        if not isinstance(obj, pygit2.Commit):
            raise NotFoundError(
                f"{self.name}: commit {oid} is missing", kind="commit", name=str(oid)
            )
        return obj

    def hide(self, oid: pygit2.Oid, mask: int) -> None:
        self.hidden[oid] = self.hidden.get(oid, 0) | mask

    def enter(self, oid: pygit2.Oid) -> None:
        self.inside.add(oid)
        self.pending.add(oid)

    def done(self) -> bool:
        """True when no commit left to walk can be in any range."""
        return not self.pending

    def visit(self, commit: pygit2.Commit) -> list[str]:
        """The ids whose folder ``commit`` changed within their range; updates the masks."""
        cid = commit.id
        mask = self.hidden.pop(cid, 0)
        inside = cid in self.inside
        wanted = self.everyone & ~mask if inside else 0
        self.pending.discard(cid)
        for parent in commit.parent_ids:
            if mask:
                self.hide(parent, mask)
            if inside:
                self.inside.add(parent)
                if wanted:
                    self.pending.add(parent)
        if not wanted:
            return []
        parents = [self._folder(p) for p in commit.parent_ids]
        return self._changed_here(self._folder(cid), parents, wanted)

    def _folder(self, oid: pygit2.Oid) -> pygit2.Tree | None:
        if oid not in self._trees:
            if len(self._trees) > _TREE_CACHE:
                self._trees.clear()
            self._trees[oid] = folder_tree(self.commit(oid), self.folder)
        return self._trees[oid]

    def _changed_here(
        self, mine: pygit2.Tree | None, parents: list[pygit2.Tree | None], wanted: int
    ) -> list[str]:
        """The ids (bits of ``wanted``) whose folder differs from every parent's at this commit."""
        ids = self.ids
        if parents and mine is not None and all(p is not None and p.id == mine.id for p in parents):
            return []
        if wanted.bit_count() > _DIFF_OVER:
            changed: set[str] | None = None
            for parent in parents:
                names = changed_names(parent, mine)
                changed = names if changed is None else changed & names
            if changed is None:  # a root commit: every folder it has is new
                changed = changed_names(None, mine)
            return [ids[i] for i in _bits(wanted) if ids[i] in changed]
        out = []
        for i in _bits(wanted):
            here = entry_id(mine, ids[i])
            if not parents and here is None:
                continue
            if any(entry_id(parent, ids[i]) == here for parent in parents):
                continue  # TREESAME to a parent: the change (if any) came from that side
            out.append(ids[i])
        return out


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low
