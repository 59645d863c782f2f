"""Releases against real repositories: computed versions, tags, history, rollback, channels."""

from __future__ import annotations

import multiprocessing
import subprocess
from pathlib import Path

import pytest
import semver

from registry.errors import ConflictError, NotFoundError, UsageError, ValidationFailed
from registry.git.store import GitStore
from registry.releases import channels, history, tagged
from registry.releases import plan as planning
from registry.releases import release as releases
from tests.helpers import git, invalid_files, proc_files


def tag_names(repo: Path) -> list[str]:
    return git(repo, "tag", "-l").split()


def all_refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


def repo_of(store: GitStore) -> Path:
    assert store.workdir is not None
    return store.workdir


# --- releasing -----------------------------------------------------------------------


def test_first_release_is_1_0_0_initial_with_no_previous(store: GitStore) -> None:
    tip = store.write({"echo": proc_files("echo")}, "feat: add echo")

    results = releases.release(store)

    assert len(results) == 1
    r = results[0]
    assert (r.id, r.version, r.previous, r.bump, r.tag, r.commit) == (
        "echo",
        "1.0.0",
        None,
        "initial",
        "procedure-echo-v1.0.0",
        tip,
    )
    repo = repo_of(store)
    empty_tree = git(repo, "hash-object", "-t", "tree", "/dev/null").strip()
    assert (r.lines_added, r.lines_removed) == _numstat(repo, empty_tree, tip, "echo")
    data = r.model_dump(mode="json")
    for key in ("id", "version", "previous", "bump", "tag", "commit", "lines_added"):
        assert key in data
    assert {"lines_removed", "reasons"} <= data.keys()
    assert tag_names(repo) == ["procedure-echo-v1.0.0"]
    assert git(repo, "cat-file", "-t", "procedure-echo-v1.0.0").strip() == "tag"
    assert git(repo, "rev-parse", "procedure-echo-v1.0.0^{commit}").strip() == tip
    message = git(repo, "tag", "-l", "--format=%(contents)", "procedure-echo-v1.0.0")
    assert "Bump: initial" in message and f"Lines-Added: {r.lines_added}" in message
    assert git(repo, "tag", "-l", "--format=%(taggeremail)", "procedure-echo-v1.0.0").strip() == (
        "<release@example.com>"
    )


def test_nothing_changed_releases_nothing(store: GitStore) -> None:
    store.write({"echo": proc_files("echo"), "upper": proc_files("upper")}, "feat: two")
    assert [r.id for r in releases.release(store)] == ["echo", "upper"]

    assert releases.release(store) == []
    assert planning.plan_release(store, ["echo"]) == []

    # a change to one procedure releases that one only
    store.write({"upper": proc_files("upper", body="return text.upper()")}, "fix: upper")
    assert [(r.id, r.version) for r in releases.release(store)] == [("upper", "1.0.1")]
    assert sorted(tag_names(repo_of(store))) == [
        "procedure-echo-v1.0.0",
        "procedure-upper-v1.0.0",
        "procedure-upper-v1.0.1",
    ]


@pytest.mark.parametrize(
    ("new_files", "bump", "version", "breaking", "reason_word"),
    [
        (proc_files("echo", body="return text.strip()"), "patch", "1.0.1", False, "body"),
        (proc_files("echo", doc="Return the text, unchanged."), "patch", "1.0.1", False, ""),
        (proc_files("echo", optional=("suffix",)), "minor", "1.1.0", False, "suffix"),
        (proc_files("echo", params=("text", "mode")), "major", "2.0.0", True, "mode"),
        (proc_files("echo", params=(), body='return ""'), "major", "2.0.0", True, "text"),
    ],
    ids=["body-fix", "docstring", "new-optional-param", "new-required-param", "removed-param"],
)
def test_the_bump_is_computed_from_the_change(
    store: GitStore,
    new_files: dict[str, bytes],
    bump: str,
    version: str,
    breaking: bool,
    reason_word: str,
) -> None:
    store.write({"echo": proc_files("echo")}, "add echo")
    releases.release(store)
    store.write({"echo": new_files}, "change echo")

    (r,) = releases.release(store, ["echo"])

    assert (r.bump, r.version, r.previous, r.breaking) == (bump, version, "1.0.0", breaking)
    assert r.reasons and any(reason_word in reason for reason in r.reasons)
    message = git(repo_of(store), "tag", "-l", "--format=%(contents)", r.tag)
    assert f"Bump: {bump}" in message
    assert f"Breaking: {'true' if breaking else 'false'}" in message
    for reason in r.reasons:
        assert f"Reason: {reason}" in message


