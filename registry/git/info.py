"""Plain values the git package hands out: people, commits and tags, never pygit2 objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pygit2


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


@dataclass(frozen=True)
class LibraryVersions:
    """The versions of the git library in use (``procreg doctor`` reports them)."""

    libgit2: str
    binding: str
    """The version of the Python binding over libgit2."""


def library_versions() -> LibraryVersions:
    return LibraryVersions(libgit2=pygit2.LIBGIT2_VERSION, binding=pygit2.__version__)


def person(sig: pygit2.Signature | None) -> Person | None:
    """A signature as a :class:`Person` (its time in its own zone)."""
    if sig is None:
        return None
    tz = timezone(timedelta(minutes=sig.offset))
    return Person(sig.name, sig.email, datetime.fromtimestamp(sig.time, tz))


def commit_info(commit: pygit2.Commit) -> CommitInfo:
    author = person(commit.author)
    assert author is not None
    return CommitInfo(
        str(commit.id), commit.message, author, tuple(str(p) for p in commit.parent_ids)
    )
