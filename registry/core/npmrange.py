"""npm ranges (node-semver's grammar): comparators, comparator sets, and their parser.

:func:`parse_range` reads ``^1.2``, ``~1.2.3``, ``~>1.2``, ``1.x``, ``*``,
``1.2.3 - 2.3``, space-separated comparator sets (all must hold) and ``||``
unions into comparator sets, as node-semver does; :func:`set_matches` tests a
version against one set with node-semver's prerelease rule (a prerelease
matches only if a comparator of the set has a prerelease of the same
``major.minor.patch``). :mod:`registry.core.specs` builds version specs on it.
Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import semver

__all__ = [
    "GLUE_RE",
    "MAX_LENGTH",
    "MAX_SAFE_INTEGER",
    "Comparator",
    "ComparatorSet",
    "Op",
    "RangeSyntaxError",
    "parse_range",
    "set_matches",
]

Op = Literal[">", ">=", "<", "<=", "=", "!="]

# node-semver's limits on a version: 256 characters, components up to 2**53 - 1.
MAX_LENGTH = 256
MAX_SAFE_INTEGER = 2**53 - 1

_NUM = r"0|[1-9][0-9]*"
_XID = rf"(?:{_NUM}|[xX*])"
_PRE_ID = r"(?:[0-9]*[A-Za-z-][0-9A-Za-z-]*|0|[1-9][0-9]*)"
# An x-range operand as node-semver reads it (build metadata already stripped):
# a prerelease may follow only the third part.
_PARTIAL = (
    rf"v?(?P<major>{_XID})"
    rf"(?:\.(?P<minor>{_XID})"
    rf"(?:\.(?P<patch>{_XID})"
    rf"(?:-(?P<pre>{_PRE_ID}(?:\.{_PRE_ID})*))?)?)?"
)
_PARTIAL_RE = re.compile(rf"^{_PARTIAL}$")
_BUILD_RE = re.compile(r"\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*")
_HYPHEN_RE = re.compile(r"^(?P<low>\S+) - (?P<high>\S+)$")
_TOKEN_RE = re.compile(r"^(?P<op>~>|>=|<=|==|!=|~=|>|<|=|\^|~)?(?P<version>.*)$")
GLUE_RE = re.compile(r"(~>|>=|<=|===|==|!=|~=|>|<|=|\^|~) +")


class RangeSyntaxError(ValueError):
    """An npm range node-semver would refuse; ``why`` says what is wrong and how to write it."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


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
        # node-semver's canonical form: "=" is written as nothing.
        return str(self.version) if self.op == "=" else f"{self.op}{self.version}"


ComparatorSet = tuple[Comparator, ...]
_NULL = Comparator("<", semver.Version(0, 0, 0, "0"))  # matches nothing, as node writes it


def set_matches(comparators: ComparatorSet, version: semver.Version) -> bool:
    """True if ``version`` satisfies every comparator of a set, with node's prerelease rule."""
    if not all(c.test(version) for c in comparators):
        return False
    if version.prerelease:
        # node-semver: a prerelease passes only if a comparator of this set
        # has a prerelease on the same [major, minor, patch].
        core = (version.major, version.minor, version.patch)
        return any(
            c.version.prerelease is not None
            and (c.version.major, c.version.minor, c.version.patch) == core
            for c in comparators
        )
    return True


@dataclass(frozen=True)
class _Partial:
    """An x-range operand: ``None`` for a wildcard or missing part."""

    major: int | None
    minor: int | None
    patch: int | None
    pre: str | None

    @property
    def bad_order(self) -> bool:
        """A number after a wildcard (``1.x.3``, ``x.1``): node refuses it as an x-range."""
        return (self.major is None and self.minor is not None) or (
            self.minor is None and self.patch is not None
        )


def _num(value: str | None) -> int | None:
    return None if value is None or value in ("x", "X", "*") else int(value)


def _partial(operand: str, token: str) -> _Partial:
    m = _PARTIAL_RE.match(operand)
    if m is None:
        raise RangeSyntaxError(_not_a_version(operand, token))
    p = _Partial(_num(m.group("major")), _num(m.group("minor")), _num(m.group("patch")),
                 m.group("pre"))  # fmt: skip
    for part in (p.major, p.minor, p.patch):
        if part is not None and part > MAX_SAFE_INTEGER:
            raise RangeSyntaxError(f"{token!r}: {part} is larger than {MAX_SAFE_INTEGER}")
    return p


