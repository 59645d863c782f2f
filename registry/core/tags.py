"""The tag grammar, in one place: names of release and channel tags, and their messages.

Release tags are ``procedure-<id>-v<semver>``, one immutable annotated tag per
release. A channel (``stable``, ``beta``...) is a movable pointer kept as a
chain of immutable annotated tags ``channel/<id>/<channel>/<seq>``: moving it
adds the next ``seq``, and the highest ``seq`` is where it points now, so
every move stays in history. Tag messages carry git trailers that the index
reads back (:func:`parse_trailers`). Each name has a format/parse pair;
parsers return ``None`` for anything that is not the canonical form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import semver
from pydantic import BaseModel, ConfigDict

from registry.core.conventional import commit_subject
from registry.core.ids import ID_RE, Bump
from registry.errors import UsageError

if TYPE_CHECKING:
    from registry.core.versioning import BumpDecision, DiffStats

RELEASE_TAG_PREFIX = "procedure-"
RELEASE_VERSION_MARK = "-v"
CHANNEL_TAG_PREFIX = "channel/"
TAGS_REF_PREFIX = "refs/tags/"
SEQ_WIDTH = 6
CHANNEL_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
# Names that would read as a version spec rather than a channel.
RESERVED_CHANNELS = frozenset({"head", "latest", "x"})

ChannelAction = Literal["promote", "rollback", "health"]
CHANNEL_ACTIONS: tuple[ChannelAction, ...] = ("promote", "rollback", "health")

_CHANNEL_RE = re.compile(CHANNEL_PATTERN)
_VERSIONISH_RE = re.compile(r"^v\d")
_SEQ_RE = re.compile(r"[0-9]{6,}")
# A canonical release tag with a plain X.Y.Z version: the id is unambiguous
# (ids hold no ".", so the version starts after the last "-v").
_PLAIN_RELEASE_RE = re.compile(
    r"^procedure-(?P<id>[a-z0-9][a-z0-9_-]{0,63})-v"
    r"(?P<major>0|[1-9][0-9]*)\.(?P<minor>0|[1-9][0-9]*)\.(?P<patch>0|[1-9][0-9]*)$"
)
# _PLAIN_RELEASE_RE over many names, one a line, each maybe with its refs/tags/ prefix.
_PLAIN_RELEASE_LINES_RE = re.compile(
    r"^((?:refs/tags/)?(procedure-([a-z0-9][a-z0-9_-]{0,63})-v"
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)))$",
    re.MULTILINE,
)
_TRAILER_RE = re.compile(r"^(?P<key>[A-Za-z0-9][A-Za-z0-9-]*)[ \t]*:[ \t]*(?P<value>.*)$")
# Lines that each match _TRAILER_RE, and the Tree trailers among them, in one pass each.
_TRAILER_LINE = r"[A-Za-z0-9][A-Za-z0-9-]*[ \t]*:[^\n]*"
_TRAILER_BLOCK_RE = re.compile(rf"{_TRAILER_LINE}(?:\n{_TRAILER_LINE})*")
_TREE_TRAILER_RE = re.compile(r"^[Tt][Rr][Ee][Ee][ \t]*:([^\n]*)$", re.MULTILINE)
# Git accepts a paragraph with some non-trailer lines as trailers only if it
# holds one of these (git's own trailers); see git-interpret-trailers(1).
_GIT_GENERATED = ("Signed-off-by: ", "(cherry picked from commit ")


def _strip_ref(name: str) -> str:
    return name[len(TAGS_REF_PREFIX) :] if name.startswith(TAGS_REF_PREFIX) else name


def is_valid_id(procedure_id: str) -> bool:
    """True if ``procedure_id`` matches ``^[a-z0-9][a-z0-9_-]{0,63}$``."""
    return ID_RE.fullmatch(procedure_id) is not None


def check_id(procedure_id: str) -> str:
    """Return ``procedure_id`` or raise :class:`UsageError` saying what an id may be."""
    if not is_valid_id(procedure_id):
        raise UsageError(
            f"invalid procedure id {procedure_id!r}: use 1 to 64 lowercase letters, digits, "
            "'_' or '-', starting with a letter or digit"
        )
    return procedure_id


def is_valid_channel(channel: str) -> bool:
    """True for a usable channel name (``stable``, ``beta``, ``canary-eu``)."""
    return (
        _CHANNEL_RE.fullmatch(channel) is not None
        and channel not in RESERVED_CHANNELS
        and _VERSIONISH_RE.match(channel) is None
    )


def check_channel(channel: str) -> str:
    """Return ``channel`` or raise :class:`UsageError` saying what a channel name may be."""
    if not is_valid_channel(channel):
        raise UsageError(
            f"invalid channel name {channel!r}: use 1 to 32 lowercase letters, digits, '_' or "
            "'-', starting with a letter; not 'head', 'latest', 'x' or a version such as 'v1'"
        )
    return channel


def _as_version(version: semver.Version | str) -> semver.Version:
    if isinstance(version, semver.Version):
        return version
    try:
        return semver.Version.parse(version)
    except ValueError:
        raise UsageError(f"invalid version {version!r}: use semver such as 1.2.3") from None


@lru_cache(maxsize=4096)
def _strict_version(text: str) -> semver.Version | None:
    # cached: a rebuild reads 30,000 tags naming a few hundred distinct versions, and
    # semver.Version is immutable, so one parsed object serves every caller
    try:
        version = semver.Version.parse(text)
    except (ValueError, TypeError):
        return None
    return version if str(version) == text else None


def parse_version(text: str) -> semver.Version:
    """``text`` as a semver version, parsed once per distinct text (the index's versions
    repeat across procedures); ``ValueError`` if it is not one."""
    version = _strict_version(text)
    return version if version is not None else semver.Version.parse(text)


# --- release tags --------------------------------------------------------------


_NUMERIC_ID_RE = re.compile(r"^[0-9]+$")


def _build_key(build: str | None) -> tuple[tuple[int, int, str], ...]:
    # No build sorts first; then identifier by identifier as semver orders
    # prerelease identifiers: numeric ones by value, below alphanumeric ones
    # (compared in ASCII); a shorter list that is a prefix sorts first.
    if not build:
        return ()
    return tuple(
        (0, int(part), "") if _NUMERIC_ID_RE.match(part) else (1, 0, part)
        for part in build.split(".")
    )


_Parts = tuple[tuple[int, int, str], ...]
VersionKey = tuple[int, int, int, tuple[int, _Parts], _Parts]
"""What :func:`version_key` returns: major, minor, patch, prerelease and build keys."""


def _prerelease_part(identifier: str) -> tuple[int, int, str]:
    # what semver.Version.compare orders prerelease identifiers by (its _nat_cmp): numeric
    # ones by value (leading zeros aside) below alphanumeric ones, compared as text
    if not identifier.isdigit():
        return (1, 0, identifier)
    if not identifier.isascii():
        identifier = str(int(identifier))
    normalized = identifier.lstrip("0") or "0"
    return (0, len(normalized), normalized)


@lru_cache(maxsize=4096)
def _prerelease_key(prerelease: str | None) -> tuple[int, _Parts]:
    # a release sorts above each of its prereleases; a shorter list that is a prefix first
    if not prerelease:
        return (1, ())
    return (0, tuple(_prerelease_part(x) for x in prerelease.split(".")))


def version_key(version: semver.Version) -> VersionKey:
    """The sort key that picks "latest" everywhere: semver precedence, then build metadata.

    Semver gives ``1.2.3+a`` and ``1.2.3+b`` the same precedence; to choose
    between two such releases deterministically, build metadata is compared
    the way prerelease identifiers are (``1.2.3`` < ``1.2.3+2`` < ``1.2.3+10``
    < ``1.2.3+a`` < ``1.2.3+a.1``). See docs/versioning.md. A plain tuple whose
    precedence part orders exactly as ``semver.Version.compare`` (a ``max`` over
    a procedure's releases is on every ``get``; semver's compare is slow Python).
    """
    return (
        version.major,
        version.minor,
        version.patch,
        _prerelease_key(version.prerelease),
        _build_key(version.build),
    )


def release_tag(procedure_id: str, version: semver.Version | str) -> str:
    """``procedure-<id>-v<version>``, e.g. ``procedure-slugify-v1.2.0``."""
    return (
        f"{RELEASE_TAG_PREFIX}{check_id(procedure_id)}{RELEASE_VERSION_MARK}{_as_version(version)}"
    )


def release_tag_prefix(procedure_id: str) -> str:
    """``procedure-<id>-v``: the prefix of every release tag of ``procedure_id``.

    A prefix scan over-matches: the tags of id ``<id>-v2`` (ids may contain
    ``-v``) start with it too. Callers must re-check every name with
    :func:`parse_release_tag` and compare the id.
    """
    return f"{RELEASE_TAG_PREFIX}{check_id(procedure_id)}{RELEASE_VERSION_MARK}"


def parse_release_tag(name: str) -> tuple[str, semver.Version] | None:
    """``(id, version)`` from a release tag name (``refs/tags/`` allowed), else ``None``.

    The split is unambiguous: ids cannot contain ``.`` and a version starts
    with ``X.Y.Z``, so exactly one ``-v`` can separate a valid id from a
    valid version (``procedure-a-v1-v2.0.0`` is id ``a-v1``, version 2.0.0).
    The version must be strict, canonical semver (no ``v``, no leading zeros).
    """
    name = _strip_ref(name)
    if not name.startswith(RELEASE_TAG_PREFIX):
        return None
    rest = name[len(RELEASE_TAG_PREFIX) :]
    start = 0
    while (i := rest.find(RELEASE_VERSION_MARK, start)) != -1:
        ident, text = rest[:i], rest[i + len(RELEASE_VERSION_MARK) :]
        if is_valid_id(ident):
            version = _strict_version(text)
            if version is not None:
                return ident, version
        start = i + 1
    return None


def latest_release_tags(names: Iterable[str]) -> dict[str, tuple[semver.Version, str]]:
    """``{id: (highest version, its tag name)}`` over release tag names (``refs/tags/`` allowed).

    The same answer as :func:`parse_release_tag` on every name, but a plain
    ``X.Y.Z`` tag is read with one regex and no semver parsing, so 30,000
    names take milliseconds. Names that are not release tags are ignored.
    """
    plain: dict[str, tuple[tuple[int, int, int], str]] = {}
    other: dict[str, tuple[semver.Version, str]] = {}
    listed = list(names)
    text = "\n".join(listed)
    rest: Iterable[str] = listed
    if text.count("\n") == len(listed) - 1:  # one line per name: one regex pass over them all
        matched: set[str] = set()
        for whole, name, ident, major, minor, patch in _PLAIN_RELEASE_LINES_RE.findall(text):
            matched.add(whole)
            key = (int(major), int(minor), int(patch))
            best = plain.get(ident)
            if best is None or key > best[0]:
                plain[ident] = (key, name)
        rest = [ref for ref in listed if ref not in matched] if len(matched) < len(listed) else ()
    for ref in rest:
        name = _strip_ref(ref)
        m = _PLAIN_RELEASE_RE.match(name)
        if m is not None:
            key = (int(m.group("major")), int(m.group("minor")), int(m.group("patch")))
            ident = m.group("id")
            best = plain.get(ident)
            if best is None or key > best[0]:
                plain[ident] = (key, name)
            continue
        parsed = parse_release_tag(name)
        if parsed is not None:
            ident, version = parsed
            seen = other.get(ident)
            if seen is None or version_key(version) > version_key(seen[0]):
                other[ident] = (version, name)
    out = {ident: (semver.Version(*key), name) for ident, (key, name) in plain.items()}
    for ident, (version, name) in other.items():
        if ident not in out or version_key(version) > version_key(out[ident][0]):
            out[ident] = (version, name)
    return out


# --- channel tags --------------------------------------------------------------


def channel_tag(procedure_id: str, channel: str, seq: int) -> str:
    """``channel/<id>/<channel>/<seq>`` with ``seq`` zero-padded to 6 digits."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise UsageError(f"channel sequence must be a positive integer, not {seq!r}")
    return f"{channel_tag_prefix(procedure_id, channel)}{seq:0{SEQ_WIDTH}d}"


