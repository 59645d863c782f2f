"""Bump a semantic version by its major, minor or patch part."""

import re

# The regular expression published at semver.org, with an optional "v" prefix.
_SEMVER = re.compile(
    r"^(?P<prefix>[vV]?)"
    r"(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_PARTS = ("major", "minor", "patch")


def main(version: str, part: str) -> str:
    """Return ``version`` bumped by ``part`` ("major", "minor" or "patch").

    Lower parts reset to zero and build metadata is dropped. A pre-release is
    released rather than skipped when the bump allows it, as npm does:
    "1.2.0-rc.1" bumped by minor is "1.2.0", by patch "1.2.0" too, while
    "1.2.3-rc.1" bumped by minor is "1.3.0". A leading "v" is kept.
    """
    if part not in _PARTS:
        raise ValueError(f"part must be 'major', 'minor' or 'patch', got {part!r}")
    match = _SEMVER.match(version.strip())
    if match is None:
        raise ValueError(
            f"{version!r} is not a semantic version; expected MAJOR.MINOR.PATCH such as '1.4.2'"
        )
    major, minor, patch = (int(match[name]) for name in _PARTS)
    pre = match["prerelease"] is not None
    if part == "major":
        if not (pre and minor == 0 and patch == 0):
            major += 1
        minor = patch = 0
    elif part == "minor":
        if not (pre and patch == 0):
            minor += 1
        patch = 0
    elif not pre:
        patch += 1
    return f"{match['prefix']}{major}.{minor}.{patch}"
