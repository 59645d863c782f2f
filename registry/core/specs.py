"""Version specs: what a caller may write after ``ID@`` to pick a version.

``parse_spec`` turns text into a :class:`Spec`; ``resolve`` picks the highest
released version it matches (or a channel's version). Two grammars, chosen by
the text so that each reads the way its users expect (docs/versioning.md):

- **npm ranges** (node-semver's grammar, default mode): ``^1.2``, ``~1.2.3``,
  ``~>1.2``, ``1.x``, ``*``, ``1.2.3 - 2.3``, space-separated comparator sets
  (all must hold) and ``||`` unions, with node-semver's prerelease rule: a
  prerelease such as ``2.0.0-rc.1`` matches a comparator set only if one of
  its comparators carries a prerelease of the same ``major.minor.patch``
  (the grammar is :mod:`registry.core.npmrange`'s).
- **PEP 440 specifier sets** for comma-separated specs (``>=1.2,<2``,
  ``~=1.2``, ``!=1.3.*``) and a lone clause with a PEP 440 operator (``==``,
  ``!=``, ``~=``, ``===``), read by ``packaging.specifiers`` over our semver
  versions mapped onto PEP 440 versions.

This module is pure: no git, no database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import semver

from registry.core.npmrange import (
    GLUE_RE,
    MAX_LENGTH,
    MAX_SAFE_INTEGER,
    ComparatorSet,
    RangeSyntaxError,
    parse_range,
    set_matches,
)
from registry.core.tags import check_id, is_valid_channel, version_key
from registry.errors import NotFoundError, UsageError

if TYPE_CHECKING:  # packaging is imported when a PEP 440 spec is read (CLI start-up time)
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version as Pep440Version

SpecKind = Literal["exact", "range", "latest", "head", "channel"]


ACCEPTED_FORMS = (
    "an exact version (1.2.3, v1.2.3 or =1.2.3), an npm range (^1.2, ~1.2.3, ~>1.2, 1.x, *, "
    "'>=1.2.0 <2', '1.2.3 - 2.3', '^1 || ^2'), a PEP 440 specifier set "
    "(>=1.2,<2 or ~=1.2 or ==1.2.*), 'latest', 'HEAD' or a channel name such as 'stable'"
)

_EXACT_RE = re.compile(r"^=?v?(?P<version>[0-9].*)$")
_PEP440_ONLY_RE = re.compile(r"^\s*(===|==|!=|~=)")
_PEP440_PRE_RE = re.compile(
    r"^(?P<kind>a|alpha|b|beta|c|rc|pre|preview|dev)(?:[.-]?(?P<number>[0-9]+))?$", re.IGNORECASE
)
_PEP440_PRE = {"alpha": "a", "beta": "b", "c": "rc", "pre": "rc", "preview": "rc"}
_MAX_LISTED = 20


@dataclass(frozen=True)
class Spec:
    """A parsed version spec.

    ``kind`` is ``exact`` (``version`` set), ``range``, ``latest``, ``head``
    (the tracked branch, resolved by the caller) or ``channel`` (``channel``
    set). A range is either npm ``sets`` (any set may match; every comparator
    of a set must hold; an empty set matches any release) or, when ``pep440``
    is set, a PEP 440 specifier set.
    """

    kind: SpecKind
    text: str
    version: semver.Version | None = None
    sets: tuple[ComparatorSet, ...] = ()
    channel: str | None = None
    pep440: SpecifierSet | None = None

    @property
    def comparators(self) -> ComparatorSet:
        """The comparators of a range with one comparator set (no ``||``), else ``()``."""
        return self.sets[0] if len(self.sets) == 1 else ()

    def matches(self, version: semver.Version) -> bool:
        """True if ``version`` satisfies an exact, range or latest spec."""
        if self.kind == "exact":
            assert self.version is not None
            return version.compare(self.version) == 0 and (
                self.version.build is None or version.build == self.version.build
            )
        if self.kind == "latest":
            return not version.prerelease
        if self.kind != "range":
            return False
        if self.pep440 is not None:
            return _pep440_contains(self.pep440, version)
        return any(set_matches(s, version) for s in self.sets)

    def canonical(self) -> str:
        """The range as node-semver prints it (``>=1.2.0 <2.0.0-0``), or the PEP 440 set."""
        if self.pep440 is not None:
            return str(self.pep440)
        if self.kind == "exact":
            assert self.version is not None
            return str(self.version)
        if self.kind != "range":
            return self.text
        return "||".join(" ".join(str(c) for c in s) for s in self.sets) or "*"

    def describe(self) -> str:
        """The spec in words, for messages (``^1.2 (>=1.2.0 <2.0.0-0)``)."""
        if self.pep440 is not None:
            return f"{self.text} (PEP 440: {self.canonical()})"
        if self.kind == "range":
            return f"{self.text} ({self.canonical()})"
        return self.text


def _bad(text: str, why: str) -> UsageError:
    return UsageError(f"invalid version spec {text!r}: {why}; use {ACCEPTED_FORMS}")


# --- PEP 440 -----------------------------------------------------------------


def to_pep440(version: semver.Version, keep_build: bool = True) -> Pep440Version | None:
    """The PEP 440 reading of a semver version, or ``None`` if it has none.

    ``X.Y.Z`` stays; a prerelease ``alpha``/``a``, ``beta``/``b``, ``rc``/``c``
    (``pre``, ``preview``) with an optional number becomes ``aN``/``bN``/``rcN``
    and ``dev[.N]`` becomes ``.devN``; any other prerelease (``1.2.3-foo``)
    has no PEP 440 reading. Build metadata becomes the local version label
    when it is a valid one, and is dropped otherwise.
    """
    from packaging.version import InvalidVersion
    from packaging.version import Version as Pep440Version

    text = f"{version.major}.{version.minor}.{version.patch}"
    if version.prerelease:
        m = _PEP440_PRE_RE.match(version.prerelease)
        if m is None:
            return None
        kind = m.group("kind").lower()
        number = m.group("number") or "0"
        text += f".dev{number}" if kind == "dev" else f"{_PEP440_PRE.get(kind, kind)}{number}"
    if keep_build and version.build:
        try:
            return Pep440Version(f"{text}+{version.build}")
        except InvalidVersion:
            pass
    return Pep440Version(text)


def _pep440_contains(pep: SpecifierSet, version: semver.Version) -> bool:
    mapped = to_pep440(version)
    if mapped is None:
        return False
    # Prereleases only when a clause names one (PEP 440's explicit opt-in); the
    # "only prereleases exist" fallback is not applied: a registry never hands a
    # prerelease to a range by surprise.
    allow = bool(pep.prereleases)
    for clause in pep:
        # "===" compares text: give it the version as written.
        item: str | Pep440Version = str(version) if clause.operator == "===" else mapped
        if not clause.contains(item, prereleases=allow):
            return False
    return True


def _parse_pep440(text: str, spec: str) -> Spec:
    from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet

    if "||" in spec:
        raise _bad(
            text,
            "'||' (npm) and ',' (PEP 440) cannot be mixed; write '^1.2 || ^2' (npm) "
            "or one PEP 440 set such as '>=1.2,<3'",
        )
    # As packaging does, empty clauses are dropped: ">1.2," is PEP 440's ">1.2".
    clauses = [c.strip() for c in spec.split(",") if c.strip()]
    if not clauses:
        raise _bad(text, "a PEP 440 specifier set needs a clause such as >=1.2")
    for clause in clauses:
        try:
            Specifier(clause)
        except InvalidSpecifier:
            raise _bad(
                text, _pep440_hint(clause, " ".join(spec.replace(",", " ").split()))
            ) from None
    return Spec(kind="range", text=spec, pep440=SpecifierSet(",".join(clauses)))


def _pep440_hint(clause: str, as_npm: str) -> str:
    head = clause[:1]
    if head in ("^", "~") and not clause.startswith("~="):
        return (
            f"{clause!r} is npm syntax, but a comma-separated spec is read as PEP 440; "
            f"write it without commas (npm: '{as_npm}') or in PEP 440 (~=1.2, >=1.2,<2)"
        )
    if "x" in clause.lower() or "*" in clause:
        return (
            f"{clause!r}: PEP 440 allows a wildcard only after == or != (==1.2.*); "
            "for an npm x-range leave out the commas (1.2.x)"
        )
    if " " in clause:
        return (
            f"{clause!r}: PEP 440 clauses are separated by commas (>=1.2,<2); "
            "without commas the spec is an npm range ('>=1.2 <2')"
        )
    return f"{clause!r} is not a PEP 440 specifier such as >=1.2, ==1.2.*, ~=1.2 or !=1.3.0"


def _parse_npm(text: str, spec: str) -> Spec:
    try:
        sets = parse_range(spec)
    except RangeSyntaxError as exc:
        raise _bad(text, exc.why) from None
    return Spec(kind="range", text=spec, sets=sets)


def _exact(spec: str) -> semver.Version | None:
    m = _EXACT_RE.match(spec)
    if m is None or len(m.group("version")) > MAX_LENGTH:
        return None
    try:
        version = semver.Version.parse(m.group("version"))
    except (ValueError, TypeError):
        return None
    if max(version.major, version.minor, version.patch) > MAX_SAFE_INTEGER:
        return None
    return version


def parse_spec(text: str) -> Spec:
    """Parse a version spec; :class:`UsageError` (naming the accepted forms) if malformed.

    Forms: ``1.2.3``/``v1.2.3``/``=1.2.3`` (exact, build metadata included),
    npm ranges (``^1.2``, ``~1.2.3``, ``~>1.2``, ``>=1.2 <2``, ``1.x``,
    ``1.2.3 - 2.3``, ``^1 || ^2``, ``*``, and the empty range, meaning any
    release), PEP 440 specifier sets (any spec with a comma, or a lone clause
    with ``==``, ``!=``, ``~=`` or ``===``), ``latest``, ``HEAD``, or a
    channel name.
    """
    spec = " ".join(text.split())
    if spec.lower() == "head":
        return Spec(kind="head", text=spec)
    if spec.lower() == "latest":
        return Spec(kind="latest", text=spec)
    if is_valid_channel(spec):
        return Spec(kind="channel", text=spec, channel=spec)
    exact = _exact(spec.replace("= ", "=", 1) if spec.startswith("= ") else spec)
    if exact is not None:
        return Spec(kind="exact", text=spec, version=exact)
    glued = GLUE_RE.sub(r"\1", spec)
    if "," in spec or (_PEP440_ONLY_RE.match(glued) and " " not in glued):
        return _parse_pep440(text, spec)
    return _parse_npm(text, spec)


def _listing(versions: Sequence[semver.Version]) -> str:
    if not versions:
        return "none released yet"
    ordered = sorted(versions, key=version_key)
    shown = ordered[-_MAX_LISTED:]
    more = len(ordered) - len(shown)
    return ", ".join(str(v) for v in shown) + (f" (and {more} older)" if more else "")


def resolve(
    spec: Spec,
    versions: Sequence[semver.Version],
    channels: Mapping[str, semver.Version],
) -> semver.Version:
    """The version ``spec`` picks among released ``versions`` and ``channels``.

    Exact: that version; range: the highest match; ``latest``: the highest
    version that is not a prerelease; channel: where it points. "Highest" is
    :func:`registry.core.tags.version_key`: semver precedence, then build metadata,
    so two releases that differ only in build metadata resolve the same way
    every time. Returns the released object itself. Raises
    :class:`NotFoundError` naming the spec and what exists, and
    :class:`UsageError` for a ``head`` spec (the caller resolves it to the
    tracked branch).
    """
    if spec.kind == "head":
        raise UsageError(
            f"{spec.text!r} names the tracked branch, not a release: read it from the branch"
        )
    if spec.kind == "channel":
        assert spec.channel is not None
        found = channels.get(spec.channel)
        if found is None:
            known = ", ".join(f"{k} ({v})" for k, v in sorted(channels.items())) or "none yet"
            raise NotFoundError(
                f"no channel {spec.channel!r}; channels: {known}. "
                "Promote a version to create it, or ask for a version or range",
                kind="channel",
                name=spec.channel,
            )
        return found
    matches = [v for v in versions if spec.matches(v)]
    if matches:
        return max(matches, key=version_key)
    if spec.kind == "latest" and versions:
        raise NotFoundError(
            f"no stable release for 'latest': every version is a prerelease "
            f"({_listing(versions)}); ask for one exactly",
            kind="version",
            name=spec.text,
        )
    raise NotFoundError(
        f"no version matches {spec.describe()}; available versions: {_listing(versions)}",
        kind="version",
        name=spec.text,
    )


def split_ref(text: str) -> tuple[str, str | None]:
    """``"slugify@^1.2"`` -> ``("slugify", "^1.2")``; without ``@`` the spec is ``None``.

    Raises :class:`UsageError` for an invalid id or an empty spec after ``@``.
    """
    ident, sep, spec = text.strip().partition("@")
    check_id(ident)
    if not sep:
        return ident, None
    if not spec.strip():
        raise UsageError(f"{text!r}: nothing after '@'; write ID@SPEC, e.g. {ident}@^1.2")
    return ident, spec.strip()
