"""Code generation for migrated procedures: one Protocol, two generators.

:func:`registry.migrate.analysis.analyse` turns a legacy procedure into what
any generator needs (typed parameters, template variables, steps, examples).
:class:`BuiltinGenerator` writes deterministic code from it,
offline; :class:`ChatCompletionsGenerator` asks an OpenAI-style endpoint and
falls back to the built-in one when the answer does not pass validation.

Generated code renders the legacy template and returns the steps as a plan:
shell steps are data, never executed (the code imports only ``re`` and ``json``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pprint
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from registry.core.model import Example, Parameter, Returns
from registry.core.signature import read_signature
from registry.errors import MigrationError
from registry.migrate.analysis import DUNDER_RE, Analysis, analyse
from registry.migrate.legacy import LegacyProcedure

# -- the generators -------------------------------------------------------------------


@dataclass
class GeneratedCode:
    """A generator's answer: the ``main.py`` source and what it decided."""

    source: str
    parameter_map: dict[str, str]
    inferred: list[str]
    notes: list[str]
    parameters: list[Parameter] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    returns: Returns = field(default_factory=Returns)
    generator: str = "builtin"


class Generator(Protocol):
    """Turns a legacy procedure into a ``main.py`` (``name`` goes into the metadata)."""

    name: str

    def generate(self, proc: LegacyProcedure) -> GeneratedCode:
        """The code for ``proc``; raises :class:`MigrationError` when it cannot."""
        ...


RETURNS = Returns(
    type="object",
    description="The legacy template rendered with the arguments, and the steps as a plan.",
    fields={
        "rendered": "the template with every bound {{variable}} filled in",
        "plan": "the steps (description, kind, command); shell commands are never run",
    },
)

_RUNTIME = """
_PLACEHOLDER = re.compile(r"\\{\\{\\s*([^{}]+?)\\s*\\}\\}")


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _render(text: str, values: dict) -> str:
    def fill(match: re.Match) -> str:
        name = PLACEHOLDERS.get(match.group(1).strip())
        value = values.get(name) if name is not None else None
        return match.group(0) if value is None else _text(value)

    return _PLACEHOLDER.sub(fill, text)
"""


def literal(value: Any) -> str:
    """Python source for a JSON value; text mentioning dunders goes through ``json.loads``.

    The validator rejects string constants such as ``"__init__"``; a JSON
    literal with ``\\u005f`` escapes keeps the data exact without one.
    """
    text = pprint.pformat(value, width=96, sort_dicts=False)
    if not DUNDER_RE.search(text):
        return text
    encoded = json.dumps(value, ensure_ascii=False).replace("_", "\\u005f")
    return f"json.loads({encoded!r})"


