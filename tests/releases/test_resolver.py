"""The one version resolver: release_spec and pick_release, pure, with their messages."""

from __future__ import annotations

import pytest
import semver

from registry.errors import NotFoundError
from registry.releases.history import pick_release, release_spec

V = semver.Version.parse


def test_no_spec_is_the_latest_release_or_head_when_never_released() -> None:
    assert release_spec("echo", None, True).kind == "latest"
    assert release_spec("echo", "  ", True).kind == "latest"
    assert release_spec("echo", None, False).kind == "head"
    assert release_spec("echo", "HEAD", False).kind == "head"


@pytest.mark.parametrize("spec", ["1.0.0", "^1", "stable", "latest"])
def test_asking_a_never_released_procedure_for_a_release(spec: str) -> None:
    with pytest.raises(NotFoundError, match=r"echo has no release yet, so echo@") as caught:
        release_spec("echo", spec, False)
    assert caught.value.kind == "version"
    assert "use echo@HEAD or run `procreg release echo`" in str(caught.value)


def test_pick_returns_what_the_caller_keeps_of_the_version() -> None:
    released = [(V("1.0.0"), "tag-1.0.0"), (V("1.2.0"), "tag-1.2.0"), (V("2.0.0-rc.1"), "rc")]
    parsed = release_spec("echo", "^1", True)
    assert pick_release("echo", "^1", parsed, released, {}) == (V("1.2.0"), "tag-1.2.0")
    latest = release_spec("echo", None, True)
    assert pick_release("echo", None, latest, released, {})[1] == "tag-1.2.0"
    channel = release_spec("echo", "stable", True)
    assert pick_release("echo", "stable", channel, released, {"stable": V("1.0.0")})[1] == (
        "tag-1.0.0"
    )


def test_a_channel_on_a_version_without_a_release_tag() -> None:
    released = [(V("1.0.0"), "tag")]
    parsed = release_spec("echo", "stable", True)
    with pytest.raises(NotFoundError, match=r"echo@stable names 3.0.0, which has no release tag"):
        pick_release("echo", "stable", parsed, released, {"stable": V("3.0.0")})


def test_no_match_names_what_exists() -> None:
    parsed = release_spec("echo", "^3", True)
    with pytest.raises(NotFoundError, match="no version matches"):
        pick_release("echo", "^3", parsed, [(V("1.0.0"), "tag")], {})