def _numstat(repo: Path, a: str, b: str, pid: str) -> tuple[int, int]:
    added = removed = 0
    for line in git(repo, "diff", "--numstat", a, b, "--", f"procedures/{pid}").splitlines():
        plus, minus, _ = line.split("\t", 2)
        added += int(plus) if plus != "-" else 0
        removed += int(minus) if minus != "-" else 0
    return added, removed


def test_line_counts_equal_git_numstat_between_the_two_tags(store: GitStore) -> None:
    readme = b"# echo\n\nline one\nline two\nline three\n"
    store.write(
        {"echo": proc_files("echo", extra={"README.md": readme, "notes.txt": b"a\nb\n"})}, "x"
    )
    store.write({"other": proc_files("other")}, "another procedure")
    releases.release(store)
    changed = proc_files(
        "echo",
        optional=("sep",),
        body="return text + sep",
        extra={"README.md": b"# echo\n\nline one\nline 2\n", "data.csv": b"a,b\n1,2\n3,4\n"},
    )
    store.write({"echo": changed, "other": proc_files("other", body="return text * 2")}, "y")

    results = {r.id: r for r in releases.release(store)}

    repo = repo_of(store)
    r = results["echo"]
    assert (r.lines_added, r.lines_removed) == _numstat(
        repo, "procedure-echo-v1.0.0", "procedure-echo-v1.1.0", "echo"
    )
    assert r.lines_added > 0 and r.lines_removed > 0
    assert r.files_changed == 5  # main, metadata, README changed; notes deleted; data added


def test_an_invalid_procedure_is_never_released_and_blocks_the_whole_release(
    store: GitStore,
) -> None:
    store.write({"good": proc_files("good"), "bad": invalid_files("bad")}, "feat: two")

    with pytest.raises(ValidationFailed) as info:
        releases.release(store)
    assert "bad" in str(info.value)
    assert any(p.path.startswith("procedures/bad/") for p in info.value.problems)
    assert tag_names(repo_of(store)) == []

    with pytest.raises(ValidationFailed):
        releases.release(store, ["bad", "good"])
    assert tag_names(repo_of(store)) == []

    # the valid one can still be released by itself
    assert [r.tag for r in releases.release(store, ["good"])] == ["procedure-good-v1.0.0"]


def test_unknown_ids_are_not_found(store: GitStore) -> None:
    store.write({"echo": proc_files("echo")}, "feat: echo")
    with pytest.raises(NotFoundError, match="'nope'"):
        releases.release(store, ["echo", "nope"])
    assert tag_names(repo_of(store)) == []


def test_dry_run_tags_nothing(store: GitStore) -> None:
    store.write({"echo": proc_files("echo")}, "feat: echo")
    (r,) = releases.release(store, dry_run=True)
    assert (r.version, r.created) == ("1.0.0", False)
    assert tag_names(repo_of(store)) == []


def test_a_tag_made_meanwhile_is_never_overwritten(store: GitStore) -> None:
    """Another releaser wins between plan and tag: its release is reported, its tag stays."""
    tip = store.write({"echo": proc_files("echo")}, "feat: echo")
    repo = repo_of(store)

    def other_process_wins(plan: planning.ReleasePlan, _snap: object) -> None:
        git(repo, "tag", "-a", "-m", "made by someone else", plan.tag, tip)

    (result,) = releases.release(store, before_tag=other_process_wins)
    assert (result.tag, result.created, result.existing) == ("procedure-echo-v1.0.0", False, True)
    assert tag_names(repo) == ["procedure-echo-v1.0.0"]
    assert "made by someone else" in git(repo, "tag", "-l", "--format=%(contents)")
    assert releases.release(store) == []