def channel_tag_prefix(procedure_id: str, channel: str | None = None) -> str:
    """``channel/<id>/`` or ``channel/<id>/<channel>/``: exact prefixes (no over-match)."""
    base = f"{CHANNEL_TAG_PREFIX}{check_id(procedure_id)}/"
    return base if channel is None else f"{base}{check_channel(channel)}/"


def parse_channel_tag(name: str) -> tuple[str, str, int] | None:
    """``(id, channel, seq)`` from a channel tag name in canonical form, else ``None``."""
    parts = _strip_ref(name).split("/")
    if len(parts) != 4 or f"{parts[0]}/" != CHANNEL_TAG_PREFIX:
        return None
    _, ident, channel, seq_text = parts
    if not (is_valid_id(ident) and is_valid_channel(channel)):
        return None
    if _SEQ_RE.fullmatch(seq_text) is None:
        return None
    seq = int(seq_text)
    if seq < 1 or f"{seq:0{SEQ_WIDTH}d}" != seq_text:
        return None
    return ident, channel, seq


# --- messages ------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def format_release_message(
    procedure_id: str,
    version: semver.Version | str,
    decision: BumpDecision,
    stats: DiffStats,
    previous: semver.Version | None,
    tree_id: str,
    *,
    lock: str | None = None,
) -> str:
    """The annotated message of a release tag: a subject, a blank line, trailers.

    ``Release slugify 1.3.0`` then ``Bump``, ``Breaking``, ``Lines-Added``,
    ``Lines-Removed``, ``Files-Changed``, ``Previous`` (``none`` for the first
    release), ``Tree``, ``Lock`` (the sha256 of ``pylock.toml``, when the folder
    has one) and one ``Reason`` per reason, each on one line.
    """
    if decision.bump == "none":
        raise UsageError(f"nothing to release for {procedure_id!r}: the folder did not change")
    lines = [
        f"Release {check_id(procedure_id)} {_as_version(version)}",
        "",
        f"Bump: {decision.bump}",
        f"Breaking: {'true' if decision.breaking else 'false'}",
        f"Lines-Added: {stats.lines_added}",
        f"Lines-Removed: {stats.lines_removed}",
        f"Files-Changed: {stats.files_changed}",
        f"Previous: {previous if previous is not None else 'none'}",
        f"Tree: {_one_line(tree_id)}",
    ]
    if lock is not None:
        lines.append(f"Lock: {_one_line(lock)}")
    lines += [f"Reason: {_one_line(r)}" for r in decision.reasons if r.strip()]
    return "\n".join(lines) + "\n"


