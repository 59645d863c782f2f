"""Validation of procedure folders: a corpus of malformed procedures, each with its exact problem.

Every case builds a :class:`Snapshot` in memory from a valid procedure with a
few files replaced, and asserts the complete list of problems found as
``(rule, file, line, field)``: the rule a user reads, where it points, and
nothing else (no cascade of follow-on noise).
"""

from __future__ import annotations

import json
import textwrap

import pytest

from registry.config import ValidationSection
from registry.core.codecheck import ALWAYS_DENIED_IMPORTS, DEFAULT_ALLOWED_IMPORTS, check_source
from registry.core.problems import Problem
from registry.core.snapshot import (
    MODE_EXECUTABLE,
    MODE_FILE,
    MODE_SUBMODULE,
    MODE_SYMLINK,
    FileEntry,
    Snapshot,
)
from registry.core.validation import RULES, ValidationResult, id_problems, validate_snapshot
from tests.helpers import REPO_ROOT

META = """\
{
  "id": "demo",
  "name": "Demo",
  "parameters": [
    {"name": "text", "type": "string"},
    {"name": "limit", "type": "integer", "required": false, "default": 10}
  ],
  "examples": [
    {"input": {"text": "a b"}, "output": "a-b"}
  ]
}
"""

MAIN = '''\
"""Join the words of a text with dashes."""

import re


def main(text: str, limit: int = 10) -> str:
    """The first ``limit`` words of ``text``, joined by dashes."""
    return "-".join(re.findall(r"\\w+", text)[:limit])
'''


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def main_with(body: str, imports: str = "") -> str:
    """A main.py whose entry point has the right signature, with extra code before it."""
    return (
        dedent(imports)
        + "\n\ndef main(text: str, limit: int = 10) -> str:\n"
        + (textwrap.indent(dedent(body), "    ") if body else "    return text\n")
    )


def make(files: dict[str, str | bytes | FileEntry | None], folder: str = "demo") -> Snapshot:
    """The valid demo procedure with some files replaced (``None`` removes one)."""
    merged: dict[str, str | bytes | FileEntry | None] = {
        "main.py": MAIN,
        "metadata.json": META,
        **files,
    }
    entries = {}
    for name, content in merged.items():
        if content is None:
            continue
        if isinstance(content, str):
            content = content.encode()
        entries[name] = content if isinstance(content, FileEntry) else FileEntry(content)
    return Snapshot(id=folder, files=entries)


def found(result: ValidationResult, folder: str = "demo") -> list[tuple[object, ...]]:
    base = f"procedures/{folder}"
    return sorted(
        (p.rule, p.path.removeprefix(base).lstrip("/"), p.line, p.field) for p in result.problems
    )


def meta_with(**changes: object) -> str:
    data = json.loads(META)
    data.update(changes)
    return json.dumps(data, indent=2)


