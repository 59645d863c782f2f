"""The model of ``metadata.json``: what a procedure's code cannot say about itself.

The model is strict (``extra="forbid"``) and versioned by ``schema_version``;
its JSON Schema is what ``procreg schema`` prints and what every
``metadata.json`` written by the tool names with ``$schema``.
No version number lives here: versions are git tags.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from registry.core.ids import ID_PATTERN
from registry.core.network import NetworkAccess

SCHEMA_VERSION = 1
SCHEMA_ID = "https://procreg.dev/schemas/metadata-v1.json"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

ParamType = Literal[
    "string", "integer", "number", "boolean", "array", "object", "file", "directory", "any"
]
Status = Literal["active", "deprecated"]
Band = Literal["approved", "review", "expert"]

# The Python annotation each parameter type stands for; the validator checks
# the entry point's annotations against these when they are present.
PYTHON_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("str",),
    "integer": ("int",),
    "number": ("float", "int", "int | float", "float | int"),
    "boolean": ("bool",),
    "array": ("list", "tuple", "Sequence", "Iterable"),
    "object": ("dict", "Mapping"),
    "file": ("str", "Path"),
    "directory": ("str", "Path"),
    "any": ("Any", "object"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Parameter(_Strict):
    """A keyword parameter of the entry point."""

    name: str = Field(pattern=IDENTIFIER_PATTERN, max_length=100)
    type: ParamType = "string"
    description: str = ""
    required: bool = True
    default: Any = None

    @model_validator(mode="after")
    def _required_has_no_default(self) -> Parameter:
        if self.required and self.default is not None:
            raise ValueError(
                f"parameter {self.name!r} is required but has a default; "
                "set required to false or remove the default"
            )
        return self


class Returns(_Strict):
    """What the entry point returns (JSON)."""

    type: ParamType = "any"
    description: str = ""
    fields: dict[str, str] = Field(
        default_factory=dict, description="Named fields of an object result, with their meaning."
    )


class Example(_Strict):
    """A contract test: calling the entry point with ``input`` returns ``output``."""

    description: str = ""
    input: dict[str, Any] = Field(default_factory=dict)
    output: Any = None


class Step(_Strict):
    """One step of a procedure's plan (kept from legacy procedures)."""

    description: str
    kind: Literal["note", "shell", "call"] = "note"
    command: str | None = None


class Limits(_Strict):
    """Resource limits a run of this procedure gets."""

    timeout_s: float = Field(default=10.0, gt=0, le=3600)
    memory_mb: int = Field(default=256, ge=16, le=16384)


class Confidence(_Strict):
    """How far generated code can be trusted (migrated procedures)."""

    score: float = Field(ge=0.0, le=1.0)
    band: Band
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _band_matches_score(self) -> Confidence:
        if self.band != band_for(self.score):
            raise ValueError(
                f"band {self.band!r} does not match score {self.score}: expected "
                f"{band_for(self.score)!r} (above 0.8 approved, 0.5 to 0.8 review, "
                "below 0.5 expert)"
            )
        return self


class Source(_Strict):
    """Where a procedure came from."""

    kind: Literal["handwritten", "migrated", "generated"] = "handwritten"
    system: str | None = None
    legacy_id: str | None = None
    generator: str | None = None


class Metadata(_Strict):
    """The contents of ``procedures/<id>/metadata.json``."""

    schema_: str | None = Field(default=SCHEMA_ID, alias="$schema")
    schema_version: Literal[1] = 1
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    category: str = Field(default="general", min_length=1, max_length=100)
    tags: list[str] = Field(default_factory=list)
    entry_point: str = Field(default="main", pattern=IDENTIFIER_PATTERN)
    parameters: list[Parameter] = Field(default_factory=list)
    returns: Returns = Field(default_factory=Returns)
    examples: list[Example] = Field(default_factory=list)
    preconditions: list[str] = Field(default_factory=list)
    postconditions: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    author: str | None = None
    status: Status = "active"
    limits: Limits = Field(default_factory=Limits)
    requirements: list[str] = Field(
        default_factory=list,
        description="Third-party distributions the code needs, as PEP 508 strings "
        '(e.g. "httpx>=0.27,<1"); `procreg lock ID` pins them in pylock.toml.',
    )
    retries: int = Field(
        default=0,
        ge=0,
        le=10,
        description="How often a queued run that failed is run again (default 0: never). "
        "A worker that died mid-run is always replaced, whatever this says.",
    )
    confidence: Confidence | None = None
    source: Source = Field(default_factory=Source)
    network: NetworkAccess | None = Field(
        default=None,
        description="The host:port pairs a run may reach (through procreg's filtering proxy); "
        "without it a run has no network at all.",
    )
    legacy: dict[str, Any] | None = Field(
        default=None,
        description="A migrated procedure's legacy row and parameter rows, verbatim.",
    )

    @field_validator("tags")
    @classmethod
    def _tags_are_words(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not tag or len(tag) > 50 or tag != tag.strip():
                raise ValueError(f"tag {tag!r} must be 1 to 50 characters without outer spaces")
        if len(set(tags)) != len(tags):
            raise ValueError("tags must not repeat")
        return tags

    @field_validator("requirements")
    @classmethod
    def _requirements_are_pep508(cls, requirements: list[str]) -> list[str]:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name

        seen: set[str] = set()
        for text in requirements:
            try:
                name = canonicalize_name(Requirement(text).name)
            except InvalidRequirement as exc:
                raise ValueError(f"requirement {text!r} is not a PEP 508 string: {exc}") from None
            if name in seen:
                raise ValueError(f"requirement {name!r} is declared twice; merge the two")
            seen.add(name)
        return requirements

    @field_validator("parameters")
    @classmethod
    def _unique_parameters(cls, params: list[Parameter]) -> list[Parameter]:
        seen: set[str] = set()
        for p in params:
            if p.name in seen:
                raise ValueError(f"parameter {p.name!r} is declared twice")
            seen.add(p.name)
        return params

    def to_json(self) -> str:
        """The canonical file contents: sorted by field order, 2-space indent, newline."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=False)
        data["$schema"] = SCHEMA_ID
        if not data.get("requirements"):
            del data["requirements"]  # a procedure without libraries keeps its file as it was
        if data.get("network") is None:
            del data["network"]  # nor does one without network gain a field
        if not data.get("retries"):
            del data["retries"]  # nor does one that is never retried change
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def band_for(score: float) -> Band:
    """The confidence band of a score: >0.8 approved, 0.5..0.8 review, <0.5 expert."""
    if score > 0.8:
        return "approved"
    if score >= 0.5:
        return "review"
    return "expert"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``metadata.json``, as published."""
    schema = Metadata.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "procreg procedure metadata"
    return schema


def parse_metadata(text: str | None) -> Metadata | None:
    """The :class:`Metadata` a ``metadata.json`` text holds, or ``None`` if it is absent or unfit.

    For readers that only need usable metadata (bump rules, argument typing, the
    examples gate); validation reports what is wrong with it instead.
    """
    if text is None:
        return None
    try:
        return Metadata.model_validate_json(text)
    except ValueError:  # pydantic's ValidationError included
        return None