_SUBJECTS: dict[str, str] = {
    "promote": "Promote {id} {version} to {channel}",
    "rollback": "Roll back {id} {channel} to {version}",
    "health": "Move {id} {channel} to {version} (health policy)",
}
_OUT_OF_SERVICE_SUBJECT = "Take {id} {channel} out of service (was {version})"
OUT_OF_SERVICE_TRAILER = "Out-Of-Service"
"""The trailer of a channel move that takes the channel out of service."""


def format_channel_message(
    procedure_id: str,
    channel: str,
    version: semver.Version | str,
    reason: str,
    action: ChannelAction,
    *,
    out_of_service: bool = False,
) -> str:
    """The annotated message of a channel tag: a subject and ``Procedure``,
    ``Channel``, ``Version``, ``Action`` (promote, rollback or health) and
    ``Reason`` trailers.

    ``out_of_service``: the move takes the channel out of service (it resolves to
    nothing until the next move); ``Version`` is the version it was taken from,
    and an ``Out-Of-Service: yes`` trailer says so.
    """
    if action not in CHANNEL_ACTIONS:
        raise UsageError(
            f"invalid channel action {action!r}: use one of {', '.join(CHANNEL_ACTIONS)}"
        )
    ident, name, ver = check_id(procedure_id), check_channel(channel), _as_version(version)
    subject = (_OUT_OF_SERVICE_SUBJECT if out_of_service else _SUBJECTS[action]).format(
        id=ident, channel=name, version=ver
    )
    lines = [
        subject,
        "",
        f"Procedure: {ident}",
        f"Channel: {name}",
        f"Version: {ver}",
        f"Action: {action}",
        f"Reason: {_one_line(reason) or 'none given'}",
    ]
    if out_of_service:
        lines.append(f"{OUT_OF_SERVICE_TRAILER}: yes")
    return "\n".join(lines) + "\n"


