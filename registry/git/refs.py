"""Refs: reading loose and packed refs by prefix, creating a ref under its lock, tag objects.

Reading a prefix (``refs/tags/procedure-slug-v``) goes to git's files backend
directly: a binary search in ``packed-refs`` and the matching loose refs, not
the whole namespace. Other layouts (reftable, a linked worktree whose refs live
in the common dir) go through libgit2. A ref is created in a reference
transaction that takes ``<ref>.lock`` before checking that the ref is absent,
so two creators never both succeed; a stale lock is cleared, a live one waited for.
"""

from __future__ import annotations

import mmap
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import ObjectType

from registry.errors import ConflictError, NotFoundError
from registry.git.locks import is_lock_error, lock_path, lock_wait, wait_for_lock, write_error


def targets_under(repo: pygit2.Repository, prefix: str) -> list[tuple[str, str | None]]:
    """``(ref name, target id)`` of every ref starting with ``prefix``, sorted by name.

    The target is ``None`` for a symbolic ref (the caller resolves it).
    Git's files backend is read directly: loose refs first, then packed
    ones (``git pack-refs`` writes ``packed-refs`` before it deletes the
    loose files, so a ref being packed is seen in one or the other), a
    loose ref overriding its packed copy. Other layouts (reftable, a linked
    worktree whose refs live in the common dir) go through libgit2.
    """
    git_dir = Path(repo.path)
    if not _files_backend(repo, git_dir):
        return _ref_targets_libgit2(repo, prefix)
    found = _loose_refs(git_dir, prefix)
    for name, target in _packed_refs(git_dir / "packed-refs", prefix):
        found.setdefault(name, target)
    return sorted(found.items())


def any_under(repo: pygit2.Repository, prefix: str) -> bool:
    """True when some ref starts with ``prefix``: :func:`targets_under` up to the first one.

    A loose ref is looked for first (one directory listing), then the first packed one
    (a binary search in ``packed-refs``), so a repository with 30,000 tags is not listed.
    """
    git_dir = Path(repo.path)
    if not _files_backend(repo, git_dir):
        return bool(_ref_targets_libgit2(repo, prefix))
    if _loose_refs(git_dir, prefix, first=True):
        return True
    return next(_packed_refs(git_dir / "packed-refs", prefix), None) is not None


def _files_backend(repo: pygit2.Repository, git_dir: Path) -> bool:
    """True when refs are plain files under this git dir (not reftable, not a worktree)."""
    try:
        storage = repo.config["extensions.refStorage"]
    except (KeyError, pygit2.GitError, ValueError):
        storage = None
    return (
        storage in (None, "files")
        and not (git_dir / "commondir").exists()
        and not (git_dir / "reftable").exists()
        and (git_dir / "refs").is_dir()
    )


