"""Version specs: what a caller may write after ``ID@`` to pick a version.

``parse_spec`` turns text into a :class:`Spec`; ``resolve`` picks the highest
released version it matches (or a channel's version). Ranges follow npm's
semver rules, prereleases included: a prerelease such as ``2.0.0-rc.1``
matches a range only if one of the range's bounds carries a prerelease of the
same ``major.minor.patch`` (``>=2.0.0-rc.0`` does, ``^1`` and ``*`` do not),
so ranges never hand out a prerelease by surprise. The syntax is documented in
``docs/versioning.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import semver

from registry.errors import NotFoundError, UsageError
from registry.tags import check_id, is_valid_channel

SpecKind = Literal["exact", "range", "latest", "head", "channel"]
Op = Literal[">", ">=", "<", "<=", "=", "!="]

ACCEPTED_FORMS = (
    "an exact version (1.2.3 or v1.2.3), a caret or tilde range (^1.2, ^0.3, ~1.2.3), "
    "comparators (>=1,<2 or '>1.0.0 <=2', with > >= < <= = == !=), a wildcard "
    "(1.x, 1.2.*, *), 'latest', 'HEAD' or a channel name such as 'stable'"
)

_PARTIAL_RE = re.compile(
    r"^v?(?P<major>0|[1-9][0-9]*|[xX*])"
    r"(?:\.(?P<minor>0|[1-9][0-9]*|[xX*])"
    r"(?:\.(?P<patch>0|[1-9][0-9]*|[xX*])"
    r"(?P<rest>[-+][0-9A-Za-z.+-]*)?)?)?$"
)
_TOKEN_RE = re.compile(r"^(?P<op>>=|<=|==|!=|>|<|=|\^|~)?(?P<version>.*)$")
_GLUE_RE = re.compile(r"(>=|<=|==|!=|>|<|=|\^|~)\s+")
_MAX_LISTED = 20


@dataclass(frozen=True)
class Comparator:
    """One bound of a range, e.g. ``>= 1.2.0``."""

    op: Op
    version: semver.Version

    def test(self, version: semver.Version) -> bool:
        """True if ``version`` satisfies this bound (build metadata is ignored)."""
        c = version.compare(self.version)
        return {
            ">": c > 0,
            ">=": c >= 0,
            "<": c < 0,
            "<=": c <= 0,
            "=": c == 0,
            "!=": c != 0,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.op}{self.version}"


@dataclass(frozen=True)
class Spec:
    """A parsed version spec.

    ``kind`` is ``exact`` (``version`` set), ``range`` (``comparators``, all
    of which must hold; none means any version), ``latest``, ``head`` (the
    tracked branch, resolved by the caller) or ``channel`` (``channel`` set).
    """

    kind: SpecKind
    text: str
    version: semver.Version | None = None
    comparators: tuple[Comparator, ...] = ()
    channel: str | None = None

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
        if not all(c.test(version) for c in self.comparators):
            return False
        if version.prerelease:
            core = (version.major, version.minor, version.patch)
            return any(
                c.version.prerelease is not None
                and (c.version.major, c.version.minor, c.version.patch) == core
                for c in self.comparators
            )
        return True

    def describe(self) -> str:
        """The spec in words, for messages (``^1.2 (>=1.2.0 <2.0.0)``)."""
        if self.kind == "range" and self.comparators:
            return f"{self.text} ({' '.join(str(c) for c in self.comparators)})"
        return self.text


_Partial = tuple[int | None, int | None, int | None, str | None, str | None]


def _bad(text: str, why: str) -> UsageError:
    return UsageError(f"invalid version spec {text!r}: {why}; use {ACCEPTED_FORMS}")


def _partial(token: str, whole: str) -> _Partial:
    """``(major, minor, patch, prerelease, build)`` with ``None`` for wildcards/absent parts."""
    m = _PARTIAL_RE.match(token)
    if m is None:
        raise _bad(whole, f"{token!r} is not a version")
    parts: list[int | None] = []
    wild = False
    for name in ("major", "minor", "patch"):
        value = m.group(name)
        if value is None or value in ("x", "X", "*"):
            wild = True
            parts.append(None)
        elif wild:
            raise _bad(whole, f"{token!r} has a number after a wildcard")
        else:
            parts.append(int(value))
    prerelease = build = None
    if m.group("rest"):
        try:
            full = semver.Version.parse(f"{parts[0]}.{parts[1]}.{parts[2]}{m.group('rest')}")
        except (ValueError, TypeError):
            raise _bad(whole, f"{token!r} is not valid semver") from None
        if wild:
            raise _bad(whole, f"{token!r} has a prerelease after a wildcard")
        prerelease, build = full.prerelease, full.build
    return parts[0], parts[1], parts[2], prerelease, build


def _v(major: int, minor: int = 0, patch: int = 0, prerelease: str | None = None) -> semver.Version:
    return semver.Version(major, minor, patch, prerelease)


def _x_range(p: _Partial) -> list[Comparator]:
    major, minor, patch, pre, _ = p
    if major is None:
        return []
    if minor is None:
        return [Comparator(">=", _v(major)), Comparator("<", _v(major + 1))]
    if patch is None:
        return [Comparator(">=", _v(major, minor)), Comparator("<", _v(major, minor + 1))]
    return [Comparator("=", _v(major, minor, patch, pre))]


def _caret(p: _Partial) -> list[Comparator]:
    major, minor, patch, pre, _ = p
    if major is None:
        return []
    low = _v(major, minor or 0, patch or 0, pre)
    if major > 0 or minor is None:
        high = _v(major + 1)
    elif minor > 0 or patch is None:
        high = _v(0, minor + 1)
    else:
        high = _v(0, 0, patch + 1)
    return [Comparator(">=", low), Comparator("<", high)]


def _tilde(p: _Partial) -> list[Comparator]:
    major, minor, patch, pre, _ = p
    if major is None:
        return []
    low = _v(major, minor or 0, patch or 0, pre)
    high = _v(major + 1) if minor is None else _v(major, minor + 1)
    return [Comparator(">=", low), Comparator("<", high)]


def _compare(op: str, p: _Partial, token: str, whole: str) -> list[Comparator]:
    major, minor, patch, pre, _ = p
    if op in ("=", "=="):
        return _x_range(p)
    if major is None:
        raise _bad(whole, f"{token!r} compares with a bare wildcard")
    if op == "!=":
        if minor is None or patch is None:
            raise _bad(whole, f"{token!r}: != needs a full version such as !=1.2.3")
        return [Comparator("!=", _v(major, minor, patch, pre))]
    if minor is not None and patch is not None:
        return [Comparator(op, _v(major, minor, patch, pre))]  # type: ignore[arg-type]
    # A partial bound covers its whole range, as npm reads it.
    if op == ">=":
        return [Comparator(">=", _v(major, minor or 0))]
    if op == "<":
        return [Comparator("<", _v(major, minor or 0))]
    if op == ">":
        return [Comparator(">=", _v(major + 1) if minor is None else _v(major, minor + 1))]
    return [Comparator("<", _v(major + 1) if minor is None else _v(major, minor + 1))]  # <=


def parse_spec(text: str) -> Spec:
    """Parse a version spec; :class:`UsageError` (naming the accepted forms) if malformed.

    Forms: ``1.2.3``/``v1.2.3`` (exact), ``^1.2``, ``~1.2.3``, ``>=1,<2``,
    ``>1.0.0 <=2``, ``1.x``, ``1.2.*``, ``*``, ``latest``, ``HEAD``, or a
    channel name. Space- or comma-separated parts must all hold.
    """
    spec = text.strip()
    if not spec:
        raise _bad(text, "it is empty")
    if spec.lower() == "head":
        return Spec(kind="head", text=spec)
    if spec.lower() == "latest":
        return Spec(kind="latest", text=spec)
    if is_valid_channel(spec):
        return Spec(kind="channel", text=spec, channel=spec)
    exact = spec[1:] if spec[:1] == "v" else spec
    try:
        version = semver.Version.parse(exact)
    except (ValueError, TypeError):
        pass
    else:
        return Spec(kind="exact", text=spec, version=version)
    if "||" in spec:
        raise _bad(text, "alternatives with || are not supported")
    comparators: list[Comparator] = []
    for token in _GLUE_RE.sub(r"\1", spec.replace(",", " ")).split():
        m = _TOKEN_RE.match(token)
        assert m is not None  # the pattern matches any string
        op, body = m.group("op") or "", m.group("version")
        if not body:
            raise _bad(text, f"{token!r} has no version")
        partial = _partial(body, text)
        if op == "^":
            comparators += _caret(partial)
        elif op == "~":
            comparators += _tilde(partial)
        elif op:
            comparators += _compare(op, partial, token, text)
        else:
            comparators += _x_range(partial)
    return Spec(kind="range", text=spec, comparators=tuple(comparators))


def _listing(versions: Sequence[semver.Version]) -> str:
    if not versions:
        return "none released yet"
    ordered = sorted(versions)
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
    version that is not a prerelease; channel: where it points. Raises
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
                "Promote a version to create it, or ask for a version or range"
            )
        return found
    matches = [v for v in versions if spec.matches(v)]
    if matches:
        return max(matches)
    if spec.kind == "latest" and versions:
        raise NotFoundError(
            f"no stable release for 'latest': every version is a prerelease "
            f"({_listing(versions)}); ask for one exactly"
        )
    raise NotFoundError(
        f"no version matches {spec.describe()}; available versions: {_listing(versions)}"
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