def parse_trailers(message: str) -> list[tuple[str, str]]:
    """The ``(key, value)`` trailers of a message, in order, as git reads them.

    The trailers are the last paragraph, if it is not the subject paragraph
    and either every line is a ``Key: value`` trailer (or an indented
    continuation of one, unfolded with a space) or at least a quarter are
    and one is git's own (``Signed-off-by:``). Keys are letters, digits and
    ``-``; compare them case-insensitively.
    """
    lines = message.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return []
    start = len(lines)
    while start > 0 and lines[start - 1].strip():
        start -= 1
    subject_end = first
    while subject_end < len(lines) and lines[subject_end].strip():
        subject_end += 1
    if start < subject_end:  # the only paragraph is the subject
        return []
    found: list[list[str]] = []
    trailer_lines = other_lines = 0
    generated = False
    for line in lines[start:]:
        if line[:1] in (" ", "\t") and found:
            found[-1][1] = f"{found[-1][1]} {line.strip()}".strip()
            continue
        m = _TRAILER_RE.match(line)
        if m is None:
            other_lines += 1
            generated |= line.startswith(_GIT_GENERATED)
            continue
        trailer_lines += 1
        generated |= line.startswith(_GIT_GENERATED)
        found.append([m.group("key"), m.group("value").strip()])
    if other_lines and not (generated and trailer_lines * 3 >= other_lines):
        return []
    return [(key, value) for key, value in found]