# (case id, folder, replaced files, expected [(rule, file, line, field)])
CASES: list[
    tuple[str, str, dict[str, str | bytes | FileEntry | None], list[tuple[object, ...]]]
] = [
    # ---- pylock.toml: the lock of the procedure's requirements
    (
        "lock-not-toml",
        "demo",
        {"pylock.toml": "lock-version = [\n"},
        [("lock-invalid", "pylock.toml", None, None)],
    ),
    (
        "lock-missing-for-requirements",
        "demo",
        {"metadata.json": meta_with(requirements=["tinylib==1.0.0"])},
        [("lock-mismatch", "pylock.toml", None, "requirements")],
    ),
    # ---- metadata.json: JSON
    (
        "json-trailing-comma",
        "demo",
        {"metadata.json": '{\n  "id": "demo",\n  "name": "Demo",\n}\n'},
        [("metadata-json", "metadata.json", 4, None)],
    ),
    (
        "json-truncated",
        "demo",
        {"metadata.json": '{\n  "id": "demo",\n  "name": "De'},
        [("metadata-json", "metadata.json", 3, None)],
    ),
    (
        "json-not-an-object",
        "demo",
        {"metadata.json": "[1, 2]\n"},
        [("metadata-schema", "metadata.json", 1, None)],
    ),
    # ---- metadata.json: schema
    (
        "schema-bad-parameter-type",
        "demo",
        {"metadata.json": META.replace('"type": "string"', '"type": "str"')},
        [("metadata-schema", "metadata.json", 5, "parameters.0.type")],
    ),
    (
        "schema-missing-name",
        "demo",
        {"metadata.json": META.replace('  "name": "Demo",\n', "")},
        [("metadata-schema", "metadata.json", 1, "name")],
    ),
    (
        "schema-unknown-field",
        "demo",
        {"metadata.json": META.replace('"name": "Demo",', '"name": "Demo",\n  "colour": "red",')},
        [("metadata-schema", "metadata.json", 4, "colour")],
    ),
    (
        "schema-required-with-default",
        "demo",
        {"metadata.json": META.replace('"type": "string"}', '"type": "string", "default": "x"}')},
        [("metadata-schema", "metadata.json", 5, "parameters.0")],
    ),
    (
        "schema-confidence-band",
        "demo",
        {"metadata.json": meta_with(confidence={"score": 0.9, "band": "review"})},
        [("metadata-schema", "metadata.json", 24, "confidence")],
    ),
    (
        "schema-repeated-tags",
        "demo",
        {"metadata.json": meta_with(tags=["text", "text"])},
        [("metadata-schema", "metadata.json", 24, "tags")],
    ),
    (
        "schema-zero-timeout",
        "demo",
        {"metadata.json": meta_with(limits={"timeout_s": 0})},
        [("metadata-schema", "metadata.json", 25, "limits.timeout_s")],
    ),
    (
        "schema-version-2",
        "demo",
        {"metadata.json": meta_with(schema_version=2)},
        [("metadata-schema", "metadata.json", 24, "schema_version")],
    ),
    (
        "schema-unknown-status",
        "demo",
        {"metadata.json": meta_with(status="retired")},
        [("metadata-schema", "metadata.json", 24, "status")],
    ),
    (
        "schema-example-not-object",
        "demo",
        {"metadata.json": META.replace('{"input": {"text": "a b"}, "output": "a-b"}', '"a b"')},
        [("metadata-schema", "metadata.json", 9, "examples.0")],
    ),
    (
        "schema-bad-parameter-name",
        "demo",
        {"metadata.json": META.replace('"name": "text"', '"name": "the text"')},
        [("metadata-schema", "metadata.json", 5, "parameters.0.name")],
    ),
    # ---- ids
    (
        "id-mismatch",
        "demo",
        {"metadata.json": META.replace('"id": "demo"', '"id": "other"')},
        [("id-mismatch", "metadata.json", 2, "id")],
    ),
    (
        "metadata-id-invalid",
        "demo",
        {"metadata.json": META.replace('"id": "demo"', '"id": "Demo"')},
        [("metadata-schema", "metadata.json", 2, "id")],
    ),
    ("folder-dotdot", "../etc", {}, [("id-invalid", "", None, None)]),
    ("folder-upper", "UPPER", {}, [("id-invalid", "", None, None)]),
    ("folder-too-long", "a" * 65, {}, [("id-invalid", "", None, None)]),
    ("folder-leading-dash", "-demo", {}, [("id-invalid", "", None, None)]),
    ("folder-space", "my demo", {}, [("id-invalid", "", None, None)]),
    # ---- required files, syntax, encodings
    ("missing-main", "demo", {"main.py": None}, [("missing-file", "main.py", None, None)]),
    (
        "missing-metadata",
        "demo",
        {"metadata.json": None},
        [("missing-file", "metadata.json", None, None)],
    ),
    (
        "syntax-error",
        "demo",
        {"main.py": "import re\n\ndef main(text: str, limit: int = 10)\n    return text\n"},
        [("syntax", "main.py", 3, None)],
    ),
    (
        "syntax-error-in-helper",
        "demo",
        {"helpers.py": "def clean(s):\n    return s.strip(\n"},
        [("syntax", "helpers.py", 2, None)],
    ),
    (
        "not-utf8",
        "demo",
        {"main.py": b'import re\n\nWORD = "caf\xe9"\n'},
        [("encoding", "main.py", 3, None)],
    ),
    (
        "utf8-bom",
        "demo",
        {"metadata.json": b"\xef\xbb\xbf" + META.encode()},
        [("encoding", "metadata.json", 1, None)],
    ),
    (
        "coding-cookie",
        "demo",
        {"main.py": "# -*- coding: utf-7 -*-\n" + MAIN},
        [("encoding-declaration", "main.py", 1, None)],
    ),
    (
        "binary-file",
        "demo",
        {"data.txt": b"one\ntwo\x00three"},
        [("binary-file", "data.txt", 2, None)],
    ),
    (
        "oversized-file",
        "demo",
        {"README.md": "x" * (256 * 1024 + 1)},
        [("file-too-large", "README.md", None, None)],
    ),
    (
        "oversized-folder",
        "demo",
        {f"data{i}.txt": "x" * (250 * 1024) for i in range(5)},
        [("folder-too-large", "", None, None)],
    ),
    (
        "too-many-files",
        "demo",
        {f"notes{i}.txt": "note\n" for i in range(31)},
        [("too-many-files", "", None, None)],
    ),
    # ---- git modes and unexpected files
    (
        "symlink",
        "demo",
        {"data.txt": FileEntry(b"/etc/passwd", MODE_SYMLINK)},
        [("symlink", "data.txt", None, None)],
    ),
    (
        "symlinked-main",
        "demo",
        {"main.py": FileEntry(b"../other/main.py", MODE_SYMLINK)},
        [("symlink", "main.py", None, None)],
    ),
    (
        "executable-main",
        "demo",
        {"main.py": FileEntry(MAIN.encode(), MODE_EXECUTABLE)},
        [("executable-file", "main.py", None, None)],
    ),
    (
        "submodule",
        "demo",
        {"vendor": FileEntry(b"", MODE_SUBMODULE)},
        [("submodule", "vendor", None, None)],
    ),
    (
        "shell-script",
        "demo",
        {"run.sh": "#!/bin/sh\n"},
        [("unexpected-file", "run.sh", None, None)],
    ),
    ("hidden-file", "demo", {".env": "TOKEN=1\n"}, [("unexpected-file", ".env", None, None)]),
    (
        "bytecode-cache",
        "demo",
        {"__pycache__/main.cpython-311.pyc": b"\x00\x00"},
        [("unexpected-file", "__pycache__/main.cpython-311.pyc", None, None)],
    ),
    (
        "helper-shadows-stdlib",
        "demo",
        {"json.py": "def loads(s):\n    return s\n"},
        [("shadows-stdlib", "json.py", None, None)],
    ),
    # ---- the entry point's form
    (
        "entry-point-missing",
        "demo",
        {"main.py": MAIN.replace("def main(", "def run(")},
        [("entry-point-missing", "main.py", None, None)],
    ),
    (
        "entry-point-in-block",
        "demo",
        {"main.py": "if True:\n\n    def main(text, limit=10):\n        return text\n"},
        [("entry-point-missing", "main.py", None, None)],
    ),
    (
        "entry-point-named-elsewhere",
        "demo",
        {"metadata.json": meta_with(entry_point="run")},
        [("entry-point-missing", "main.py", None, None)],
    ),
    (
        "entry-point-async",
        "demo",
        {"main.py": MAIN.replace("def main(", "async def main(")},
        [("entry-point-async", "main.py", 6, None)],
    ),
    (
        "entry-point-generator",
        "demo",
        {"main.py": main_with("for word in text.split():\n    yield word\n")},
        [("entry-point-generator", "main.py", 5, None)],
    ),
    (
        "entry-point-decorated",
        "demo",
        {"main.py": "import functools\n\n\n@functools.cache\n" + MAIN.split("\n\n\n")[1]},
        [("entry-point-decorated", "main.py", 4, None)],
    ),
    (
        "entry-point-lambda",
        "demo",
        {"main.py": "main = lambda text, limit=10: text\n"},
        [("entry-point-not-function", "main.py", 1, None)],
    ),
    (
        "entry-point-class",
        "demo",
        {"main.py": "class main:\n    def __init__(self, text, limit=10):\n        pass\n"},
        [("entry-point-not-function", "main.py", 1, None)],
    ),
    (
        "entry-point-rebound",
        "demo",
        {"main.py": MAIN + "\n\nmain = print\n"},
        [("entry-point-not-function", "main.py", 11, None)],
    ),
    (
        "entry-point-positional-only",
        "demo",
        {"main.py": MAIN.replace("limit: int = 10)", "limit: int = 10, /)")},
        [
            ("entry-point-positional-only", "main.py", 6, None),
            ("entry-point-positional-only", "main.py", 6, None),
        ],
    ),
    (
        "entry-point-varargs",
        "demo",
        {"main.py": MAIN.replace("limit: int = 10)", "*words: str, limit: int = 10)")},
        [("entry-point-varargs", "main.py", 6, None)],
    ),
    # ---- parameters: code against metadata.json
    (
        "metadata-parameter-not-in-code",
        "demo",
        {"main.py": MAIN.replace(", limit: int = 10", "").replace("[:limit]", "")},
        [("parameter-not-in-code", "metadata.json", 6, "parameters.1")],
    ),
    (
        "code-parameter-not-in-metadata",
        "demo",
        {"main.py": MAIN.replace("limit: int = 10)", "limit: int = 10, sep: str = '-')")},
        [("parameter-not-in-metadata", "main.py", 6, None)],
    ),
    (
        "required-in-metadata-default-in-code",
        "demo",
        {"main.py": MAIN.replace("text: str,", "text: str = '',")},
        [("parameter-required-mismatch", "main.py", 6, None)],
    ),
    (
        "optional-in-metadata-no-default-in-code",
        "demo",
        {"main.py": MAIN.replace("limit: int = 10", "*, limit: int")},
        [("parameter-required-mismatch", "main.py", 6, None)],
    ),
    (
        "default-mismatch",
        "demo",
        {"main.py": MAIN.replace("limit: int = 10", "limit: int = 5")},
        [("parameter-default-mismatch", "main.py", 6, None)],
    ),
    (
        "default-bool-is-not-int",
        "demo",
        {"metadata.json": META.replace('"default": 10', '"default": true')},
        [("parameter-default-mismatch", "main.py", 6, None)],
    ),
    (
        "default-not-literal",
        "demo",
        {"main.py": "LIMIT = 10\n" + MAIN.replace("limit: int = 10", "limit: int = LIMIT")},
        [("parameter-default-not-literal", "main.py", 7, None)],
    ),
    (
        "annotation-contradicts-type",
        "demo",
        {"main.py": MAIN.replace("limit: int = 10", "limit: str = 10")},
        [("parameter-type-mismatch", "main.py", 6, None)],
    ),
    (
        "annotation-bool-for-integer",
        "demo",
        {"main.py": MAIN.replace("limit: int = 10", "limit: bool | None = 10")},
        [("parameter-type-mismatch", "main.py", 6, None)],
    ),
    (
        "annotation-list-for-string",
        "demo",
        {"main.py": MAIN.replace("text: str", "text: 'list[str]'")},
        [("parameter-type-mismatch", "main.py", 6, None)],
    ),
    # ---- examples
    (
        "example-unknown-key",
        "demo",
        {"metadata.json": META.replace('{"text": "a b"}', '{"text": "a b", "txt": "x"}')},
        [("example-unknown-parameter", "metadata.json", 9, "examples.0.input.txt")],
    ),
    (
        "example-missing-required",
        "demo",
        {"metadata.json": META.replace('{"text": "a b"}', '{"limit": 1}')},
        [("example-missing-parameter", "metadata.json", 9, "examples.0.input")],
    ),
    (
        "example-wrong-type",
        "demo",
        {"metadata.json": META.replace('{"text": "a b"}', '{"text": "a b", "limit": "2"}')},
        [("example-type-mismatch", "metadata.json", 9, "examples.0.input.limit")],
    ),
    # ---- imports
    (
        "import-os",
        "demo",
        {"main.py": main_with("", "import os")},
        [("denied-import", "main.py", 1, None)],
    ),
    (
        "import-subprocess",
        "demo",
        {"main.py": main_with("", "import re\nimport subprocess")},
        [("denied-import", "main.py", 2, None)],
    ),
    (
        "import-socket-aliased",
        "demo",
        {"main.py": main_with("", "import socket as s")},
        [("denied-import", "main.py", 1, None)],
    ),
    (
        "import-sys",
        "demo",
        {"main.py": main_with("", "import sys")},
        [("denied-import", "main.py", 1, None)],
    ),
    (
        "import-ctypes",
        "demo",
        {"main.py": main_with("", "import ctypes")},
        [("denied-import", "main.py", 1, None)],
    ),
    (
        "import-importlib-inside-function",
        "demo",
        {"main.py": main_with("import importlib.util\nreturn text\n")},
        [("denied-import", "main.py", 4, None)],
    ),
    (
        "from-os-import-system",
        "demo",
        {"main.py": main_with("", "from os import system")},
        [("denied-import", "main.py", 1, None)],
    ),
    (
        "import-os-path",
        "demo",
        {"main.py": main_with("", "import os.path")},
        [("denied-import", "main.py", 1, None)],
    ),
    (
        "from-os-import-path",
        "demo",
        {"main.py": main_with("", "from os import path")},
        [("denied-import", "main.py", 1, None)],
    ),
    (
        "from-urllib-import-request",
        "demo",
        {"main.py": main_with("", "from urllib import parse, request")},
        [("denied-import", "main.py", 1, None)],
    ),
    (
        "import-urllib-request",
        "demo",
        {"main.py": main_with("", "import urllib.request")},
        [("denied-import", "main.py", 1, None)],
    ),
    (
        "from-subprocess-import-run",
        "demo",
        {"main.py": main_with("", "from subprocess import run as go")},
        [("denied-import", "main.py", 1, None)],
    ),
    (
        "from-typing-import-sys",
        "demo",
        {"main.py": main_with("", "from typing import sys")},
        [("denied-attribute", "main.py", 1, None)],
    ),
    (
        "relative-import",
        "demo",
        {"main.py": main_with("", "from . import helpers"), "helpers.py": "X = 1\n"},
        [("relative-import", "main.py", 1, None)],
    ),
    (
        "star-import",
        "demo",
        {"main.py": main_with("", "from math import *")},
        [("star-import", "main.py", 1, None)],
    ),
    (
        "helper-imports-os",
        "demo",
        {"main.py": main_with("", "import helpers"), "helpers.py": "import os\n"},
        [("denied-import", "helpers.py", 1, None)],
    ),
    # ---- denied builtins and dynamic attributes
    (
        "eval",
        "demo",
        {"main.py": main_with("return eval(text)\n")},
        [("denied-builtin", "main.py", 4, None)],
    ),
    (
        "exec",
        "demo",
        {"main.py": main_with("exec(text)\nreturn text\n")},
        [("denied-builtin", "main.py", 4, None)],
    ),
    (
        "compile",
        "demo",
        {"main.py": main_with("code = compile(text, 'x', 'exec')\nreturn text\n")},
        [("denied-builtin", "main.py", 4, None)],
    ),
    (
        "dunder-import",
        "demo",
        {"main.py": main_with("return __import__('os').getcwd()\n")},
        [("denied-builtin", "main.py", 4, None)],
    ),
    (
        "eval-by-alias",
        "demo",
        {"main.py": main_with("run = eval\nreturn run(text)\n")},
        [("denied-builtin", "main.py", 4, None)],
    ),
    (
        "breakpoint",
        "demo",
        {"main.py": main_with("breakpoint()\nreturn text\n")},
        [("denied-builtin", "main.py", 4, None)],
    ),
    (
        "globals",
        "demo",
        {"main.py": main_with("return str(globals())\n")},
        [("denied-builtin", "main.py", 4, None)],
    ),
    (
        "getattr-dunder",
        "demo",
        {"main.py": main_with("return getattr(text, '__class__')\n")},
        [("dunder-attribute", "main.py", 4, None)],
    ),
    (
        "getattr-computed",
        "demo",
        {"main.py": main_with("name = '_' * 2 + 'class' + '_' * 2\nreturn getattr(text, name)\n")},
        [("dynamic-attribute", "main.py", 5, None)],
    ),
    (
        "attrgetter-dunder",
        "demo",
        {
            "main.py": main_with(
                "return attrgetter('upper.__self__')(text)\n", "from operator import attrgetter"
            )
        },
        [("dunder-attribute", "main.py", 4, None)],
    ),
    # ---- dunder escapes
    (
        "subclasses-escape",
        "demo",
        {"main.py": main_with("return ().__class__.__bases__[0].__subclasses__()\n")},
        [("dunder-attribute", "main.py", 4, None)] * 3,
    ),
    (
        "function-globals",
        "demo",
        {"main.py": main_with("return main.__globals__['re']\n")},
        [("dunder-attribute", "main.py", 4, None)],
    ),
    (
        "builtins-name",
        "demo",
        {"main.py": main_with("return __builtins__['open']\n")},
        [("dunder-name", "main.py", 4, None)],
    ),
    (
        "frame-globals",
        "demo",
        {"main.py": main_with("gen = (c for c in text)\nreturn gen.gi_frame.f_globals\n")},
        [("denied-attribute", "main.py", 5, None)] * 2,
    ),
    (
        "os-behind-random",
        "demo",
        {"main.py": main_with("return random._os.getcwd()\n", "import random")},
        [("denied-attribute", "main.py", 4, None)],
    ),
    (
        "format-field-escape",
        "demo",
        {"main.py": main_with("return '{0.__class__.__mro__}'.format(text)\n")},
        [("dunder-string", "main.py", 4, None)],
    ),
    (
        "string-annotation-runs-code",
        "demo",
        {
            "main.py": main_with(
                "@f.register\ndef _(x: \"exec('import os')\") -> None:\n    pass\nreturn text\n",
                "from functools import singledispatch as f",
            )
        },
        [("denied-builtin", "main.py", 5, None)],
    ),
    (
        "getattr-passed-as-value",
        "demo",
        {
            "main.py": main_with(
                "return reduce(getattr, ['upper'], text)()\n", "from functools import reduce"
            )
        },
        [("dynamic-attribute", "main.py", 4, None)],
    ),
    (
        "attrgetter-renamed",
        "demo",
        {"main.py": main_with("return text\n", "from operator import attrgetter as ag")},
        [("dynamic-attribute", "main.py", 1, None)],
    ),
    (
        "typing-evaluates-strings",
        "demo",
        {"main.py": main_with("return str(typing.get_type_hints(main))\n", "import typing")},
        [("denied-attribute", "main.py", 4, None)],
    ),
    (
        "nested-too-deeply",
        "demo",
        {"main.py": main_with("return text + " + " + ".join(["text"] * 20000) + "\n")},
        [("too-complex", "main.py", None, None)],
    ),
    (
        "match-class-pattern",
        "demo",
        {
            "main.py": main_with(
                "match text:\n    case str(__class__=c):\n        return c\nreturn text\n"
            )
        },
        [("dunder-attribute", "main.py", 5, None)],
    ),
]


