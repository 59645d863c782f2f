"""The semver bump of a release, computed from two snapshots of a procedure folder.

A pure function: :func:`decide_bump` compares the previous release's files
with the new ones (the entry point's signature read by ``ast``, the parsed
``metadata.json``, the other files byte for byte) and reads conventional-commit
markers (:mod:`registry.core.conventional`) from the commit messages in between.
No git, no database.

The registry always calls the entry point with keyword arguments, so the
signature is judged by what a keyword caller can pass
(:mod:`registry.core.sigchanges`); whether a new annotation accepts what the
old one did is :mod:`registry.core.typecompat`'s call.
Every change found is a :class:`registry.core.reasons.Reason` of one
:class:`registry.core.reasons.ReasonKind`. The rules, with examples, are in
``docs/versioning.md``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from typing import Any

import semver
from pydantic import BaseModel, ConfigDict, Field

from registry.core.conventional import commit_subject, parse_conventional
from registry.core.ids import Bump
from registry.core.model import Example, Metadata, Parameter, parse_metadata
from registry.core.network import access_change
from registry.core.pylock import LOCK_FILE, lock_changes, read_lock, requirement_names
from registry.core.reasons import RANK, Reason, ReasonKind, Reasons, reason
from registry.core.sigchanges import compare_signatures
from registry.core.signature import read_signature
from registry.core.snapshot import MAIN_FILE, METADATA_FILE, Snapshot
from registry.errors import LockError

__all__ = [
    "MAJOR",
    "MINOR",
    "PATCH",
    "BumpDecision",
    "DiffStats",
    "decide_bump",
    "next_version",
]

PATCH, MINOR, MAJOR = RANK["patch"], RANK["minor"], RANK["major"]
_LEVEL_NAMES: dict[int, Bump] = {PATCH: "patch", MINOR: "minor", MAJOR: "major"}
K = ReasonKind


class DiffStats(BaseModel):
    """Line and file counts of the folder's diff (from the git store)."""

    model_config = ConfigDict(frozen=True)

    lines_added: int = 0
    lines_removed: int = 0
    files_changed: int = 0


class BumpDecision(BaseModel):
    """The computed bump, whether it breaks callers, and every reason found.

    ``reasons`` are the words (what the tag's ``Reason:`` trailers say);
    ``details`` are the same reasons as kinds with their values, in the same
    order, when the decision was computed by :func:`decide_bump`.
    """

    model_config = ConfigDict(frozen=True)

    bump: Bump
    breaking: bool
    reasons: list[str]
    details: list[Reason] = Field(default_factory=list)

    @property
    def kinds(self) -> list[ReasonKind]:
        """The kind of every reason, most severe first."""
        return [d.kind for d in self.details]


# --- the decision ------------------------------------------------------------


def _parses(source: str | None) -> bool:
    if source is None:
        return False
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def _strip_entry(source: str, entry: str) -> tuple[str, str | None]:
    """The module's AST dump minus the entry point's signature and docstring; the docstring."""
    tree = ast.parse(source)
    docstring: str | None = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry:
            docstring = ast.get_docstring(node)
            node.args = ast.arguments(
                posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[],
                kwarg=None, defaults=[],
            )  # fmt: skip
            node.returns = None
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:] or [ast.Pass()]
    dump = ast.dump(tree).replace("AsyncFunctionDef(", "FunctionDef(")
    return dump, docstring


def _compare_main(
    old: Snapshot, new: Snapshot, old_entry: str, new_entry: str, out: Reasons
) -> None:
    old_src, new_src = old.text(MAIN_FILE), new.text(MAIN_FILE)
    if old.files.get(MAIN_FILE) == new.files.get(MAIN_FILE) and old_entry == new_entry:
        return
    if new_src is None and MAIN_FILE not in new.files:
        out.add(K.MAIN_REMOVED, entry=new_entry)
        return
    if not _parses(new_src):
        out.add(K.MAIN_UNPARSABLE, entry=new_entry)
        return
    assert new_src is not None
    new_sig = read_signature(new_src, new_entry)
    old_sig = read_signature(old_src, old_entry) if old_src is not None else None
    if new_sig is None:
        out.add(K.ENTRY_POINT_REMOVED, entry=new_entry)
        return
    if old_sig is None:
        out.add(K.ENTRY_POINT_NEW, entry=new_entry)
        return
    before = len(out.items)
    compare_signatures(old_sig, new_sig, out)
    signature_changed = len(out.items) > before
    assert old_src is not None
    old_body, old_doc = _strip_entry(old_src, old_entry)
    new_body, new_doc = _strip_entry(new_src, new_entry)
    body_changed = old_body.replace(f"name='{old_entry}'", f"name='{new_entry}'") != new_body
    if body_changed:
        out.add(K.BODY_CHANGED)
    if old_doc != new_doc:
        out.add(K.DOCSTRING_CHANGED, entry=new_entry)
    explained = body_changed or signature_changed or old_doc != new_doc or old_entry != new_entry
    if not explained and old_src != new_src:
        out.add(K.FORMATTING_CHANGED)
    if old.files.get(MAIN_FILE) != new.files.get(MAIN_FILE) and old_src == new_src:
        out.add(K.MAIN_MODE_CHANGED)


