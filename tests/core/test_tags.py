"""The tag grammar: names and messages round-trip, malformed names are refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import semver

from registry.core.tags import (
    channel_tag,
    channel_tag_prefix,
    format_channel_message,
    format_release_message,
    is_valid_channel,
    parse_channel_message,
    parse_channel_tag,
    parse_release_message,
    parse_release_tag,
    parse_trailers,
    release_tag,
    release_tag_prefix,
)
from registry.core.versioning import BumpDecision, DiffStats
from registry.errors import UsageError

V = semver.Version.parse


@pytest.mark.parametrize(
    ("ident", "version"),
    [
        ("slugify", "1.2.0"),
        ("42", "0.0.1"),
        ("a", "10.20.30"),
        ("csv-to-json", "2.0.0-rc.1"),
        ("foo-v1", "1.0.0"),
        ("foo-v1-v2", "3.1.4-beta.2+build.7"),
        ("x_y-", "1.0.0+sha.abc"),
        ("a" * 64, "1.0.0"),
    ],
)
def test_release_tag_round_trip(ident: str, version: str) -> None:
    name = release_tag(ident, V(version))
    assert name == f"procedure-{ident}-v{version}"
    assert parse_release_tag(name) == (ident, V(version))
    assert str(parse_release_tag(name)[1]) == version  # type: ignore[index]
    assert parse_release_tag("refs/tags/" + name) == (ident, V(version))
    assert name.startswith(release_tag_prefix(ident))


@pytest.mark.parametrize(
    "name",
    [
        "procedure-slugify-v1.2",
        "procedure-slugify-1.2.3",
        "procedure-slugify-v01.2.3",
        "procedure-slugify-vv1.2.3",
        "procedure-Slugify-v1.2.3",
        "procedure--v1.2.3",
        "procedure-v1.2.3",
        "procedure-slugify-v1.2.3-",
        "procedure-slugify-v1.2.3\n",
        "procedure-" + "a" * 65 + "-v1.0.0",
        "procedure-a.b-v1.0.0",
        "release-slugify-v1.2.3",
        "channel/slugify/stable/000001",
        "",
    ],
)
def test_parse_release_tag_refuses_malformed(name: str) -> None:
    assert parse_release_tag(name) is None


def test_release_prefix_over_matches_and_parse_disambiguates() -> None:
    # The documented trap: id "foo-v2"'s tags share id "foo"'s prefix.
    other = release_tag("foo-v2", "1.0.0")
    assert other.startswith(release_tag_prefix("foo"))
    assert parse_release_tag(other) == ("foo-v2", V("1.0.0"))
    # A prerelease that itself looks like "-v..." stays in the version.
    assert parse_release_tag("procedure-foo-v1.0.0-v2.0.0") == ("foo", V("1.0.0-v2.0.0"))


def test_release_tag_refuses_bad_input() -> None:
    with pytest.raises(UsageError, match="invalid procedure id 'Bad'"):
        release_tag("Bad", "1.0.0")
    with pytest.raises(UsageError, match="invalid version 'v1'"):
        release_tag("good", "v1")


@pytest.mark.parametrize(
    ("ident", "channel", "seq", "name"),
    [
        ("slugify", "stable", 1, "channel/slugify/stable/000001"),
        ("42", "beta", 12, "channel/42/beta/000012"),
        ("a-v1", "canary-eu", 999999, "channel/a-v1/canary-eu/999999"),
        ("a", "s", 1234567, "channel/a/s/1234567"),
    ],
)
def test_channel_tag_round_trip(ident: str, channel: str, seq: int, name: str) -> None:
    assert channel_tag(ident, channel, seq) == name
    assert parse_channel_tag(name) == (ident, channel, seq)
    assert parse_channel_tag("refs/tags/" + name) == (ident, channel, seq)
    assert name.startswith(channel_tag_prefix(ident, channel))
    assert name.startswith(channel_tag_prefix(ident))


@pytest.mark.parametrize(
    "name",
    [
        "channel/slugify/stable/1",
        "channel/slugify/stable/0000001",
        "channel/slugify/stable/000000",
        "channel/slugify/stable/00001a",
        "channel/slugify/stable/-00001",
        "channel/slugify/latest/000001",
        "channel/slugify/v1/000001",
        "channel/slugify/Stable/000001",
        "channel/Slugify/stable/000001",
        "channel/slugify/000001",
        "channel/slugify/stable/000001/x",
        "channels/slugify/stable/000001",
        "procedure-slugify-v1.0.0",
    ],
)
def test_parse_channel_tag_refuses_non_canonical(name: str) -> None:
    assert parse_channel_tag(name) is None


@pytest.mark.parametrize(
    ("channel", "ok"),
    [
        ("stable", True),
        ("beta-2", True),
        ("a_b", True),
        ("v", True),
        ("version", True),
        ("v1", False),
        ("v2-beta", False),
        ("latest", False),
        ("head", False),
        ("HEAD", False),
        ("x", False),
        ("1stable", False),
        ("", False),
        ("s" * 33, False),
    ],
)
def test_channel_names(channel: str, ok: bool) -> None:
    assert is_valid_channel(channel) is ok


def test_channel_tag_refuses_bad_input() -> None:
    with pytest.raises(UsageError, match="positive integer"):
        channel_tag("a", "stable", 0)
    with pytest.raises(UsageError, match="invalid channel name 'latest'"):
        channel_tag("a", "latest", 1)
    with pytest.raises(UsageError, match="invalid channel name 'v1'"):
        channel_tag_prefix("a", "v1")


DECISION = BumpDecision(
    bump="minor",
    breaking=False,
    reasons=[
        "parameter 'limit' is new and optional (default 10)",
        'commit "feat: add limit\nwith a second line" adds a feature (feat)',
        "reason: with a colon",
    ],
)
STATS = DiffStats(lines_added=12, lines_removed=3, files_changed=2)


def test_release_message_format() -> None:
    text = format_release_message("slugify", V("1.3.0"), DECISION, STATS, V("1.2.0"), "ab" * 20)
    assert text == (
        "Release slugify 1.3.0\n"
        "\n"
        "Bump: minor\n"
        "Breaking: false\n"
        "Lines-Added: 12\n"
        "Lines-Removed: 3\n"
        "Files-Changed: 2\n"
        "Previous: 1.2.0\n"
        f"Tree: {'ab' * 20}\n"
        "Reason: parameter 'limit' is new and optional (default 10)\n"
        'Reason: commit "feat: add limit with a second line" adds a feature (feat)\n'
        "Reason: reason: with a colon\n"
    )


def test_release_message_round_trip() -> None:
    text = format_release_message("slugify", V("1.3.0"), DECISION, STATS, V("1.2.0"), "ab" * 20)
    info = parse_release_message(text)
    assert info.subject == "Release slugify 1.3.0"
    assert (info.id, info.version, info.previous) == ("slugify", V("1.3.0"), V("1.2.0"))
    assert (info.bump, info.breaking) == ("minor", False)
    assert (info.lines_added, info.lines_removed, info.files_changed) == (12, 3, 2)
    assert info.tree == "ab" * 20
    assert info.reasons == [" ".join(r.split()) for r in DECISION.reasons]


def test_first_release_message_round_trip() -> None:
    first = BumpDecision(bump="initial", breaking=False, reasons=["first release"])
    text = format_release_message("a-v1", "1.0.0", first, DiffStats(), None, "t")
    assert "Previous: none\n" in text
    info = parse_release_message(text)
    assert (info.id, info.bump, info.previous, info.reasons) == (
        "a-v1",
        "initial",
        None,
        ["first release"],
    )
    with pytest.raises(UsageError, match="nothing to release"):
        format_release_message("a", "1.0.0", BumpDecision(bump="none", breaking=False,
                               reasons=[]), DiffStats(), None, "t")  # fmt: skip


def test_hand_made_release_tag_message_reads_as_unknowns() -> None:
    info = parse_release_message("hotfix by hand\n\nBump: huge\nLines-Added: many\n")
    assert info.subject == "hotfix by hand"
    assert (info.id, info.version, info.bump, info.lines_added) == (None, None, None, None)


@pytest.mark.parametrize("action", ["promote", "rollback", "health"])
def test_channel_message_round_trip(action: str) -> None:
    text = format_channel_message("slugify", "stable", V("1.2.0"), "bad\nrelease", action)  # type: ignore[arg-type]
    assert "Channel: stable\nVersion: 1.2.0\n" in text
    assert f"Action: {action}\n" in text
    info = parse_channel_message(text)
    assert (info.id, info.channel, info.version, info.action, info.reason) == (
        "slugify",
        "stable",
        V("1.2.0"),
        action,
        "bad release",
    )
    assert "1.2.0" in info.subject and "stable" in info.subject


def test_channel_message_refuses_unknown_action() -> None:
    with pytest.raises(UsageError, match="promote, rollback, health"):
        format_channel_message("a", "stable", "1.0.0", "x", "move")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("subject only", []),
        ("Key: value", []),  # the subject paragraph is never trailers
        ("subject\n\nbody\n\nA: 1\nB-C: two words\n", [("A", "1"), ("B-C", "two words")]),
        ("subject\n\nA: 1\n  folded\n\tagain\n", [("A", "1 folded again")]),
        ("subject\n\nA: 1\nnot a trailer\n", []),
        ("subject\n\nA: 1\n\nplain last paragraph\n", []),
        ("subject\n\nBad Key: 1\n", []),
        (
            "subject\n\nsome text\nSigned-off-by: A <a@x>\n",
            [("Signed-off-by", "A <a@x>")],
        ),
        ("subject\n\nA:1\nB :  2  \n\n\n", [("A", "1"), ("B", "2")]),
        ("", []),
    ],
)
def test_parse_trailers(message: str, expected: list[tuple[str, str]]) -> None:
    assert parse_trailers(message) == expected


def test_trailers_agree_with_git(tmp_path: Path) -> None:
    text = format_release_message("slugify", "2.0.0", DECISION, STATS, V("1.3.0"), "cafe")
    proc = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    from_git = [tuple(line.split(": ", 1)) for line in proc.stdout.splitlines()]
    assert from_git == parse_trailers(text)


# --- reading many tags fast --------------------------------------------------------------


def test_tags_grammar_agrees_with_the_model_and_versioning() -> None:
    """One id pattern and one Bump (registry.core.ids) for tags, the model and versioning."""
    import typing

    from registry.core import ids, model, tags, versioning

    assert tags.ID_RE is ids.ID_RE and ids.ID_RE.pattern == ids.ID_PATTERN
    assert model.ID_PATTERN == ids.ID_PATTERN
    assert typing.get_args(tags.Bump) == typing.get_args(versioning.Bump)
    assert tags.Bump is versioning.Bump is ids.Bump


def test_latest_release_tags_agrees_with_parse_release_tag() -> None:
    from registry.core.tags import latest_release_tags, version_key

    names = [
        "procedure-a-v1.0.0",
        "refs/tags/procedure-a-v1.10.0",
        "procedure-a-v1.9.0",
        "procedure-a-v2.0.0-rc.1",  # a prerelease is lower than 2.0.0 but higher than 1.x
        "procedure-a-v1-v3.0.0",  # id "a-v1"
        "procedure-b-v0.1.0",
        "procedure-b-v0.1.0+build.5",
        "procedure-c-v01.0.0",  # not canonical: not a release
        "procedure-Bad-v1.0.0",
        "procedure-d-v1.0",
        "channel/a/stable/000001",
        "lightweight",
    ]
    expected: dict[str, tuple[semver.Version, str]] = {}
    for name in names:
        parsed = parse_release_tag(name)
        if parsed is not None and (
            parsed[0] not in expected
            or version_key(parsed[1]) > version_key(expected[parsed[0]][0])
        ):
            expected[parsed[0]] = (parsed[1], name.removeprefix("refs/tags/"))
    found = latest_release_tags(names)
    assert found == expected
    assert latest_release_tags(reversed(names)) == expected  # the order of names does not matter
    # Same precedence: build metadata decides (issue 14), the same way every time.
    assert found["b"] == (V("0.1.0+build.5"), "procedure-b-v0.1.0+build.5")
    assert found["a"] == (V("2.0.0-rc.1"), "procedure-a-v2.0.0-rc.1")
    assert found["a-v1"] == (V("3.0.0"), "procedure-a-v1-v3.0.0")
    assert set(found) == {"a", "a-v1", "b"}


def test_release_tree_reads_only_the_registrys_own_message() -> None:
    from registry.core.tags import release_tree

    tree = "a" * 40
    message = format_release_message(
        "slugify",
        "1.2.0",
        BumpDecision(bump="minor", breaking=False, reasons=["new optional parameter"]),
        DiffStats(lines_added=3, lines_removed=1, files_changed=1),
        V("1.1.0"),
        tree,
    )
    assert (
        release_tree(message, "slugify", V("1.2.0")) == tree == parse_release_message(message).tree
    )
    # another id or version (a copied message), or a hand-made tag: no answer
    assert release_tree(message, "slugify", "1.3.0") is None
    assert release_tree(message, "other", "1.2.0") is None
    assert release_tree("made by hand\n", "slugify", "1.2.0") is None
    # trailers in an edited message still read the way git reads them
    edited = message.replace("Bump: minor\n", "Bump: minor\n(edited by hand)\n")
    assert release_tree(edited, "slugify", "1.2.0") == parse_release_message(edited).tree
    assert release_tree(message.replace(tree, "not-a-tree"), "slugify", "1.2.0") is None


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        # Source: procreg's policy for "latest" (docs/versioning.md section 2):
        # semver precedence first, then build metadata compared as semver
        # compares prerelease identifiers; no build metadata sorts first.
        ("1.2.3", "1.2.3+a"),
        ("1.2.3+a", "1.2.3+b"),
        ("1.2.3+2", "1.2.3+10"),
        ("1.2.3+10", "1.2.3+a"),
        ("1.2.3+a", "1.2.3+a.1"),
        ("1.2.3+a.2", "1.2.3+a.10"),
        ("1.2.3+B", "1.2.3+a"),
        ("1.2.3+zzz", "1.2.4"),
        ("1.2.3-rc.1+z", "1.2.3+a"),
    ],
)
def test_version_key_orders_build_metadata(lower: str, higher: str) -> None:
    from registry.core.tags import version_key

    assert version_key(V(lower)) < version_key(V(higher))
    assert max([V(higher), V(lower)], key=version_key) == V(higher)
    assert str(max([V(lower), V(higher)], key=version_key)) == higher


PRECEDENCE_CASES = [
    "0.0.0", "0.0.1", "1.0.0", "1.0.0-0", "1.0.0-1", "1.0.0-2",
    "1.0.0-10", "1.0.0-a", "1.0.0-A", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
    "1.0.0-alpha.2", "1.0.0-alpha.10", "1.0.0-beta", "1.0.0-beta.11",
    "1.0.0-rc.1", "1.0.0-rc9", "1.0.0-rc10", "1.0.0-1a", "1.0.0-0.0", "1.0.0-a-b",
    "1.0.0-99999999999999999999", "1.0.0-100000000000000000000", "1.2.3", "1.10.0", "2.0.0",
    "10.0.0-x.7.z.92",
]  # fmt: skip


@pytest.mark.parametrize("a", PRECEDENCE_CASES)
def test_version_key_orders_precedence_as_semver_compares(a: str) -> None:
    """Without build metadata, version_key orders every pair as semver.Version.compare."""
    from registry.core.tags import version_key

    for b in PRECEDENCE_CASES:
        va, vb = V(a), V(b)
        expected = va.compare(vb)
        got = (version_key(va) > version_key(vb)) - (version_key(va) < version_key(vb))
        assert got == expected, (a, b)
