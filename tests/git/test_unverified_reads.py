"""``unverified_reads``: libgit2's per-object hash check is off only while someone is inside."""

from __future__ import annotations

import pytest

from registry.git import trees


def test_the_option_comes_back_after_nested_and_failing_blocks() -> None:
    assert trees._unverified_users == 0
    with trees.unverified_reads():
        with trees.unverified_reads():
            assert trees._unverified_users == 2
        assert trees._unverified_users == 1
    assert trees._unverified_users == 0
    with pytest.raises(RuntimeError), trees.unverified_reads():
        raise RuntimeError("a walk that fails")
    assert trees._unverified_users == 0