@pytest.mark.parametrize(
    ("folder", "files", "expected"),
    [pytest.param(folder, files, expected, id=case) for case, folder, files, expected in CASES],
)
def test_malformed_procedure_reports_exact_problem(folder, files, expected) -> None:
    result = validate_snapshot(make(files, folder))
    assert found(result, folder) == sorted(expected), [p.format() for p in result.problems]
    assert not result.ok


def test_corpus_is_large_and_covers_every_rule() -> None:
    assert len(CASES) >= 45
    assert len({case for case, *_ in CASES}) == len(CASES)
    assert {rule for *_, expected in CASES for rule, *_ in expected} == RULES


def test_every_rule_is_documented() -> None:
    docs = (REPO_ROOT / "docs" / "validation.md").read_text()
    assert {rule for rule in RULES if f"`{rule}`" not in docs} == set()


def test_valid_procedure_passes_with_helpers_docs_and_data() -> None:
    main = dedent(
        '''
        """Slugify a text."""

        from __future__ import annotations

        import unicodedata
        from typing import Optional

        import helpers
        from pkg.text import squash
        from urllib.parse import quote


        def main(text: str, limit: Optional[int] = 10, **extra: object) -> str:
            """Uses __init__-style dunders only in the docstring."""
            word = squash(helpers.clean(unicodedata.normalize("NFKD", text)))
            return quote(word)[:limit]


        if __name__ == "__main__":
            print(main(text="Hello"))
        '''
    )
    snap = make(
        {
            "main.py": main,
            "helpers.py": "import re\n\n\ndef clean(s: str) -> str:\n"
            "    return re.sub(r'\\s+', '-', s)\n",
            "pkg/__init__.py": "",
            "pkg/text.py": "def squash(s: str) -> str:\n    return s.lower()\n",
            "README.md": "# Demo\n",
            "data/words.csv": "a,b\n",
        }
    )
    result = validate_snapshot(snap)
    assert result.ok, [p.format() for p in result.problems]
    assert result.metadata is not None and result.metadata.id == "demo"
    assert result.signature is not None
    assert [p.name for p in result.signature.named] == ["text", "limit"]


