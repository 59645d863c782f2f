"""Version specs: parse and resolve tables against one set of released versions."""

from __future__ import annotations

import pytest
import semver

from registry.core.specs import parse_spec, resolve, split_ref
from registry.errors import NotFoundError, UsageError

V = semver.Version.parse

RELEASED = [
    V(s)
    for s in (
        "0.2.0", "0.3.0", "0.3.5", "0.4.0",
        "1.0.0", "1.1.0", "1.2.0", "1.2.3", "1.2.7", "1.3.0", "1.9.1",
        "2.0.0-rc.1", "2.0.0-rc.2",
        "2.0.0", "2.1.0",
        "3.0.0-beta.1",
    )
]  # fmt: skip
CHANNELS = {"stable": V("1.9.1"), "beta": V("2.1.0")}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # exact
        ("1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),
        ("2.0.0-rc.1", "2.0.0-rc.1"),
        ("=1.2.3", "1.2.3"),
        ("==1.2.3", "1.2.3"),
        (" 1.2.3 ", "1.2.3"),
        # caret
        ("^1.2", "1.9.1"),
        ("^1.2.3", "1.9.1"),
        ("^1", "1.9.1"),
        ("^0.3", "0.3.5"),
        ("^0.3.1", "0.3.5"),
        ("^0", "0.4.0"),
        ("^2", "2.1.0"),
        ("^2.0.0-rc.1", "2.1.0"),
        ("^v1.2", "1.9.1"),
        # tilde
        ("~1.2.3", "1.2.7"),
        ("~1.2", "1.2.7"),
        ("~1", "1.9.1"),
        ("~0.3", "0.3.5"),
        # comparator lists
        (">=1,<2", "1.9.1"),
        (">=1, <2", "1.9.1"),
        (">1.0.0 <=2", "2.1.0"),
        (">=1.0.0 <1.2.5", "1.2.3"),
        ("<=1.2", "1.2.7"),
        (">1.2 <2", "1.9.1"),
        (">1", "2.1.0"),
        ("<1", "0.4.0"),
        (">= 1.2.0 < 1.3", "1.2.7"),
        (">=1.2.0 !=1.2.7 <1.3", "1.2.3"),
        (">=2.0.0-rc.0 <2.0.0", "2.0.0-rc.2"),
        (">=2.0.0-rc.2", "2.1.0"),
        ("<2.0.0", "1.9.1"),
        ("^1.2 <1.3", "1.2.7"),
        # wildcards
        ("1.x", "1.9.1"),
        ("1.2.*", "1.2.7"),
        ("1.2.x", "1.2.7"),
        ("1.X.x", "1.9.1"),
        ("*", "2.1.0"),
        ("x", "2.1.0"),
        ("1", "1.9.1"),
        ("1.2", "1.2.7"),
        ("0.x", "0.4.0"),
        # latest and channels
        ("latest", "2.1.0"),
        ("LATEST", "2.1.0"),
        ("stable", "1.9.1"),
        ("beta", "2.1.0"),
        ("3.0.0-beta.1", "3.0.0-beta.1"),
        (">=3.0.0-beta.0", "3.0.0-beta.1"),
    ],
)
def test_resolve(text: str, expected: str) -> None:
    assert str(resolve(parse_spec(text), RELEASED, CHANNELS)) == expected


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("1.2.3", "exact"),
        ("v1.2.3", "exact"),
        ("^1.2", "range"),
        ("*", "range"),
        ("latest", "latest"),
        ("HEAD", "head"),
        ("head", "head"),
        ("stable", "channel"),
        ("canary-eu", "channel"),
    ],
)
def test_parse_kind(text: str, kind: str) -> None:
    assert parse_spec(text).kind == kind


@pytest.mark.parametrize(
    ("text", "comparators"),
    [
        # node-semver's canonical form: upper bounds exclude the bound's prereleases (-0).
        ("^1.2", ">=1.2.0 <2.0.0-0"),
        ("^0.3", ">=0.3.0 <0.4.0-0"),
        ("^0.0.3", ">=0.0.3 <0.0.4-0"),
        ("^0.0", "<0.1.0-0"),
        ("~1.2.3", ">=1.2.3 <1.3.0-0"),
        ("~1", ">=1.0.0 <2.0.0-0"),
        ("1.x", ">=1.0.0 <2.0.0-0"),
        ("1.2.*", ">=1.2.0 <1.3.0-0"),
        (">1.2", ">=1.3.0"),
        ("<=2", "<3.0.0-0"),
        (">1.0.0 <=2", ">1.0.0 <3.0.0-0"),
        ("*", "*"),
    ],
)
def test_ranges_expand(text: str, comparators: str) -> None:
    assert parse_spec(text).canonical() == comparators


