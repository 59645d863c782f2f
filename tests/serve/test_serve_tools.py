"""Tool definitions from metadata (registry.serve.tools): schemas, descriptions, formats."""

from __future__ import annotations

from typing import Any

import pytest

from registry.core.model import Example, Metadata, Parameter, Returns
from registry.serve import tools
from tests.helpers import REPO_ROOT

PROCEDURES = REPO_ROOT / "procedures"


def own(pid: str) -> Metadata:
    return Metadata.model_validate_json((PROCEDURES / pid / "metadata.json").read_text())


def meta(returns: Returns | None = None, **kw: Any) -> Metadata:
    return Metadata(id="p", name="P", returns=returns or Returns(), **kw)


def test_input_schema_of_slugify_has_types_required_defaults_and_descriptions() -> None:
    schema = tools.input_schema(own("slugify"))
    assert schema["type"] == "object"
    assert schema["required"] == ["text"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["text"] == {"type": "string", "description": "The text to slugify (any Unicode)."}
    assert props["max_length"]["type"] == "integer"
    assert props["max_length"]["default"] == 0
    assert props["lowercase"] == {
        "type": "boolean",
        "description": "Lower-case the slug.",
        "default": True,
    }


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (Parameter(name="a", type="string"), {"type": "string"}),
        (
            Parameter(name="a", type="integer", required=False, default=3),
            {"type": "integer", "default": 3},
        ),
        (
            Parameter(name="a", type="number", description="n"),
            {"type": "number", "description": "n"},
        ),
        (Parameter(name="a", type="array", required=False), {"type": "array"}),
        (Parameter(name="a", type="object"), {"type": "object"}),
        (Parameter(name="a", type="any"), {}),
        (Parameter(name="a", type="file"), {"type": "string", "description": "A path."}),
    ],
)
def test_parameter_schemas(param: Parameter, expected: dict[str, Any]) -> None:
    assert tools.input_schema(meta(parameters=[param]))["properties"]["a"] == expected


@pytest.mark.parametrize(
    ("returns", "expected"),
    [
        (Returns(type="any"), None),
        (
            Returns(type="string", description="s"),
            {
                "type": "object",
                "properties": {"result": {"type": "string", "description": "s"}},
                "required": ["result"],
            },
        ),
        (Returns(type="object"), {"type": "object"}),
        (
            Returns(type="object", fields={"a": "the a"}),
            {"type": "object", "properties": {"a": {"description": "the a"}}},
        ),
    ],
)
def test_output_schema_from_returns(returns: Returns, expected: dict[str, Any] | None) -> None:
    assert tools.output_schema(meta(returns)) == expected


def test_structured_results_follow_the_output_schema_rule() -> None:
    obj = meta(Returns(type="object"))
    assert tools.structured(obj, {"a": 1}) == {"a": 1}
    assert tools.structured(meta(Returns(type="integer")), 3) == {"result": 3}
    assert tools.structured(meta(Returns(type="any")), {"a": 1}) == {"result": {"a": 1}}
    assert tools.result_fits(meta(Returns(type="integer")), 3)
    assert not tools.result_fits(meta(Returns(type="integer")), True)
    assert not tools.result_fits(obj, [1])


def test_url_parse_output_schema_names_its_fields() -> None:
    schema = tools.output_schema(own("url-parse"))
    assert schema is not None
    assert schema["type"] == "object"
    assert {"scheme", "host", "port", "query"} <= set(schema["properties"])


def test_description_has_name_description_and_at_most_two_examples() -> None:
    m = meta(
        description="Does p.",
        examples=[Example(input={"x": i}, output=i, description=f"ex{i}") for i in range(4)],
    )
    text = tools.describe(m, "1.2.0")
    assert text.startswith("P: Does p.")
    assert "p@1.2.0" in text
    assert text.count("Example") == 2
    assert 'Example (ex0): {"x": 0} -> 0' in text


def test_choose_version() -> None:
    assert tools.choose_version("1.0.0", "1.1.0", "latest") == ("1.0.0", "channel")
    assert tools.choose_version(None, "1.1.0", "latest") == ("1.1.0", "latest")
    assert tools.choose_version(None, "1.1.0", "none") is None
    assert tools.choose_version(None, None, "latest") is None


def test_export_formats() -> None:
    tool = tools.procedure_tool(own("semver-compare"), "1.0.0")
    (mcp,) = tools.export([tool], "mcp")
    assert mcp["name"] == "semver-compare"
    assert mcp["inputSchema"]["required"] == ["a", "b"]
    assert mcp["outputSchema"]["properties"]["result"]["type"] == "integer"
    assert mcp["_meta"]["dev.procreg/version"] == "1.0.0"
    (openai,) = tools.export([tool], "openai")
    assert openai["type"] == "function"
    assert openai["function"]["name"] == "semver-compare"
    assert openai["function"]["parameters"] == mcp["inputSchema"]
    (anthropic,) = tools.export([tool], "anthropic")
    assert set(anthropic) == {"name", "description", "input_schema"}
    assert anthropic["input_schema"] == mcp["inputSchema"]


def test_every_own_procedure_gives_a_valid_tool() -> None:
    from jsonschema.validators import validator_for

    for folder in sorted(PROCEDURES.iterdir()):
        m = own(folder.name)
        tool = tools.procedure_tool(m, "1.0.0")
        for schema in (tool.input_schema, tool.output_schema):
            if schema is not None:
                validator_for(schema).check_schema(schema)
        for ex in m.examples:
            if tool.output_schema is not None:
                validator_for(tool.output_schema)(tool.output_schema).validate(
                    tools.structured(m, ex.output)
                )
