"""Tool definitions from procedure metadata: pure functions, no I/O.

A released procedure becomes a tool named by its id. Its ``inputSchema`` is a
JSON Schema object built from ``metadata.json`` parameters (types, required,
defaults, descriptions); its description from the name, the description and
one or two examples; its ``outputSchema`` from ``returns`` when that says
enough (a type other than ``any``).

Structured results are JSON objects (MCP requires an object at the root up to
protocol 2025-11-25): a procedure that returns an ``object`` gives that object;
every other result is wrapped as ``{"result": value}``. :func:`output_schema`
and :func:`structured` agree on that rule.

The same definitions are exported for agent frameworks without MCP in the
formats the OpenAI (chat completions ``tools``) and Anthropic (``tools``)
tool-use APIs accept: :func:`to_openai`, :func:`to_anthropic`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from registry.core.jsonvalue import JSON_TYPES
from registry.core.model import Metadata, Parameter

Format = Literal["mcp", "openai", "anthropic"]

RESULT_KEY = "result"
"""The key of a wrapped (non-object) structured result."""

MAX_EXAMPLES = 2
MAX_EXAMPLE_CHARS = 300

# JSON Schema for each metadata parameter type ("any" has none: every value fits).
_JSON_TYPE: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "array": {"type": "array"},
    "object": {"type": "object"},
    "file": {"type": "string", "description": "A path."},
    "directory": {"type": "string", "description": "A directory path."},
    "any": {},
}


class ToolDef(BaseModel):
    """One tool as procreg serves it (MCP field names), plus what it runs."""

    name: str
    title: str | None = None
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    id: str | None = Field(default=None, description="The procedure it runs (None: a meta tool).")
    version: str | None = None
    resolved_from: str | None = Field(
        default=None, description="'channel' or 'latest': how the version was chosen."
    )


def _param_schema(p: Parameter) -> dict[str, Any]:
    schema = dict(_JSON_TYPE.get(p.type, {}))
    if p.description:
        schema["description"] = p.description
    if not p.required and p.default is not None:
        schema["default"] = p.default
    return schema


def input_schema(meta: Metadata) -> dict[str, Any]:
    """The JSON Schema (an object) of the entry point's keyword arguments."""
    return {
        "type": "object",
        "properties": {p.name: _param_schema(p) for p in meta.parameters},
        "required": [p.name for p in meta.parameters if p.required],
        "additionalProperties": False,
    }


def output_schema(meta: Metadata) -> dict[str, Any] | None:
    """The schema of :func:`structured` results, or None when ``returns`` says too little."""
    returns = meta.returns
    if returns.type == "any":
        return None
    if returns.type == "object":
        schema: dict[str, Any] = {"type": "object"}
        if returns.description:
            schema["description"] = returns.description
        if returns.fields:
            # the fields name and describe; they do not type, so nothing is required
            schema["properties"] = {k: {"description": v} for k, v in returns.fields.items()}
        return schema
    inner = dict(_JSON_TYPE[returns.type])
    if returns.description:
        inner["description"] = returns.description
    return {"type": "object", "properties": {RESULT_KEY: inner}, "required": [RESULT_KEY]}


def structured(meta: Metadata | None, result: Any) -> dict[str, Any]:
    """A run's result as MCP structured content (see the module docstring)."""
    if meta is not None and meta.returns.type == "object" and isinstance(result, dict):
        return result
    return {RESULT_KEY: result}


def result_fits(meta: Metadata, value: Any) -> bool:
    """True when ``value`` is of the type ``returns`` declares (what the outputSchema says)."""
    kind = meta.returns.type
    if kind == "any":
        return True
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, JSON_TYPES[kind])


