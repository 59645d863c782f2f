"""The server's ``pre-receive`` check: releases as procreg computes them, valid procedures on main.

:func:`pre_receive` is pure over a git store and the pushed ref updates; it
returns one line per refused ref (empty: accept). A new release tag
``procedure-<id>-vX.Y.Z`` is accepted only when its commit is on the tracked
branch (as the repository has it, or as the same push makes it), the
procedure there is valid, and the version is exactly the one
:func:`registry.releases.plan.plan_one` computes from the previous release
(the highest one before the push, or one the same push makes: the new tags of
one id are checked in version order). Existing release and channel tags are
immutable; the procedures the tracked branch's new tip changes must be valid.

:func:`hook_main` is the entry the ``hooks/pre-receive`` shim reaches (through
``procreg hook pre-receive``, or ``python -m registry.releases.receive
pre-receive``): it reads ``<old> <new> <ref>`` lines from stdin, prints the
refusals, and returns the exit code. ``docs/server.md`` says how to install it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

import semver

from registry.config import CONFIG_FILE, config_at, parse_config, tracked_ref
from registry.core import tags
from registry.core.snapshot import Snapshot
from registry.core.validation import validate_snapshot
from registry.errors import RegistryError
from registry.git.info import TagInfo
from registry.git.store import GitStore
from registry.releases.plan import ReleaseView, plan_one
from registry.releases.tagged import latest_release

Update = tuple[str, str, str]
"""``(old id, new id, ref name)`` as git passes them; an all-zero id means none."""

PROTECTED_PREFIXES = (
    "refs/tags/" + tags.RELEASE_TAG_PREFIX,
    "refs/tags/" + tags.CHANNEL_TAG_PREFIX,
)
RELEASE_REF_PREFIX = "refs/tags/" + tags.RELEASE_TAG_PREFIX


def _is_zero(oid: str) -> bool:
    return not oid.strip("0")


# --- the rules every protected tag follows ------------------------------------------


def _check_existing_tag(old: str, new: str) -> list[str]:
    if _is_zero(new):
        return ["deleting a release or channel tag is refused; tags are immutable"]
    if old != new:
        return [
            "moving a release or channel tag is refused; tags are immutable "
            "(release a new version, or promote to move a channel)"
        ]
    return []


def _tag_procedure(name: str) -> str | list[str]:
    """The procedure id a new tag's name names, or the reason it names none."""
    if name.startswith(tags.RELEASE_TAG_PREFIX):
        parsed = tags.parse_release_tag(name)
        if parsed is None:
            return [
                "not a release tag name; the procedure-* namespace holds only "
                "procedure-<id>-vX.Y.Z tags"
            ]
        return parsed[0]
    channel = tags.parse_channel_tag(name)
    if channel is None:
        return [
            "not a channel tag name; the channel/* namespace holds only "
            "channel/<id>/<channel>/<seq> tags (6-digit seq)"
        ]
    return channel[0]


def _check_tag(store: GitStore, old: str, new: str, ref: str) -> list[str]:
    """Why a pushed ``procedure-*`` or ``channel/*`` tag is refused on its own (empty: fine)."""
    name = ref[len("refs/tags/") :]
    if not _is_zero(old):
        return _check_existing_tag(old, new)
    # The ref does not exist yet (pre-receive runs before any update): read the object.
    commit = store.try_resolve(new)
    if commit is None:
        return ["the pushed tag does not point at a commit"]
    if commit == new:
        return ["release and channel tags must be annotated (`procreg release` makes them)"]
    proc_id = _tag_procedure(name)
    if isinstance(proc_id, list):
        return proc_id
    if proc_id not in store.tree_ids(commit):
        return [
            f"commit {commit[:12]} has no procedure {proc_id!r} "
            f"(no folder {store.folder}/{proc_id}/)"
        ]
    return []


def _check_branch(store: GitStore, old: str, new: str) -> list[str]:
    if _is_zero(new):
        return ["deleting the main branch is refused"]
    config = parse_config(store.read_path(CONFIG_FILE, new)).validation
    changed = store.changed_procedures(None if _is_zero(old) else old, new)
    out: list[str] = []
    for proc_id, (_, tree) in sorted(changed.items()):
        if tree is None:
            continue  # deleted: nothing to validate
        result = validate_snapshot(store.read_tree(proc_id, tree, new), config)
        out += [problem.format() for problem in result.problems]
    return out


# --- new release tags: on main, valid, at the computed version ----------------------


@dataclass(frozen=True)
class _NewRelease:
    """A release tag the push creates (already well formed, annotated, naming a folder)."""

    ref: str
    proc_id: str
    version: semver.Version
    info: TagInfo