def _not_a_version(operand: str, token: str) -> str:
    if operand == "-" or token.startswith("-"):
        return (
            f"{token!r} is not a version: a hyphen range has spaces around '-' and stands "
            "alone between '||', as in '1.2.3 - 2.3.4'"
        )
    if re.match(r"^v?[0-9]+(\.[0-9]+){3,}", operand):
        return f"{token!r} has more than three numbers: write X.Y.Z such as 1.2.3"
    if re.match(r"^v?(?:[0-9]+\.){0,2}0[0-9]", operand):
        return f"{token!r} has a leading zero: write 1.2.3, not 01.02.03"
    if re.search(r"-(?:[^+]*\.)?0[0-9]+(?:\.|\+|$)", operand):
        return (
            f"{token!r}: a numeric prerelease identifier has no leading zero "
            "(1.2.3-beta.1, not 1.2.3-beta.01)"
        )
    if re.match(r"^v?[0-9xX*]+(\.[0-9xX*]+)?-", operand):
        return (
            f"{token!r}: a prerelease needs all three numbers (1.2.0-rc.1); "
            "wildcards take none (1.x)"
        )
    if re.match(r"^v?[0-9]+\.[0-9]+\.[0-9]+[A-Za-z]", operand):
        return f"{token!r}: a prerelease follows a hyphen, as in 1.2.3-beta"
    return f"{token!r} is not a version: write X.Y.Z, a partial 1.2, or a wildcard 1.x / *"


def _v(major: int, minor: int = 0, patch: int = 0, pre: str | None = None) -> semver.Version:
    for part in (major, minor, patch):
        if part > MAX_SAFE_INTEGER:
            raise OverflowError(part)
    return semver.Version(major, minor, patch, pre)


def _full(p: _Partial) -> semver.Version:
    assert p.major is not None and p.minor is not None and p.patch is not None
    return _v(p.major, p.minor, p.patch, p.pre)


def _caret(p: _Partial) -> list[Comparator]:
    # ^1.2.3 := >=1.2.3 <2.0.0-0; ^0.2.3 := <0.3.0-0; ^0.0.3 := <0.0.4-0
    if p.major is None:
        return []
    if p.minor is None:
        return [Comparator(">=", _v(p.major)), Comparator("<", _v(p.major + 1, pre="0"))]
    if p.patch is None:
        high = _v(0, p.minor + 1, pre="0") if p.major == 0 else _v(p.major + 1, pre="0")
        return [Comparator(">=", _v(p.major, p.minor)), Comparator("<", high)]
    if p.major > 0:
        high = _v(p.major + 1, pre="0")
    elif p.minor > 0:
        high = _v(0, p.minor + 1, pre="0")
    else:
        high = _v(0, 0, p.patch + 1, pre="0")
    return [Comparator(">=", _full(p)), Comparator("<", high)]


def _tilde(p: _Partial) -> list[Comparator]:
    # ~1.2.3 := >=1.2.3 <1.3.0-0; ~1.2 := >=1.2.0 <1.3.0-0; ~1 := >=1.0.0 <2.0.0-0
    if p.major is None:
        return []
    if p.minor is None:
        return [Comparator(">=", _v(p.major)), Comparator("<", _v(p.major + 1, pre="0"))]
    low = _v(p.major, p.minor) if p.patch is None else _full(p)
    return [Comparator(">=", low), Comparator("<", _v(p.major, p.minor + 1, pre="0"))]


def _x_range(op: str, p: _Partial, token: str) -> list[Comparator]:
    """A comparator or x-range (``>=1.2``, ``<=1.x``, ``1.2.*``, ``=1.2.3``, ``*``)."""
    if p.bad_order:
        raise RangeSyntaxError(
            f"{token!r} has a number after a wildcard: wildcards come last, as in 1.x or 1.2.*",
        )
    if p.major is None:
        return [_NULL] if op in (">", "<") else []
    if p.minor is not None and p.patch is not None:
        return [Comparator(op or "=", _full(p))]  # type: ignore[arg-type]
    major, minor = p.major, p.minor
    if op in ("", "="):
        if minor is None:
            return [Comparator(">=", _v(major)), Comparator("<", _v(major + 1, pre="0"))]
        return [Comparator(">=", _v(major, minor)), Comparator("<", _v(major, minor + 1, pre="0"))]
    # A partial bound covers its whole range: >1.2 := >=1.3.0, <=1.2 := <1.3.0-0.
    if op == ">":
        return [Comparator(">=", _v(major + 1) if minor is None else _v(major, minor + 1))]
    if op == "<=":
        high = _v(major + 1, pre="0") if minor is None else _v(major, minor + 1, pre="0")
        return [Comparator("<", high)]
    if op == "<":
        return [Comparator("<", _v(major, minor or 0, pre="0"))]
    return [Comparator(">=", _v(major, minor or 0))]  # >=


