"""Conventional commits (conventionalcommits.org 1.0): what a commit message says of itself.

:func:`parse_conventional` reads a commit message's type, scope, ``!`` and
``BREAKING CHANGE`` footer, and the commits a squash merge lists in its body.
:func:`registry.core.versioning.decide_bump` turns them into bump reasons. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

__all__ = ["ConventionalCommit", "commit_subject", "parse_conventional"]


class ConventionalCommit(BaseModel):
    """What a commit message says about itself (conventionalcommits.org 1.0).

    ``type`` is ``None`` for a message that is not conventional, ``"merge"``
    for a merge commit and ``"revert"`` for ``git revert``'s message.
    ``bang`` is the header's ``!``; ``breaking`` is true if the message, or a
    commit squashed into it, is breaking. ``squashed`` are the conventional
    commits a squash merge lists in its body (``* feat: ...`` bullets, or the
    headers of ``Squashed commit of the following:`` and Bitbucket's
    ``Merged in ...`` messages), each with its own footers.
    """

    # built on first use: `procreg show` and `log` import this module (via the tag grammar)
    # but never parse a commit message
    model_config = ConfigDict(frozen=True, defer_build=True)

    type: str | None
    scope: str | None = None
    breaking: bool = False
    description: str
    breaking_note: str | None = None
    bang: bool = False
    header: str = ""
    squashed: tuple[ConventionalCommit, ...] = ()


# A scope may hold one level of parentheses: feat(api(v2)): x.
_HEADER = (
    r"(?P<type>[A-Za-z]+(?:[-_][A-Za-z]+)*)"
    r"(?:\((?P<scope>(?:[^()\r\n]|\([^()\r\n]*\))*)\))?"
    r"(?P<bang>!)?:[ \t]+(?P<desc>\S.*)"
)
_CONVENTIONAL_RE = re.compile(rf"^{_HEADER}$")
_BULLET_RE = re.compile(r"^[ \t]*[*-][ \t]+(?P<rest>.*)$")
# The token must be uppercase (the spec); BREAKING-CHANGE is its synonym.
_BREAKING_FOOTER_RE = re.compile(r"^(?:[*-][ \t]+)?BREAKING[ -]CHANGE:[ \t]*(?P<note>.*)$")
_MERGE_RE = re.compile(r"^Merge (branch|branches|pull request|remote-tracking branch|tag|commit) ")
_REVERT_RE = re.compile(r'^Revert ".*"$')
# Squash styles whose body lists commits as plain headers, not bullets.
_SQUASH_SUBJECT_RE = re.compile(r"^(Squashed commit of the following:|Merged in \S)")
# In those bodies a "Key: value" paragraph may be a git trailer, not a commit.
_TRAILER_KEYS = frozenset({
    "acked-by", "author", "cc", "closes", "co-authored-by", "date", "fixes", "helped-by",
    "ref", "refs", "reported-by", "resolves", "reviewed-by", "see-also", "signed-off-by",
    "tested-by",
})  # fmt: skip


def commit_subject(message: str) -> str:
    """A commit message's subject: its first line that is not blank, stripped."""
    return next((line.strip() for line in message.splitlines() if line.strip()), "")


def _footer(lines: Sequence[str]) -> tuple[bool, str | None]:
    """Whether ``lines`` hold a breaking-change footer, and its note."""
    for i, line in enumerate(lines):
        m = _BREAKING_FOOTER_RE.match(line.strip())
        if m is None:
            continue
        text = m.group("note").strip()
        if not text:  # the note may start on the next line
            text = next((rest.strip() for rest in lines[i + 1 :] if rest.strip()), "")
        return True, text or None
    return False, None


def _header(text: str) -> re.Match[str] | None:
    m = _CONVENTIONAL_RE.match(text)
    if m is None or m.group("type").upper() in ("BREAKING-CHANGE", "BREAKING_CHANGE"):
        return None
    return m


def _sections(
    lines: list[str], plain_headers: bool
) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Split a body into squashed commits, ``(header, the lines that follow it)``, and the rest.

    A squashed commit starts at a bullet (``* feat: x``, ``- fix(a): y``) or,
    in squash styles that list bare headers, at a header that opens a
    paragraph. A bullet that is not a conventional header ends the previous
    commit; the lines after it belong to the message itself.
    """
    out: list[tuple[str, list[str]]] = []
    rest: list[str] = []
    current: list[str] = rest
    previous_blank = True
    for line in lines:
        stripped = line.strip()
        bullet = _BULLET_RE.match(line)
        candidate = bullet.group("rest").strip() if bullet else stripped
        header = _header(candidate)
        if (
            bullet is None
            and header is not None
            and (
                header.group("type").lower() in _TRAILER_KEYS
                or header.group("desc").startswith("#")
            )
        ):
            header = None
        starts = bullet is not None or (plain_headers and previous_blank and bool(stripped))
        if starts and header is not None:
            current = []
            out.append((candidate, current))
        elif bullet is not None and not _BREAKING_FOOTER_RE.match(stripped):
            current = rest
        else:
            current.append(line)
        previous_blank = not stripped
    return out, rest


def _commit(header: str, rest: list[str], kind: str | None = None) -> ConventionalCommit:
    breaking, note = _footer([header, *rest])
    if kind is not None:
        return ConventionalCommit(
            type=kind, breaking=breaking, description=header, breaking_note=note, header=header
        )
    m = _header(header)
    if m is None:
        return ConventionalCommit(
            type=None, breaking=breaking, description=header, breaking_note=note, header=header
        )
    scope = m.group("scope")
    bang = m.group("bang") is not None
    return ConventionalCommit(
        type=m.group("type").lower(),  # types are case-insensitive
        scope=scope.strip() or None if scope is not None else None,
        breaking=breaking or bang,
        description=m.group("desc").strip(),
        breaking_note=note,
        bang=bang,
        header=header,
    )


def parse_conventional(message: str) -> ConventionalCommit:
    """Parse a commit message (``"subject\\n\\nbody"``) as a conventional commit.

    ``feat(scope)!: text`` gives type ``feat``, scope ``scope`` and breaking
    (scopes may nest one level of parentheses: ``feat(api(v2)): x``); types
    are case-insensitive. An uppercase ``BREAKING CHANGE:`` or
    ``BREAKING-CHANGE:`` footer line marks a message breaking (merge commits
    and non-conventional text included). Merge and revert messages get types
    ``merge`` and ``revert``; other text gives type ``None`` with the subject
    as description. A squash merge's body is read for the commits it lists
    (``squashed``); a merge commit's body is not, since the merged commits
    are read on their own.
    """
    first = commit_subject(message)
    lines = message.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    body = lines[start + 1 :]
    if _MERGE_RE.match(first):
        return _commit(first, body, kind="merge")
    if _REVERT_RE.match(first):
        return _commit(first, body, kind="revert")
    sections, own = _sections(body, plain_headers=bool(_SQUASH_SUBJECT_RE.match(first)))
    top = _commit(first, own)
    squashed = tuple(_commit(h, rest) for h, rest in sections)
    if not squashed:
        return top
    return top.model_copy(
        update={"squashed": squashed, "breaking": top.breaking or any(c.breaking for c in squashed)}
    )