@dataclass
class _Push:
    """What the whole push says about the tracked branch, and the releases it makes."""

    store: GitStore
    branch: str
    tips: tuple[str, ...]
    """The tracked branch's commit in the repository and the one this push sets (if any)."""
    moves_branch: bool
    made: dict[str, tuple[semver.Version, TagInfo]] = field(default_factory=dict)
    """Per id, the highest release of this push accepted so far (the next one's previous)."""

    @classmethod
    def of(cls, store: GitStore, updates: Sequence[Update], branch: str) -> _Push:
        current = store.try_resolve(branch)
        pushed = [new for _old, new, ref in updates if ref == branch and not _is_zero(new)]
        tips = tuple(t for t in (current, *pushed) if t is not None)
        return cls(store, branch, tips, bool(pushed))

    def on_branch(self, commit: str) -> bool:
        return any(self.store.is_ancestor(commit, tip) for tip in self.tips)


class _PushView(ReleaseView):
    """The planner's view of the previous release, when that release is in this push."""

    def __init__(self, store: GitStore, previous: tuple[semver.Version, TagInfo]) -> None:
        super().__init__(store, ())
        self._previous = previous

    def latest(self, proc_id: str) -> tuple[semver.Version, TagInfo] | None:
        return self._previous


def _new_release(store: GitStore, new: str, ref: str) -> _NewRelease | None:
    name = ref[len("refs/tags/") :]
    parsed = tags.parse_release_tag(name)
    info = store.tag_at(name, new)
    if parsed is None or info is None:
        return None
    return _NewRelease(ref, parsed[0], parsed[1], info)


def _not_on_branch(push: _Push, commit: str) -> str:
    branch = push.branch.removeprefix("refs/heads/")
    also = f" (nor on the {branch} this push makes)" if push.moves_branch else ""
    return f"points to {commit[:7]}, which is not on {branch}{also}; merge it first"


def _invalid(store: GitStore, snapshot: Snapshot, commit: str) -> str | None:
    try:
        config = parse_config(store.read_path(CONFIG_FILE, commit)).validation
    except RegistryError as exc:
        return f"the procreg.toml there is broken: {exc}"
    problems = validate_snapshot(snapshot, config).problems
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"the procedure there is invalid: {problems[0].format()}{more}"


def _wrong_trailer(rel: _NewRelease, tree: str) -> str | None:
    claimed = tags.release_tree(rel.info.message, rel.proc_id, rel.version)
    if claimed is None or claimed == tree:
        return None
    return (
        f"its Tree: trailer says {claimed[:12]} but the folder there is {tree[:12]}; "
        "let `procreg release` make the tag"
    )


def _nothing_to_release(
    store: GitStore, rel: _NewRelease, previous: tuple[semver.Version, TagInfo] | None
) -> str:
    commit = rel.info.commit
    if previous is None:
        return f"procreg finds nothing to release at {commit[:7]}"
    before = previous[1]
    if commit != before.commit and store.is_ancestor(commit, before.commit):
        return (
            f"points to {commit[:7]}, older than {before.name} (at {before.commit[:7]}); "
            "nothing to release there"
        )
    return f"the procedure at {commit[:7]} is unchanged since {before.name}; nothing to release"


def _wrong_version(push: _Push, rel: _NewRelease, tree: str) -> str | None:
    """Why ``rel``'s version is not the one procreg computes (None: it is)."""
    store, made = push.store, push.made.get(rel.proc_id)
    view = _PushView(store, made) if made is not None else None
    previous = made or latest_release(store, rel.proc_id)
    try:
        planned = plan_one(store, rel.proc_id, rel.info.commit, tree, view)
    except RegistryError as exc:
        return f"procreg cannot compute its version: {exc}"
    if planned is None:
        return _nothing_to_release(store, rel, previous)
    plan = planned[0]
    if plan.version == str(rel.version):
        return None
    source = f"from {plan.previous_tag}" if plan.previous_tag else "for a first release"
    why = f"{plan.bump}: {plan.reasons[0]}" if plan.reasons else plan.bump
    return (
        f"procreg computes {plan.version} {source} ({why}); "
        f"tag {plan.tag} instead (procreg release does)"
    )


def _check_release(push: _Push, rel: _NewRelease) -> list[str]:
    """Why a new release tag is refused (empty: accepted, and the next one's previous)."""
    store, commit = push.store, rel.info.commit
    reasons: list[str] = []
    if not push.on_branch(commit):
        reasons.append(_not_on_branch(push, commit))
    tree = store.subtree_ids(commit, [rel.proc_id])[rel.proc_id]
    if tree is None:  # _check_tag saw the folder; kept for the type checker
        return [*reasons, f"commit {commit[:12]} has no procedure {rel.proc_id!r}"]
    invalid = _invalid(store, store.read_tree(rel.proc_id, tree, commit), commit)
    if invalid is not None:
        reasons.append(invalid)
    else:
        reasons += [r for r in (_wrong_trailer(rel, tree), _wrong_version(push, rel, tree)) if r]
    if not reasons:
        push.made[rel.proc_id] = (rel.version, rel.info)
    return reasons


