"""Bump reasons as kinds: what changed, as an enum member, with its words derived.

:func:`registry.core.versioning.decide_bump` returns one :class:`Reason` per change
it finds. A reason is a :class:`ReasonKind` (what a test asserts and a tool
reads) plus the values it names (a parameter, two annotations, a commit
subject); its level and its words come from the kind, so the same change is
always worded the same way. Pure: no git, no database.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from registry.core.pylock import LOCK_FILE
from registry.core.snapshot import MAIN_FILE, METADATA_FILE

Level = Literal["major", "minor", "patch", "initial"]

# Words for "the level does not change, because the registry calls with keywords".
KEYWORDS = "callers use keywords, so not breaking"


class ReasonKind(StrEnum):
    """Every kind of change a bump reason can name (see docs/versioning.md)."""

    FIRST_RELEASE = "first-release"
    MIGRATED_FROM_LEGACY = "migrated-from-legacy"
    # main.py and the entry point
    MAIN_REMOVED = "main-removed"
    MAIN_UNPARSABLE = "main-unparsable"
    ENTRY_POINT_REMOVED = "entry-point-removed"
    ENTRY_POINT_NEW = "entry-point-new"
    ENTRY_POINT_NOW_ASYNC = "entry-point-now-async"
    ENTRY_POINT_NO_LONGER_ASYNC = "entry-point-no-longer-async"
    SIGNATURE_CHANGED = "signature-changed"
    BODY_CHANGED = "body-changed"
    DOCSTRING_CHANGED = "docstring-changed"
    FORMATTING_CHANGED = "formatting-changed"
    MAIN_MODE_CHANGED = "main-mode-changed"
    # parameters the registry can pass (by keyword)
    PARAMETER_REMOVED = "parameter-removed"
    PARAMETER_RENAMED = "parameter-renamed"
    PARAMETER_REMOVED_KWARGS_ACCEPT = "parameter-removed-kwargs-accept"
    PARAMETER_RENAMED_KWARGS_ACCEPT = "parameter-renamed-kwargs-accept"
    PARAMETER_NOW_VAR_POSITIONAL = "parameter-now-var-positional"
    PARAMETER_ADDED_REQUIRED = "parameter-added-required"
    PARAMETER_ADDED_OPTIONAL = "parameter-added-optional"
    PARAMETER_NOW_REQUIRED = "parameter-now-required"
    PARAMETER_NOW_OPTIONAL = "parameter-now-optional"
    PARAMETER_CHANGED_DEFAULT = "parameter-changed-default"
    PARAMETERS_REORDERED = "parameters-reordered"
    KEYWORD_ONLY_REORDERED = "keyword-only-reordered"
    PARAMETER_NOW_KEYWORD_ONLY = "parameter-now-keyword-only"
    PARAMETER_NO_LONGER_KEYWORD_ONLY = "parameter-no-longer-keyword-only"
    # positional-only parameters (the registry never passes them)
    PARAMETER_NOW_POSITIONAL_ONLY = "parameter-now-positional-only"
    PARAMETER_NO_LONGER_POSITIONAL_ONLY = "parameter-no-longer-positional-only"
    POSITIONAL_ONLY_ADDED_REQUIRED = "positional-only-added-required"
    POSITIONAL_ONLY_CHANGED = "positional-only-changed"
    # *args and **kwargs
    VAR_POSITIONAL_ADDED = "var-positional-added"
    VAR_POSITIONAL_REMOVED = "var-positional-removed"
    VAR_POSITIONAL_CHANGED = "var-positional-changed"
    VAR_KEYWORD_ADDED = "var-keyword-added"
    VAR_KEYWORD_REMOVED = "var-keyword-removed"
    VAR_KEYWORD_RENAMED = "var-keyword-renamed"
    # annotations
    ANNOTATION_REWRITTEN = "annotation-rewritten"
    ANNOTATION_WIDENED = "annotation-widened"
    ANNOTATION_NARROWED = "annotation-narrowed"
    ANNOTATION_CHANGED = "annotation-changed"
    RETURN_REWRITTEN = "return-rewritten"
    RETURN_ADDED = "return-added"
    RETURN_NARROWED = "return-narrowed"
    RETURN_CHANGED = "return-changed"
    # metadata.json
    METADATA_PARAMETER_ADDED_REQUIRED = "metadata-parameter-added-required"
    METADATA_PARAMETER_ADDED_OPTIONAL = "metadata-parameter-added-optional"
    METADATA_PARAMETER_REMOVED = "metadata-parameter-removed"
    METADATA_TYPE_WIDENED = "metadata-type-widened"
    METADATA_TYPE_CHANGED = "metadata-type-changed"
    METADATA_NOW_REQUIRED = "metadata-now-required"
    METADATA_NO_LONGER_REQUIRED = "metadata-no-longer-required"
    METADATA_DEFAULT_CHANGED = "metadata-default-changed"
    METADATA_PARAMETER_DESCRIPTION = "metadata-parameter-description"
    METADATA_RETURN_NARROWED = "metadata-return-narrowed"
    METADATA_RETURN_CHANGED = "metadata-return-changed"
    METADATA_OUTPUT_FIELD_ADDED = "metadata-output-field-added"
    METADATA_OUTPUT_FIELD_REMOVED = "metadata-output-field-removed"
    METADATA_OUTPUT_FIELD_DESCRIPTION = "metadata-output-field-description"
    METADATA_RESULT_DESCRIPTION = "metadata-result-description"
    METADATA_EXAMPLE_ADDED = "metadata-example-added"
    METADATA_EXAMPLE_REMOVED = "metadata-example-removed"
    METADATA_ENTRY_POINT = "metadata-entry-point"
    METADATA_FIELD_CHANGED = "metadata-field-changed"
    METADATA_FIELD_EDITED = "metadata-field-edited"
    METADATA_FORMATTING = "metadata-formatting"
    METADATA_UNREADABLE = "metadata-unreadable"
    METADATA_OLD_UNREADABLE = "metadata-old-unreadable"
    # requirements and pylock.toml
    REQUIREMENT_ADDED = "requirement-added"
    REQUIREMENT_REMOVED = "requirement-removed"
    REQUIREMENT_CHANGED = "requirement-changed"
    LOCKED_ADDED = "locked-added"
    LOCKED_REMOVED = "locked-removed"
    LOCKED_CHANGED = "locked-changed"
    LOCK_UNREADABLE = "lock-unreadable"
    LOCK_REWRITTEN = "lock-rewritten"
    # network
    NETWORK_WIDENED = "network-widened"
    NETWORK_NARROWED = "network-narrowed"
    # other files
    FILE_ADDED = "file-added"
    FILE_REMOVED = "file-removed"
    FILE_CHANGED = "file-changed"
    FILE_MODE_CHANGED = "file-mode-changed"
    FILES_CHANGED = "files-changed"
    # commits between the releases
    COMMIT_BREAKING_NOTE = "commit-breaking-note"
    COMMIT_BREAKING_BANG = "commit-breaking-bang"
    COMMIT_BREAKING_FOOTER = "commit-breaking-footer"
    COMMIT_FEATURE = "commit-feature"
    COMMIT_FIX = "commit-fix"
    SQUASHED_BREAKING_NOTE = "squashed-breaking-note"
    SQUASHED_BREAKING_BANG = "squashed-breaking-bang"
    SQUASHED_FEATURE = "squashed-feature"
    SQUASHED_FIX = "squashed-fix"


K = ReasonKind
_M, _META, _LOCK = MAIN_FILE, METADATA_FILE, LOCK_FILE

# kind -> (level, words). Words are str.format templates over the reason's values.
_TEMPLATES: dict[ReasonKind, tuple[Level, str]] = {
    K.FIRST_RELEASE: ("initial", "first release"),
    K.MIGRATED_FROM_LEGACY: ("initial", "migrated from legacy"),
    K.MAIN_REMOVED: ("major", f"{_M} was removed, so entry point {{entry!r}} is gone"),
    K.MAIN_UNPARSABLE: (
        "major", f"{_M} does not parse, so entry point {{entry!r}} cannot be called"),
    K.ENTRY_POINT_REMOVED: ("major", f"entry point {{entry!r}} was removed from {_M}"),
    K.ENTRY_POINT_NEW: (
        "minor", "entry point {entry!r} is new (the previous release had none that could be read)"),
    K.ENTRY_POINT_NOW_ASYNC: (
        "major", "entry point {entry!r} is now async, no longer a plain function"),
    K.ENTRY_POINT_NO_LONGER_ASYNC: ("patch", "entry point {entry!r} is no longer async"),
    K.SIGNATURE_CHANGED: (
        "patch", "signature of {entry!r} changed from ({old}) to ({new}); " + KEYWORDS),
    K.BODY_CHANGED: ("patch", f"body of {_M} changed"),
    K.DOCSTRING_CHANGED: ("patch", "docstring of {entry!r} changed"),
    K.FORMATTING_CHANGED: ("patch", f"comments or formatting of {_M} changed"),
    K.MAIN_MODE_CHANGED: ("patch", f"file mode of {_M} changed"),
    K.PARAMETER_REMOVED: ("major", "parameter {name!r} was removed"),
    K.PARAMETER_RENAMED: ("major", "parameter {name!r} was renamed to {new!r}"),
    K.PARAMETER_REMOVED_KWARGS_ACCEPT: (
        "patch", "parameter {name!r} was removed, but **{kwargs} still accepts it (not breaking)"),
    K.PARAMETER_RENAMED_KWARGS_ACCEPT: (
        "patch",
        "parameter {name!r} was renamed to {new!r}, but **{kwargs} still accepts it "
        "(not breaking)"),
    K.PARAMETER_NOW_VAR_POSITIONAL: (
        "major", "parameter {name!r} became *{var}, which keyword callers cannot fill"),
    K.PARAMETER_ADDED_REQUIRED: ("major", "parameter {name!r} is new and required"),
    K.PARAMETER_ADDED_OPTIONAL: (
        "minor", "parameter {name!r} is new and optional (default {default})"),
    K.PARAMETER_NOW_REQUIRED: (
        "major", "parameter {name!r} is now required (its default {default} was removed)"),
    K.PARAMETER_NOW_OPTIONAL: ("minor", "parameter {name!r} is now optional (default {default})"),
    K.PARAMETER_CHANGED_DEFAULT: ("major", "default of {name!r} changed from {old} to {new}"),
    K.PARAMETERS_REORDERED: (
        "patch", "parameters reordered from ({old}) to ({new}); " + KEYWORDS),
    K.KEYWORD_ONLY_REORDERED: (
        "patch", "keyword-only parameters reordered from ({old}) to ({new}); " + KEYWORDS),
    K.PARAMETER_NOW_KEYWORD_ONLY: (
        "patch",
        "parameter {name!r} is now keyword-only (the registry passes keywords: not breaking)"),
    K.PARAMETER_NO_LONGER_KEYWORD_ONLY: (
        "patch", "parameter {name!r} is no longer keyword-only; " + KEYWORDS),
    K.PARAMETER_NOW_POSITIONAL_ONLY: (
        "major",
        "parameter {name!r} is now positional-only, and the registry passes arguments by keyword"),
    K.PARAMETER_NO_LONGER_POSITIONAL_ONLY: (
        "minor",
        "parameter {name!r} is no longer positional-only: callers can now pass it by keyword"),
    K.POSITIONAL_ONLY_ADDED_REQUIRED: (
        "major",
        "parameter {name!r} is positional-only and required, but the registry passes "
        "arguments by keyword"),
    K.POSITIONAL_ONLY_CHANGED: (
        "patch",
        "positional-only parameters changed from ({old}) to ({new}); callers use keywords, "
        "so they never pass them: not breaking"),
    K.VAR_POSITIONAL_ADDED: ("patch", "*{name} was added; " + KEYWORDS),
    K.VAR_POSITIONAL_REMOVED: ("patch", "*{name} was removed; " + KEYWORDS),
    K.VAR_POSITIONAL_CHANGED: ("patch", "{old} changed to {new}; " + KEYWORDS),
    K.VAR_KEYWORD_ADDED: ("minor", "**{name} is new: extra keyword arguments are accepted"),
    K.VAR_KEYWORD_REMOVED: (
        "major", "**{name} was dropped: extra keyword arguments are refused"),
    K.VAR_KEYWORD_RENAMED: ("patch", "**{old} was renamed to **{new}; " + KEYWORDS),
    K.ANNOTATION_REWRITTEN: (
        "patch", "annotation of {label} rewritten from {old} to {new} (same type)"),
    K.ANNOTATION_WIDENED: ("minor", "annotation of {label} widened from {old} to {new}"),
    K.ANNOTATION_NARROWED: (
        "major",
        "annotation of {label} narrowed from {old} to {new}: "
        "some values accepted before are refused"),
    K.ANNOTATION_CHANGED: (
        "major",
        "annotation of {label} changed from {old} to {new}: "
        "not every value accepted before is accepted"),
    K.RETURN_REWRITTEN: ("patch", "return annotation rewritten from {old} to {new} (same type)"),
    K.RETURN_ADDED: ("patch", "return annotation {new} added (a narrowing)"),
    K.RETURN_NARROWED: ("patch", "return annotation narrowed from {old} to {new}"),
    K.RETURN_CHANGED: (
        "major",
        "return annotation changed from {old} to {new}: "
        "callers may receive values they did not before"),
    K.METADATA_PARAMETER_ADDED_REQUIRED: (
        "major", f"parameter {{name!r}} is new and required in {_META}"),
    K.METADATA_PARAMETER_ADDED_OPTIONAL: (
        "minor", f"parameter {{name!r}} is new and optional in {_META}"),
    K.METADATA_PARAMETER_REMOVED: ("major", f"parameter {{name!r}} was removed from {_META}"),
    K.METADATA_TYPE_WIDENED: (
        "minor", f"type of parameter {{name!r}} in {_META} widened from {{old}} to {{new}}"),
    K.METADATA_TYPE_CHANGED: (
        "major", f"type of parameter {{name!r}} in {_META} changed from {{old}} to {{new}}"),
    K.METADATA_NOW_REQUIRED: ("major", f"parameter {{name!r}} is now required in {_META}"),
    K.METADATA_NO_LONGER_REQUIRED: (
        "minor", f"parameter {{name!r}} is no longer required in {_META}"),
    K.METADATA_DEFAULT_CHANGED: (
        "major", f"default of {{name!r}} in {_META} changed from {{old}} to {{new}}"),
    K.METADATA_PARAMETER_DESCRIPTION: (
        "patch", f"description of parameter {{name!r}} in {_META} changed"),
    K.METADATA_RETURN_NARROWED: (
        "patch", f"return type in {_META} narrowed from {{old}} to {{new}}"),
    K.METADATA_RETURN_CHANGED: (
        "major",
        f"return type in {_META} changed from {{old}} to {{new}}: "
        "callers may receive values they did not before"),
    K.METADATA_OUTPUT_FIELD_ADDED: ("minor", f"new output field {{name!r}} in {_META}"),
    K.METADATA_OUTPUT_FIELD_REMOVED: (
        "major", f"output field {{name!r}} was removed from {_META}"),
    K.METADATA_OUTPUT_FIELD_DESCRIPTION: (
        "patch", f"description of output field {{name!r}} in {_META} changed"),
    K.METADATA_RESULT_DESCRIPTION: ("patch", f"description of the result in {_META} changed"),
    K.METADATA_EXAMPLE_ADDED: ("minor", f"new example in {_META}: {{label}}"),
    K.METADATA_EXAMPLE_REMOVED: ("patch", f"example removed from {_META}: {{label}}"),
    K.METADATA_ENTRY_POINT: (
        "patch", f"entry point in {_META} changed from {{old!r}} to {{new!r}}"),
    K.METADATA_FIELD_CHANGED: (
        "patch", f"{{field}} in {_META} changed from {{old}} to {{new}}"),
    K.METADATA_FIELD_EDITED: ("patch", f"{{field}} in {_META} changed"),
    K.METADATA_FORMATTING: ("patch", f"formatting of {_META} changed"),
    K.METADATA_UNREADABLE: (
        "patch", f"{_META} could not be read as metadata; fields not compared"),
    K.METADATA_OLD_UNREADABLE: (
        "patch",
        f"{_META} changed (the previous release's could not be read as metadata, "
        "so fields were not compared)"),
    K.REQUIREMENT_ADDED: ("patch", f"requirement {{requirement!r}} added to {_META}"),
    K.REQUIREMENT_REMOVED: ("patch", f"requirement {{requirement!r}} removed from {_META}"),
    K.REQUIREMENT_CHANGED: (
        "patch", f"requirement of {{name}} in {_META} changed from {{old!r}} to {{new!r}}"),
    K.LOCKED_ADDED: ("patch", f"{_LOCK} adds {{name}} {{new}}"),
    K.LOCKED_REMOVED: ("patch", f"{_LOCK} no longer pins {{name}} (was {{old}})"),
    K.LOCKED_CHANGED: ("patch", f"{_LOCK} pins {{name}} {{new}} instead of {{old}}"),
    K.LOCK_UNREADABLE: ("patch", f"{_LOCK} changed but could not be read as a lock"),
    K.LOCK_REWRITTEN: ("patch", f"{_LOCK} rewritten (same distributions and versions)"),
    K.NETWORK_WIDENED: ("minor", f"network access widened: {_META} now allows {{targets}}"),
    K.NETWORK_NARROWED: (
        "patch", f"network access narrowed: {_META} no longer allows {{targets}}"),
    K.FILE_ADDED: ("patch", "file {name!r} added"),
    K.FILE_REMOVED: ("patch", "file {name!r} removed"),
    K.FILE_CHANGED: ("patch", "file {name!r} changed"),
    K.FILE_MODE_CHANGED: ("patch", "file mode of {name!r} changed"),
    K.FILES_CHANGED: ("patch", "{files} file(s) changed (+{added} -{removed} lines)"),
    K.COMMIT_BREAKING_NOTE: (
        "major", 'commit "{subject}" has a BREAKING CHANGE footer: {note}'),
    K.COMMIT_BREAKING_BANG: ("major", 'commit "{subject}" is marked breaking (!)'),
    K.COMMIT_BREAKING_FOOTER: ("major", 'commit "{subject}" has a BREAKING CHANGE footer'),
    K.COMMIT_FEATURE: ("minor", 'commit "{subject}" adds a feature (feat)'),
    K.COMMIT_FIX: ("patch", 'commit "{subject}" is a fix'),
    K.SQUASHED_BREAKING_NOTE: (
        "major",
        'squashed commit "{header}" (in "{subject}") has a BREAKING CHANGE footer: {note}'),
    K.SQUASHED_BREAKING_BANG: (
        "major", 'squashed commit "{header}" (in "{subject}") is marked breaking (!)'),
    K.SQUASHED_FEATURE: (
        "minor", 'squashed commit "{header}" (in "{subject}") adds a feature (feat)'),
    K.SQUASHED_FIX: ("patch", 'squashed commit "{header}" (in "{subject}") is a fix'),
}  # fmt: skip


class Reason(BaseModel):
    """One reason for a bump: its kind and the values its words name."""

    model_config = ConfigDict(frozen=True)

    kind: ReasonKind
    values: dict[str, str] = Field(default_factory=dict)

    @property
    def level(self) -> Level:
        """``major``, ``minor``, ``patch`` (or ``initial``): fixed by the kind."""
        return _TEMPLATES[self.kind][0]

    @property
    def words(self) -> str:
        """The reason as a reviewer reads it (and as the tag's ``Reason:`` trailer says)."""
        return _TEMPLATES[self.kind][1].format(**self.values)

    def __str__(self) -> str:
        return self.words


def reason(kind: ReasonKind, **values: object) -> Reason:
    """A :class:`Reason` of ``kind``; ``values`` are turned into text."""
    return Reason(kind=kind, values={k: str(v) for k, v in values.items()})


def level_of(kind: ReasonKind) -> Level:
    """The level a kind always has."""
    return _TEMPLATES[kind][0]


# How severe each level is: the bump is the most severe level any reason reaches.
RANK: dict[Level, int] = {"initial": 0, "patch": 1, "minor": 2, "major": 3}


class Reasons:
    """Reasons in the order found, deduplicated by their words (what the bump rules fill)."""

    def __init__(self) -> None:
        self.items: list[Reason] = []

    def add(self, kind: ReasonKind, **values: object) -> None:
        """Add a reason of ``kind`` unless one with the same words is already there."""
        found = reason(kind, **values)
        if all(found.words != r.words for r in self.items):
            self.items.append(found)

    @property
    def level(self) -> int:
        """The :data:`RANK` of the most severe reason (0 with none)."""
        return max((RANK[r.level] for r in self.items), default=0)