def _hyphen(low: _Partial, high: _Partial) -> list[Comparator]:
    # 1.2 - 2.3.4 := >=1.2.0 <=2.3.4; 1.2.3 - 2.3 := >=1.2.3 <2.4.0-0; x - 2 := <3.0.0-0
    out: list[Comparator] = []
    if low.major is not None:
        if low.minor is None:
            out.append(Comparator(">=", _v(low.major)))
        elif low.patch is None:
            out.append(Comparator(">=", _v(low.major, low.minor)))
        else:
            out.append(Comparator(">=", _full(low)))
    if high.major is not None:
        if high.minor is None:
            out.append(Comparator("<", _v(high.major + 1, pre="0")))
        elif high.patch is None:
            out.append(Comparator("<", _v(high.major, high.minor + 1, pre="0")))
        else:
            out.append(Comparator("<=", _full(high)))
    return out


def _not_equal(p: _Partial, token: str) -> list[Comparator]:
    if p.major is None or p.minor is None or p.patch is None:
        full = f"{p.major or 0}.{p.minor or 0}.{p.patch or 0}"
        raise RangeSyntaxError(
            f"{token!r} has two readings: npm ranges have no '!=' (here it needs a full "
            f"version: '!={full}'), and in PEP 440 '{token}' excludes only {full} while "
            f"'{token}.*' excludes the whole series; for PEP 440 separate the clauses "
            f"with commas ('>=1.0,{token}.*')",
        )
    return [Comparator("!=", _full(p))]


def _comparators(token: str) -> list[Comparator]:
    m = _TOKEN_RE.match(token)
    assert m is not None  # the pattern matches any string
    op, body = m.group("op") or "", m.group("version")
    if op in ("==", "~=") or body.startswith("="):
        raise RangeSyntaxError(
            f"{token!r} uses a PEP 440 operator inside a space-separated (npm) range; "
            "PEP 440 clauses are separated by commas ('>=1.0,==1.2.*')",
        )
    if not body:
        raise RangeSyntaxError(f"{token!r} has no version: write {op or '>='}1.2.3")
    p = _partial(body, token)
    if op == "^":
        return _caret(p)
    if op in ("~", "~>"):
        return _tilde(p)
    if op == "!=":
        return _not_equal(p, token)
    return _x_range(op, p, token)


def _simplify_set(comparators: list[Comparator]) -> ComparatorSet:
    # As node-semver does: the null set absorbs the rest; >=0.0.0 is "any";
    # duplicates are dropped, keeping first positions.
    if _NULL in comparators:
        return (_NULL,)
    kept: dict[str, Comparator] = {}
    for c in comparators:
        if c.op == ">=" and c.version == semver.Version(0, 0, 0) and not c.version.prerelease:
            continue
        kept.setdefault(str(c), c)
    return tuple(kept.values())


def _parse_set(part: str) -> ComparatorSet:
    part = _BUILD_RE.sub("", part).strip()  # build metadata never counts in a range
    hyphen = _HYPHEN_RE.match(part)
    if (
        hyphen is not None
        and _PARTIAL_RE.match(hyphen.group("low"))
        and _PARTIAL_RE.match(hyphen.group("high"))
    ):
        low = _partial(hyphen.group("low"), hyphen.group("low"))
        high = _partial(hyphen.group("high"), hyphen.group("high"))
        return _simplify_set(_hyphen(low, high))
    comparators: list[Comparator] = []
    for token in GLUE_RE.sub(r"\1", part).split():
        if token == "-":  # noqa: S105 (a token of the spec, not a password)
            raise RangeSyntaxError(
                "'-' is a hyphen range only as 'LOW - HIGH' alone between '||' "
                "(1.2.3 - 2.3.4); to add bounds write comparators: '>=1.2.3 <=2.3.4 !=2.0.0'",
            )
        comparators += _comparators(token)
    return _simplify_set(comparators)


def parse_range(spec: str) -> tuple[ComparatorSet, ...]:
    """The comparator sets of an npm range (``||`` between sets, spaces within one).

    Raises :class:`RangeSyntaxError` saying why node-semver would refuse it.
    """
    try:
        sets = [_parse_set(part.strip()) for part in spec.split("||")]
    except OverflowError as exc:
        raise RangeSyntaxError(
            f"a bound needs {exc} > {MAX_SAFE_INTEGER}, node-semver's limit"
        ) from None
    if len(sets) > 1:
        real = [s for s in sets if s != (_NULL,)]
        sets = real or sets[:1]
        if any(not s for s in sets):
            sets = [()]
    return tuple(sets)
