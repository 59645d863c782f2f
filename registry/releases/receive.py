"""The server's ``pre-receive`` check: immutable release tags and valid procedures on main.

:func:`pre_receive` is pure over a git store and the pushed ref updates; it
returns the reasons to refuse the push (empty: accept). :func:`hook_main` is
the entry the ``hooks/pre-receive`` shim reaches (through ``procreg hook
pre-receive``, or ``python -m registry.releases.receive pre-receive``): it reads
``<old> <new> <ref>`` lines from stdin, prints the reasons, and returns the
exit code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from registry.config import CONFIG_FILE, parse_config
from registry.core import tags
from registry.core.validation import validate_snapshot
from registry.errors import RegistryError
from registry.git.store import GitStore

Update = tuple[str, str, str]
"""``(old id, new id, ref name)`` as git passes them; an all-zero id means none."""

PROTECTED_PREFIXES = (
    "refs/tags/" + tags.RELEASE_TAG_PREFIX,
    "refs/tags/" + tags.CHANNEL_TAG_PREFIX,
)


def _is_zero(oid: str) -> bool:
    return not oid.strip("0")


def _check_tag(store: GitStore, old: str, new: str, ref: str) -> list[str]:
    name = ref[len("refs/tags/") :]
    if not _is_zero(old):
        if _is_zero(new):
            return [f"{name}: deleting a release or channel tag is refused; tags are immutable"]
        if old != new:
            return [
                f"{name}: moving a release or channel tag is refused; tags are immutable "
                "(release a new version, or promote to move a channel)"
            ]
        return []
    # The ref does not exist yet (pre-receive runs before any update): read the object.
    commit = store.try_resolve(new)
    if commit is None:
        return [f"{name}: the pushed tag does not point at a commit"]
    if commit == new:
        return [
            f"{name}: release and channel tags must be annotated (`procreg release` makes them)"
        ]
    if name.startswith(tags.RELEASE_TAG_PREFIX):
        parsed = tags.parse_release_tag(name)
        if parsed is None:
            return [
                f"{name}: not a release tag name; the procedure-* namespace holds only "
                "procedure-<id>-vX.Y.Z tags"
            ]
        proc_id, _version = parsed
    else:
        channel = tags.parse_channel_tag(name)
        if channel is None:
            return [
                f"{name}: not a channel tag name; the channel/* namespace holds only "
                "channel/<id>/<channel>/<seq> tags (6-digit seq)"
            ]
        proc_id = channel[0]
    if proc_id not in store.tree_ids(commit):
        return [
            f"{name}: commit {commit[:12]} has no procedure {proc_id!r} "
            f"(no folder {store.folder}/{proc_id}/)"
        ]
    return []


def _check_branch(store: GitStore, old: str, new: str, ref: str) -> list[str]:
    if _is_zero(new):
        return [f"{ref}: deleting the main branch is refused"]
    config = parse_config(store.read_path(CONFIG_FILE, new)).validation
    changed = store.changed_procedures(None if _is_zero(old) else old, new)
    out: list[str] = []
    for proc_id, (_, tree) in sorted(changed.items()):
        if tree is None:
            continue  # deleted: nothing to validate
        result = validate_snapshot(store.read_tree(proc_id, tree, new), config)
        out += [f"{ref}: {problem.format()}" for problem in result.problems]
    return out


def pre_receive(
    store: GitStore, updates: Sequence[Update], main_branch: str = "refs/heads/main"
) -> list[str]:
    """The reasons to refuse a push (empty: accept it).

    Refused: deleting or moving any existing ``procedure-*`` or ``channel/*``
    tag; a new tag in those namespaces that does not parse, is lightweight, or
    whose procedure is not in its target commit; deleting ``main_branch``; a
    new tip of ``main_branch`` with an invalid procedure (only the folders the
    push changes are validated).
    """
    reasons: list[str] = []
    for old, new, ref in updates:
        if ref.startswith(PROTECTED_PREFIXES):
            reasons += _check_tag(store, old, new, ref)
        elif ref == main_branch:
            reasons += _check_branch(store, old, new, ref)
    return reasons


def _main_branch(store: GitStore) -> str:
    configured = os.environ.get("PROCREG_MAIN_BRANCH")
    if not configured:
        head = store.try_resolve("HEAD")
        if head is not None:
            configured = parse_config(store.read_path(CONFIG_FILE, head)).registry.branch
    return (
        store.branch_ref(configured) if configured else store.current_branch() or "refs/heads/main"
    )


def run(git_dir: str, lines: Sequence[str], environ: dict[str, str] | None = None) -> list[str]:
    """:func:`pre_receive` for a server repository and the hook's stdin lines."""
    env = os.environ if environ is None else environ
    store = GitStore.open(git_dir)
    # Pushed objects wait in a quarantine directory until the hook accepts them.
    quarantine = env.get("GIT_QUARANTINE_PATH")
    if quarantine:
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
    """``pre-receive``: read stdin, print each reason to refuse, return 0 (accept) or 1."""
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