_JSON_TYPE_WIDER: dict[str, set[str]] = {
    # metadata type -> the types whose every value it also accepts
    "number": {"integer"},
    "string": {"file", "directory"},
}


def _metadata_type_accepts(wide: str, narrow: str) -> bool:
    return wide == narrow or wide == "any" or narrow in _JSON_TYPE_WIDER.get(wide, set())


_SCALARS = (str, int, float, bool)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _compare_metadata_param(old: Parameter, new: Parameter, out: Reasons) -> None:
    """One parameter declared in both metadata files: its type, required-ness, default, words."""
    name = new.name
    if new.type != old.type:
        if _metadata_type_accepts(new.type, old.type):
            out.add(K.METADATA_TYPE_WIDENED, name=name, old=old.type, new=new.type)
        else:
            out.add(K.METADATA_TYPE_CHANGED, name=name, old=old.type, new=new.type)
    if new.required and not old.required:
        out.add(K.METADATA_NOW_REQUIRED, name=name)
    elif old.required and not new.required:
        out.add(K.METADATA_NO_LONGER_REQUIRED, name=name)
    elif new.default != old.default:
        out.add(
            K.METADATA_DEFAULT_CHANGED, name=name, old=_short(old.default), new=_short(new.default)
        )
    if new.description != old.description:
        out.add(K.METADATA_PARAMETER_DESCRIPTION, name=name)


def _compare_metadata_params(
    old: Metadata, new: Metadata, signatures_known: bool, out: Reasons
) -> None:
    """The declared parameters; added and removed ones only when the code cannot tell."""
    old_params = {p.name: p for p in old.parameters}
    for p in new.parameters:
        q = old_params.get(p.name)
        if q is not None:
            _compare_metadata_param(q, p, out)
        elif not signatures_known:
            added = (
                K.METADATA_PARAMETER_ADDED_REQUIRED
                if p.required
                else K.METADATA_PARAMETER_ADDED_OPTIONAL
            )
            out.add(added, name=p.name)
    if not signatures_known:
        new_names = {p.name for p in new.parameters}
        for name in old_params:
            if name not in new_names:
                out.add(K.METADATA_PARAMETER_REMOVED, name=name)


def _example_label(example: Example, text: str) -> str:
    return repr(example.description) if example.description else text


def _compare_examples(old: Metadata, new: Metadata, out: Reasons) -> None:
    old_examples = [_short(e.model_dump(mode="json")) for e in old.examples]
    new_examples = [_short(e.model_dump(mode="json")) for e in new.examples]
    for example, text in zip(new.examples, new_examples, strict=True):
        if text not in old_examples:
            out.add(K.METADATA_EXAMPLE_ADDED, label=_example_label(example, text))
    for example, text in zip(old.examples, old_examples, strict=True):
        if text not in new_examples:
            out.add(K.METADATA_EXAMPLE_REMOVED, label=_example_label(example, text))


# Metadata fields with rules of their own; every other field is compared as a value.
_HANDLED_FIELDS = frozenset(
    {"parameters", "returns", "examples", "entry_point", "schema_", "requirements", "network"}
)


def _compare_other_fields(old: Metadata, new: Metadata, out: Reasons) -> None:
    old_data = old.model_dump(mode="json")
    new_data = new.model_dump(mode="json")
    for name in Metadata.model_fields:
        if name in _HANDLED_FIELDS or old_data.get(name) == new_data.get(name):
            continue
        before, after = old_data.get(name), new_data.get(name)
        if isinstance(before, _SCALARS) and isinstance(after, _SCALARS):
            out.add(K.METADATA_FIELD_CHANGED, field=name, old=_short(before), new=_short(after))
        else:
            out.add(K.METADATA_FIELD_EDITED, field=name)


def _compare_metadata(old: Metadata, new: Metadata, signatures_known: bool, out: Reasons) -> None:
    _compare_metadata_params(old, new, signatures_known, out)
    _compare_returns_metadata(old, new, out)
    _compare_examples(old, new, out)
    if old.entry_point != new.entry_point:
        out.add(K.METADATA_ENTRY_POINT, old=old.entry_point, new=new.entry_point)
    _compare_requirements(old.requirements, new.requirements, out)
    _compare_network(old, new, out)
    _compare_other_fields(old, new, out)


