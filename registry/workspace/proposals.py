"""Proposals: an agent (or anyone) proposes a procedure; people review and merge it.

A proposal is one commit on a new branch ``proposals/<id>/<n>`` that starts at
the tracked branch's tip, never on the tracked branch itself. The files are
validated with the registry's own rules (the config committed at that tip)
before anything is written: an invalid proposal raises
:class:`~registry.errors.ValidationFailed` with every problem, and writes
nothing. The branch is created atomically and the commit lands on it by
compare-and-swap, so two proposers never share a branch. The result names the
branch, the commit and the release a merge would make (computed as
``procreg release`` would, from the previous release).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from registry.core.snapshot import MAIN_FILE, METADATA_FILE, FileEntry, Snapshot
from registry.core.tags import check_id
from registry.errors import ConflictError, UsageError, ValidationFailed
from registry.git.store import GitStore

BRANCH_PREFIX = "proposals/"
MAX_ATTEMPTS = 20
_N_RE = re.compile(r"^[0-9]{1,9}$")


class Proposal(BaseModel):
    """A proposal written on its own branch, and what merging it would release."""

    id: str
    branch: str = Field(description="The short branch name, proposals/<id>/<n>.")
    ref: str
    commit: str
    base: str = Field(description="The tracked branch's commit the proposal starts from.")
    bump: str = Field(description="What a merge would release: initial/major/minor/patch/none.")
    version: str | None = Field(description="The version a merge would release (None: none).")
    previous: str | None = None
    breaking: bool = False
    reasons: list[str] = Field(default_factory=list)


def proposal_branch(proc_id: str, n: int) -> str:
    """``proposals/<id>/<n>``."""
    return f"{BRANCH_PREFIX}{proc_id}/{n}"


def next_number(ref_names: list[str], proc_id: str) -> int:
    """One more than the highest ``n`` of ``refs/heads/proposals/<id>/<n>`` (1 for the first)."""
    prefix = f"refs/heads/{BRANCH_PREFIX}{proc_id}/"
    ns = [int(r[len(prefix) :]) for r in ref_names if _N_RE.match(r[len(prefix) :])]
    return max(ns, default=0) + 1


def _metadata_bytes(metadata: Mapping[str, Any] | str) -> bytes:
    text = metadata if isinstance(metadata, str) else json.dumps(metadata, indent=2) + "\n"
    return text.encode("utf-8")


def propose(
    store: GitStore,
    proc_id: str,
    main_py: str,
    metadata: Mapping[str, Any] | str,
    message: str | None = None,
    *,
    ref: str,
    proposer: str | None = None,
) -> Proposal:
    """Validate the files and commit them on a new ``proposals/<id>/<n>`` branch off ``ref``."""
    from registry.config import config_at
    from registry.core.validation import validate_snapshot
    from registry.releases import plan as planning

    check_id(proc_id)
    base = store.resolve(ref)
    current = store.read(proc_id, base) if proc_id in store.list_procedures(base) else None
    files: dict[str, FileEntry] = dict(current.files) if current is not None else {}
    files[MAIN_FILE] = FileEntry(main_py.encode("utf-8"))
    files[METADATA_FILE] = FileEntry(_metadata_bytes(metadata))
    snap = Snapshot(proc_id, files, None, None, store.folder)
    checked = validate_snapshot(snap, config_at(store, base).validation)
    if not checked.ok:
        raise ValidationFailed(checked.problems)
    if checked.metadata is not None:  # store the canonical form of what was validated
        files[METADATA_FILE] = FileEntry(checked.metadata.to_json().encode("utf-8"))
    if current is not None and current.files == files:
        raise UsageError(
            f"the proposal of {proc_id} is what {ref} already holds; nothing to review"
        )
    subject = (message or "").strip() or f"proposal: {proc_id}"
    body = subject + (f"\n\nProposed-By: {proposer}\n" if proposer else "\n")
    for _ in range(MAX_ATTEMPTS):
        n = next_number(store.ref_names(f"refs/heads/{BRANCH_PREFIX}{proc_id}/"), proc_id)
        branch = proposal_branch(proc_id, n)
        try:
            ref_name = store.create_branch(branch, base)
        except ConflictError:
            continue  # another proposer took this number first
        break
    else:
        raise ConflictError(f"could not create a proposal branch for {proc_id}; try again")
    commit = store.write({proc_id: files}, body, branch=ref_name, expected_tip=base)
    plans = planning.plan_release(store, [proc_id], ref=commit)
    plan = plans[0] if plans else None
    return Proposal(
        id=proc_id,
        branch=branch,
        ref=ref_name,
        commit=commit,
        base=base,
        bump=plan.bump if plan else "none",
        version=plan.version if plan else None,
        previous=plan.previous if plan else None,
        breaking=plan.breaking if plan else False,
        reasons=list(plan.reasons) if plan else [],
    )
