"""What a legacy procedure means, read from its loose columns: the input of every generator.

:func:`analyse` turns a legacy procedure into typed keyword parameters (unsafe
legacy names mapped to identifiers, defaults coerced to their type), the
template variables and which parameter binds each, the parsed steps and the
legacy examples that hold as contract tests of the built-in code
(:func:`contract_examples`, checked against :func:`expected_result`, which the
generated code computes too). Pure.
"""

from __future__ import annotations

import json
import keyword
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from registry.core.model import Example, Parameter, ParamType, Step
from registry.migrate.legacy import LegacyProcedure

ListFormat = Literal["json", "lines", "comma", "text", "empty"]

PLACEHOLDER_RE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
DUNDER_RE = re.compile(r"__[A-Za-z0-9_]*?__")
_SHELL_PREFIX = re.compile(
    r"^\s*(?:(?:bash|sh|shell|zsh|run|cmd)\s*:|\$)\s*(?P<cmd>\S.*)$", re.I | re.S
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)]|step\s*\d+\s*[:.)-])\s*", re.I)

# legacy type -> (metadata type, annotation); None marks an unknown (untyped) one
_TYPES: dict[str, tuple[ParamType, str]] = {
    "string": ("string", "str"),
    "str": ("string", "str"),
    "text": ("string", "str"),
    "number": ("number", "float"),
    "float": ("number", "float"),
    "integer": ("integer", "int"),
    "int": ("integer", "int"),
    "boolean": ("boolean", "bool"),
    "bool": ("boolean", "bool"),
    "file": ("file", "str"),
    "path": ("file", "str"),
    "directory": ("directory", "str"),
    "dir": ("directory", "str"),
    "list": ("array", "list"),
    "array": ("array", "list"),
    "object": ("object", "dict"),
    "dict": ("object", "dict"),
}
# Names the generated module uses itself; a parameter may not shadow them.
_RESERVED = frozenset({"TEMPLATE", "STEPS", "PLACEHOLDERS", "re", "json", "main", "values", "step"})
_STEP_TEXT_KEYS = ("description", "action", "step", "title", "name", "text", "summary", "task")
_STEP_COMMAND_KEYS = ("command", "cmd", "bash", "shell", "run", "script")
_EXAMPLE_INPUT_KEYS = ("input", "inputs", "variables", "params", "parameters", "args")
_EXAMPLE_OUTPUT_KEYS = ("output", "expected", "expected_output", "result", "returns")


# -- parsing the loose legacy columns ---------------------------------------------


def parse_list(text: str | None) -> tuple[list[Any], ListFormat]:
    """Items of a column meant to hold a JSON list but holding anything.

    JSON (a list, or one object/string) gives its items; otherwise several
    lines give one item a line (bullets and numbering stripped), a comma list
    its parts, other text one item. NULL or blank gives no items.
    """
    if text is None or not str(text).strip():
        return [], "empty"
    text = str(text)
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        data = None
    else:
        if isinstance(data, list):
            return data, "json"
        if isinstance(data, dict | str):
            return [data], "json"
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        return [_BULLET.sub("", line).strip() for line in lines], "lines"
    if "," in text and not _SHELL_PREFIX.match(text):
        return [part.strip() for part in text.split(",") if part.strip()], "comma"
    return [text.strip()], "text"


def parse_step(item: Any) -> tuple[Step, bool]:
    """A legacy step as a :class:`Step`, and whether its shape was understood."""
    if isinstance(item, str):
        m = _SHELL_PREFIX.match(item)
        if m:
            cmd = m.group("cmd").strip()
            return Step(description=f"Run `{cmd}`", kind="shell", command=cmd), True
        return Step(description=item.strip() or "(empty step)", kind="note"), bool(item.strip())
    if isinstance(item, dict):
        text = next((str(item[k]) for k in _STEP_TEXT_KEYS if item.get(k) not in (None, "")), "")
        cmd = next((str(item[k]) for k in _STEP_COMMAND_KEYS if item.get(k) not in (None, "")), "")
        call = item.get("procedure") or item.get("call")
        if cmd:
            return Step(description=text or f"Run `{cmd}`", kind="shell", command=cmd), True
        if isinstance(call, str) and call:
            return Step(description=text or f"Call {call}", kind="call", command=call), True
        if text:
            return Step(description=text, kind="note"), True
    shown = json.dumps(item, ensure_ascii=False, sort_keys=True, default=str)
    return Step(description=shown, kind="note"), False


