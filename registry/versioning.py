"""The semver bump of a release, computed from two snapshots of a procedure folder.

A pure function: :func:`decide_bump` compares the previous release's files
with the new ones (the entry point's signature read by ``ast``, the parsed
``metadata.json``, the other files byte for byte) and reads conventional-commit
markers from the commit messages in between. No git, no database.

The registry always calls the entry point with keyword arguments, so the
signature is judged by what a keyword caller can pass; whether a new
annotation accepts what the old one did is :mod:`registry.typecompat`'s call.
The rules, with examples, are in ``docs/versioning.md``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from typing import Any, Literal

import semver
from pydantic import BaseModel, ConfigDict, ValidationError

from registry.model import Metadata
from registry.signature import ParamSig, Signature, read_signature
from registry.snapshot import MAIN_FILE, METADATA_FILE, Snapshot
from registry.typecompat import accepts

__all__ = [
    "MAJOR",
    "MINOR",
    "PATCH",
    "Bump",
    "BumpDecision",
    "ConventionalCommit",
    "DiffStats",
    "accepts",
    "decide_bump",
    "next_version",
    "parse_conventional",
]

Bump = Literal["initial", "major", "minor", "patch", "none"]

PATCH, MINOR, MAJOR = 1, 2, 3
_LEVEL_NAMES: dict[int, Bump] = {PATCH: "patch", MINOR: "minor", MAJOR: "major"}


class DiffStats(BaseModel):
    """Line and file counts of the folder's diff (from the git store)."""

    model_config = ConfigDict(frozen=True)

    lines_added: int = 0
    lines_removed: int = 0
    files_changed: int = 0


class BumpDecision(BaseModel):
    """The computed bump, whether it breaks callers, and every reason found."""

    model_config = ConfigDict(frozen=True)

    bump: Bump
    breaking: bool
    reasons: list[str]


class ConventionalCommit(BaseModel):
    """What a commit message says about itself (conventionalcommits.org 1.0).

    ``type`` is ``None`` for a message that is not conventional, ``"merge"``
    for a merge commit and ``"revert"`` for ``git revert``'s message.
    """

    model_config = ConfigDict(frozen=True)

    type: str | None
    scope: str | None = None
    breaking: bool = False
    description: str
    breaking_note: str | None = None


# --- conventional commits ----------------------------------------------------

_CONVENTIONAL_RE = re.compile(
    r"^(?P<type>[A-Za-z]+(?:[-_][A-Za-z]+)*)"
    r"(?:\((?P<scope>[^()\r\n]*)\))?"
    r"(?P<bang>!)?:[ \t]+(?P<desc>\S.*)$"
)
_BREAKING_FOOTER_RE = re.compile(r"^BREAKING[ -]CHANGE:[ \t]*(?P<note>.*)$")
_MERGE_RE = re.compile(r"^Merge (branch|branches|pull request|remote-tracking branch|tag|commit) ")
_REVERT_RE = re.compile(r'^Revert ".*"$')


def _subject(message: str) -> str:
    for line in message.splitlines():
        if line.strip():
            return line.strip()
    return ""


def parse_conventional(message: str) -> ConventionalCommit:
    """Parse a commit message (``"subject\\n\\nbody"``) as a conventional commit.

    ``feat(scope)!: text`` gives type ``feat``, scope ``scope`` and breaking;
    a ``BREAKING CHANGE:`` or ``BREAKING-CHANGE:`` footer line marks any message
    breaking (merge commits and non-conventional text included). Merge and
    revert messages get types ``merge`` and ``revert``; other text gives type
    ``None`` with the subject as description.
    """
    subject = _subject(message)
    lines = message.splitlines()
    note: str | None = None
    breaking = False
    for i, line in enumerate(lines):
        m = _BREAKING_FOOTER_RE.match(line.strip())
        if m is None:
            continue
        breaking = True
        text = m.group("note").strip()
        if not text:  # the note may start on the next line
            text = next((rest.strip() for rest in lines[i + 1 :] if rest.strip()), "")
        note = text or None
        break
    if _MERGE_RE.match(subject):
        return ConventionalCommit(
            type="merge", breaking=breaking, description=subject, breaking_note=note
        )
    if _REVERT_RE.match(subject):
        return ConventionalCommit(
            type="revert", breaking=breaking, description=subject, breaking_note=note
        )
    m = _CONVENTIONAL_RE.match(subject)
    if m is None:
        return ConventionalCommit(
            type=None, breaking=breaking, description=subject, breaking_note=note
        )
    scope = m.group("scope")
    return ConventionalCommit(
        type=m.group("type").lower(),
        scope=scope.strip() or None if scope is not None else None,
        breaking=breaking or m.group("bang") is not None,
        description=m.group("desc").strip(),
        breaking_note=note,
    )