def _compare_network(old: Metadata, new: Metadata, out: Reasons) -> None:
    """The allowlist widened (at least a minor) or narrowed (a patch), each target named."""
    added, removed = access_change(old.network, new.network)
    if added:
        out.add(K.NETWORK_WIDENED, targets=", ".join(str(e) for e in added))
    if removed:
        out.add(K.NETWORK_NARROWED, targets=", ".join(str(e) for e in removed))


def _compare_requirements(old: list[str], new: list[str], out: Reasons) -> None:
    """Each requirement added, removed or changed, named (at least a patch)."""
    before, after = requirement_names(old), requirement_names(new)
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a is None:
            out.add(K.REQUIREMENT_ADDED, requirement=b)
        elif b is None:
            out.add(K.REQUIREMENT_REMOVED, requirement=a)
        elif a != b:
            out.add(K.REQUIREMENT_CHANGED, name=name, old=a, new=b)


def _compare_locks(old: Snapshot, new: Snapshot, out: Reasons) -> None:
    """``pylock.toml`` changed: every distribution whose pinned version changed, named."""
    try:
        before = read_lock(old.text(LOCK_FILE))
        after = read_lock(new.text(LOCK_FILE))
    except LockError:
        out.add(K.LOCK_UNREADABLE)
        return
    changes = lock_changes(before, after)
    for name, was, now in changes:
        if was is None:
            out.add(K.LOCKED_ADDED, name=name, new=now)
        elif now is None:
            out.add(K.LOCKED_REMOVED, name=name, old=was)
        else:
            out.add(K.LOCKED_CHANGED, name=name, old=was, new=now)
    if not changes:
        out.add(K.LOCK_REWRITTEN)


def _compare_returns_metadata(old: Metadata, new: Metadata, out: Reasons) -> None:
    before, after = old.returns, new.returns
    if before.type != after.type:
        if _metadata_type_accepts(before.type, after.type):
            out.add(K.METADATA_RETURN_NARROWED, old=before.type, new=after.type)
        else:
            out.add(K.METADATA_RETURN_CHANGED, old=before.type, new=after.type)
    for key in after.fields:
        if key not in before.fields:
            out.add(K.METADATA_OUTPUT_FIELD_ADDED, name=key)
        elif before.fields[key] != after.fields[key]:
            out.add(K.METADATA_OUTPUT_FIELD_DESCRIPTION, name=key)
    for key in before.fields:
        if key not in after.fields:
            out.add(K.METADATA_OUTPUT_FIELD_REMOVED, name=key)
    if before.description != after.description:
        out.add(K.METADATA_RESULT_DESCRIPTION)


def _compare_other_files(old: Snapshot, new: Snapshot, out: Reasons) -> None:
    for name in sorted(set(old.files) | set(new.files)):
        if name in (MAIN_FILE, METADATA_FILE, LOCK_FILE):
            continue
        before, after = old.files.get(name), new.files.get(name)
        if before == after:
            continue
        if before is None:
            out.add(K.FILE_ADDED, name=name)
        elif after is None:
            out.add(K.FILE_REMOVED, name=name)
        elif before.data == after.data:
            out.add(K.FILE_MODE_CHANGED, name=name)
        else:
            out.add(K.FILE_CHANGED, name=name)


def _compare_commits(messages: Sequence[str], out: Reasons) -> None:
    for message in messages:
        commit = parse_conventional(message)
        first = commit_subject(message)
        if commit.breaking_note is not None:
            out.add(K.COMMIT_BREAKING_NOTE, subject=first, note=commit.breaking_note)
        elif commit.bang:
            out.add(K.COMMIT_BREAKING_BANG, subject=first)
        elif commit.breaking and not any(c.breaking for c in commit.squashed):
            out.add(K.COMMIT_BREAKING_FOOTER, subject=first)
        elif commit.type == "feat":
            out.add(K.COMMIT_FEATURE, subject=first)
        elif commit.type == "fix":
            out.add(K.COMMIT_FIX, subject=first)
        for inner in commit.squashed:
            values = {"subject": first, "header": inner.header}
            if inner.breaking_note is not None:
                out.add(K.SQUASHED_BREAKING_NOTE, note=inner.breaking_note, **values)
            elif inner.bang:
                out.add(K.SQUASHED_BREAKING_BANG, **values)
            elif inner.type == "feat":
                out.add(K.SQUASHED_FEATURE, **values)
            elif inner.type == "fix":
                out.add(K.SQUASHED_FIX, **values)