def _ref_targets_libgit2(repo: pygit2.Repository, prefix: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for ref in repo.listall_reference_objects():
        if ref.name.startswith(prefix):
            target = ref.target
            out.append((ref.name, str(target) if isinstance(target, pygit2.Oid) else None))
    return sorted(out)


def listed_targets(repo: pygit2.Repository, prefixes: tuple[str, ...]) -> dict[str, str]:
    """``{ref name: target}`` of every ref under one of ``prefixes``, in one libgit2 listing.

    A symbolic ref's target is the name it points at.
    """
    out: dict[str, str] = {}
    for ref in repo.listall_reference_objects():
        name = ref.name
        if name.startswith(prefixes):
            out[name] = str(ref.target)
    return out


def tags_fingerprint(git_dir: Path) -> tuple[Any, ...] | None:
    """Inode, size and mtime of ``packed-refs`` and of every loose tag ref.

    Any tag created, deleted or moved changes one of them, so an unchanged
    fingerprint means the tags are as they were. ``None`` for layouts where
    that does not hold: linked worktrees and reftable.
    """
    if (git_dir / "commondir").exists() or (git_dir / "reftable").exists():
        return None
    parts: list[Any] = []
    try:
        st = (git_dir / "packed-refs").stat()
        parts.append((st.st_ino, st.st_size, st.st_mtime_ns))
    except FileNotFoundError:
        parts.append(None)
    for root, dirs, files in os.walk(git_dir / "refs" / "tags"):
        dirs.sort()
        for name in sorted(files):
            try:
                st = Path(root, name).stat()
            except FileNotFoundError:
                continue
            parts.append((root, name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(parts)


# -- creating refs -------------------------------------------------------------------------


def lookup(repo: pygit2.Repository, ref_name: str) -> pygit2.Reference | None:
    try:
        return repo.lookup_reference(ref_name)
    except (KeyError, pygit2.InvalidSpecError):
        return None


def create_ref(
    repo: pygit2.Repository,
    where: tuple[str, Path],
    ref_name: str,
    target: str | pygit2.Oid,
    message: str,
) -> None:
    """Create ``ref_name`` pointing at ``target``; :class:`ConflictError` if it exists.

    ``where`` is ``(repository name, common git dir)`` for messages and locks.
    libgit2's ``references.create(force=False)`` checks that the ref is absent
    *before* it takes the lock, so two creators could both succeed. A
    reference transaction takes the lock first (``<ref>.lock``, created
    exclusively, as git does), then the check is made while holding it.
    """
    name, common_dir = where
    deadline = time.monotonic() + lock_wait()
    oid = target if isinstance(target, pygit2.Oid) else pygit2.Oid(hex=target)
    while True:
        try:
            with repo.transaction() as txn:
                txn.lock_ref(ref_name)
                if ref_name in repo.references:
                    short = ref_name.removeprefix("refs/tags/")
                    what = f"tag {short}" if short != ref_name else ref_name
                    raise ConflictError(
                        f"{name}: {what} already exists; tags are never moved or overwritten"
                    )
                txn.set_target(ref_name, oid, message=message)
            return
        except (pygit2.GitError, OSError) as exc:
            if not is_lock_error(exc):
                raise write_error(
                    name, exc, f"cannot write {ref_name}", common_dir, ref=ref_name
                ) from exc
            lock = lock_path(exc, common_dir / f"{ref_name}.lock")
            wait_for_lock(lock, ref_name, deadline)


def write_tag_object(
    repo: pygit2.Repository,
    where: tuple[str, Path],
    tag: str,
    commit: str,
    message: str,
    sig: pygit2.Signature,
) -> str:
    """Write an annotated tag object of ``commit`` (no ref yet); its id."""
    name, common_dir = where
    if not isinstance(repo.get(commit), pygit2.Commit):
        raise NotFoundError(
            f"{name}: cannot tag {commit}: no such commit", kind="commit", name=commit
        )
    sign = "-" if sig.offset < 0 else "+"
    hours, minutes = divmod(abs(sig.offset), 60)
    body = message if message.endswith("\n") else message + "\n"
    raw = (
        f"object {commit}\ntype commit\ntag {tag}\n"
        f"tagger {sig.name} <{sig.email}> {sig.time} {sign}{hours:02d}{minutes:02d}\n\n{body}"
    )
    try:
        return str(repo.write(ObjectType.TAG, raw.encode()))
    except (pygit2.GitError, OSError) as exc:
        raise write_error(name, exc, f"cannot write tag {tag}", common_dir) from exc


def _loose_refs(git_dir: Path, prefix: str, *, first: bool = False) -> dict[str, str | None]:
    """Loose refs under ``git_dir`` starting with ``prefix``: ``{name: target or None}``.

    Only the directory holding the prefix's last component is listed (plus the
    subdirectories whose names match it); ``*.lock`` files (a write in
    progress) are skipped, as git does. ``None`` marks a symbolic ref.
    ``first``: stop at the first ref found.
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
                    if first and out:
                        return out
        elif entry.is_file(follow_symlinks=False):
            _read_loose(Path(entry.path), f"{stem}{entry.name}", out)
        if first and out:
            return out
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
        chunk = bytes(data[start:end])
    if key and b"\r" not in chunk:
        # one regex pass over the records: the loop below, at C speed (it needs a
        # prefix, and no CR, which would split a line where the pattern does not)
        for target, name in _PACKED_RECORD_RE.findall(chunk):
            if name.startswith(key):
                yield name.decode("utf-8", "surrogateescape"), target.decode("ascii", "replace")
        return
    for line in chunk.splitlines():
        if not line or line[:1] in (b"^", b"#"):
            continue
        target, _, name = line.partition(b" ")
        if name.startswith(key):
            yield name.decode("utf-8", "surrogateescape"), target.decode("ascii", "replace")


# A packed-refs record: target, one space, name (the first space splits them).
_PACKED_RECORD_RE = re.compile(rb"^(?![\^#])([^ \n]*) ([^\n]*)$", re.MULTILINE)


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