def _release_order(rel: _NewRelease) -> tuple[str, object]:
    return rel.proc_id, tags.version_key(rel.version)


# --- the push ----------------------------------------------------------------------


def _check_update(
    store: GitStore, update: Update, main_branch: str, new_releases: list[_NewRelease]
) -> list[str]:
    """The rules one ref update follows on its own; a new release tag is queued for later."""
    old, new, ref = update
    if ref == main_branch:
        return _check_branch(store, old, new)
    if not ref.startswith(PROTECTED_PREFIXES):
        return []
    reasons = _check_tag(store, old, new, ref)
    if not reasons and _is_zero(old) and ref.startswith(RELEASE_REF_PREFIX):
        rel = _new_release(store, new, ref)
        if rel is not None:
            new_releases.append(rel)
    return reasons


def refusals(
    store: GitStore, updates: Sequence[Update], main_branch: str = "refs/heads/main"
) -> dict[str, list[str]]:
    """Per refused ref (in push order), the reasons; an empty dict accepts the push.

    Refused: deleting or moving any existing ``procedure-*`` or ``channel/*``
    tag; a new tag in those namespaces that does not parse, is lightweight, or
    whose procedure is not in its target commit; a new release tag whose commit
    is not on ``main_branch`` (before or after this push), whose procedure is
    invalid there, or whose version is not the one procreg computes from the
    previous release; deleting ``main_branch``; a new tip of ``main_branch``
    with an invalid procedure (only the folders the push changes are validated).
    """
    found: dict[str, list[str]] = {}
    new_releases: list[_NewRelease] = []
    for update in updates:
        reasons = _check_update(store, update, main_branch, new_releases)
        if reasons:
            found[update[2]] = reasons
    push = _Push.of(store, updates, main_branch)
    for rel in sorted(new_releases, key=_release_order):
        reasons = _check_release(push, rel)
        if reasons:
            found[rel.ref] = reasons
    order = {ref: i for i, (_old, _new, ref) in enumerate(updates)}
    return dict(sorted(found.items(), key=lambda item: order[item[0]]))


def pre_receive(
    store: GitStore, updates: Sequence[Update], main_branch: str = "refs/heads/main"
) -> list[str]:
    """The lines that refuse a push (empty: accept it); see :func:`refusals`.

    One line per refused tag (its reasons joined by ``; ``), one per problem of
    a refused branch: ``refused <ref>: <why>``.
    """
    lines: list[str] = []
    for ref, reasons in refusals(store, updates, main_branch).items():
        if ref.startswith("refs/tags/"):
            lines.append(f"refused {ref}: {'; '.join(reasons)}")
        else:
            lines += [f"refused {ref}: {reason}" for reason in reasons]
    return lines


def _main_branch(store: GitStore) -> str:
    """``$PROCREG_MAIN_BRANCH``, else ``[registry] branch`` at HEAD, else HEAD's branch."""
    configured = os.environ.get("PROCREG_MAIN_BRANCH")
    if configured:
        return store.branch_ref(configured)
    ref = tracked_ref(store, config_at(store, store.try_resolve("HEAD")))
    return "refs/heads/main" if ref == "HEAD" else ref


def run(git_dir: str, lines: Sequence[str], environ: dict[str, str] | None = None) -> list[str]:
    """:func:`pre_receive` for a server repository and the hook's stdin lines."""
    env = os.environ if environ is None else environ
    store = GitStore.open(git_dir)
    # Pushed objects wait in a quarantine directory until the hook accepts them: git
    # names it in both variables, GitLab's Gitaly in GIT_OBJECT_DIRECTORY only.
    quarantines = {env.get("GIT_QUARANTINE_PATH"), env.get("GIT_OBJECT_DIRECTORY")}
    for quarantine in sorted(q for q in quarantines if q):
        store.add_alternate(quarantine)
    updates: list[Update] = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            updates.append((parts[0], parts[1], parts[2]))
    return pre_receive(store, updates, _main_branch(store))


def hook_main(
    argv: Sequence[str], stdin: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """``pre-receive``: read stdin, print each refusal, return 0 (accept) or 1."""
    err = stderr or sys.stderr
    if list(argv[:1]) != ["pre-receive"]:
        err.write("usage: python -m registry.releases.receive pre-receive < updates\n")
        return 2
    lines = (stdin or sys.stdin).read().splitlines()
    try:
        reasons = run(os.environ.get("GIT_DIR", "."), lines)
    except RegistryError as exc:
        err.write(f"procreg: push refused: {exc}\n")
        return 1
    for reason in reasons:
        err.write(f"procreg: {reason}\n")
    if reasons:
        err.write(f"procreg: push refused ({len(reasons)} problem{'s' * (len(reasons) > 1)})\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(hook_main(sys.argv[1:]))
