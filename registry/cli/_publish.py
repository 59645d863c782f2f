"""What the write commands share: ``--push [REMOTE]`` and ``--from-branch``.

What a command tags or commits is pushed with ``--push``; without it, one line says
what to push. Releases come from the tracked branch unless ``--from-branch``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from registry.git.store import GitStore

F = TypeVar("F", bound=Callable[..., Any])

PUSH_HELP = (
    "Push what this makes to REMOTE (default: the branch's upstream, else origin), "
    "all refs at once (--atomic) where the remote allows."
)


def push_option(command: F) -> F:
    """``--push [REMOTE]``: a flag that may take the remote's name."""
    return click.option(
        "--push",
        "push_to",
        is_flag=False,
        flag_value="",
        default=None,
        metavar="[REMOTE]",
        help=PUSH_HELP,
    )(command)


def from_branch_option(command: F) -> F:
    return click.option(
        "--from-branch",
        is_flag=True,
        help="Release even though HEAD is not the branch releases come from (or is detached).",
    )(command)


def check_branch(store: GitStore, ref: str, from_branch: bool) -> None:
    """Refuse to release off the tracked branch unless ``--from-branch``; then only warn.

    A branch whose commit the tracked branch already holds releases the tracked
    branch's code: a warning, no refusal.
    """
    from registry.errors import UsageError
    from registry.releases.branches import off_branch

    off = off_branch(store, ref)
    if off is None:
        return
    if off.merged:
        click.echo(f"warning: {off.reason}", err=True)
        return
    if not from_branch:
        raise UsageError(
            f"not releasing: {off.reason}; switch to it (git switch), or pass --from-branch "
            "to release from here anyway"
        )
    click.echo(f"warning: releasing anyway (--from-branch): {off.reason}", err=True)


def publish(store: GitStore, refs: Sequence[str], push_to: str | None, *, as_json: bool) -> None:
    """Push ``refs`` with ``--push``; without it, say in one line how to push them.

    Under ``--json`` the line goes to stderr, so stdout stays one JSON document.
    A repository with no remote at all has nowhere to push: nothing is said.
    """
    from registry.errors import GitError, UsageError
    from registry.git import remotes

    if not refs:
        return
    branch = store.current_branch()
    remote = remotes.default_remote(store, branch.removeprefix("refs/heads/") if branch else None)
    if push_to is None:
        if remotes.remote_names(store):
            click.echo(remotes.push_hint(remote, refs), err=as_json)
        return
    target = push_to or remote
    if target is None:
        known = remotes.remote_names(store)
        if known:
            raise UsageError(f"--push: which remote, {' or '.join(known)}? name it: --push NAME")
        raise UsageError("--push: this repository has no remote; add one (git remote add) first")
    try:
        done = remotes.push(store, target, refs)
    except GitError as exc:
        names = " ".join(r.removeprefix("refs/tags/").removeprefix("refs/heads/") for r in refs)
        raise GitError(f"made here but not pushed ({names}): {exc}", ref=target) from exc
    atomic = "" if done.atomic else " (one by one: the remote does not support --atomic)"
    click.echo(
        f"pushed {len(done.refs)} ref{'s' * (len(done.refs) != 1)} to {target}{atomic}", err=as_json
    )