def _clip(text: str, limit: int = MAX_EXAMPLE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(meta: Metadata, version: str | None = None) -> str:
    """Name, description and up to two examples, for a model choosing a tool."""
    head = meta.name.rstrip(".")
    lines = [f"{head}." if not meta.description else f"{head}: {meta.description}"]
    if version:
        lines.append(f"(procreg procedure {meta.id}@{version}, category {meta.category})")
    for ex in meta.examples[:MAX_EXAMPLES]:
        call = json.dumps(ex.input, ensure_ascii=False, sort_keys=True)
        out = json.dumps(ex.output, ensure_ascii=False)
        label = f" ({ex.description})" if ex.description else ""
        lines.append(_clip(f"Example{label}: {call} -> {out}"))
    return "\n".join(lines)


def procedure_tool(meta: Metadata, version: str, resolved_from: str = "channel") -> ToolDef:
    """The tool that runs ``meta.id`` at ``version``."""
    return ToolDef(
        name=meta.id,
        title=meta.name,
        description=describe(meta, version),
        input_schema=input_schema(meta),
        output_schema=output_schema(meta),
        id=meta.id,
        version=version,
        resolved_from=resolved_from,
    )


def to_mcp(tool: ToolDef) -> dict[str, Any]:
    """The MCP ``Tool`` object (``tools/list``), with procreg's pin under ``_meta``."""
    out: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "inputSchema": tool.input_schema,
    }
    if tool.title:
        out["title"] = tool.title
    if tool.output_schema is not None:
        out["outputSchema"] = tool.output_schema
    if tool.id is not None:
        out["_meta"] = {
            "dev.procreg/id": tool.id,
            "dev.procreg/version": tool.version,
            "dev.procreg/resolved_from": tool.resolved_from,
        }
    return out


def to_openai(tool: ToolDef) -> dict[str, Any]:
    """An OpenAI chat-completions ``tools`` entry (``{"type": "function", ...}``)."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.input_schema,
        },
    }


def to_anthropic(tool: ToolDef) -> dict[str, Any]:
    """An Anthropic Messages API ``tools`` entry."""
    return {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}


def export(tools: list[ToolDef], fmt: Format) -> list[dict[str, Any]]:
    """``tools`` in one of the formats (``mcp``, ``openai``, ``anthropic``)."""
    convert = {"mcp": to_mcp, "openai": to_openai, "anthropic": to_anthropic}[fmt]
    return [convert(t) for t in tools]


# --------------------------------------------------------------------------- served set


def choose_version(
    channel_version: str | None, latest: str | None, fallback: Literal["latest", "none"]
) -> tuple[str, str] | None:
    """Which release a tool pins to: the channel's, else (by policy) the latest, else None."""
    if channel_version is not None:
        return channel_version, "channel"
    if latest is not None and fallback == "latest":
        return latest, "latest"
    return None


def fingerprint(tools: dict[str, ToolDef]) -> dict[str, str]:
    """``{name: digest}`` of a served set: a change here is a ``tools/list_changed``."""
    return {
        name: json.dumps(to_mcp(t), sort_keys=True, ensure_ascii=False)
        for name, t in sorted(tools.items())
    }


# --------------------------------------------------------------------------- meta tools

META_TOOLS: list[ToolDef] = [
    ToolDef(
        name="search_procedures",
        title="Search procedures",
        description=(
            "Search the procedure registry by text, category, tags and health. Returns id, "
            "name, description, latest version, runs and success rate of each match."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "text": {"type": "string", "description": "Full-text query (optional)."},
                "category": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "min_success_rate": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "Only procedures whose recorded runs succeed this often.",
                },
                "sort": {"type": "string", "enum": ["relevance", "name", "health"]},
                "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
            },
            "additionalProperties": False,
        },
    ),
    ToolDef(
        name="get_procedure",
        title="Get a procedure",
        description=(
            "A procedure's metadata, releases and channels, and the source of one version "
            "(spec: an exact version, a range such as ^1.2, a channel, or HEAD)."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "spec": {"type": "string", "description": "Default: the latest release."},
                "source": {"type": "boolean", "default": True},
            },
            "required": ["id"],
            "additionalProperties": False,
        },
    ),
    ToolDef(
        name="run_procedure",
        title="Run a procedure",
        description=(
            "Run any procedure at a version spec (exact, range such as ^1.2, or a channel) "
            "in the sandbox, for procedures not listed as tools."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "spec": {"type": "string", "description": "Default: the latest release."},
                "arguments": {"type": "object", "default": {}},
            },
            "required": ["id"],
            "additionalProperties": False,
        },
    ),
    ToolDef(
        name="propose_procedure",
        title="Propose a procedure",
        description=(
            "Propose a new procedure or a change for human review: the files are validated "
            "and committed on a new branch proposals/<id>/<n>, never on the tracked branch. "
            "Returns the branch, the commit and the release bump a merge would make."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "main_py": {"type": "string", "description": "The text of main.py."},
                "metadata": {"type": "object", "description": "The metadata.json object."},
                "message": {"type": "string", "description": "The commit message."},
            },
            "required": ["id", "main_py", "metadata"],
            "additionalProperties": False,
        },
    ),
]

META_TOOL_NAMES = frozenset(t.name for t in META_TOOLS)
