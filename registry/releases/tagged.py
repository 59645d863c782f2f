"""The release tags of a procedure: listing them, the latest, the tree each one tagged.

A release is an annotated ``procedure-<id>-vX.Y.Z`` tag of a commit (see
:mod:`registry.core.tags` for the grammar). Tags are found by name prefix,
never by walking history. Everything here reads; the modules above it
(:mod:`~registry.releases.channels`, :mod:`~registry.releases.history`,
:mod:`~registry.releases.release`) build on it.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable

import semver

from registry.core import tags
from registry.errors import NotFoundError, UsageError
from registry.git.info import TagInfo
from registry.git.store import GitStore

log = logging.getLogger(__name__)

_WARNED: set[str] = set()


def _warn_not_a_release(names: Iterable[str]) -> None:
    """Log once per tag that a ``procedure-`` tag of a tree or blob is ignored."""
    for name in names:
        if name not in _WARNED:
            _WARNED.add(name)
            log.warning(
                "procreg: warning: ignoring tag %s: it does not point at a commit (release "
                "tags are annotated tags of commits); if it is a mistake, `git tag -d %s`",
                name,
                name,
            )


def releases(store: GitStore, proc_id: str) -> list[tuple[semver.Version, TagInfo]]:
    """Every release tag of ``proc_id``, newest version first (tags of no commit ignored)."""
    found: list[tuple[semver.Version, TagInfo]] = []
    ignored: list[str] = []
    infos = store.tags(tags.release_tag_prefix(proc_id), ignored=ignored)
    _warn_not_a_release(
        n for n in ignored if (p := tags.parse_release_tag(n)) is not None and p[0] == proc_id
    )
    for info in infos:
        parsed = tags.parse_release_tag(info.name)
        # Another id can share the prefix ("a" and "a-v2"): keep only exact matches.
        if parsed is not None and parsed[0] == proc_id:
            found.append((parsed[1], info))
    found.sort(key=lambda item: tags.version_key(item[0]), reverse=True)
    return found


def latest_release(store: GitStore, proc_id: str) -> tuple[semver.Version, TagInfo] | None:
    """The highest released version of ``proc_id`` and its tag, or ``None`` if never released."""
    found = releases(store, proc_id)
    return found[0] if found else None


def release_of(store: GitStore, proc_id: str, version: semver.Version) -> TagInfo:
    """The tag of release ``version`` of ``proc_id``; :class:`NotFoundError` if there is none."""
    info = store.tag(tags.release_tag(proc_id, version))
    if info is None:
        require_procedure(store, proc_id)
        raise NotFoundError(
            f"{proc_id} has no release {version}; `procreg log {proc_id}` lists them",
            kind="version",
            name=f"{proc_id}@{version}",
        )
    return info


def known_ids(store: GitStore, ref: str = "HEAD") -> set[str]:
    """The ids of the procedures at ``ref`` and of every release tag (tag names only)."""
    found = set() if store.try_resolve(ref) is None else set(store.list_procedures(ref))
    for name in store.ref_names(tags.TAGS_REF_PREFIX + tags.RELEASE_TAG_PREFIX):
        parsed = tags.parse_release_tag(name.removeprefix(tags.TAGS_REF_PREFIX))
        if parsed is not None:
            found.add(parsed[0])
    return found


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'xyz'?)`` for the closest of ``candidates``, or ``""``."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def require_procedure(store: GitStore, proc_id: str, ref: str = "HEAD") -> None:
    """Nothing if ``proc_id`` is at ``ref`` or has a release tag; else :class:`NotFoundError`.

    The one place an unknown id is refused, with a "did you mean" over the known ids.
    """
    known = known_ids(store, ref)
    if proc_id in known:
        return
    where = "HEAD" if ref == "HEAD" else ref
    raise NotFoundError(
        f"no procedure {proc_id!r} at {where} and no release of it"
        f"{did_you_mean(proc_id, known)}; `procreg list` shows the procedures",
        kind="procedure",
        name=proc_id,
    )


def release_tree(
    store: GitStore, proc_id: str, version: semver.Version, info: TagInfo
) -> str | None:
    """The folder tree a release tagged: its ``Tree:`` trailer, else read at the tagged commit."""
    tree = tags.release_tree(info.message, proc_id, version)
    if tree is not None:
        return tree
    return store.subtree_ids(info.commit, [proc_id])[proc_id]


def parse_version(text: str | semver.Version) -> semver.Version:
    """A version as people write it (``1.4.0``, ``v1.4.0``); :class:`UsageError` if it is none."""
    if isinstance(text, semver.Version):
        return text
    try:
        return semver.Version.parse(text.strip().removeprefix("v"))
    except ValueError as exc:
        raise UsageError(f"{text!r} is not a version (expected X.Y.Z, e.g. 1.4.0)") from exc