def template_variables(*texts: str) -> list[str]:
    """The ``{{variables}}`` of the texts, in order of first appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        for m in PLACEHOLDER_RE.finditer(text):
            seen.setdefault(m.group(1).strip(), None)
    return list(seen)


def safe_identifier(name: str, taken: set[str]) -> str:
    """A Python identifier for a legacy parameter name, not in ``taken`` (which it joins).

    ``class`` becomes ``class_``, ``dry-run`` ``dry_run``, ``2fa`` ``p_2fa``;
    a name already taken gets ``_2``, ``_3``...
    """
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    text = re.sub(r"_+", "_", text)[:60] or "param"
    if text[0].isdigit():
        text = f"p_{text}"
    if keyword.iskeyword(text) or keyword.issoftkeyword(text) or text in _RESERVED:
        text += "_"
    candidate, n = text, 2
    while candidate in taken:
        candidate, n = f"{text.rstrip('_') or 'param'}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _truthy(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "t", "on", "required"):
        return True
    if text in ("0", "false", "no", "n", "f", "off", "optional", ""):
        return False
    return None


def _as_text(value: Any, ptype: ParamType) -> tuple[Any, bool]:
    return (value, True) if isinstance(value, str) else (str(value), True)


def _as_boolean(value: Any, ptype: ParamType) -> tuple[Any, bool]:
    flag = _truthy(value)
    return (flag, True) if flag is not None else (None, False)


def _as_number(value: Any, ptype: ParamType) -> tuple[Any, bool]:
    """A ``number`` or an ``integer`` (which a float is only when it is whole)."""
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int | float):
        if ptype == "integer" and isinstance(value, float):
            return (int(value), True) if value.is_integer() else (None, False)
        return (float(value) if ptype == "number" else value), True
    try:
        number = float(str(value).strip())
    except ValueError:
        return None, False
    if ptype == "integer":
        return (int(number), True) if number.is_integer() else (None, False)
    return number, number == number and abs(number) != float("inf")


def _as_array(value: Any, ptype: ParamType) -> tuple[Any, bool]:
    if isinstance(value, list):
        return value, True
    items, _ = parse_list(str(value))
    return items, True


def _as_object(value: Any, ptype: ParamType) -> tuple[Any, bool]:
    if isinstance(value, dict):
        return value, True
    try:
        data = json.loads(str(value))
    except json.JSONDecodeError:
        return None, False
    return (data, True) if isinstance(data, dict) else (None, False)


_COERCE: dict[str, Callable[[Any, ParamType], tuple[Any, bool]]] = {
    "string": _as_text,
    "file": _as_text,
    "directory": _as_text,
    "boolean": _as_boolean,
    "number": _as_number,
    "integer": _as_number,
    "array": _as_array,
    "object": _as_object,
}


def coerce(value: Any, ptype: ParamType) -> tuple[Any, bool]:
    """``value`` (often legacy text) as a JSON value of ``ptype``, and whether that worked."""
    if value is None:
        return None, True
    convert = _COERCE.get(ptype)
    return (value, True) if convert is None else convert(value, ptype)


# -- analysis ---------------------------------------------------------------------


@dataclass
class Analysis:
    """What any generator needs to know about one legacy procedure."""

    parameters: list[Parameter]
    annotations: dict[str, str]
    parameter_map: dict[str, str]
    placeholders: dict[str, str]
    inferred: list[str]
    steps: list[Step]
    steps_format: ListFormat
    steps_understood: int
    params_typed: int
    params_total: int
    variables_total: int
    variables_bound: int
    legacy_examples: list[Any]
    examples: list[Example]
    notes: list[str]


def _legacy_params(proc: LegacyProcedure) -> list[tuple[str, Any, Any, Any, str]]:
    """``(name, type, required, default, description)`` of each legacy parameter."""
    if proc.params:
        return [
            (
                "" if p.get("param_name") is None else str(p.get("param_name")),
                p.get("param_type"),
                p.get("required"),
                p.get("default_value"),
                "" if p.get("description") is None else str(p.get("description")),
            )
            for p in proc.params
        ]
    inputs = proc.row.get("inputs")
    if isinstance(inputs, list):  # PostgreSQL: TEXT[] of names, no types
        return [(str(n), None, True, None, "") for n in inputs if n is not None]
    return []


@dataclass
class _Mapped:
    """The parameters as they are being mapped: declared ones, then inferred ones."""

    params: list[Parameter] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    mapping: dict[str, str] = field(default_factory=dict)  # legacy name (#n if repeated) -> ident
    by_legacy: dict[str, str] = field(default_factory=dict)  # first ident of each legacy name
    taken: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    typed: int = 0


def _default_of(name: str, default: Any, ptype: ParamType, notes: list[str]) -> tuple[Any, bool]:
    """A legacy default as a value of ``ptype`` (``None`` when dropped), and whether it held."""
    value, coerced = coerce(default, ptype)
    if default is not None and not coerced:
        notes.append(f"default {default!r} of parameter {name!r} is not a {ptype}; dropped")
        return None, False
    if value is not None and DUNDER_RE.search(repr(value)):
        # validation rejects dunder strings in code; the legacy row keeps the text
        notes.append(f"default {default!r} of parameter {name!r} mentions a dunder; dropped")
        return None, False
    return value, True


def _map_parameter(
    m: _Mapped, i: int, name: str, ltype: Any, required: Any, default: Any, desc: str
) -> None:
    ident = safe_identifier(name, m.taken)
    key = name if name not in m.mapping else f"{name}#{i + 1}"
    if key != name:
        m.notes.append(f"parameter {name!r} is declared twice; the copy is {ident!r}")
    if ident != name and key == name:
        m.notes.append(f"parameter {name!r} renamed to {ident!r}")
    m.mapping[key] = ident
    m.by_legacy.setdefault(name, ident)
    known = _TYPES.get(str(ltype).strip().lower()) if ltype is not None else None
    ptype, annotation = known or ("any", "object")
    if known is None:
        m.notes.append(f"parameter {name!r} has unknown type {ltype!r}; typed as any")
    value, held = _default_of(name, default, ptype, m.notes)
    is_required = bool(_truthy(required)) if value is None else False
    m.typed += known is not None and held
    m.annotations[ident] = annotation if is_required else f"{annotation} | None"
    m.params.append(
        Parameter(name=ident, type=ptype, description=desc, required=is_required, default=value)
    )


def _parse_steps(proc: LegacyProcedure, notes: list[str]) -> tuple[list[Step], ListFormat, int]:
    """The legacy steps, their format, and how many of them were understood."""
    raw_steps, fmt = parse_list(proc.text("steps"))
    steps: list[Step] = []
    understood = 0
    for item in raw_steps:
        step, ok = parse_step(item)
        steps.append(step)
        understood += ok
    if fmt in ("lines", "comma", "text"):
        shape = {"lines": "lines of text", "comma": "a comma list", "text": "free text"}[fmt]
        notes.append(f"steps were {shape}, not JSON")
    return steps, fmt, understood


def _bind_variables(m: _Mapped, variables: Sequence[str]) -> tuple[dict[str, str], list[str], int]:
    """Each template variable's parameter (a new optional string when none is declared).

    Returns the placeholders, the inferred parameters and how many variables were bound.
    """
    placeholders: dict[str, str] = {}
    inferred: list[str] = []
    idents = {p.name for p in m.params}
    bound = 0
    for var in variables:
        if var in m.by_legacy:
            placeholders[var], bound = m.by_legacy[var], bound + 1
            continue
        probe = safe_identifier(var, set())
        if probe in idents:
            placeholders[var], bound = probe, bound + 1
            continue
        ident = safe_identifier(var, m.taken)
        idents.add(ident)
        placeholders[var] = ident
        inferred.append(ident)
        m.annotations[ident] = "str | None"
        m.params.append(
            Parameter(
                name=ident,
                type="string",
                description=f"Inferred from the template variable {{{{{var}}}}}.",
                required=False,
                default=None,
            )
        )
    if inferred:
        m.notes.append(f"template variables without a declared parameter: {', '.join(inferred)}")
    return placeholders, inferred, bound


def analyse(proc: LegacyProcedure) -> Analysis:
    """Map a legacy procedure's parameters, template variables, steps and examples."""
    m = _Mapped()
    legacy_params = _legacy_params(proc)
    for i, (name, ltype, required, default, desc) in enumerate(legacy_params):
        _map_parameter(m, i, name, ltype, required, default, desc)
    steps, fmt, understood = _parse_steps(proc, m.notes)
    variables = template_variables(
        proc.template, *(s.description for s in steps), *(s.command or "" for s in steps)
    )
    placeholders, inferred, bound = _bind_variables(m, variables)

    legacy_examples, _ = parse_list(proc.text("examples"))
    analysis = Analysis(
        parameters=m.params,
        annotations=m.annotations,
        parameter_map=m.mapping,
        placeholders=placeholders,
        inferred=inferred,
        steps=steps,
        steps_format=fmt,
        steps_understood=understood,
        params_typed=m.typed,
        params_total=len(legacy_params),
        variables_total=len(variables),
        variables_bound=bound,
        legacy_examples=legacy_examples,
        examples=[],
        notes=m.notes,
    )
    analysis.examples = contract_examples(proc, analysis)
    return analysis