def test_numeric_id_and_default_demo_are_valid() -> None:
    result = validate_snapshot(make({"metadata.json": META.replace('"demo"', '"42"')}, "42"))
    assert result.ok, [p.format() for p in result.problems]
    assert id_problems("42", "procedures/42") == []


def test_lenient_annotations_pass() -> None:
    main = MAIN.replace("text: str", "text: 'Text'").replace("limit: int = 10", "limit: MyInt = 10")
    result = validate_snapshot(make({"main.py": "from typing import Text\nMyInt = int\n" + main}))
    assert result.ok, [p.format() for p in result.problems]


def test_every_problem_is_gathered_without_stopping() -> None:
    snap = make(
        {
            "main.py": main_with("return eval(text)\n", "import os"),
            "metadata.json": META.replace('"name": "Demo",', '"name": "Demo",\n  "colour": 1,'),
            "helpers.py": "def broken(:\n",
            "run.sh": "echo\n",
        }
    )
    rules = {p.rule for p in validate_snapshot(snap).problems}
    assert rules == {
        "denied-import",
        "denied-builtin",
        "metadata-schema",
        "syntax",
        "unexpected-file",
    }


def test_config_allow_imports_allows_os() -> None:
    config = ValidationSection(allow_imports=["os"])
    main = main_with(
        "return os.path.join(random._os.sep, text)\n", "import os\nimport os.path\nimport random"
    )
    result = validate_snapshot(make({"main.py": main}), config)
    assert result.ok, [p.format() for p in result.problems]
    assert validate_snapshot(make({"main.py": main})).problems  # not without the config