def _doc(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').rstrip()
    if text.endswith('"'):
        text += " "
    return text


class BuiltinGenerator:
    """Deterministic, offline code: render the template, return the steps as a plan."""

    name = "builtin"

    def generate(self, proc: LegacyProcedure) -> GeneratedCode:
        """The ``main.py`` for ``proc`` (same input, same bytes)."""
        a = analyse(proc)
        return GeneratedCode(
            source=builtin_source(proc, a),
            parameter_map=a.parameter_map,
            inferred=a.inferred,
            notes=list(a.notes),
            parameters=a.parameters,
            examples=a.examples,
            returns=RETURNS,
            generator=self.name,
        )


def _signature_parts(a: Analysis) -> list[str]:
    """``name: type`` or ``name: type | None = default`` for each parameter."""
    parts = []
    for p in a.parameters:
        ann = a.annotations[p.name]
        default = repr(p.default)  # literal_eval-able, as validation requires
        parts.append(f"{p.name}: {ann}" if p.required else f"{p.name}: {ann} = {default}")
    return parts


def _signature(a: Analysis) -> str:
    """The parameter list of ``main``: keyword-only, one a line when long."""
    parts = _signature_parts(a)
    if not parts:
        return ""
    flat = "*, " + ", ".join(parts)
    if len(flat) <= 80:
        return flat
    return "\n    *,\n" + "".join(f"    {part},\n" for part in parts)


def builtin_source(proc: LegacyProcedure, a: Analysis) -> str:
    """The built-in generator's ``main.py`` text."""
    title = proc.name.strip() or f"legacy procedure {proc.key}"
    summary = proc.description.strip()
    doc = _doc(
        f"{title}\n\n{summary + chr(10) + chr(10) if summary else ''}"
        f"Migrated from legacy procedure {proc.identity} by procreg's built-in generator.\n"
        "Shell steps are returned in the plan as data; this code never runs them.\n"
    )
    steps = [s.model_dump(mode="json") for s in a.steps]
    sig = _signature(a)
    values = "".join(f"\n        {p.name!r}: {p.name}," for p in a.parameters)
    values = values + "\n    " if values else ""
    head = f'"""{doc}\n"""\n\nimport json\nimport re\n\n'
    body = (
        f"TEMPLATE = {literal(proc.template)}\n\n"
        f"STEPS = {literal(steps)}\n\n"
        "# template variable -> parameter\n"
        f"PLACEHOLDERS = {literal(a.placeholders)}\n"
        f"{_RUNTIME}\n\n"
        f"def main({sig}) -> dict:\n"
        '    """Render the template with the arguments and return the steps as a plan."""\n'
        f"    values = {{{values}}}\n"
        "    return {\n"
        '        "rendered": _render(TEMPLATE, values),\n'
        '        "plan": [\n'
        "            {\n"
        '                "description": _render(step["description"], values),\n'
        '                "kind": step["kind"],\n'
        '                "command": None if step["command"] is None '
        'else _render(step["command"], values),\n'
        "            }\n"
        "            for step in STEPS\n"
        "        ],\n"
        "    }\n"
    )
    return head + body


# -- the LLM generator ------------------------------------------------------------------

LLM_URL_ENV = "PROCREG_LLM_URL"
LLM_MODEL_ENV = "PROCREG_LLM_MODEL"
LLM_KEY_ENV_ENV = "PROCREG_LLM_API_KEY_ENV"
DEFAULT_KEY_ENV = "PROCREG_LLM_API_KEY"

_SYSTEM_PROMPT = """You convert a legacy procedure (metadata: template, steps, examples) into \
one Python 3.11 module for a procedure registry. Rules:
- Define `def main(*, <parameters>) -> dict` with EXACTLY the keyword-only parameters given \
(same names, annotations and defaults).
- Return a JSON-serialisable value. Never run shell commands: return them as data.
- Import only from the standard library's pure modules (re, json, string, textwrap, math, \
datetime). No os, subprocess, socket, eval, exec, compile, __import__, open.
Answer with the module only, in one ```python fenced block."""


@dataclass
class LLMSettings:
    """Where the chat-completions endpoint is and how to authenticate."""

    url: str
    model: str
    api_key_env: str = DEFAULT_KEY_ENV
    timeout_s: float = 60.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> LLMSettings | None:
        """Settings from ``PROCREG_LLM_URL`` and ``PROCREG_LLM_MODEL`` (None when unset)."""
        env = dict(os.environ if environ is None else environ)
        url, model = env.get(LLM_URL_ENV), env.get(LLM_MODEL_ENV)
        if not url or not model:
            return None
        return cls(url, model, env.get(LLM_KEY_ENV_ENV) or DEFAULT_KEY_ENV)


CodeCheck = Callable[[str, list[Parameter]], list[str]]


def check_signature(source: str, params: list[Parameter]) -> list[str]:
    """Problems with generated code's ``main`` against the parameters it must take."""
    try:
        ast.parse(source)
    except SyntaxError as exc:
        return [f"not valid Python: {exc.msg} (line {exc.lineno})"]
    sig = read_signature(source)
    if sig is None:
        return ["no top-level `def main(...)`"]
    have = {p.name: p for p in sig.named}
    problems = [f"main() lacks parameter {p.name!r}" for p in params if p.name not in have]
    want = {p.name for p in params}
    problems += [f"main() has an undeclared parameter {n!r}" for n in have if n not in want]
    for p in params:
        cp = have.get(p.name)
        if cp is not None and cp.has_default == p.required:
            problems.append(f"parameter {p.name!r} must {'not ' * p.required}have a default")
    return problems


_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(?P<code>.*?)```", re.S)


def extract_code(content: str) -> str:
    """The code of a chat answer: its first fenced block, or the whole text."""
    m = _FENCE.search(content)
    return (m.group("code") if m else content).strip() + "\n"


class ChatCompletionsGenerator:
    """Asks an OpenAI-style ``POST {url}/chat/completions`` endpoint for the code.

    The answer must parse and take exactly the analysed parameters, and pass
    ``check`` (the migration passes the registry's validation); otherwise the
    built-in generator's code is used and a note says why (``fallback=None``
    raises :class:`MigrationError` instead).
    """

    def __init__(
        self,
        settings: LLMSettings,
        *,
        fallback: Generator | None = None,
        check: CodeCheck | None = None,
    ) -> None:
        self.settings = settings
        self.fallback = fallback
        self.check = check
        self.name = f"llm:{settings.model}"

    def _ask(self, messages: list[dict[str, str]]) -> str:
        s = self.settings
        body = json.dumps({"model": s.model, "messages": messages, "temperature": 0}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(s.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = s.url.rstrip("/") + "/chat/completions"
        if not url.startswith(("http://", "https://")):
            raise MigrationError(f"LLM endpoint {s.url!r} must be an http(s) URL")
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=s.timeout_s) as resp:  # noqa: S310
                data = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise MigrationError(f"LLM endpoint {url} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise MigrationError(f"LLM endpoint {url} failed: {exc}") from exc
        try:
            return str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError) as exc:
            raise MigrationError(f"LLM endpoint {url}: no choices[0].message.content") from exc

    def generate(self, proc: LegacyProcedure) -> GeneratedCode:
        """Ask the endpoint; fall back to the built-in generator if the answer is unusable."""
        a = analyse(proc)
        sig = _signature(a)
        request = {
            "name": proc.name,
            "category": proc.category,
            "description": proc.description,
            "template": proc.template,
            "placeholders": a.placeholders,
            "steps": [s.model_dump(mode="json") for s in a.steps],
            "signature": f"def main({' '.join(sig.split())}) -> dict",
        }
        messages = [
            {"role": "system", "content": _SYSTEM_PROMPT},
            {"role": "user", "content": json.dumps(request, ensure_ascii=False, indent=2)},
        ]
        try:
            source = extract_code(self._ask(messages))
            problems = check_signature(source, a.parameters)
            if not problems and self.check is not None:
                problems = self.check(source, a.parameters)
        except MigrationError as exc:
            problems = [str(exc)]
            source = ""
        if not problems:
            digest = hashlib.sha256(source.encode()).hexdigest()[:12]
            return GeneratedCode(
                source=source,
                parameter_map=a.parameter_map,
                inferred=a.inferred,
                notes=[*a.notes, f"code from {self.name} (sha256 {digest}); examples not checked"],
                parameters=a.parameters,
                examples=[],
                returns=Returns(type="any", description="As generated; review it."),
                generator=self.name,
            )
        reason = "; ".join(problems[:3])
        if self.fallback is None:
            raise MigrationError(f"{proc.identity}: {self.name} gave unusable code: {reason}")
        code = self.fallback.generate(proc)
        code.notes.append(f"{self.name} gave unusable code ({reason}); used {code.generator}")
        code.generator = f"{code.generator} (fallback from {self.name})"
        return code
