"""Where the release planner's shortcuts could answer differently from the slow path.

``release --all-changed`` reads each candidate's latest tag as a raw object,
answers "superseded" for many release commits with one walk, and reuses its own
tag listing under the release lock when the tags' fingerprint did not change.
Each test here builds a history where a shortcut taken wrongly would change the
plan, and checks the plan against what the tags and folders say.
"""

from __future__ import annotations

from pathlib import Path

from registry.git.store import GitStore
from registry.releases import plan as planning
from registry.releases import release as releases
from tests.helpers import git, proc_files


def repo_of(store: GitStore) -> Path:
    assert store.workdir is not None
    return store.workdir


def planned(store: GitStore, ref: str = "HEAD") -> dict[str, tuple[str, str]]:
    return {
        p.id: (p.version, p.bump) for p in planning.plan_release(store, ref=ref, all_changed=True)
    }


def test_a_folder_back_at_an_earlier_release_is_still_changed(store: GitStore) -> None:
    """Its tree equals 1.0.0's Tree trailer, but the latest release (1.1.0) is another tree."""
    store.write({"echo": proc_files("echo")}, "feat: echo")
    releases.release(store)
    store.write({"echo": proc_files("echo", optional=("sep",))}, "feat: sep")
    releases.release(store)
    store.write({"echo": proc_files("echo")}, "fix: drop sep again")
    assert planned(store) == {"echo": ("2.0.0", "major")}  # removing a parameter breaks


def test_a_folder_changed_and_changed_back_is_unchanged_but_its_commits_count(
    store: GitStore,
) -> None:
    """A -> B -> A without a release: nothing to release; the next change still sees both."""
    store.write({"echo": proc_files("echo"), "other": proc_files("other")}, "feat: two")
    releases.release(store)
    store.write({"echo": proc_files("echo", optional=("sep",))}, "feat: try sep")
    store.write({"echo": proc_files("echo")}, "revert: no sep")
    assert planned(store) == {}
    store.write({"echo": proc_files("echo", doc="Return it.")}, "docs: wording")
    (plan,) = planning.plan_release(store, all_changed=True)
    # the walk reports every commit that changed the folder since 1.0.0, as git log does
    assert plan.bump == "minor"
    assert any("try sep" in reason for reason in plan.reasons)


def test_hand_made_and_lightweight_latest_tags_take_the_full_path(store: GitStore) -> None:
    """A latest tag without the registry's message (or no message) is read at its commit."""
    ids = [f"p{i}" for i in range(4)]
    tip = store.write({pid: proc_files(pid) for pid in ids}, "feat: four")
    repo = repo_of(store)
    git(repo, "tag", "-a", "-m", "made by hand", "procedure-p0-v1.0.0", tip)
    git(repo, "tag", "procedure-p1-v1.0.0", tip)  # lightweight
    trees = store.subtree_ids(tip, ["p0", "p2"])
    tree = trees["p2"]
    assert tree is not None
    # a Tree trailer that names another tree than the tagged commit has: the trailer wins
    message = f"Release p2 1.0.0\n\nTree: {trees['p0']}\n"
    git(repo, "tag", "-a", "-m", message, "procedure-p2-v1.0.0", tip)
    # a tag of a tree is no release: p3's latest is its older real release
    git(repo, "tag", "-a", "-m", "Release p3 1.0.0\n\nBump: initial\n", "procedure-p3-v1.0.0", tip)
    git(repo, "tag", "-a", "-m", "a tree", "procedure-p3-v9.0.0", tree)
    assert set(planned(store)) == {"p2"}