def test_config_deny_imports_denies_json() -> None:
    config = ValidationSection(deny_imports=["json"])
    result = validate_snapshot(make({"main.py": main_with("", "import json.decoder")}), config)
    assert found(result) == [("denied-import", "main.py", 1, None)]
    assert "deny_imports" in result.problems[0].message


def test_config_deny_parent_denies_allowed_submodule() -> None:
    problems = check_source(
        "import urllib.parse\n", "x.py", ValidationSection(deny_imports=["urllib"])
    )
    assert [(p.rule, p.line) for p in problems] == [("denied-import", 1)]


def test_always_denied_cannot_be_allowed_by_config() -> None:
    config = ValidationSection(allow_imports=["ctypes", "importlib"])
    problems = check_source("import ctypes\nfrom importlib import import_module\n", "x.py", config)
    assert [(p.rule, p.line) for p in problems] == [("denied-import", 1), ("denied-import", 2)]
    assert "not even through allow_imports" in problems[0].message


def test_urllib_parse_allowed_in_every_form() -> None:
    source = "import urllib.parse\nfrom urllib import parse\nfrom urllib.parse import quote\n"
    assert check_source(source, "x.py") == []


def test_os_path_message_points_at_os() -> None:
    [problem] = check_source("import os.path\n", "x.py")
    assert "'os'" in problem.message and "allow_imports" in problem.message