class ReleaseInfo(BaseModel):
    """A release tag's message read back. Fields a hand-made tag lacks are ``None``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, defer_build=True)

    subject: str
    id: str | None = None
    version: semver.Version | None = None
    bump: Bump | None = None
    breaking: bool | None = None
    lines_added: int | None = None
    lines_removed: int | None = None
    files_changed: int | None = None
    previous: semver.Version | None = None
    tree: str | None = None
    lock: str | None = None
    reasons: list[str] = []


class ChannelInfo(BaseModel):
    """A channel tag's message read back. Fields a hand-made tag lacks are ``None``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, defer_build=True)

    subject: str
    id: str | None = None
    channel: str | None = None
    version: semver.Version | None = None
    action: ChannelAction | None = None
    reason: str | None = None
    out_of_service: bool = False


def _first(trailers: list[tuple[str, str]], key: str) -> str | None:
    return next((v for k, v in trailers if k.lower() == key.lower()), None)


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def _bool(text: str | None) -> bool | None:
    return {"true": True, "false": False}.get((text or "").lower())


def _version(text: str | None) -> semver.Version | None:
    return _strict_version(text) if text else None


_RELEASE_SUBJECT_RE = re.compile(r"^Release (?P<id>\S+) (?P<version>\S+)$")
_BUMPS: tuple[Bump, ...] = ("initial", "major", "minor", "patch")


def parse_release_message(message: str) -> ReleaseInfo:
    """Read a release tag message back into fields; never raises.

    Values that do not parse (a hand-written tag, a typo) become ``None``.
    """
    trailers = parse_trailers(message)
    subject = commit_subject(message)
    m = _RELEASE_SUBJECT_RE.match(subject)
    ident = m.group("id") if m and is_valid_id(m.group("id")) else None
    first: dict[str, str] = {}  # what _first(trailers, key) says, for every key at once
    reasons = []
    for key, value in trailers:
        lowered = key.lower()
        first.setdefault(lowered, value)
        if lowered == "reason":
            reasons.append(value)
    bump_text = first.get("bump", "").lower()
    # Every value is already of its field's type: constructing skips building
    # the model's validator, which `procreg log` would otherwise pay for.
    return ReleaseInfo.model_construct(
        subject=subject,
        id=ident,
        version=_version(m.group("version")) if m else None,
        bump=next((b for b in _BUMPS if b == bump_text), None),
        breaking=_bool(first.get("breaking")),
        lines_added=_int(first.get("lines-added")),
        lines_removed=_int(first.get("lines-removed")),
        files_changed=_int(first.get("files-changed")),
        previous=_version(first.get("previous")),
        tree=first.get("tree") or None,
        lock=first.get("lock") or None,
        reasons=reasons,
    )


def release_tree(message: str, procedure_id: str, version: semver.Version | str) -> str | None:
    """The ``Tree:`` trailer of the release message of ``procedure_id`` ``version``, else None.

    ``None`` too when the subject is not ``Release <id> <version>`` (a
    hand-written tag, or a message copied from another release), so the
    caller reads the folder's tree from the tagged commit instead. The
    registry's own messages (one trailer paragraph) are read without the
    general parser; anything else goes through :func:`parse_release_message`.
    """
    head = f"Release {procedure_id} {version}\n\n"
    if not message.startswith(head):
        return None
    tree: str | None = None
    block = message[len(head) :].rstrip("\n")
    if _TRAILER_BLOCK_RE.fullmatch(block) is None:  # some line is no trailer
        tree = parse_release_message(message).tree
    else:
        # the first Tree trailer with a value (what a loop over _TRAILER_RE reads)
        for m in _TREE_TRAILER_RE.finditer(block):
            tree = m.group(1).strip() or None
            if tree is not None:
                break
    if tree is None or len(tree) not in (40, 64) or tree.strip("0123456789abcdef"):
        return None
    return tree


def parse_channel_message(message: str) -> ChannelInfo:
    """Read a channel tag message back into fields; never raises."""
    trailers = parse_trailers(message)
    ident = _first(trailers, "Procedure")
    channel = _first(trailers, "Channel")
    action = (_first(trailers, "Action") or "").lower()
    return ChannelInfo(
        subject=commit_subject(message),
        id=ident if ident is not None and is_valid_id(ident) else None,
        channel=channel if channel is not None and is_valid_channel(channel) else None,
        version=_version(_first(trailers, "Version")),
        action=next((a for a in CHANNEL_ACTIONS if a == action), None),
        reason=_first(trailers, "Reason"),
        out_of_service=(_first(trailers, OUT_OF_SERVICE_TRAILER) or "").lower() in ("yes", "true"),
    )
