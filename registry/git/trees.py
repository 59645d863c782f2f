"""Tree diff: which ``procedures/`` subtrees differ between two commits, fast.

The raw ``procedures/`` tree object is compared as bytes with the previous
sync's tree (kept in memory with its entry offsets): the common prefix and
suffix are found at C speed and only the entries in between are parsed. Loose
tree objects are inflated directly rather than through libgit2. A tree the
byte parser cannot read falls back to a libgit2 tree diff, and a missing or
non-tree folder to :meth:`GitStore.changed_procedures`; every path gives the
same answer.
"""

from __future__ import annotations

import bisect
import logging
import re
import zlib
from array import array
from pathlib import Path
from typing import Any

from registry.git.store import GitStore

log = logging.getLogger(__name__)


def changed_procedures(
    store: GitStore, old_commit: str, new_commit: str
) -> dict[str, tuple[str | None, str | None]]:
    """``{id: (old subtree, new subtree)}`` for folders that differ.

    Same answer as :meth:`GitStore.changed_procedures`, in time proportional
    to the change: the raw ``procedures/`` tree objects are compared as bytes
    (common prefix and suffix at C speed) and only the entries in between are
    parsed, using the entry offsets kept from the previous sync's tree.
    """
    repo = store.repo

    def folder(commit: str) -> Any:
        try:
            return repo.get(commit).tree[store.folder]  # type: ignore[union-attr]
        except KeyError:
            return None

    old, new = folder(old_commit), folder(new_commit)
    if old is None or new is None or old.type_str != "tree" or new.type_str != "tree":
        return store.changed_procedures(old_commit, new_commit)
    if old.id == new.id:
        return {}
    key = (str(store.git_dir), store.folder)
    try:
        cached = _RAW_TREES.get(key)
        if cached is None or cached.id != str(old.id):
            cached = RawTree.read(repo, old.id)
        before, after, fresh = cached.diff(repo, new.id)
    except ValueError:  # a tree libgit2 reads but the byte parser does not: let libgit2 diff
        log.warning("could not parse the %s tree; diffing with libgit2", store.folder)
        _RAW_TREES.pop(key, None)
        return _libgit2_changes(old, new)
    _RAW_TREES[key] = fresh
    out: dict[str, tuple[str | None, str | None]] = {}
    for name in before.keys() | after.keys():
        pair = (_subtree_hex(before.get(name)), _subtree_hex(after.get(name)))
        if pair[0] != pair[1]:
            out[name.decode("utf-8", "surrogateescape")] = pair
    return out


def _subtree_hex(entry: tuple[bytes, bytes] | None) -> str | None:
    return entry[1].hex() if entry is not None and entry[0] == TREE_MODE else None


def _libgit2_changes(old: Any, new: Any) -> dict[str, tuple[str | None, str | None]]:
    ids: set[str] = set()
    for delta in old.diff_to_tree(new).deltas:
        for path in (delta.old_file.path, delta.new_file.path):
            ids.add(path.split("/", 1)[0])

    def subtree(tree: Any, proc_id: str) -> str | None:
        try:
            entry = tree[proc_id]
        except KeyError:
            return None
        return str(entry.id) if entry.type_str == "tree" else None

    out: dict[str, tuple[str | None, str | None]] = {}
    for proc_id in ids:
        pair = (subtree(old, proc_id), subtree(new, proc_id))
        if pair[0] != pair[1]:
            out[proc_id] = pair
    return out


TREE_MODE = b"40000"
_CHUNK = 16384


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix: memcmp of chunks, then halving inside the one that differs."""
    n = min(len(a), len(b))
    lo = 0
    while lo < n and a[lo : min(lo + _CHUNK, n)] == b[lo : min(lo + _CHUNK, n)]:
        lo += _CHUNK
    if lo >= n:
        return n
    hi = min(lo + _CHUNK, n)  # a[lo:hi] != b[lo:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the common suffix, at most ``limit`` (the mirror of :func:`_common_prefix`)."""
    la, lb = len(a), len(b)
    lo = 0
    while lo < limit:
        hi = min(lo + _CHUNK, limit)
        if a[la - hi : la - lo] != b[lb - hi : lb - lo]:
            break
        lo = hi
    if lo >= limit:
        return limit
    hi = min(lo + _CHUNK, limit)  # the last hi bytes differ, the last lo do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[la - mid : la - lo] == b[lb - mid : lb - lo]:
            lo = mid
        else:
            hi = mid
    return lo


