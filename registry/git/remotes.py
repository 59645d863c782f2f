"""Remotes: what a clone is missing (shallow history, release tags) and pushing to them.

Talking to a remote goes through the ``git`` program, not libgit2: users' credential
helpers, ssh configuration, proxies and protocol versions then apply exactly as they do
for ``git fetch`` and ``git push``, and ``git push --atomic`` exists (libgit2 has no
atomic push). The one exception is :func:`fetch`, a queue worker's catch-up when a job
names a commit its clone lacks: libgit2's fetch, in process, with no ``git`` program on
the worker's host. Everything local stays in :class:`~registry.git.store.GitStore`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import pygit2

from registry.errors import GitError, HistoryIncomplete, UsageError
from registry.git.store import GitStore

FETCH_HINT = "git fetch --unshallow --tags"
LS_REMOTE_TIMEOUT_S = 10.0
PUSH_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class PushResult:
    remote: str
    refs: tuple[str, ...]
    atomic: bool


def is_shallow(store: GitStore) -> bool:
    """True for a clone made with ``--depth`` (what CI checkouts do by default)."""
    return (store.common_dir / "shallow").is_file()


def remote_names(store: GitStore) -> list[str]:
    names = {
        key.split(".")[1]
        for key in store.config_keys("remote.")
        if key.count(".") >= 2 and key.endswith(".url")
    }
    return sorted(names)


def default_remote(store: GitStore, branch: str | None = None) -> str | None:
    """The remote a push goes to: the branch's upstream, else ``origin``, else the only one."""
    names = remote_names(store)
    if branch:
        upstream = store.config_value(f"branch.{branch}.remote")
        if upstream in names:
            return upstream
    if "origin" in names:
        return "origin"
    return names[0] if len(names) == 1 else None


FETCH_REFSPECS = ("+refs/heads/*:refs/remotes/{remote}/*", "+refs/tags/*:refs/tags/*")


def fetch(store: GitStore, remote: str | None = None) -> str:
    """Fetch the branches and tags of ``remote`` (default: ``origin`` or the only one).

    Returns the remote's name. Raises :class:`GitError` naming the remote and the cause
    when there is none or it cannot be read.
    """
    name = remote or default_remote(store)
    if name is None:
        names = remote_names(store)
        advice = f" (several: {', '.join(names)}; name one)" if names else "; `git remote add` one"
        raise GitError(
            f"{store.name} has no remote to fetch from{advice}",
            path=store.name,
        )
    try:
        handle = store.repo.remotes[name]
    except (KeyError, ValueError) as exc:
        raise GitError(f"{store.name} has no remote {name!r}", path=store.name) from exc
    try:
        handle.fetch([spec.format(remote=name) for spec in FETCH_REFSPECS])
    except (pygit2.GitError, OSError) as exc:
        raise GitError(
            f"cannot fetch from {name} ({handle.url}): {exc}", path=store.name, ref=name
        ) from exc
    return name


def _git(store: GitStore, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    if git is None:
        raise GitError("the `git` program is not on PATH; install git to talk to remotes")
    # never wait for a password or a host-key question: a command is not a login
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    try:
        return subprocess.run(
            [git, "--git-dir", str(store.git_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(
            f"`git {' '.join(args[:2])}` took over {timeout:.0f} s; is the remote up?"
        ) from exc


def remote_tags(store: GitStore, remote: str, pattern: str) -> dict[str, str]:
    """``refs/tags/...`` names on ``remote`` matching ``pattern`` (a glob), with their ids."""
    done = _git(store, ["ls-remote", "--tags", "--refs", remote, pattern], LS_REMOTE_TIMEOUT_S)
    if done.returncode:
        raise GitError(
            f"cannot list the tags of remote {remote!r}: {_last_line(done.stderr)}", ref=remote
        )
    found = {}
    for line in done.stdout.splitlines():
        oid, _, name = line.partition("\t")
        if name.startswith("refs/tags/"):
            found[name] = oid
    return found


def check_history(
    store: GitStore, tag_prefix: str, *, branch: str | None = None, compare_remote: bool = False
) -> None:
    """Stop (:class:`HistoryIncomplete`) when this clone lacks history or release tags.

    A shallow clone always stops. The remote is asked for its release tags when this
    clone has none (a tagless CI checkout), or always with ``compare_remote`` (before
    releasing, when a missing tag would make a release be planned again). A remote that
    cannot be reached is not an error here: the command goes on with what it has.
    """
    if is_shallow(store):
        raise HistoryIncomplete(
            f"{store.name}: this clone is shallow, so release history and tags are missing; "
            f"run `{FETCH_HINT}` (or pass --allow-shallow to go on without them)",
            shallow=True,
        )
    prefix = "refs/tags/" + tag_prefix
    if not compare_remote and store.has_ref_under(prefix):
        return  # one release tag is enough here: no need to list 30,000
    remote = default_remote(store, branch)
    if remote is None:
        return  # nothing to compare with: the local tags need not be listed
    try:
        remote_side = remote_tags(store, remote, tag_prefix + "*")
    except GitError:
        return
    local = set(store.ref_names(prefix))
    missing = sorted(set(remote_side) - local)
    if missing:
        raise HistoryIncomplete(
            f"{store.name}: {len(missing)} release tag{'s' * (len(missing) > 1)} of remote "
            f"{remote!r} {'are' if len(missing) > 1 else 'is'} missing here "
            f"(e.g. {missing[0].removeprefix('refs/tags/')}); run `{FETCH_HINT}` "
            "(or pass --allow-shallow to go on without them)",
            remote=remote,
            missing=[m.removeprefix("refs/tags/") for m in missing],
        )


def push(store: GitStore, remote: str, refs: Sequence[str], *, atomic: bool = True) -> PushResult:
    """Push ``refs`` (full names) to ``remote``, all or none where the remote allows it.

    A remote that does not support atomic pushes gets a plain push of the same refs.
    Nothing is forced: a tag that already exists there with another target is refused.
    """
    if remote not in remote_names(store) and "/" not in remote and ":" not in remote:
        known = ", ".join(remote_names(store)) or "none"
        raise UsageError(f"no remote named {remote!r} (remotes: {known}); add it or name another")
    specs = [f"{ref}:{ref}" for ref in refs]
    if not specs:
        return PushResult(remote, (), atomic)
    args = ["push", "--porcelain", *(["--atomic"] if atomic else []), remote, *specs]
    done = _git(store, args, PUSH_TIMEOUT_S)
    if done.returncode and atomic and "does not support --atomic" in done.stderr:
        return push(store, remote, refs, atomic=False)
    if done.returncode:
        raise GitError(
            f"push to {remote!r} failed: {_refusal(done.stdout, done.stderr)}; "
            "nothing was forced, fetch and check what the remote holds",
            ref=remote,
        )
    return PushResult(remote, tuple(refs), atomic)


def push_hint(remote: str | None, refs: Sequence[str]) -> str:
    """The one line that says how to publish what a command made but did not push."""
    where = remote or "<remote>"
    names = " ".join(ref.removeprefix("refs/tags/").removeprefix("refs/heads/") for ref in refs)
    return f"not pushed; publish with `git push --atomic {where} {names}` (or rerun with --push)"


def _refusal(stdout: str, stderr: str) -> str:
    for line in stdout.splitlines():
        if line.startswith("!"):
            parts = line.split("\t")
            return f"{parts[1].split(':')[-1]} {parts[-1]}".strip() if len(parts) > 2 else line
    return _last_line(stderr)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output from git"