# -- what the generated code computes (kept in step with _RUNTIME below) ----------


def render_text(value: Any) -> str:
    """How a value fills a placeholder (the generated ``_text``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ", ".join(render_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def render(text: str, placeholders: dict[str, str], values: dict[str, Any]) -> str:
    """``text`` with each bound placeholder replaced; unbound ones stay as written."""

    def fill(m: re.Match[str]) -> str:
        ident = placeholders.get(m.group(1).strip())
        value = values.get(ident) if ident is not None else None
        return m.group(0) if value is None else render_text(value)

    return PLACEHOLDER_RE.sub(fill, text)


def expected_result(
    template: str, steps: list[Step], placeholders: dict[str, str], values: dict[str, Any]
) -> dict[str, Any]:
    """What the built-in generator's ``main(**values)`` returns."""
    return {
        "rendered": render(template, placeholders, values),
        "plan": [
            {
                "description": render(s.description, placeholders, values),
                "kind": s.kind,
                "command": None if s.command is None else render(s.command, placeholders, values),
            }
            for s in steps
        ],
    }


def _example_values(
    inputs: dict[Any, Any], by_name: dict[str, str], types: dict[str, ParamType]
) -> dict[str, Any] | None:
    """An example's inputs as arguments, or ``None`` if one maps to no parameter or misfits."""
    values: dict[str, Any] = {}
    for key, raw in inputs.items():
        ident = by_name.get(str(key))
        if ident is None:
            return None
        value, ok = coerce(raw, types[ident])
        if not ok:
            return None
        values[ident] = value
    return values


