"""Which procedure folders differ between two commits: the one answer, computed fast.

:func:`changed_procedures` compares the raw ``procedures/`` tree objects as
bytes with the last tree diffed in this repository (kept in memory with its
entry offsets): the common prefix and suffix are found at C speed and only the
entries in between are parsed. Loose tree objects are inflated directly rather
than through libgit2. A tree the byte parser cannot read falls back to a
libgit2 tree diff, and a missing or non-tree folder (or no old commit) to
comparing the two folders' entries; every path gives the same answer.
:func:`changed_names` is the libgit2 diff of two folder trees, for the
history walk (:mod:`registry.git.walk`).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import re
import threading
import zlib
from array import array
from collections.abc import Iterator, Mapping
from pathlib import Path

import deflate
import pygit2

from registry.core.snapshot import MODE_TREE, FileEntry
from registry.errors import GitError

log = logging.getLogger(__name__)

_INFLATE_ERRORS = (zlib.error, deflate.DeflateError, ValueError, IndexError)
_HEADER_MAX = 32  # "tree <size>\0": a type, a space, a decimal size and a NUL

Changed = dict[str, tuple[str | None, str | None]]
"""``{procedure id: (old subtree id, new subtree id)}`` for the folders that differ."""


_UNVERIFIED = threading.Lock()
_unverified_users = 0


@contextlib.contextmanager
def unverified_reads() -> Iterator[None]:
    """Read objects without libgit2 re-hashing each one (as git itself reads them).

    libgit2 checks every object it reads against its id (strict hash
    verification); for a 330 KB ``procedures/`` tree that hash costs more than
    inflating it. Git does not hash on read either (``git fsck`` does): a
    damaged pack still fails its zlib and CRC checks. The option is
    process-wide, so it is off while at least one caller is inside this block.
    """
    global _unverified_users
    with _UNVERIFIED:
        if _unverified_users == 0:
            pygit2.option(pygit2.enums.Option.ENABLE_STRICT_HASH_VERIFICATION, 0)
        _unverified_users += 1
    try:
        yield
    finally:
        with _UNVERIFIED:
            _unverified_users -= 1
            if _unverified_users == 0:
                pygit2.option(pygit2.enums.Option.ENABLE_STRICT_HASH_VERIFICATION, 1)


def folder_tree(commit: pygit2.Commit, folder: str) -> pygit2.Tree | None:
    """The ``folder`` tree of ``commit`` (None when it has none, or it is not a tree)."""
    try:
        entry = commit.tree[folder]
    except KeyError:
        return None
    return entry if isinstance(entry, pygit2.Tree) else None


def changed_procedures(
    repo: pygit2.Repository, folder: str, old: pygit2.Commit | None, new: pygit2.Commit
) -> Changed:
    """``{id: (old subtree, new subtree)}`` for the folders under ``folder`` that differ.

    Time proportional to the change: the raw ``procedures/`` tree objects are
    compared as bytes (common prefix and suffix at C speed) and only the entries
    in between are parsed, using the entry offsets kept from the last diff here.
    """
    old_tree = folder_tree(old, folder) if old is not None else None
    new_tree = folder_tree(new, folder)
    if old_tree is None or new_tree is None:
        return _by_entries(old_tree, new_tree)
    if old_tree.id == new_tree.id:
        return {}
    key = (str(repo.path), folder)
    try:
        cached = _RAW_TREES.get(key)
        if cached is None or cached.id != str(old_tree.id):
            cached = RawTree.read(repo, old_tree.id)
        before, after, fresh = cached.diff(repo, new_tree.id)
    except ValueError:  # a tree libgit2 reads but the byte parser does not: let libgit2 diff
        log.warning("could not parse the %s tree; diffing with libgit2", folder)
        _RAW_TREES.pop(key, None)
        return _subtree_changes(old_tree, new_tree, changed_names(old_tree, new_tree))
    _RAW_TREES[key] = fresh
    out: Changed = {}
    for name in before.keys() | after.keys():
        pair = (_subtree_hex(before.get(name)), _subtree_hex(after.get(name)))
        if pair[0] != pair[1]:
            out[name.decode("utf-8", "surrogateescape")] = pair
    return out


def _by_entries(old: pygit2.Tree | None, new: pygit2.Tree | None) -> Changed:
    """The folders that differ, comparing every entry (when one side has no folder tree)."""
    if old is not None and new is not None and old.id == new.id:
        return {}
    before = {str(e.name): str(e.id) for e in old or () if e.filemode == MODE_TREE}
    after = {str(e.name): str(e.id) for e in new or () if e.filemode == MODE_TREE}
    return {
        pid: (before.get(pid), after.get(pid))
        for pid in before.keys() | after.keys()
        if before.get(pid) != after.get(pid)
    }


def changed_names(old: pygit2.Tree | None, new: pygit2.Tree | None) -> set[str]:
    """The entry names that differ between two folder trees (a libgit2 diff, in C)."""
    if old is None or new is None:
        present = old if old is not None else new
        return {str(e.name) for e in present} if present is not None else set()
    if old.id == new.id:
        return set()
    names: set[str] = set()
    for delta in old.diff_to_tree(new).deltas:
        names.add(delta.old_file.path.split("/", 1)[0])
        names.add(delta.new_file.path.split("/", 1)[0])
    return names


def entry_id(tree: pygit2.Tree | None, name: str) -> str | None:
    """The id of entry ``name`` of ``tree`` (any type), or None."""
    if tree is None:
        return None
    try:
        return str(tree[name].id)
    except KeyError:
        return None


def subtree_id(tree: pygit2.Tree | None, name: str) -> str | None:
    """The id of subtree ``name`` of ``tree``, or None when it is absent or not a tree."""
    if tree is None or name not in tree:
        return None
    entry = tree[name]
    return str(entry.id) if isinstance(entry, pygit2.Tree) else None


def _subtree_changes(old: pygit2.Tree, new: pygit2.Tree, names: set[str]) -> Changed:
    out: Changed = {}
    for proc_id in names:
        pair = (subtree_id(old, proc_id), subtree_id(new, proc_id))
        if pair[0] != pair[1]:
            out[proc_id] = pair
    return out


def _subtree_hex(entry: tuple[bytes, bytes] | None) -> str | None:
    return entry[1].hex() if entry is not None and entry[0] == TREE_MODE else None


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
    def read(cls, repo: pygit2.Repository, tree_id: pygit2.Oid) -> RawTree:
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
        self, repo: pygit2.Repository, new_id: pygit2.Oid
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


def _inflate(compressed: bytes) -> bytearray:
    """A loose object, inflated: its header's size read from the first bytes, then the
    whole object at once by libdeflate (1.5x ISA-L, 2x zlib, for an output of known size)."""
    head = zlib.decompressobj().decompress(compressed, _HEADER_MAX)
    header = head[: head.index(b"\0")]
    size = int(header.split(b" ", 1)[1])
    return deflate.zlib_decompress(compressed, len(header) + 1 + size)


def _tree_bytes(repo: pygit2.Repository, tree_id: pygit2.Oid) -> bytes:
    """A tree object's body. A loose object is inflated here (:func:`_inflate`: at 10,000
    procedures this is the part of an incremental sync that grows with N); libgit2 would
    also hash the whole 330 KB object on every read. A damaged loose object is a
    :class:`GitError`."""
    hexid = str(tree_id)
    path = Path(repo.path, "objects", hexid[:2], hexid[2:])
    try:
        compressed = path.read_bytes()
    except OSError:  # not a loose object: libgit2 reads it from its pack
        return bytes(repo.odb.read(tree_id)[1])
    try:
        data = _inflate(compressed)
    except _INFLATE_ERRORS as exc:
        # every sound loose object inflates, and libgit2 1.9 loops forever on a truncated
        # one (libgit2#7342): say what is wrong rather than hand it over
        raise GitError(
            f"{repo.path}: the loose object {hexid} ({path}) is damaged and cannot be "
            f"inflated ({type(exc).__name__}: {exc}); run `git fsck` and restore it from "
            "a clone or a remote",
            path=str(path),
            ref=hexid,
        ) from exc
    end = data.find(b"\0")
    body = bytes(memoryview(data)[end + 1 :])  # one copy, as immutable bytes
    if end < 0 or data[:end] != b"tree %d" % len(body):
        raise ValueError(f"loose object {hexid} is not a tree")
    return body


# (git dir, folder) -> the procedures/ tree of the last incremental sync there
_RAW_TREES: dict[tuple[str, str], RawTree] = {}
_ENTRY_RES: dict[int, re.Pattern[bytes]] = {}


def walk_blobs(
    repo: pygit2.Repository, tree: pygit2.Tree, prefix: str = ""
) -> Iterator[tuple[str, int, pygit2.Oid]]:
    """``(path, mode, blob id)`` of every file under ``tree``, subtrees walked in tree order."""
    for entry in tree:
        path = f"{prefix}{entry.name}"
        if entry.filemode == MODE_TREE:
            sub = repo.get(entry.id)
            assert isinstance(sub, pygit2.Tree)
            yield from walk_blobs(repo, sub, path + "/")
        else:
            yield path, entry.filemode, entry.id


def build_tree(
    repo: pygit2.Repository,
    base: pygit2.Tree | None,
    folder: str,
    changes: Mapping[str, Mapping[str, FileEntry | bytes] | None],
) -> pygit2.Oid:
    """Write the root tree ``base`` with whole procedure folders replaced (None: deleted)."""
    current = None
    if base is not None and folder in base:
        candidate = base[folder]
        current = candidate if isinstance(candidate, pygit2.Tree) else None
    folder_builder = repo.TreeBuilder(current) if current is not None else repo.TreeBuilder()
    for proc_id, files in changes.items():
        if files is None:
            if folder_builder.get(proc_id) is not None:
                folder_builder.remove(proc_id)
            continue
        folder_builder.insert(proc_id, _files_tree(repo, files), MODE_TREE)
    root = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
    if len(folder_builder):
        root.insert(folder, folder_builder.write(), MODE_TREE)
    elif root.get(folder) is not None:
        root.remove(folder)
    return root.write()


def _files_tree(repo: pygit2.Repository, files: Mapping[str, FileEntry | bytes]) -> pygit2.Oid:
    nested: dict[str, dict[str, FileEntry | bytes]] = {}
    builder = repo.TreeBuilder()
    for name, value in files.items():
        head, sep, rest = name.partition("/")
        if sep:
            nested.setdefault(head, {})[rest] = value
            continue
        entry = value if isinstance(value, FileEntry) else FileEntry(value)
        blob = repo.create_blob(entry.data)
        builder.insert(name, blob, entry.mode)
    for name, sub in nested.items():
        builder.insert(name, _files_tree(repo, sub), MODE_TREE)
    return builder.write()