@pytest.mark.parametrize(
    ("text", "version", "matches"),
    [
        # Prereleases match only when a bound carries a prerelease of the same X.Y.Z.
        ("^1", "2.0.0-rc.1", False),
        ("*", "2.0.0-rc.1", False),
        (">=1.0.0", "2.0.0-rc.1", False),
        ("<2.0.0", "2.0.0-rc.1", False),
        (">=2.0.0-rc.0", "2.0.0-rc.1", True),
        (">=2.0.0-rc.0", "2.1.0-rc.1", False),
        ("^2.0.0-rc.1", "2.0.0-rc.2", True),
        ("~1.2.3-beta", "1.2.3-beta.2", True),
        ("latest", "2.0.0-rc.1", False),
        ("2.0.0-rc.1", "2.0.0-rc.1", True),
        ("1.2.3", "1.2.3+build.9", True),
        ("1.2.3+build.9", "1.2.3+build.8", False),
    ],
)
def test_prerelease_and_build_matching(text: str, version: str, matches: bool) -> None:
    assert parse_spec(text).matches(V(version)) is matches


@pytest.mark.parametrize(
    "text",
    [
        "1.2.3.4",
        "^",
        ">=",
        "1.x.3",
        "01.2",
        "Stable",
        "1.x-rc.1",
        "@1",
    ],
)
def test_parse_refuses_malformed(text: str) -> None:
    with pytest.raises(UsageError, match="invalid version spec") as info:
        parse_spec(text)
    assert "^1.2" in str(info.value) and "latest" in str(info.value)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("^4", ["^4", ">=4.0.0 <5.0.0", "1.9.1", "2.1.0"]),
        ("1.2.4", ["1.2.4", "1.2.3"]),
        ("~0.1", ["~0.1", "0.2.0"]),
    ],
)
def test_not_found_names_spec_and_versions(text: str, names: list[str]) -> None:
    with pytest.raises(NotFoundError) as info:
        resolve(parse_spec(text), RELEASED, CHANNELS)
    for name in names:
        assert name in str(info.value)


def test_not_found_channel_lists_channels() -> None:
    with pytest.raises(NotFoundError, match=r"no channel 'canary'.*beta \(2\.1\.0\), stable"):
        resolve(parse_spec("canary"), RELEASED, CHANNELS)
    with pytest.raises(NotFoundError, match="channels: none yet"):
        resolve(parse_spec("stable"), RELEASED, {})


def test_not_found_with_nothing_released() -> None:
    with pytest.raises(NotFoundError, match="none released yet"):
        resolve(parse_spec("latest"), [], {})
    with pytest.raises(NotFoundError, match="every version is a prerelease"):
        resolve(parse_spec("latest"), [V("1.0.0-rc.1")], {})


def test_long_version_lists_are_cut() -> None:
    many = [V(f"1.{i}.0") for i in range(50)]
    with pytest.raises(NotFoundError, match=r"1\.49\.0 \(and 30 older\)$"):
        resolve(parse_spec("^2"), many, {})


def test_head_is_not_resolved_here() -> None:
    with pytest.raises(UsageError, match="tracked branch"):
        resolve(parse_spec("HEAD"), RELEASED, CHANNELS)


def test_resolve_returns_the_released_object() -> None:
    built = V("1.2.3+sha.abc")
    assert resolve(parse_spec("1.2.3"), [built], {}).build == "sha.abc"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("slugify", ("slugify", None)),
        ("slugify@^1.2", ("slugify", "^1.2")),
        ("42@stable", ("42", "stable")),
        ("a-v1@>=1, <2", ("a-v1", ">=1, <2")),
        ("x@HEAD", ("x", "HEAD")),
    ],
)
def test_split_ref(text: str, expected: tuple[str, str | None]) -> None:
    assert split_ref(text) == expected


@pytest.mark.parametrize(("text", "message"), [("Slugify@1", "invalid procedure id"),
                                               ("@1.0.0", "invalid procedure id"),
                                               ("slugify@", "nothing after '@'")])  # fmt: skip
def test_split_ref_refuses(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        split_ref(text)