def test_releases_at_descendants_supersede_an_older_commit(store: GitStore) -> None:
    """Planning an ancestor of two release commits plans nothing; a side branch is no ancestor."""
    base = store.write({"a": proc_files("a"), "b": proc_files("b")}, "feat: two")
    releases.release(store)
    store.write({"a": proc_files("a", optional=("x",))}, "feat: a x")
    releases.release(store)
    store.write({"b": proc_files("b", optional=("y",))}, "feat: b y")
    releases.release(store)
    # base's folders differ from both latest releases, made at two later commits
    assert planned(store, base) == {}

    # releases made on a side branch are not ancestors of main: main's changes are planned
    store.create_branch("side", base)
    store.write({"a": proc_files("a", optional=("x", "s"))}, "feat: side a", branch="side")
    store.write({"b": proc_files("b", optional=("y", "t"))}, "feat: side b", branch="side")
    assert {r.version for r in releases.release(store, ref="side")} == {"1.2.0"}
    store.write({"a": proc_files("a", optional=("x", "z"))}, "feat: a z")
    store.write({"b": proc_files("b", optional=("y", "w"))}, "feat: b w")
    # compared with the side branch's 1.2.0 (the latest), which had s and t: they are gone
    assert planned(store) == {"a": ("2.0.0", "major"), "b": ("2.0.0", "major")}


def test_the_plans_listing_answers_under_the_lock_only_while_no_tag_changed(
    store: GitStore,
) -> None:
    store.write({"a": proc_files("a"), "b": proc_files("b")}, "feat: two")
    view = planning.ReleaseView(store, None)
    assert view.latest_names_now(["a", "b"]) == {}
    releases.release(store, ["a"])
    assert view.latest_names_now(["a", "b"]) is None  # a tag was made: list again
    fresh = planning.ReleaseView(store, None)
    assert fresh.latest_names_now(["a", "b"]) == {"a": "procedure-a-v1.0.0"}
    git(repo_of(store), "pack-refs", "--all")
    assert fresh.latest_names_now(["a"]) is None  # packing rewrote packed-refs
    git(repo_of(store), "tag", "-d", "procedure-a-v1.0.0")
    assert planning.ReleaseView(store, None).latest_names_now(["a"]) == {}


def test_a_release_made_by_another_process_during_the_plan_is_seen(store: GitStore) -> None:
    """The listing path (no ids): a tag made between plan and lock changes the fingerprint."""
    tip = store.write({pid: proc_files(pid) for pid in ("a", "b", "c")}, "feat: three")
    repo = repo_of(store)

    def other_process_releases_b(plan: planning.ReleasePlan, _snap: object) -> None:
        if plan.id == "b":
            git(
                repo, "tag", "-a", "-m", f"Release b 1.0.0\n\nTree: {plan.tree_id}\n", plan.tag, tip
            )

    results = {r.id: r for r in releases.release(store, before_tag=other_process_releases_b)}
    assert (results["b"].created, results["b"].existing) == (False, True)
    assert all(results[pid].created for pid in ("a", "c"))


def test_tag_messages_read_as_tag_at_does(store: GitStore) -> None:
    tip = store.write({"a": proc_files("a")}, "feat: a")
    repo = repo_of(store)
    git(repo, "tag", "-a", "-m", "Release a 1.0.0\n\ncafé: yes\n", "procedure-a-v1.0.0", tip)
    git(repo, "tag", "procedure-a-v2.0.0", tip)
    tag_id = git(repo, "rev-parse", "procedure-a-v1.0.0").strip()
    git(repo, "tag", "-a", "-m", "a tag of a tag", "procedure-a-v3.0.0", tag_id)
    blob = str(store.repo.create_blob(b"x"))
    targets = {
        name.removeprefix("refs/tags/"): target for name, target in store.refs_under("refs/tags/")
    }
    assert None not in targets.values()
    quick = store.tag_messages([t for t in targets.values() if t] + [blob, "0" * 40])
    info = store.tag_at("procedure-a-v1.0.0", targets["procedure-a-v1.0.0"] or "")
    assert info is not None
    assert quick[targets["procedure-a-v1.0.0"] or ""] == (info.commit, info.message)
    assert quick[targets["procedure-a-v2.0.0"] or ""] is None  # a commit: ask tag_at
    assert quick[targets["procedure-a-v3.0.0"] or ""] is None  # a tag of a tag
    assert quick[blob] is None
    assert quick["0" * 40] is None
