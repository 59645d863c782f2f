"""The repository's own procedures: valid metadata, honest signatures, passing examples.

Every folder under ``procedures/`` is checked: ``metadata.json`` parses and is
written canonically, the entry point's signature (read by ast) agrees with the
declared parameters, the code imports only the pure-stdlib allowlist, and every
example, run in-process, returns exactly its declared output. These are our own
trusted procedures, so importing them here is fine; the sandbox runs them for real.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import sys
from collections.abc import Callable
from typing import Any

import pytest

from registry.core.ids import ID_RE
from registry.core.model import Metadata
from registry.core.signature import read_signature
from tests.helpers import REPO_ROOT

PROCEDURES = REPO_ROOT / "procedures"
IDS = sorted(p.name for p in PROCEDURES.iterdir() if p.is_dir())
ALLOWED_IMPORTS = {
    "re", "json", "math", "datetime", "string", "textwrap", "unicodedata", "urllib.parse",
    "collections", "itertools", "functools", "operator", "hashlib", "base64", "binascii",
    "typing", "dataclasses", "decimal", "fractions", "statistics", "difflib", "html", "csv",
    "io", "enum", "calendar",
}  # fmt: skip


def metadata(proc_id: str) -> Metadata:
    return Metadata.model_validate_json((PROCEDURES / proc_id / "metadata.json").read_bytes())


def source(proc_id: str) -> str:
    return (PROCEDURES / proc_id / "main.py").read_text(encoding="utf-8")


@functools.cache
def load_main(proc_id: str) -> Callable[..., Any]:
    path = PROCEDURES / proc_id / "main.py"
    spec = importlib.util.spec_from_file_location(f"procreg_own_{proc_id.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # A __pycache__ folder would be a third file in the procedure's folder.
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module.main


def json_round_trip(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))


def test_there_are_enough_procedures() -> None:
    assert len(IDS) >= 10, IDS


@pytest.mark.parametrize("proc_id", IDS)
def test_folder_holds_exactly_code_and_metadata(proc_id: str) -> None:
    folder = PROCEDURES / proc_id
    assert ID_RE.match(proc_id)
    assert sorted(p.name for p in folder.iterdir()) == ["main.py", "metadata.json"]
    for path in folder.iterdir():
        assert path.is_file() and not path.is_symlink()
        assert not path.stat().st_mode & 0o111, f"{path} must not be executable"
        path.read_text(encoding="utf-8")


@pytest.mark.parametrize("proc_id", IDS)
def test_metadata_is_valid_and_canonical(proc_id: str) -> None:
    meta = metadata(proc_id)
    assert meta.id == proc_id
    assert meta.entry_point == "main"
    assert len(meta.examples) >= 3
    assert 3 <= len(meta.tags) <= 6
    assert meta.category in {"text", "data", "dates", "versions", "web", "encoding", "security"}
    assert meta.description and meta.returns.description
    assert (PROCEDURES / proc_id / "metadata.json").read_text(encoding="utf-8") == meta.to_json()


@pytest.mark.parametrize("proc_id", IDS)
def test_signature_matches_metadata(proc_id: str) -> None:
    meta = metadata(proc_id)
    sig = read_signature(source(proc_id), meta.entry_point)
    assert sig is not None, f"{proc_id}: no top-level def {meta.entry_point}"
    assert not sig.is_async and sig.docstring and sig.returns
    assert all(p.kind in ("positional_or_keyword", "keyword_only") for p in sig.params)
    assert all(p.annotation for p in sig.params)
    assert [p.name for p in sig.params] == [p.name for p in meta.parameters]
    for declared in meta.parameters:
        written = sig.param(declared.name)
        assert written is not None
        assert declared.required == (not written.has_default), declared.name
        if written.default is not None:
            assert ast.literal_eval(written.default) == declared.default, declared.name


@pytest.mark.parametrize("proc_id", IDS)
def test_code_uses_only_the_allowlist(proc_id: str) -> None:
    tree = ast.parse(source(proc_id))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= ALLOWED_IMPORTS, ast.unparse(node)
        elif isinstance(node, ast.ImportFrom):
            assert node.module in ALLOWED_IMPORTS and node.level == 0, ast.unparse(node)
        elif isinstance(node, ast.Name):
            assert node.id not in {"eval", "exec", "compile", "__import__", "open"}, node.id
        elif isinstance(node, ast.Attribute):
            assert not node.attr.startswith("__"), node.attr
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    assert not main.decorator_list
    assert not any(isinstance(n, ast.Yield | ast.YieldFrom) for n in ast.walk(main))


EXAMPLES = [
    pytest.param(proc_id, i, id=f"{proc_id}-{i}")
    for proc_id in IDS
    for i in range(len(metadata(proc_id).examples))
]


@pytest.mark.parametrize(("proc_id", "index"), EXAMPLES)
def test_example_passes(proc_id: str, index: int) -> None:
    example = metadata(proc_id).examples[index]
    result = load_main(proc_id)(**json_round_trip(example.input))
    assert json_round_trip(result) == example.output, example.description


# Invalid input fails with a ValueError whose message says what is wrong.
INVALID = [
    ("slugify", {"text": "x", "separator": "+"}, "separator must be"),
    ("slugify", {"text": "x", "max_length": -1}, "max_length"),
    ("semver-bump", {"version": "1.2", "part": "minor"}, "not a semantic version"),
    ("semver-bump", {"version": "1.2.3", "part": "micro"}, "part must be"),
    ("semver-compare", {"a": "1.0.0", "b": "01.0.0"}, "b='01.0.0'"),
    ("url-parse", {"url": "  "}, "url is empty"),
    ("url-parse", {"url": "http://example.com:99999/"}, "cannot parse url"),
    ("url-set-query", {"url": "https://x.example/", "params": {"a": {"b": 1}}}, "params['a']"),
    ("json-pointer-get", {"document": {"a": 1}, "pointer": "a"}, "must be empty or start"),
    ("json-pointer-get", {"document": {"a": 1}, "pointer": "/b"}, "key 'b' not found"),
    ("json-pointer-get", {"document": [1, 2], "pointer": "/01"}, "not an array index"),
    ("json-pointer-get", {"document": {"a~b": 1}, "pointer": "/a~b", "missing_ok": True}, "escape"),
    ("json-flatten", {"data": {"a.b": 1, "a": {"b": 2}}}, "two paths flatten to the key 'a.b'"),
    ("json-flatten", {"data": [1]}, "must be a JSON object"),
    ("text-stats", {"text": "x", "words_per_minute": 0}, "words_per_minute"),
    ("business-days-add", {"date": "15/03/2024", "days": 1}, "ISO date"),
    ("business-days-add", {"date": "2024-03-15", "days": 1, "holidays": ["soon"]}, "holidays[0]"),
    ("business-days-add", {"date": "9999-12-31", "days": 1}, "outside the years"),
    ("iso-week", {"date": "2024-02-30"}, "ISO date"),
    ("parse-duration", {"text": ""}, "empty"),
    ("parse-duration", {"text": "P1M"}, "no fixed length"),
    ("parse-duration", {"text": "1h 30x"}, "unknown unit 'x'"),
    ("parse-duration", {"text": "-5s"}, "cannot parse duration"),
    ("parse-duration", {"text": "and 1h"}, "cannot parse duration"),
    ("parse-duration", {"text": "1:75"}, "clock"),
    ("humanize-bytes", {"size": 1.5}, "whole number"),
    ("humanize-bytes", {"size": 1, "precision": 9}, "precision"),
    ("csv-to-rows", {"text": "a,b\n1,2,3\n"}, "line 2 has 3 fields"),
    ("csv-to-rows", {"text": "a,a\n1,2\n"}, "repeats the name 'a'"),
    ("csv-to-rows", {"text": "a\n1", "delimiter": ";;"}, "delimiter"),
    ("conventional-commit-parse", {"message": "Merge branch 'main'"}, "not a conventional commit"),
    ("conventional-commit-parse", {"message": "feat(): nothing"}, "not a conventional commit"),
    ("base64", {"data": "aGk=", "mode": "unzip"}, "mode must be"),
    ("base64", {"data": "aGk*", "mode": "decode"}, "unexpected character '*'"),
    ("base64", {"data": "/w==", "mode": "decode"}, "not UTF-8"),
    ("levenshtein-distance", {"a": "x" * 3000, "b": "y" * 3000}, "too long"),
]


@pytest.mark.parametrize(("proc_id", "kwargs", "message"), INVALID)
def test_invalid_input_raises_a_clear_value_error(
    proc_id: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=None) as info:
        load_main(proc_id)(**kwargs)
    assert message in str(info.value)


def test_secret_masking_leaves_no_secret_behind() -> None:
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    text = f"config:\n  client_secret: 'x y z'\n  session={jwt}\n{key}\nslack xoxb-1234567890-abc"
    result = load_main("mask-secrets")(text=text)
    for secret in ("x y z", jwt, "MIIEowIBAAKCAQEA7", "xoxb-1234567890-abc"):
        assert secret not in result["text"]
    assert "client_secret: '****'" in result["text"]
    assert result["kinds"] == ["assignment", "jwt", "private_key", "slack_token"]


def test_a_private_key_cut_short_is_still_masked() -> None:
    text = "log: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5v\n[truncated]"
    result = load_main("mask-secrets")(text=text, mask="<key>")
    assert result == {"text": "log: <key>", "count": 1, "kinds": ["private_key"]}


def test_base64_round_trips_any_text() -> None:
    main = load_main("base64")
    for text in ("", "a", "ab", "abc", "ünïcødé 🐍", "line\nbreaks\tand\0nul"):
        for url_safe in (False, True):
            for padding in (False, True):
                encoded = main(data=text, url_safe=url_safe, padding=padding)
                assert main(data=encoded, mode="decode") == text


def test_semver_compare_sorts_the_spec_example() -> None:
    # semver.org section 11: these are in ascending precedence.
    ordered = [
        "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
        "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0",
    ]  # fmt: skip
    compare = load_main("semver-compare")
    for i, a in enumerate(ordered):
        for j, b in enumerate(ordered):
            assert compare(a=a, b=b) == (i > j) - (i < j), (a, b)