def test_sibling_helper_imports_are_local_only_when_present() -> None:
    source = "import helpers\nfrom helpers import clean\n"
    assert check_source(source, "main.py", local_modules={"helpers"}) == []
    assert {p.rule for p in check_source(source, "main.py")} == {"denied-import"}


def test_check_source_reports_syntax_with_line() -> None:
    [problem] = check_source("x = 1\ny = (\n", "procedures/demo/main.py")
    assert (problem.rule, problem.line) == ("syntax", 2)


def test_defaults_are_sane() -> None:
    assert {"re", "json", "math", "urllib.parse", "datetime"} <= DEFAULT_ALLOWED_IMPORTS
    assert not {"os", "sys", "subprocess", "socket", "urllib", "os.path"} & DEFAULT_ALLOWED_IMPORTS
    assert {"ctypes", "importlib", "builtins", "marshal", "pickle"} <= ALWAYS_DENIED_IMPORTS
    assert not DEFAULT_ALLOWED_IMPORTS & ALWAYS_DENIED_IMPORTS


def test_problem_format_is_path_line_rule_message() -> None:
    result = validate_snapshot(make({"main.py": main_with("", "import os")}))
    [problem] = result.problems
    assert problem.format() == f"procedures/demo/main.py:1: denied-import: {problem.message}"
    assert problem.message.startswith("`os` is not on the import allowlist")
    whole_file = Problem(path="procedures/demo/main.py", rule="missing-file", message="add it")
    assert whole_file.format() == "procedures/demo/main.py: missing-file: add it"


