"""Compare two semantic versions by semver precedence."""

import re
from typing import Any

# The regular expression published at semver.org, with an optional "v" prefix.
_SEMVER = re.compile(
    r"^[vV]?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def _parse(version: str, name: str) -> tuple[tuple[int, int, int], list[str] | None]:
    match = _SEMVER.match(version.strip())
    if match is None:
        raise ValueError(
            f"{name}={version!r} is not a semantic version; "
            "expected MAJOR.MINOR.PATCH such as '1.4.2' or '2.0.0-rc.1'"
        )
    core = (int(match["major"]), int(match["minor"]), int(match["patch"]))
    pre = match["prerelease"]
    return core, pre.split(".") if pre is not None else None


def _cmp(x: Any, y: Any) -> int:
    return (x > y) - (x < y)


def _compare_prerelease(a: list[str], b: list[str]) -> int:
    for x, y in zip(a, b, strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return _cmp(int(x), int(y))
        if x.isdigit() != y.isdigit():
            # Numeric identifiers have lower precedence than alphanumeric ones.
            return -1 if x.isdigit() else 1
        return _cmp(x, y)
    return _cmp(len(a), len(b))


def main(a: str, b: str) -> int:
    """Return -1 if ``a`` precedes ``b``, 0 if they have equal precedence, 1 if it follows.

    Follows semver 2.0.0 section 11: numeric core first, then a pre-release
    ranks below its release ("1.0.0-rc.1" < "1.0.0"), identifiers compare
    numerically or in ASCII order, and build metadata ("+build.5") is ignored.
    """
    core_a, pre_a = _parse(a, "a")
    core_b, pre_b = _parse(b, "b")
    if core_a != core_b:
        return _cmp(core_a, core_b)
    if pre_a is None or pre_b is None:
        return _cmp(pre_a is None, pre_b is None)
    return _compare_prerelease(pre_a, pre_b)