def _show(annotation: str | None) -> str:
    return annotation if annotation is not None else "no annotation"


# --- the decision ------------------------------------------------------------


class _Reasons:
    """Reasons with their level, deduplicated, in the order found."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []

    def add(self, level: int, text: str) -> None:
        if all(text != t for _, t in self.items):
            self.items.append((level, text))

    @property
    def level(self) -> int:
        return max((lvl for lvl, _ in self.items), default=0)


def _load_metadata(snap: Snapshot) -> Metadata | None:
    text = snap.text(METADATA_FILE)
    if text is None:
        return None
    try:
        return Metadata.model_validate_json(text)
    except (ValidationError, ValueError):
        return None


def _parses(source: str | None) -> bool:
    if source is None:
        return False
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def _compare_params(old: Signature, new: Signature, out: _Reasons) -> None:
    old_named = old.named
    new_named = new.named
    new_names = {p.name for p in new_named}
    old_names = {p.name for p in old_named}
    added = [p for p in new_named if p.name not in old_names]
    new_kwargs = new.var_keyword

    for index, p in enumerate(old_named):
        if p.name in new_names:
            continue
        renamed_to: str | None = None
        if index < len(new_named) and new_named[index] in added:
            renamed_to = new_named[index].name
        what = (
            f"parameter {p.name!r} was renamed to {renamed_to!r}"
            if renamed_to
            else f"parameter {p.name!r} was removed"
        )
        positional = next(
            (q for q in new.params if q.name == p.name and q.kind == "positional_only"), None
        )
        if new_kwargs is not None:
            out.add(PATCH, f"{what}, but **{new_kwargs.name} still accepts it (not breaking)")
        elif positional is not None:
            out.add(
                MAJOR,
                f"parameter {p.name!r} is now positional-only, and the registry passes "
                "arguments by keyword",
            )
        else:
            out.add(MAJOR, what)

    for p in new_named:
        before = old.param(p.name)
        if before is None or before not in old_named:
            if p.has_default:
                out.add(MINOR, f"parameter {p.name!r} is new and optional (default {p.default})")
            else:
                out.add(MAJOR, f"parameter {p.name!r} is new and required")
            continue
        _compare_param(before, p, out)

    # Already reported above (removed for keyword callers), or blocking before too.
    old_blocking = {q.name for q in old.params if q.kind == "positional_only" and not q.has_default}
    old_blocking |= old_names
    for p in new.params:
        if p.kind == "positional_only" and not p.has_default and p.name not in old_blocking:
            out.add(
                MAJOR,
                f"parameter {p.name!r} is positional-only and required, but the registry "
                "passes arguments by keyword",
            )

    old_kwargs = old.var_keyword
    if old_kwargs is not None and new_kwargs is None:
        out.add(MAJOR, f"**{old_kwargs.name} was dropped: extra keyword arguments are refused")
    elif old_kwargs is None and new_kwargs is not None:
        out.add(MINOR, f"**{new_kwargs.name} is new: extra keyword arguments are accepted")
    elif old_kwargs is not None and new_kwargs is not None:
        _compare_annotation(f"**{new_kwargs.name}", old_kwargs, new_kwargs, out)


def _compare_param(old: ParamSig, new: ParamSig, out: _Reasons) -> None:
    name = new.name
    if old.has_default and not new.has_default:
        out.add(
            MAJOR, f"parameter {name!r} is now required (its default {old.default} was removed)"
        )
    elif not old.has_default and new.has_default:
        out.add(MINOR, f"parameter {name!r} is now optional (default {new.default})")
    elif old.default != new.default:
        out.add(MAJOR, f"default of {name!r} changed from {old.default} to {new.default}")
    if old.kind == "positional_or_keyword" and new.kind == "keyword_only":
        out.add(
            PATCH,
            f"parameter {name!r} is now keyword-only (the registry passes keywords: not breaking)",
        )
    _compare_annotation(repr(name), old, new, out)


def _compare_annotation(label: str, old: ParamSig, new: ParamSig, out: _Reasons) -> None:
    if old.annotation == new.annotation:
        return
    before, after = _show(old.annotation), _show(new.annotation)
    wider = accepts(new.annotation, old.annotation)
    narrower = accepts(old.annotation, new.annotation)
    if wider and narrower:
        out.add(PATCH, f"annotation of {label} rewritten from {before} to {after} (same type)")
    elif wider:
        out.add(MINOR, f"annotation of {label} widened from {before} to {after}")
    elif narrower:
        out.add(
            MAJOR,
            f"annotation of {label} narrowed from {before} to {after}: "
            "some values accepted before are refused",
        )
    else:
        out.add(
            MAJOR,
            f"annotation of {label} changed from {before} to {after}: "
            "not every value accepted before is accepted",
        )


def _compare_returns(old: Signature, new: Signature, out: _Reasons) -> None:
    if old.returns == new.returns:
        return
    before, after = _show(old.returns), _show(new.returns)
    narrower = accepts(old.returns, new.returns)
    wider = accepts(new.returns, old.returns)
    if narrower and wider:
        out.add(PATCH, f"return annotation rewritten from {before} to {after} (same type)")
    elif narrower and old.returns is None:
        out.add(PATCH, f"return annotation {after} added (a narrowing)")
    elif narrower:
        out.add(PATCH, f"return annotation narrowed from {before} to {after}")
    else:
        out.add(
            MAJOR,
            f"return annotation changed from {before} to {after}: "
            "callers may receive values they did not before",
        )


def _compare_signatures(old: Signature, new: Signature, out: _Reasons) -> None:
    if new.is_async and not old.is_async:
        out.add(MAJOR, f"entry point {new.name!r} is now async, no longer a plain function")
    elif old.is_async and not new.is_async:
        out.add(PATCH, f"entry point {new.name!r} is no longer async")
    _compare_params(old, new, out)
    _compare_returns(old, new, out)


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
    old: Snapshot, new: Snapshot, old_entry: str, new_entry: str, out: _Reasons
) -> None:
    old_src, new_src = old.text(MAIN_FILE), new.text(MAIN_FILE)
    if old.files.get(MAIN_FILE) == new.files.get(MAIN_FILE) and old_entry == new_entry:
        return
    if new_src is None and MAIN_FILE not in new.files:
        out.add(MAJOR, f"{MAIN_FILE} was removed, so entry point {new_entry!r} is gone")
        return
    if not _parses(new_src):
        out.add(MAJOR, f"{MAIN_FILE} does not parse, so entry point {new_entry!r} cannot be called")
        return
    assert new_src is not None
    new_sig = read_signature(new_src, new_entry)
    old_sig = read_signature(old_src, old_entry) if old_src is not None else None
    if new_sig is None:
        out.add(MAJOR, f"entry point {new_entry!r} was removed from {MAIN_FILE}")
        return
    if old_sig is None:
        out.add(
            MINOR,
            f"entry point {new_entry!r} is new (the previous release had none that could be read)",
        )
        return
    before = len(out.items)
    _compare_signatures(old_sig, new_sig, out)
    signature_changed = len(out.items) > before
    assert old_src is not None
    old_body, old_doc = _strip_entry(old_src, old_entry)
    new_body, new_doc = _strip_entry(new_src, new_entry)
    body_changed = old_body.replace(f"name='{old_entry}'", f"name='{new_entry}'") != new_body
    if body_changed:
        out.add(PATCH, f"body of {MAIN_FILE} changed")
    if old_doc != new_doc:
        out.add(PATCH, f"docstring of {new_entry!r} changed")
    explained = body_changed or signature_changed or old_doc != new_doc or old_entry != new_entry
    if not explained and old_src != new_src:
        out.add(PATCH, f"comments or formatting of {MAIN_FILE} changed")
    if old.files.get(MAIN_FILE) != new.files.get(MAIN_FILE) and old_src == new_src:
        out.add(PATCH, f"file mode of {MAIN_FILE} changed")


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


def _compare_metadata(old: Metadata, new: Metadata, signatures_known: bool, out: _Reasons) -> None:
    old_params = {p.name: p for p in old.parameters}
    for p in new.parameters:
        q = old_params.get(p.name)
        if q is None:
            if not signatures_known:
                level, how = (MAJOR, "required") if p.required else (MINOR, "optional")
                out.add(level, f"parameter {p.name!r} is new and {how} in {METADATA_FILE}")
            continue
        if p.type != q.type:
            if _metadata_type_accepts(p.type, q.type):
                out.add(
                    MINOR,
                    f"type of parameter {p.name!r} in {METADATA_FILE} widened "
                    f"from {q.type} to {p.type}",
                )
            else:
                out.add(
                    MAJOR,
                    f"type of parameter {p.name!r} in {METADATA_FILE} changed "
                    f"from {q.type} to {p.type}",
                )
        if p.required and not q.required:
            out.add(MAJOR, f"parameter {p.name!r} is now required in {METADATA_FILE}")
        elif q.required and not p.required:
            out.add(MINOR, f"parameter {p.name!r} is no longer required in {METADATA_FILE}")
        elif p.default != q.default:
            out.add(
                MAJOR,
                f"default of {p.name!r} in {METADATA_FILE} changed "
                f"from {_short(q.default)} to {_short(p.default)}",
            )
        if p.description != q.description:
            out.add(PATCH, f"description of parameter {p.name!r} in {METADATA_FILE} changed")
    if not signatures_known:
        new_names = {p.name for p in new.parameters}
        for name in old_params:
            if name not in new_names:
                out.add(MAJOR, f"parameter {name!r} was removed from {METADATA_FILE}")

    _compare_returns_metadata(old, new, out)

    old_examples = [_short(e.model_dump(mode="json")) for e in old.examples]
    new_examples = [_short(e.model_dump(mode="json")) for e in new.examples]
    for example, text in zip(new.examples, new_examples, strict=True):
        if text not in old_examples:
            label = repr(example.description) if example.description else text
            out.add(MINOR, f"new example in {METADATA_FILE}: {label}")
    for example, text in zip(old.examples, old_examples, strict=True):
        if text not in new_examples:
            label = repr(example.description) if example.description else text
            out.add(PATCH, f"example removed from {METADATA_FILE}: {label}")

    if old.entry_point != new.entry_point:
        out.add(
            PATCH,
            f"entry point in {METADATA_FILE} changed from {old.entry_point!r} "
            f"to {new.entry_point!r}",
        )
    handled = {"parameters", "returns", "examples", "entry_point", "schema_"}
    old_data = old.model_dump(mode="json")
    new_data = new.model_dump(mode="json")
    for name in Metadata.model_fields:
        if name in handled or old_data.get(name) == new_data.get(name):
            continue
        before, after = old_data.get(name), new_data.get(name)
        if isinstance(before, _SCALARS) and isinstance(after, _SCALARS):
            out.add(
                PATCH,
                f"{name} in {METADATA_FILE} changed from {_short(before)} to {_short(after)}",
            )
        else:
            out.add(PATCH, f"{name} in {METADATA_FILE} changed")


def _compare_returns_metadata(old: Metadata, new: Metadata, out: _Reasons) -> None:
    before, after = old.returns, new.returns
    if before.type != after.type:
        if _metadata_type_accepts(before.type, after.type):
            out.add(
                PATCH,
                f"return type in {METADATA_FILE} narrowed from {before.type} to {after.type}",
            )
        else:
            out.add(
                MAJOR,
                f"return type in {METADATA_FILE} changed from {before.type} to {after.type}: "
                "callers may receive values they did not before",
            )
    for key in after.fields:
        if key not in before.fields:
            out.add(MINOR, f"new output field {key!r} in {METADATA_FILE}")
        elif before.fields[key] != after.fields[key]:
            out.add(PATCH, f"description of output field {key!r} in {METADATA_FILE} changed")
    for key in before.fields:
        if key not in after.fields:
            out.add(MAJOR, f"output field {key!r} was removed from {METADATA_FILE}")
    if before.description != after.description:
        out.add(PATCH, f"description of the result in {METADATA_FILE} changed")


def _compare_other_files(old: Snapshot, new: Snapshot, out: _Reasons) -> None:
    for name in sorted(set(old.files) | set(new.files)):
        if name in (MAIN_FILE, METADATA_FILE):
            continue
        before, after = old.files.get(name), new.files.get(name)
        if before == after:
            continue
        if before is None:
            out.add(PATCH, f"file {name!r} added")
        elif after is None:
            out.add(PATCH, f"file {name!r} removed")
        elif before.data == after.data:
            out.add(PATCH, f"file mode of {name!r} changed")
        else:
            out.add(PATCH, f"file {name!r} changed")


def _compare_commits(messages: Sequence[str], out: _Reasons) -> None:
    for message in messages:
        commit = parse_conventional(message)
        subject = _subject(message)
        header = _CONVENTIONAL_RE.match(subject)
        if commit.breaking and commit.breaking_note is not None:
            out.add(
                MAJOR,
                f'commit "{subject}" has a BREAKING CHANGE footer: {commit.breaking_note}',
            )
        elif commit.breaking and header is not None and header.group("bang"):
            out.add(MAJOR, f'commit "{subject}" is marked breaking (!)')
        elif commit.breaking:
            out.add(MAJOR, f'commit "{subject}" has a BREAKING CHANGE footer')
        elif commit.type == "feat":
            out.add(MINOR, f'commit "{subject}" adds a feature (feat)')
        elif commit.type == "fix":
            out.add(PATCH, f'commit "{subject}" is a fix')


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
        return BumpDecision(bump="initial", breaking=False, reasons=["first release"])
    if (old.tree_id is not None and old.tree_id == new.tree_id) or old.files == new.files:
        return BumpDecision(bump="none", breaking=False, reasons=[])

    out = _Reasons()
    old_meta, new_meta = _load_metadata(old), _load_metadata(new)
    old_entry = old_meta.entry_point if old_meta is not None else "main"
    new_entry = new_meta.entry_point if new_meta is not None else "main"
    _compare_main(old, new, old_entry, new_entry, out)

    if old.files.get(METADATA_FILE) != new.files.get(METADATA_FILE):
        if old_meta is not None and new_meta is not None:
            old_src, new_src = old.text(MAIN_FILE), new.text(MAIN_FILE)
            known = (
                old_src is not None
                and new_src is not None
                and read_signature(old_src, old_entry) is not None
                and read_signature(new_src, new_entry) is not None
            )
            before = len(out.items)
            _compare_metadata(old_meta, new_meta, known, out)
            if len(out.items) == before:
                out.add(PATCH, f"formatting of {METADATA_FILE} changed")
        elif new_meta is None:
            out.add(PATCH, f"{METADATA_FILE} could not be read as metadata; fields not compared")
        else:
            out.add(
                PATCH,
                f"{METADATA_FILE} changed (the previous release's could not be read as "
                "metadata, so fields were not compared)",
            )

    _compare_other_files(old, new, out)
    _compare_commits(messages, out)
    if not out.items:  # only reachable when the snapshots differ in ways not inspected
        out.add(
            PATCH,
            f"{stats.files_changed} file(s) changed "
            f"(+{stats.lines_added} -{stats.lines_removed} lines)",
        )
    level = out.level
    ordered = sorted(out.items, key=lambda item: -item[0])
    return BumpDecision(
        bump=_LEVEL_NAMES[level], breaking=level == MAJOR, reasons=[t for _, t in ordered]
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