def test_metadata_schema_message_names_the_field() -> None:
    result = validate_snapshot(
        make({"metadata.json": META.replace('"type": "string"', '"type": "str"')})
    )
    [problem] = result.problems
    assert problem.message.startswith("parameters.0.type: Input should be 'string'")


def test_mismatch_messages_name_both_files() -> None:
    result = validate_snapshot(
        make({"main.py": MAIN.replace(", limit: int = 10", "").replace("[:limit]", "")})
    )
    [problem] = result.problems
    assert "metadata.json" in problem.message and "main.py" in problem.message
    assert "'limit'" in problem.message


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("../etc", "'.'"),
        ("UPPER", "uppercase"),
        ("a" * 65, "65 characters"),
        ("", "empty"),
        ("_x", "must start"),
    ],
)
def test_id_problems_explain_why(value: str, reason: str) -> None:
    [problem] = id_problems(value, f"procedures/{value}")
    assert problem.rule == "id-invalid" and reason in problem.message


def test_problems_are_json_round_trippable() -> None:
    result = validate_snapshot(make({"main.py": main_with("", "import os")}))
    again = ValidationResult.model_validate_json(result.model_dump_json())
    assert again.problems == result.problems and not again.ok


def test_mode_file_constant_is_the_plain_mode() -> None:
    snap = make({"notes.txt": FileEntry(b"hello\n", MODE_FILE)})
    assert validate_snapshot(snap).ok