class RawTree:
    """A tree object's raw bytes and the byte offset of each entry (plus the end).

    A git tree is a sorted run of ``<mode> <name>\\0<raw id>`` entries, so two
    versions of a 10,000-entry tree share a long byte prefix and suffix; with
    the offsets known, the entries in between are the only ones to parse.
    """

    __slots__ = ("_entry", "id", "raw", "starts")

    def __init__(self, tree_id: str, raw: bytes, starts: array[int], entry: re.Pattern[bytes]):
        self.id = tree_id
        self.raw = raw
        self.starts = starts
        self._entry = entry

    @staticmethod
    def _pattern(size: int) -> re.Pattern[bytes]:
        # ids are 20 bytes (sha1) or 32 (sha256 repositories)
        return _ENTRY_RES.setdefault(
            size, re.compile(rb"([0-7]+) ([^\0]+)\0(.{%d})" % size, re.DOTALL)
        )

    @classmethod
    def read(cls, repo: Any, tree_id: Any) -> RawTree:
        """Read and index a whole tree object (once; later trees come from :meth:`diff`)."""
        raw = _tree_bytes(repo, tree_id)
        entry = cls._pattern(len(tree_id.raw))
        starts = array("q")
        pos = 0
        for m in entry.finditer(raw):
            if m.start() != pos:
                raise ValueError(f"tree {tree_id}: unparsable bytes at {pos}")
            starts.append(pos)
            pos = m.end()
        if pos != len(raw):
            raise ValueError(f"tree {tree_id}: unparsable bytes at {pos}")
        starts.append(len(raw))
        return cls(str(tree_id), raw, starts, entry)

    def _entries(self, raw: bytes, begin: int, end: int) -> dict[bytes, tuple[bytes, bytes]]:
        out: dict[bytes, tuple[bytes, bytes]] = {}
        for m in self._entry.finditer(raw, begin, end):
            out[m.group(2)] = (m.group(1), m.group(3))
        return out

    def diff(
        self, repo: Any, new_id: Any
    ) -> tuple[dict[bytes, tuple[bytes, bytes]], dict[bytes, tuple[bytes, bytes]], RawTree]:
        """``(old entries, new entries, new tree)`` for the region that differs.

        Entries are ``{name: (mode, raw id)}``; names outside the region are equal.
        """
        a, b = self.raw, _tree_bytes(repo, new_id)
        starts = self.starts
        last = len(starts) - 1
        # the entry holding the first differing byte starts at the same offset in both
        k = max(0, bisect.bisect_right(starts, _common_prefix(a, b)) - 1)
        begin = starts[k]
        end_old = len(a) - _common_suffix(a, b, min(len(a), len(b)) - begin)
        delta = len(b) - len(a)
        j = bisect.bisect_left(starts, end_old)
        # parse the new bytes from the shared boundary until they meet an old entry
        # boundary inside the common suffix: from there on both parse the same
        after: dict[bytes, tuple[bytes, bytes]] = {}
        new_starts = array("q")
        pos = begin
        while True:
            while j < last and starts[j] + delta < pos:
                j += 1
            if starts[j] + delta == pos and starts[j] >= end_old:
                break
            m = self._entry.match(b, pos)
            if m is None:
                raise ValueError(f"tree {new_id}: unparsable bytes at {pos}")
            new_starts.append(pos)
            after[m.group(2)] = (m.group(1), m.group(3))
            pos = m.end()
            if pos > len(b):
                raise ValueError(f"tree {new_id}: truncated entry at {pos}")
        before = self._entries(a, begin, starts[j])
        tail = starts[j:] if not delta else array("q", (x + delta for x in starts[j:]))
        fresh = RawTree(str(new_id), b, starts[:k] + new_starts + tail, self._entry)
        return before, after, fresh


def _tree_bytes(repo: Any, tree_id: Any) -> bytes:
    """A tree object's body. A loose object is inflated here: libgit2 would also
    hash the whole 330 KB object on every read (a parse error still falls back)."""
    hexid = str(tree_id)
    path = Path(repo.path, "objects", hexid[:2], hexid[2:])
    try:
        data = zlib.decompress(path.read_bytes())
    except (OSError, zlib.error):
        return bytes(repo.odb.read(tree_id)[1])
    header, _, body = data.partition(b"\0")
    if header != b"tree %d" % len(body):
        raise ValueError(f"loose object {hexid} is not a tree")
    return body


# (git dir, folder) -> the procedures/ tree of the last incremental sync there
_RAW_TREES: dict[tuple[str, str], RawTree] = {}
_ENTRY_RES: dict[int, re.Pattern[bytes]] = {}