def test_before_tag_can_refuse_a_release(store: GitStore) -> None:
    store.write({"a": proc_files("a"), "b": proc_files("b")}, "feat: two")

    def refuse_b(plan: planning.ReleasePlan, snap: object) -> None:
        if plan.id == "b":
            raise UsageError("b's examples fail")

    with pytest.raises(UsageError, match="examples"):
        releases.release(store, before_tag=refuse_b)
    assert tag_names(repo_of(store)) == []


def _release_worker(repo: str, barrier: object, queue: object) -> None:
    store = GitStore.open(repo)
    barrier.wait()  # type: ignore[attr-defined]
    try:
        made = releases.release(store, ["echo"])
        queue.put(("ok", [(r.tag, r.tag_id, r.created) for r in made]))  # type: ignore[attr-defined]
    except ConflictError as exc:
        queue.put(("conflict", str(exc)))  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - reported to the test instead of hanging it
        queue.put(("error", repr(exc)))  # type: ignore[attr-defined]


def _promote_worker(repo: str, version: str, barrier: object, queue: object) -> None:
    store = GitStore.open(repo)
    barrier.wait()  # type: ignore[attr-defined]
    try:
        move = channels.promote(store, "echo", version, "stable", reason=f"to {version}")
        queue.put(("ok", (move.seq, move.created)))  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - reported to the test instead of hanging it
        queue.put(("error", repr(exc)))  # type: ignore[attr-defined]


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_releases_make_exactly_one_tag_per_version(
    store: GitStore, workers: int
) -> None:
    store.write({"echo": proc_files("echo")}, "feat: echo")
    ctx = multiprocessing.get_context("spawn")
    repo = str(repo_of(store))
    for round_, expected in enumerate(["procedure-echo-v1.0.0", "procedure-echo-v1.1.0"]):
        if round_:
            store.write({"echo": proc_files("echo", optional=("sep",))}, "feat: sep")
        barrier = ctx.Barrier(workers)
        queue = ctx.Queue()
        procs = [
            ctx.Process(target=_release_worker, args=(repo, barrier, queue)) for _ in range(workers)
        ]
        for p in procs:
            p.start()
        outcomes = [queue.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        assert [o for o in outcomes if o[0] != "ok"] == []  # no error, no conflict
        made = [(tag, tag_id) for _, tags in outcomes for tag, tag_id, created in tags if created]
        assert [tag for tag, _ in made] == [expected]  # one winner; the others find it done
        # ... and say so: every loser lists the winner's tag
        assert all([tag for tag, _, _ in tags] == [expected] for _, tags in outcomes)
        # and the tag is the winner's: nobody overwrote it after it was made
        assert git(Path(repo), "rev-parse", expected).strip() == made[0][1]
    assert sorted(tag_names(repo_of(store))) == ["procedure-echo-v1.0.0", "procedure-echo-v1.1.0"]


def test_concurrent_promotions_each_get_their_own_move(store: GitStore) -> None:
    store.write({"echo": proc_files("echo")}, "feat: echo")
    releases.release(store)
    store.write({"echo": proc_files("echo", body="return text.strip()")}, "fix: strip")
    releases.release(store)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    queue = ctx.Queue()
    versions = ["1.0.0", "1.0.1", "1.0.0"]
    procs = [
        ctx.Process(target=_promote_worker, args=(str(repo_of(store)), v, barrier, queue))
        for v in versions
    ]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    moves = channels.channel_history(store, "echo", "stable")
    # no move was lost or overwritten: each recorded move is one that a process made
    created = [seq for _, (seq, made) in outcomes if made]
    assert [m.seq for m in moves] == list(range(len(moves), 0, -1))
    assert sorted(created) == [m.seq for m in reversed(moves)]  # one move per creator
    assert len(moves) >= 2  # 1.0.0 and 1.0.1 both got there; a repeat of the current is a no-op
    assert {m.reason for m in moves} <= {"to 1.0.0", "to 1.0.1"}


# --- history, resolve, diff ---------------------------------------------------------


@pytest.fixture
def released(store: GitStore) -> GitStore:
    """echo released as 1.0.0, 1.0.1 (fix), 1.1.0 (optional param), 2.0.0 (required param)."""
    store.write({"echo": proc_files("echo")}, "feat: echo")
    releases.release(store)
    store.write({"echo": proc_files("echo", body="return text.strip()")}, "fix: strip")
    releases.release(store)
    store.write({"echo": proc_files("echo", optional=("sep",), body="return text + sep")}, "x")
    releases.release(store)
    store.write({"echo": proc_files("echo", params=("text", "mode"))}, "feat: mode")
    releases.release(store)
    return store


def test_history_lists_every_release_newest_first(released: GitStore) -> None:
    hist = history.history(released, "echo")

    assert [h.version for h in hist] == ["2.0.0", "1.1.0", "1.0.1", "1.0.0"]
    assert [h.bump for h in hist] == ["major", "minor", "patch", "initial"]
    assert [h.breaking for h in hist] == [True, False, False, False]
    assert [h.previous for h in hist] == ["1.1.0", "1.0.1", "1.0.0", None]
    assert hist[0].tagger_email == "release@example.com" and hist[0].date is not None
    assert any("mode" in reason for reason in hist[0].reasons)
    repo = repo_of(released)
    for h in hist:
        assert git(repo, "rev-parse", f"{h.tag}^{{commit}}").strip() == h.commit
    added, removed = _numstat(repo, hist[1].tag, hist[0].tag, "echo")
    assert (hist[0].lines_added, hist[0].lines_removed) == (added, removed)
    # another id sharing the tag prefix does not leak in
    released.write({"echo-v2": proc_files("echo-v2")}, "feat: echo-v2")
    releases.release(released, ["echo-v2"])
    assert len(history.history(released, "echo")) == 4
    assert [h.version for h in history.history(released, "echo-v2")] == ["1.0.0"]


@pytest.mark.parametrize(
    ("spec", "version"),
    [
        (None, "2.0.0"),
        ("latest", "2.0.0"),
        ("1.0.1", "1.0.1"),
        ("v1.0.0", "1.0.0"),
        ("^1.0", "1.1.0"),
        ("~1.0", "1.0.1"),
        (">=1.0.0,<1.1.0", "1.0.1"),
        ("1.x", "1.1.0"),
    ],
)
def test_resolve_a_version_spec(released: GitStore, spec: str | None, version: str) -> None:
    r = history.resolve(released, "echo", spec)

    assert r.version == version and r.source == "release"
    repo = repo_of(released)
    assert r.commit == git(repo, "rev-parse", f"procedure-echo-v{version}^{{commit}}").strip()
    assert r.tree_id == git(repo, "rev-parse", f"{r.commit}:procedures/echo").strip()
    assert (
        r.snapshot.files["main.py"].data
        == git(repo, "show", f"{r.commit}:procedures/echo/main.py").encode()
    )
    assert "snapshot" not in r.model_dump()


def test_resolve_head_channel_and_unreleased(released: GitStore) -> None:
    head = history.resolve(released, "echo", "HEAD")
    assert (head.source, head.version) == ("head", "2.0.0")  # the tip equals 2.0.0's tree

    tip = released.write({"echo": proc_files("echo", params=("text", "mode"), doc="Hi.")}, "docs")
    head = history.resolve(released, "echo", "HEAD")
    assert (head.version, head.commit) == (None, tip)

    channels.promote(released, "echo", "1.1.0", "stable", reason="known good")
    stable = history.resolve(released, "echo", "stable")
    assert (stable.version, stable.source, stable.channel) == ("1.1.0", "channel", "stable")

    with pytest.raises(NotFoundError, match="3"):
        history.resolve(released, "echo", "^3")
    with pytest.raises(NotFoundError):
        history.resolve(released, "echo", "beta")

    released.write({"fresh": proc_files("fresh")}, "feat: fresh")
    fresh = history.resolve(released, "fresh")
    assert (fresh.version, fresh.source, fresh.fallback_to_head) == (None, "head", True)
    with pytest.raises(NotFoundError, match="no release"):
        history.resolve(released, "fresh", "1.0.0")


def test_diff_between_two_versions(released: GitStore) -> None:
    text = history.diff(released, "echo", "1.0.0", "1.0.1")

    assert "--- a/procedures/echo/main.py" in text
    assert "+++ b/procedures/echo/main.py" in text
    assert "-    return text\n" in text and "+    return text.strip()\n" in text
    assert "metadata.json" not in text
    assert history.diff(released, "echo", "2.0.0", "HEAD") == ""


# --- rollback --------------------------------------------------------------------------


def test_rollback_is_a_new_commit_and_a_new_honest_release(released: GitStore) -> None:
    repo = repo_of(released)
    before = all_refs(repo)
    old_tip = released.resolve("main")

    result = releases.rollback(released, "echo", "1.1.0", reason="2.0.0 broke callers")

    # removing the required parameter 'mode' again breaks 2.0.0's callers: 3.0.0
    assert (result.version, result.previous, result.bump, result.breaking) == (
        "3.0.0",
        "2.0.0",
        "major",
        True,
    )
    assert result.reasons[0] == "rolls back to 1.1.0: 2.0.0 broke callers"
    new_tip = released.resolve("main")
    assert result.commit == new_tip and new_tip != old_tip
    assert git(repo, "rev-parse", f"{new_tip}^").strip() == old_tip
    message = git(repo, "log", "-1", "--format=%B", new_tip)
    assert message.startswith("revert(echo): roll back to 1.1.0")
    assert "Rollback-To: 1.1.0" in message
    assert (
        git(repo, "rev-parse", f"{new_tip}:procedures/echo").strip()
        == git(repo, "rev-parse", "procedure-echo-v1.1.0:procedures/echo").strip()
    )
    after = all_refs(repo)
    assert {k: v for k, v in after.items() if k in before and k != "refs/heads/main"} == {
        k: v for k, v in before.items() if k != "refs/heads/main"
    }
    assert set(after) - set(before) == {"refs/tags/procedure-echo-v3.0.0"}
    fsck = subprocess.run(
        ["git", "fsck", "--strict", "--no-dangling"], cwd=repo, capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr + fsck.stdout

    with pytest.raises(UsageError, match="nothing to roll back"):
        releases.rollback(released, "echo", "1.1.0")
    with pytest.raises(NotFoundError, match=r"no release 9\.9\.9"):
        releases.rollback(released, "echo", "9.9.9")


def test_rollback_to_a_compatible_version_is_not_breaking(store: GitStore) -> None:
    store.write({"echo": proc_files("echo")}, "feat: echo")
    releases.release(store)
    store.write({"echo": proc_files("echo", body="return text[::-1]")}, "fix: oops")
    releases.release(store)

    result = releases.rollback(store, "echo", "1.0.0")
    assert (result.version, result.bump) == ("1.0.2", "patch")
    latest = history.resolve(store, "echo")
    assert latest.snapshot.files == history.resolve(store, "echo", "1.0.0").snapshot.files
    assert history.diff(store, "echo", "1.0.0", "1.0.2") == ""


# --- channels --------------------------------------------------------------------------


def test_promote_keeps_the_channel_history(released: GitStore) -> None:
    first = channels.promote(released, "echo", "1.0.1", "stable", reason="first stable")
    channels.promote(released, "echo", "2.0.0", "stable", reason="new major")
    back = channels.promote(
        released, "echo", "1.1.0", "stable", reason="2.0.0 fails", action="rollback"
    )
    channels.promote(released, "echo", "2.0.0", "beta")

    assert first.seq == 1 and first.tag == "channel/echo/stable/000001"
    hist = channels.channel_history(released, "echo", "stable")
    assert [(m.seq, m.version, m.action) for m in hist] == [
        (3, "1.1.0", "rollback"),
        (2, "2.0.0", "promote"),
        (1, "1.0.1", "promote"),
    ]
    assert hist[0].reason == "2.0.0 fails" and hist[0].by_email == "release@example.com"
    assert back.created and back.commit == released.resolve("procedure-echo-v1.1.0")
    assert channels.current_channel(released, "echo", "stable") == semver.Version.parse("1.1.0")
    assert channels.current_channel(released, "echo", "canary") is None
    assert channels.channels(released, "echo") == {
        "stable": semver.Version.parse("1.1.0"),
        "beta": semver.Version.parse("2.0.0"),
    }
    assert len(channels.channel_history(released, "echo")) == 4

    again = channels.promote(released, "echo", "1.1.0", "stable")
    assert not again.created and again.seq == 3
    with pytest.raises(NotFoundError, match=r"no release 7\.0\.0"):
        channels.promote(released, "echo", "7.0.0", "stable")
    assert sorted(t for t in tag_names(repo_of(released)) if t.startswith("channel/")) == [
        "channel/echo/beta/000001",
        "channel/echo/stable/000001",
        "channel/echo/stable/000002",
        "channel/echo/stable/000003",
    ]


# --- check --base -------------------------------------------------------------------------


def test_check_base_reports_the_bump_a_merge_would_release(store: GitStore) -> None:
    repo = repo_of(store)
    store.write({"echo": proc_files("echo"), "other": proc_files("other")}, "feat: two")
    releases.release(store)
    base = store.resolve("main")
    git(repo, "branch", "feature", base)
    store.write({"echo": proc_files("echo", optional=("sep",))}, "feat: sep", branch="feature")
    store.write({"newbie": proc_files("newbie")}, "feat: newbie", branch="feature")
    # main moves on meanwhile: a pull request does not report main's own changes
    store.write({"other": proc_files("other", body="return text * 3")}, "fix: other")

    plans = planning.check_base(store, "main", "feature")

    assert [(p.id, p.previous, p.version, p.bump) for p in plans] == [
        ("echo", "1.0.0", "1.1.0", "minor"),
        ("newbie", None, "1.0.0", "initial"),
    ]
    text = planning.render_markdown(plans)
    assert "| `echo` | 1.0.0 | **1.1.0** | minor |" in text
    assert "| `newbie` | — | **1.0.0** | initial |" in text
    assert "sep" in text
    assert tag_names(repo) == ["procedure-echo-v1.0.0", "procedure-other-v1.0.0"]
    assert "No procedure" in planning.render_markdown(planning.check_base(store, "main", "main"))


# --- releasing many procedures at once -------------------------------------------------


def _commit_on(store: GitStore, branch: str, pid: str, body: str, message: str) -> str:
    return store.write({pid: proc_files(pid, body=body)}, message, branch=branch)


def test_release_all_changed_reads_commit_messages_across_branches_and_merges(
    store: GitStore,
) -> None:
    """Each changed procedure's reasons name exactly the commits that changed it, merges too."""
    ids = ["a", "b", "c", "d"]
    store.write({pid: proc_files(pid) for pid in ids}, "feat: four")
    assert [r.version for r in releases.release(store)] == ["1.0.0"] * 4
    repo = repo_of(store)
    git(repo, "branch", "side")
    _commit_on(store, "refs/heads/main", "a", "return text.strip()", "fix: strip a")
    _commit_on(store, "refs/heads/side", "b", "return text.upper()", "feat: upper b on a branch")
    _commit_on(store, "refs/heads/side", "a", "return text.strip()", "fix: same strip on side")
    _commit_on(store, "refs/heads/main", "c", "return text.lower()", "perf: lower c")
    git(repo, "reset", "-q", "--hard", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge branch 'side'", "side")
    # released on its own meanwhile: only what came after this release counts for c
    assert [r.tag for r in releases.release(store, ["c"])] == ["procedure-c-v1.0.1"]
    _commit_on(store, "refs/heads/main", "c", "return text.casefold()", "feat: casefold c")

    plans = {p.id: p for p in planning.plan_release(store, all_changed=True)}
    assert sorted(plans) == ["a", "b", "c"]  # d never changed
    head = store.resolve("HEAD")
    for pid, plan in plans.items():
        latest = tagged.latest_release(store, pid)
        assert latest is not None
        expected = [
            c.message.splitlines()[0]
            for c in store.folder_commits(pid, until=head, since=latest[1].commit)
        ]
        quoted = [r for r in plan.reasons if r.startswith("commit ")]
        assert [q.split('"')[1] for q in quoted] == expected, pid
    assert [q.split('"')[1] for q in plans["c"].reasons if q.startswith("commit ")] == [
        "feat: casefold c"
    ]
    assert plans["b"].bump == "minor"  # its feat: came through the merge
    # the merge itself changed nothing of a's that one side lacked: not listed for a
    assert "Merge branch 'side'" not in " ".join(plans["a"].reasons)


def test_release_from_a_release_on_an_unmerged_branch(store: GitStore) -> None:
    """The last release was tagged on a branch main never merged: commits since the fork count."""
    store.write({"a": proc_files("a")}, "feat: a")
    repo = repo_of(store)
    git(repo, "branch", "experiment")
    branch_tip = _commit_on(store, "refs/heads/experiment", "a", "return text * 2", "feat: twice")
    (first,) = releases.release(store, ["a"], ref=branch_tip)
    assert first.version == "1.0.0"
    _commit_on(store, "refs/heads/main", "a", "return text.strip()", "fix: strip")
    (plan,) = planning.plan_release(store, ["a"])
    head = store.resolve("HEAD")
    expected = [c.message for c in store.folder_commits("a", until=head, since=branch_tip)]
    assert [r.split('"')[1] for r in plan.reasons if r.startswith("commit ")] == [
        m.splitlines()[0] for m in expected
    ]
    assert expected and all("twice" not in m for m in expected)


def test_hand_made_tags_without_trailers_are_compared_by_tree(store: GitStore) -> None:
    """Tags made by plain `git tag -a` carry no Tree trailer: the tagged commit's folder counts."""
    tip = store.write({"a": proc_files("a"), "b": proc_files("b")}, "feat: two")
    repo = repo_of(store)
    git(repo, "tag", "-a", "-m", "by hand", "procedure-a-v1.0.0", tip)
    # a message copied from another release names another version: not trusted either
    git(repo, "tag", "-a", "-m", "Release b 0.9.0\n\nTree: " + "0" * 40, "procedure-b-v1.0.0", tip)
    assert planning.plan_release(store, all_changed=True) == []
    store.write({"b": proc_files("b", body="return text.strip()")}, "fix: strip b")
    assert [(p.id, p.version) for p in planning.plan_release(store, all_changed=True)] == [
        ("b", "1.0.1")
    ]


def test_many_procedures_release_only_what_changed(store: GitStore) -> None:
    """100 procedures, 3 changed: the same plans for --all-changed, by id and as check --base."""
    ids = [f"p{i:03d}" for i in range(100)]
    store.write({pid: proc_files(pid) for pid in ids}, "feat: a hundred")
    assert len(releases.release(store)) == 100
    base = store.resolve("HEAD")
    changed = ["p007", "p050", "p099"]
    store.write({pid: proc_files(pid, optional=("suffix",)) for pid in changed}, "feat: suffixes")
    everything = planning.plan_release(store, all_changed=True)
    by_id = planning.plan_release(store, changed)
    assert [p.model_dump() for p in everything] == [p.model_dump() for p in by_id]
    assert [(p.id, p.version, p.bump) for p in everything] == [
        (pid, "1.1.0", "minor") for pid in changed
    ]
    assert [p.id for p in planning.check_base(store, base)] == changed