def _compare_metadata_files(
    old: Snapshot,
    new: Snapshot,
    old_meta: Metadata | None,
    new_meta: Metadata | None,
    out: Reasons,
) -> None:
    """``metadata.json`` changed: its fields compared, or why they could not be."""
    if new_meta is None:
        out.add(K.METADATA_UNREADABLE)
        return
    if old_meta is None:
        out.add(K.METADATA_OLD_UNREADABLE)
        return
    old_src, new_src = old.text(MAIN_FILE), new.text(MAIN_FILE)
    known = (
        old_src is not None
        and new_src is not None
        and read_signature(old_src, old_meta.entry_point) is not None
        and read_signature(new_src, new_meta.entry_point) is not None
    )
    before = len(out.items)
    _compare_metadata(old_meta, new_meta, known, out)
    if len(out.items) == before:
        out.add(K.METADATA_FORMATTING)


def decide_bump(
    old: Snapshot | None, new: Snapshot, stats: DiffStats, messages: Sequence[str]
) -> BumpDecision:
    """The bump from release ``old`` to folder state ``new``, with every reason found.

    ``old`` is ``None`` for a first release (bump ``initial``). Byte-identical
    folders give ``none`` with no reasons, whatever the messages say.
    Otherwise the bump is the highest level any rule reaches: ``major`` for a
    change that can break a caller (see docs/versioning.md), ``minor`` for a
    compatible feature, ``patch`` for anything else. ``messages`` are the
    commit messages between the two releases (``"subject\\n\\nbody"``).
    Never raises on unreadable files: what cannot be read is reported.
    """
    if old is None:
        first = reason(K.FIRST_RELEASE)
        return BumpDecision(bump="initial", breaking=False, reasons=[first.words], details=[first])
    if (old.tree_id is not None and old.tree_id == new.tree_id) or old.files == new.files:
        return BumpDecision(bump="none", breaking=False, reasons=[])

    out = Reasons()
    old_meta = parse_metadata(old.text(METADATA_FILE))
    new_meta = parse_metadata(new.text(METADATA_FILE))
    old_entry = old_meta.entry_point if old_meta is not None else "main"
    new_entry = new_meta.entry_point if new_meta is not None else "main"
    _compare_main(old, new, old_entry, new_entry, out)

    if old.files.get(METADATA_FILE) != new.files.get(METADATA_FILE):
        _compare_metadata_files(old, new, old_meta, new_meta, out)

    if old.files.get(LOCK_FILE) != new.files.get(LOCK_FILE):
        _compare_locks(old, new, out)
    _compare_other_files(old, new, out)
    _compare_commits(messages, out)
    if not out.items:  # only reachable when the snapshots differ in ways not inspected
        out.add(
            K.FILES_CHANGED,
            files=stats.files_changed,
            added=stats.lines_added,
            removed=stats.lines_removed,
        )
    level = out.level
    ordered = sorted(out.items, key=lambda item: -RANK[item.level])
    return BumpDecision(
        bump=_LEVEL_NAMES[level],
        breaking=level == MAJOR,
        reasons=[r.words for r in ordered],
        details=ordered,
    )


def next_version(previous: semver.Version | None, bump: Bump) -> semver.Version:
    """The version a release with ``bump`` gets after ``previous``.

    ``None`` gives 1.0.0. Before 1.0.0 a major (breaking) bump raises the
    minor number and any other bump the patch number. After a prerelease the
    bump first finalises it, as npm does: 1.2.0-rc.1 + patch or minor = 1.2.0,
    2.0.0-rc.1 + major = 2.0.0, 1.2.3-rc.1 + minor = 1.3.0. Build metadata is
    dropped. ``none`` (nothing to release) and ``initial`` after a release
    raise ``ValueError``.
    """
    if bump == "none":
        raise ValueError("bump 'none' means nothing changed: there is no next version")
    if previous is None:
        return semver.Version(1, 0, 0)
    if bump == "initial":
        raise ValueError(f"bump 'initial' is only for a first release, not after {previous}")
    major, minor, patch = previous.major, previous.minor, previous.patch
    if major == 0:
        bump = "minor" if bump == "major" else "patch"
    if previous.prerelease:
        if bump == "patch" or (bump == "minor" and patch == 0):
            return semver.Version(major, minor, patch)
        if bump == "major" and minor == 0 and patch == 0:
            return semver.Version(major, 0, 0)
    if bump == "major":
        return semver.Version(major + 1, 0, 0)
    if bump == "minor":
        return semver.Version(major, minor + 1, 0)
    return semver.Version(major, minor, patch + 1)