def _contract_example(
    proc: LegacyProcedure,
    analysis: Analysis,
    item: dict[Any, Any],
    by_name: dict[str, str],
    types: dict[str, ParamType],
) -> Example | None:
    """One legacy example as a contract test, if it holds."""
    inputs = next((item[k] for k in _EXAMPLE_INPUT_KEYS if isinstance(item.get(k), dict)), None)
    expected_key = next((k for k in _EXAMPLE_OUTPUT_KEYS if k in item), None)
    if inputs is None or expected_key is None:
        return None
    values = _example_values(inputs, by_name, types)
    if values is None:
        return None
    if any(p.required and p.name not in values for p in analysis.parameters):
        return None
    result = expected_result(proc.template, analysis.steps, analysis.placeholders, values)
    expected = item[expected_key]
    if expected != result and not (
        isinstance(expected, str) and expected.strip() == result["rendered"].strip()
    ):
        return None
    desc = item.get("description") or item.get("name") or ""
    return Example(description=str(desc), input=values, output=result)


def contract_examples(proc: LegacyProcedure, analysis: Analysis) -> list[Example]:
    """Legacy examples that hold as contract tests of the built-in code.

    An example counts when it names its inputs (an object under ``input``,
    ``variables``...), every input maps to a parameter and fits its type, and
    its expected output equals what the code returns (the rendered template,
    or the whole result).
    """
    by_name = {**analysis.parameter_map, **{v: v for v in analysis.parameter_map.values()}}
    by_name.update(analysis.placeholders)
    types = {p.name: p.type for p in analysis.parameters}
    found = (
        _contract_example(proc, analysis, item, by_name, types)
        for item in analysis.legacy_examples
        if isinstance(item, dict)
    )
    return [example for example in found if example is not None]
