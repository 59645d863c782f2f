"""Code generation: the built-in generator's code validates, runs and never runs shell steps;
the chat-completions generator talks to a local fake endpoint and falls back when its answer
is unusable."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from registry.core.snapshot import MAIN_FILE, METADATA_FILE, FileEntry, Snapshot
from registry.core.validation import validate_snapshot
from registry.errors import MigrationError
from registry.migrate.analysis import analyse, parse_list, safe_identifier
from registry.migrate.codegen import (
    BuiltinGenerator,
    ChatCompletionsGenerator,
    LLMSettings,
    check_signature,
    extract_code,
)
from registry.migrate.convert import build_metadata, score
from registry.migrate.legacy import LegacyProcedure, read_file_source
from tests.helpers import REPO_ROOT
from tests.migrate.legacy_fixtures import build_sqlite


def run_main(source: str, **kwargs: Any) -> Any:
    """Execute generated code in-process (tests only) and call its main."""
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec(compile(source, "main.py", "exec"), namespace)  # running generated code is the point
    return namespace["main"](**kwargs)


def proc(**row: Any) -> LegacyProcedure:
    params = row.pop("params", [])
    base = {"id": 1, "name": "demo", "category": "git", "template": ""}
    return LegacyProcedure("sqlite:t.db", str(row.get("id", 1)), {**base, **row}, params)


def param(name: Any, ptype: Any = "string", required: Any = 1, default: Any = None) -> dict:
    return {
        "id": 1,
        "procedure_id": 1,
        "param_name": name,
        "param_type": ptype,
        "required": required,
        "default_value": default,
        "description": None,
    }


@pytest.fixture(scope="module")
def legacy_procs(tmp_path_factory: pytest.TempPathFactory) -> list[LegacyProcedure]:
    db = build_sqlite(tmp_path_factory.mktemp("codegen") / "legacy.db")
    return read_file_source(str(db), "sqlite", str(db)).procedures


@pytest.mark.parametrize(
    ("text", "items", "fmt"),
    [
        (None, [], "empty"),
        ("   ", [], "empty"),
        ('["a", {"b": 1}]', ["a", {"b": 1}], "json"),
        ('{"step": "x"}', [{"step": "x"}], "json"),
        ("1. open\n2. close", ["open", "close"], "lines"),
        ("- one\n* two", ["one", "two"], "lines"),
        ("lint, test, deploy", ["lint", "test", "deploy"], "comma"),
        ("[broken", ["[broken"], "text"),
        ("just text", ["just text"], "text"),
        ("bash: echo a, b", ["bash: echo a, b"], "text"),
    ],
)
def test_loose_legacy_lists_are_parsed(text: str | None, items: list, fmt: str) -> None:
    assert parse_list(text) == (items, fmt)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["class"], ["class_"]),
        (["dry-run"], ["dry_run"]),
        (["2fa"], ["p_2fa"]),
        (["x", "x"], ["x", "x_2"]),
        (["a-b", "a_b"], ["a_b", "a_b_2"]),
        ([""], ["param"]),
        (["values", "TEMPLATE", "match"], ["values_", "TEMPLATE_", "match_"]),
        (["naïve"], ["naive"]),
    ],
)
def test_unsafe_names_become_distinct_identifiers(names: list[str], expected: list[str]) -> None:
    taken: set[str] = set()
    assert [safe_identifier(n, taken) for n in names] == expected


def test_every_fixture_procedure_validates_and_its_examples_hold(
    legacy_procs: list[LegacyProcedure],
) -> None:
    gen = BuiltinGenerator()
    with_examples = 0
    for p in legacy_procs:
        code = gen.generate(p)
        meta = build_metadata(p, f"p{p.key}", code, score(p, analyse(p), code, True))
        files = {
            MAIN_FILE: FileEntry(code.source.encode()),
            METADATA_FILE: FileEntry(meta.to_json().encode()),
        }
        result = validate_snapshot(Snapshot(f"p{p.key}", files))
        assert result.ok, (p.name, [x.format() for x in result.problems])
        assert "import os" not in code.source and "subprocess" not in code.source
        for example in meta.examples:
            assert run_main(code.source, **example.input) == example.output
            with_examples += 1
        required = {x.name: "v" for x in meta.parameters if x.required}
        out = run_main(code.source, **required)
        assert set(out) == {"rendered", "plan"}
        assert len(out["plan"]) == len(meta.steps)
    assert with_examples >= 5  # fixtures hold usable examples; they became contract tests


def test_generation_is_deterministic(legacy_procs: list[LegacyProcedure]) -> None:
    gen = BuiltinGenerator()
    assert [gen.generate(p).source for p in legacy_procs] == [
        gen.generate(p).source for p in legacy_procs
    ]


def test_unsafe_parameter_names_are_mapped_and_recorded() -> None:
    p = proc(
        template="{{dry-run}} {{class}} {{2fa}} {{missing}}",
        params=[
            param("dry-run", "boolean", 0, "yes"),
            param("class"),
            param("2fa", "number"),
            param("class", "list", 0, "a,b"),
        ],
    )
    code = BuiltinGenerator().generate(p)
    assert code.parameter_map == {
        "dry-run": "dry_run",
        "class": "class_",
        "2fa": "p_2fa",
        "class#4": "class_2",
    }
    assert code.inferred == ["missing"]
    out = run_main(code.source, class_="K", p_2fa=7)
    assert out["rendered"] == "true K 7 {{missing}}"
    out = run_main(code.source, class_="K", p_2fa=7.5, missing="m", dry_run=False)
    assert out["rendered"] == "false K 7.5 m"
    meta = build_metadata(p, "demo", code, score(p, analyse(p), code, True))
    assert meta.legacy is not None and meta.legacy["parameter_map"] == code.parameter_map
    assert [x.default for x in meta.parameters] == [True, None, None, ["a", "b"], None]


def test_shell_steps_are_returned_never_run(tmp_path: Path) -> None:
    marker = Path(f"/tmp/x-{uuid.uuid4().hex}")
    steps = json.dumps(
        [
            f"bash: touch {marker}",
            f"$ touch {marker}-2",
            {"description": "Make it", "command": f"touch {marker}-{{{{suffix}}}}"},
        ]
    )
    p = proc(steps=steps, params=[param("suffix")])
    code = BuiltinGenerator().generate(p)
    out = run_main(code.source, suffix="3")
    assert [s["command"] for s in out["plan"]] == [
        f"touch {marker}",
        f"touch {marker}-2",
        f"touch {marker}-3",
    ]
    assert {s["kind"] for s in out["plan"]} == {"shell"}
    assert not list(Path("/tmp").glob(f"{marker.name}*"))


def test_dunder_text_survives_without_failing_validation() -> None:
    p = proc(template="edit __init__.py for {{x}}", description="about __class__")
    code = BuiltinGenerator().generate(p)
    meta = build_metadata(p, "demo", code, score(p, analyse(p), code, True))
    files = {MAIN_FILE: code.source.encode(), METADATA_FILE: meta.to_json().encode()}
    snap = Snapshot("demo", {k: FileEntry(v) for k, v in files.items()})
    assert validate_snapshot(snap).ok
    assert run_main(code.source, x="it")["rendered"] == "edit __init__.py for it"


def test_examples_that_do_not_hold_are_not_kept() -> None:
    examples = json.dumps(
        [
            {"input": {"b": "main"}, "output": "co main"},
            {"input": {"b": "main"}, "output": "something else"},
            {"variables": {"unknown": 1}, "expected": "co "},
            "free text",
        ]
    )
    p = proc(template="co {{b}}", params=[param("b")], examples=examples)
    code = BuiltinGenerator().generate(p)
    assert [e.input for e in code.examples] == [{"b": "main"}]
    conf = score(p, analyse(p), code, True)
    assert conf.score < 1.0 and any("3 of 4" in n for n in conf.notes)


# -- the chat-completions generator against a local endpoint ---------------------


class FakeLLM:
    """A chat-completions endpoint on 127.0.0.1 that answers with ``reply(request)``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.mode = "good"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, **body})
                fake.headers.append(dict(self.headers))
                if fake.mode == "http-error":
                    self.send_response(500)
                    self.end_headers()
                    return
                content = fake.reply(body)
                data = json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": content}}]}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reply(self, body: dict[str, Any]) -> str:
        request = json.loads(body["messages"][-1]["content"])
        if self.mode == "bad":
            return "```python\nimport os\n\ndef main():\n    return os.getcwd()\n```"
        return (
            "Here you go:\n```python\n"
            f"{request['signature']}:\n"
            '    """Generated."""\n'
            f"    return {{'name': {request['name']!r}}}\n```\n"
        )


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    fake = FakeLLM()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def test_llm_generator_speaks_chat_completions(
    fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sekrit")
    gen = ChatCompletionsGenerator(
        LLMSettings(fake_llm.url, "fake-model", "TEST_LLM_KEY"), fallback=BuiltinGenerator()
    )
    p = proc(template="co {{b}}", params=[param("b"), param("n", "number", 0, "2")])
    code = gen.generate(p)
    request = fake_llm.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["model"] == "fake-model"
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert fake_llm.headers[0]["Authorization"] == "Bearer sekrit"
    assert code.generator == "llm:fake-model"
    assert check_signature(code.source, code.parameters) == []
    assert run_main(code.source, b="x") == {"name": "demo"}
    meta = build_metadata(p, "demo", code, score(p, analyse(p), code, True))
    snap = Snapshot(
        "demo",
        {
            MAIN_FILE: FileEntry(code.source.encode()),
            METADATA_FILE: FileEntry(meta.to_json().encode()),
        },
    )
    assert validate_snapshot(snap).ok


@pytest.mark.parametrize("mode", ["bad", "http-error"])
def test_llm_generator_falls_back_when_the_answer_is_unusable(fake_llm: FakeLLM, mode: str) -> None:
    fake_llm.mode = mode
    check = lambda source, params: [  # noqa: E731 - the migration passes validation here
        p.format()
        for p in validate_snapshot(Snapshot("x", {MAIN_FILE: FileEntry(source.encode())})).problems
        if p.rule != "missing-file"
    ]
    gen = ChatCompletionsGenerator(
        LLMSettings(fake_llm.url, "fake-model"), fallback=BuiltinGenerator(), check=check
    )
    code = gen.generate(proc(template="co {{b}}", params=[param("b")]))
    assert code.generator == "builtin (fallback from llm:fake-model)"
    assert any("unusable" in n for n in code.notes)
    assert run_main(code.source, b="x")["rendered"] == "co x"

    strict = ChatCompletionsGenerator(LLMSettings(fake_llm.url, "fake-model"), check=check)
    with pytest.raises(MigrationError, match="llm:fake-model"):
        strict.generate(proc(template="co {{b}}", params=[param("b")]))


def test_llm_settings_come_from_the_environment() -> None:
    assert LLMSettings.from_env({}) is None
    s = LLMSettings.from_env({"PROCREG_LLM_URL": "http://h/v1", "PROCREG_LLM_MODEL": "m"})
    assert s is not None and (s.url, s.model, s.api_key_env) == (
        "http://h/v1",
        "m",
        "PROCREG_LLM_API_KEY",
    )


def test_extract_code_takes_the_fenced_block() -> None:
    assert extract_code("text\n```python\nx = 1\n```\nmore") == "x = 1\n"
    assert extract_code("x = 2") == "x = 2\n"


def test_a_default_mentioning_a_dunder_is_dropped_not_fatal() -> None:
    p = proc(template="{{f}}", params=[param("f", "string", 0, "__init__.py")])
    code = BuiltinGenerator().generate(p)
    assert code.parameters[0].default is None and code.parameters[0].required is False
    assert any("dunder" in n for n in code.notes)
    meta = build_metadata(p, "demo", code, score(p, analyse(p), code, True))
    snap = Snapshot(
        "demo",
        {
            MAIN_FILE: FileEntry(code.source.encode()),
            METADATA_FILE: FileEntry(meta.to_json().encode()),
        },
    )
    assert validate_snapshot(snap).ok
    assert meta.legacy is not None and meta.legacy["params"][0]["default_value"] == "__init__.py"


@pytest.mark.parametrize("mode", ["good", "bad"])
def test_migration_with_the_llm_generator(fake_llm: FakeLLM, tmp_path: Path, mode: str) -> None:
    from registry.git.store import GitStore
    from registry.migrate.migration import migrate_sync

    fake_llm.mode = mode
    sample = REPO_ROOT / "examples" / "legacy" / "sample.db"
    gen = ChatCompletionsGenerator(
        LLMSettings(fake_llm.url, "fake-model"), fallback=BuiltinGenerator()
    )
    report = migrate_sync(GitStore.init(tmp_path / "repo"), str(sample), generator=gen)
    assert report.counts["migrated"] == 20
    assert report.verification.line == "verified: 20 procedures, 0 fields lost"
    expected = "llm:fake-model" if mode == "good" else "builtin (fallback from llm:fake-model)"
    assert {p.generator for p in report.procedures} == {expected}
    assert len(fake_llm.requests) == 20