def test_not_allowlisted_third_party_suggests_the_package() -> None:
    [problem] = check_source("from requests import get\n", "x.py")
    assert (
        problem.rule == "denied-import"
        and "'requests' to [validation] allow_imports" in problem.message
    )


def test_allowing_os_path_alone_allows_from_import_but_not_binding_os() -> None:
    config = ValidationSection(allow_imports=["os.path"])
    assert check_source("from os import path\nimport os.path as p\n", "x.py", config) == []
    [problem] = check_source("import os.path\n", "x.py", config)
    assert problem.rule == "denied-import" and "binds `os`" in problem.message


def test_ordinary_code_has_no_false_positives() -> None:
    source = dedent(
        '''
        """Uses dunders only where they are harmless."""
        from __future__ import annotations

        import dataclasses
        import json
        from collections import Counter
        from pathlib import Path


        @dataclasses.dataclass
        class Item:
            name: str
            count: int = 0

            def __post_init__(self) -> None:
                self.name = self.name.strip()


        class Error(Exception):
            def __init__(self, message: str) -> None:
                super().__init__(message)


        def main(path: "Path", input: str = "") -> dict[str, int]:
            words = Counter(Path(path).read_text().split() + input.split())
            item = Item(name=type(words).__name__)
            return json.loads(json.dumps({**words, item.name: getattr(item, "count")}))


        if __name__ == "__main__":
            print(main.__doc__, __name__)
        '''
    )
    assert check_source(source, "x.py") == []


def test_walk_nodes_is_ast_walk_in_the_same_order() -> None:
    # the code rules rely on breadth-first order (a call is seen before its arguments)
    import ast

    from registry.core.codecheck import walk_nodes

    for path in (REPO_ROOT / "registry" / "core").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert [id(n) for n in walk_nodes(tree)] == [id(n) for n in ast.walk(tree)], path
