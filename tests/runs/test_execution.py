"""Running exact versions end to end: git objects, validation, arguments, sandbox, records, CLI."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from registry.core.arguments import argument_problems, coerce_cli_value, parse_cli_arguments
from registry.core.jsonvalue import json_equal
from registry.core.model import Example, Metadata, Parameter
from registry.errors import ExamplesFailed, NotFoundError
from registry.git.store import GitStore
from registry.index.connect import open_backend
from registry.releases import channels, tagged
from registry.releases import release as releases
from registry.releases.plan import plan_changes
from registry.runs import execution
from registry.runs.examples import examples_gate
from registry.sandbox import Sandbox
from tests.helpers import commit_all, git, make_repo, release, run_cli, write_code

# --------------------------------------------------------------------------- helpers


ECHO_PARAMS = [Parameter(name="text", type="string")]


async def run_once(
    root: Path,
    pid: str,
    spec: str | None = None,
    target: Any = None,
    sandbox: Sandbox | None = None,
    **kwargs: Any,
) -> tuple[execution.RunResult, int]:
    """Run once against the index at ``target`` (default SQLite); also return the record count."""
    store = GitStore.open(root)
    backend = await open_backend(store, target)
    own = sandbox is None
    box = sandbox or Sandbox(pool_size=0)
    try:
        result = await execution.run(store, backend, pid, spec, kwargs, sandbox=box)
        return result, await backend.count_executions(pid)
    finally:
        if own:
            box.close()
        await backend.close()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo")
    write_code(root, "echo", "return text", ECHO_PARAMS, signature="text: str", returns="string")
    commit_all(root, "feat: echo")
    release(root, "echo")
    return root


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("raw", "ptype", "expected"),
    [
        ("42", "string", "42"),
        ("true", "string", "true"),
        ('"quoted"', "string", '"quoted"'),
        ("42", "integer", 42),
        ("4.5", "number", 4.5),
        ("true", "boolean", True),
        ("no", "boolean", False),
        ("[1, 2]", "array", [1, 2]),
        ('{"a": 1}', "object", {"a": 1}),
        ("42", "any", 42),
        ("hello", "any", "hello"),
        ("/tmp/x", "file", "/tmp/x"),
    ],
)
def test_cli_values_are_typed_by_the_metadata(raw: str, ptype: str, expected: Any) -> None:
    param = Parameter(name="x", type=ptype, required=True)
    got = coerce_cli_value(raw, param)
    assert got == expected and type(got) is type(expected)


def test_unknown_parameters_get_json_when_it_parses() -> None:
    assert coerce_cli_value("[1]", None) == [1]
    assert coerce_cli_value("plain words", None) == "plain words"


def test_args_json_merges_and_arg_wins() -> None:
    meta = Metadata(
        id="m",
        name="M",
        parameters=[Parameter(name="n", type="string"), Parameter(name="k", type="integer")],
    )
    got = parse_cli_arguments(meta, ["n=7"], '{"n": "x", "k": 3}')
    assert got == {"n": "7", "k": 3}


@pytest.mark.parametrize("bad", ["[1]", "not json"])
def test_args_json_must_be_an_object(bad: str) -> None:
    from registry.errors import UsageError

    with pytest.raises(UsageError, match="--args-json"):
        parse_cli_arguments(None, [], bad)


def test_arg_without_equals_is_a_usage_error() -> None:
    from registry.errors import UsageError

    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_cli_arguments(None, ["text"])


def test_argument_problems_name_unknown_missing_and_mistyped() -> None:
    meta = Metadata(
        id="m",
        name="M",
        parameters=[
            Parameter(name="a", type="integer"),
            Parameter(name="b", type="string", required=False, default="x"),
        ],
    )
    assert argument_problems(meta, {"a": 1}) == []
    problems = argument_problems(meta, {"zz": 1, "b": 2})
    assert any("unknown argument 'zz'" in p for p in problems)
    assert any("missing required argument 'a'" in p for p in problems)
    assert any("'b' must be string" in p for p in problems)
    assert argument_problems(meta, {"a": True}) != []  # a bool is not an integer


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        ("1", 1, False),
        ([1, [2]], [1, [2]], True),
        ([1, 2], [2, 1], False),
        ({"a": [1]}, {"a": [1.0]}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        (None, None, True),
    ],
)
def test_examples_compare_as_json(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal


# --------------------------------------------------------------------------- runs


def test_run_returns_the_result_and_records_it(repo: Path, sandbox: Sandbox) -> None:
    result, count = asyncio.run(run_once(repo, "echo", sandbox=sandbox, text="hi"))
    assert result.ok and result.result == "hi" and result.error is None
    assert result.version == "1.0.0"
    assert result.commit == git(repo, "rev-parse", "procedure-echo-v1.0.0^{commit}").strip()
    assert count == 1

    async def rows():
        store = GitStore.open(repo)
        async with await open_backend(store) as backend:
            return await backend.executions("echo")

    (record,) = asyncio.run(rows())
    assert record.run_id == result.run_id
    assert record.outcome == "success" and record.version == "1.0.0"
    assert record.tree_id == result.tree_id and record.commit == result.commit
    assert record.python_version and record.caller and "@" in record.caller


def test_run_uses_git_objects_never_the_working_tree(repo: Path, sandbox: Sandbox) -> None:
    main = repo / "procedures" / "echo" / "main.py"
    main.write_text(main.read_text().replace("return text", "return text.upper()"))
    result, _ = asyncio.run(run_once(repo, "echo", sandbox=sandbox, text="hi"))
    assert result.result == "hi"
    head, _ = asyncio.run(run_once(repo, "echo", "HEAD", sandbox=sandbox, text="hi"))
    assert head.result == "hi"  # HEAD is the committed tip, not the edited file


def test_run_picks_the_version_the_spec_names(repo: Path, sandbox: Sandbox) -> None:
    write_code(
        repo, "echo", "return text + '!'", ECHO_PARAMS, signature="text: str", returns="string"
    )
    commit_all(repo, "fix: shout")
    assert release(repo, "echo") == "1.0.1"
    channels.promote(GitStore.open(repo), "echo", "1.0.0", "stable")
    expect = {None: "hi!", "1.0.0": "hi", "^1.0": "hi!", "stable": "hi", "HEAD": "hi!"}
    for spec, want in expect.items():
        result, _ = asyncio.run(run_once(repo, "echo", spec, sandbox=sandbox, text="hi"))
        assert (spec, result.result) == (spec, want)
    with pytest.raises(NotFoundError):
        asyncio.run(run_once(repo, "echo", "2.0.0", sandbox=sandbox, text="hi"))


def test_argument_errors_start_nothing_and_are_not_recorded(repo: Path, sandbox: Sandbox) -> None:
    result, count = asyncio.run(run_once(repo, "echo", sandbox=sandbox, txt="hi"))
    assert not result.ok and result.error is not None
    assert result.error.type == "ArgumentError"
    assert "unknown argument 'txt'" in result.error.message
    assert "missing required argument 'text'" in result.error.message
    assert result.usage.cpu_ms is None  # no process ran
    assert count == 0


def test_a_version_that_no_longer_validates_is_refused_and_recorded(
    repo: Path, sandbox: Sandbox
) -> None:
    (repo / "procreg.toml").write_text('[validation]\ndeny_imports = ["json"]\n')
    write_code(
        repo,
        "echo",
        "import json\nreturn json.dumps(text)",
        ECHO_PARAMS,
        signature="text: str",
        returns="string",
    )
    commit_all(repo, "feat: json")
    result, count = asyncio.run(run_once(repo, "echo", "HEAD", sandbox=sandbox, text="hi"))
    assert not result.ok and result.error is not None
    assert result.error.type == "InvalidProcedure"
    assert "json" in result.error.message and "main.py" in result.error.message
    assert count == 1


def test_procedure_exceptions_are_failures_with_their_class(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    root = make_repo(tmp_path / "repo")
    write_code(root, "boom", "print('about to fail')\nraise ValueError('bad input: ' + text)")
    commit_all(root)
    result, count = asyncio.run(run_once(root, "boom", sandbox=sandbox, text="x"))
    assert not result.ok and result.error is not None
    assert result.error.type == "ValueError" and "bad input: x" in result.error.message
    assert result.stdout == "about to fail\n"
    assert result.version is None  # never released: the branch tip ran
    assert count == 1


def test_timeout_override_applies(tmp_path: Path, sandbox: Sandbox) -> None:
    root = make_repo(tmp_path / "repo")
    write_code(root, "sleepy", "import time\ntime.sleep(30)\nreturn text")
    commit_all(root)

    async def go():
        store = GitStore.open(root)
        async with await open_backend(store) as backend:
            return await execution.run(
                store, backend, "sleepy", None, {"text": "x"}, timeout_s=0.5, sandbox=sandbox
            )

    result = asyncio.run(go())
    assert not result.ok and result.error is not None and result.error.type == "Timeout"


@pytest.mark.postgres
def test_runs_are_recorded_in_postgres(repo: Path, sandbox: Sandbox, pg_url: str) -> None:
    for text in ("a", "b"):
        result, count = asyncio.run(
            run_once(repo, "echo", target=pg_url, sandbox=sandbox, text=text)
        )
        assert result.ok
    assert count == 2

    async def stats():
        backend = await open_backend(GitStore.open(repo), pg_url)
        try:
            return await backend.metrics("echo")
        finally:
            await backend.close()

    m = asyncio.run(stats())
    assert m.runs == 2 and m.success_rate == 1.0 and set(m.versions) == {"1.0.0"}


# --------------------------------------------------------------------------- examples


def _with_examples(root: Path, examples: list[Example]) -> None:
    write_code(
        root,
        "shout",
        "return text.upper()",
        ECHO_PARAMS,
        signature="text: str",
        returns="string",
        examples=examples,
    )
    commit_all(root, "feat: shout")


def test_release_refuses_a_version_whose_examples_fail(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    _with_examples(
        root,
        [
            Example(description="upper", input={"text": "a"}, output="A"),
            Example(description="wrong on purpose", input={"text": "b"}, output="b"),
        ],
    )
    store = GitStore.open(root)
    with examples_gate() as gate:
        with pytest.raises(ExamplesFailed) as caught:
            gate(*plan_changes(store, ["shout"], "HEAD", False)[0])
        (refused,) = releases.release(store, ["shout"], before_tag=gate)
    assert refused.refused is not None and refused.refused.message == str(caught.value)
    message = str(caught.value)
    assert "wrong on purpose" in message and '{"text": "b"}' in message
    assert 'expected "b"' in message and 'got "B"' in message
    assert tagged.latest_release(store, "shout") is None  # no tag was made


def test_release_passes_when_examples_hold(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    _with_examples(root, [Example(description="upper", input={"text": "a"}, output="A")])
    store = GitStore.open(root)
    with examples_gate() as gate:
        made = releases.release(store, ["shout"], before_tag=gate)
    assert [r.version for r in made] == ["1.0.0"]


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_repo(repo: Path) -> Path:
    return repo


def test_cli_run_prints_the_result(cli_repo: Path, capsys) -> None:
    res = run_cli(capsys, "-C", str(cli_repo), "run", "echo", "--arg", "text=42")
    assert res.code == 0 and json.loads(res.out) == "42"  # a string parameter gets "42"


def test_cli_run_json_keys(cli_repo: Path, capsys) -> None:
    res = run_cli(
        capsys, "-C", str(cli_repo), "run", "echo@1.0.0", "--args-json", '{"text": "x"}', "--json"
    )
    assert res.code == 0
    data = res.json()
    for key in (
        "ok",
        "result",
        "error",
        "duration_ms",
        "id",
        "version",
        "commit",
        "stdout",
        "stderr",
        "tree_id",
        "run_id",
        "stdout_truncated",
        "stderr_truncated",
        "usage",
    ):
        assert key in data
    assert data["ok"] is True and data["result"] == "x" and data["error"] is None


def test_cli_run_failure_exits_1_with_one_line(cli_repo: Path, capsys) -> None:
    res = run_cli(capsys, "-C", str(cli_repo), "run", "echo", "--arg", "nope=1", "--json")
    assert res.code == 1
    assert res.json()["error"]["type"] == "ArgumentError"
    (line,) = [x for x in res.err.splitlines() if "failed" in x]
    assert "ArgumentError" in line and "nope" in line


def test_cli_metrics_json_keys(cli_repo: Path, capsys) -> None:
    for text in ("a", "b"):
        assert (
            run_cli(capsys, "-C", str(cli_repo), "run", "echo", "--arg", f"text={text}").code == 0
        )
    res = run_cli(capsys, "-C", str(cli_repo), "metrics", "echo", "--json")
    assert res.code == 0
    data = res.json()
    assert set(data) == {
        "id",
        "runs",
        "success_rate",
        "p50_ms",
        "p95_ms",
        "last_run",
        "errors",
        "callers",
        "versions",
    }
    assert data["id"] == "echo" and data["runs"] == 2 and data["success_rate"] == 1.0
    assert list(data["callers"].values()) == [2]  # both runs by this user@host
    assert set(data["versions"]["1.0.0"]) == {
        "runs",
        "success_rate",
        "p50_ms",
        "p95_ms",
        "last_run",
        "errors",
        "callers",
    }
    human = run_cli(capsys, "-C", str(cli_repo), "metrics", "echo")
    assert human.code == 0 and "1.0.0" in human.out


def test_cli_metrics_of_an_unknown_procedure_fails(cli_repo: Path, capsys) -> None:
    res = run_cli(capsys, "-C", str(cli_repo), "metrics", "nothing-here")
    assert res.code == 1 and "nothing-here" in res.err


def test_cli_test_reports_each_example(tmp_path: Path, capsys) -> None:
    root = make_repo(tmp_path / "repo")
    _with_examples(
        root,
        [
            Example(description="upper", input={"text": "a"}, output="A"),
            Example(description="bad", input={"text": "b"}, output="b"),
        ],
    )
    res = run_cli(capsys, "-C", str(root), "test", "shout")
    assert res.code == 1
    assert "PASS example 1 (upper)" in res.out
    assert "FAIL example 2 (bad)" in res.out and 'got "B"' in res.out
    data = run_cli(capsys, "-C", str(root), "test", "shout", "--json").json()
    assert [e["ok"] for e in data["examples"]] == [True, False]


def test_cli_doctor_lists_layers_and_index(cli_repo: Path, capsys) -> None:
    res = run_cli(capsys, "-C", str(cli_repo), "doctor", "--json")
    assert res.code == 0
    data = res.json()
    assert data["layers"] and all({"name", "active", "detail"} <= set(x) for x in data["layers"])
    assert data["index"]["reachable"] is True
    assert data["libgit2"] and data["python"]
    human = run_cli(capsys, "-C", str(cli_repo), "doctor")
    assert human.code == 0 and "sandbox" in human.out and "libgit2" in human.out


def test_runner_batches_records_for_a_long_lived_owner(repo: Path) -> None:
    """What AsyncRegistry.run uses: a warm pool and batched records, all delivered on close."""

    async def go():
        store = GitStore.open(repo)
        async with await open_backend(store) as backend:
            runner = execution.Runner(store, backend, batch_size=50, flush_interval_s=60)
            try:
                results = [await runner.run("echo", None, {"text": str(i)}) for i in range(4)]
                buffered = await backend.count_executions("echo")
            finally:
                await runner.close()
            return results, buffered, await backend.count_executions("echo")

    results, buffered, delivered = asyncio.run(go())
    assert [r.result for r in results] == ["0", "1", "2", "3"]
    assert buffered == 0 and delivered == 4


def test_cli_release_refuses_failing_examples(tmp_path: Path, capsys) -> None:
    root = make_repo(tmp_path / "repo")
    _with_examples(root, [Example(description="lowercase stays", input={"text": "a"}, output="a")])
    res = run_cli(capsys, "-C", str(root), "release", "shout")
    assert res.code == 1
    assert "lowercase stays" in res.err and 'expected "a"' in res.err and 'got "A"' in res.err
    assert git(root, "tag", "-l").strip() == ""


def _recorded(root: Path, pid: str) -> list[Any]:
    async def go() -> list[Any]:
        backend = await open_backend(GitStore.open(root), None)
        try:
            return await backend.executions(pid)
        finally:
            await backend.close()

    return asyncio.run(go())


def test_cli_release_records_the_example_runs_of_its_gate(tmp_path: Path, capsys) -> None:
    """The gate runs the version's code in the sandbox: those runs are recorded, as 'release'."""
    root = make_repo(tmp_path / "repo")
    _with_examples(
        root,
        [
            Example(description="upper", input={"text": "a"}, output="A"),
            Example(description="wrong on purpose", input={"text": "b"}, output="b"),
        ],
    )
    res = run_cli(capsys, "-C", str(root), "release", "shout")
    assert res.code == 1  # refused: one example fails
    runs = _recorded(root, "shout")
    assert [r.caller for r in runs] == ["release", "release"]
    assert {r.version for r in runs} == {"1.0.0"}  # the version the gate was deciding on
    assert all(r.outcome == "success" for r in runs)  # both ran; one gave the wrong answer

    (root / "procedures" / "shout" / "metadata.json").write_text(
        (root / "procedures" / "shout" / "metadata.json")
        .read_text()
        .replace('"output": "b"', '"output": "B"')
    )
    commit_all(root, "fix: the example")
    res = run_cli(capsys, "-C", str(root), "release", "shout")
    assert res.code == 0, res.err
    assert len(_recorded(root, "shout")) == 4


def test_a_refused_engine_fails_closed_and_the_run_is_recorded(repo: Path, monkeypatch) -> None:
    """A bubblewrap that refuses (as it does where user namespaces are off) stops the run."""
    import shutil
    import tempfile

    from registry.errors import ExecutionError

    fake = Path(tempfile.mkdtemp(prefix="procreg-fake-bwrap-"))  # the sandbox uid must reach it
    fake.chmod(0o755)
    (fake / "bwrap").write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    (fake / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    box = Sandbox(pool_size=0)
    try:
        with pytest.raises(ExecutionError, match="No permissions to create new namespace"):
            asyncio.run(run_once(repo, "echo", sandbox=box, text="x"))
    finally:
        box.close()
        shutil.rmtree(fake)
    runs = _recorded(repo, "echo")
    assert [r.error_type for r in runs] == ["SandboxUnavailable"]
    assert "No permissions" in (runs[0].error_message or "")


def test_open_registries_and_a_cli_run_share_few_uids_without_starving(repo: Path, capsys) -> None:
    """Uids go back per run: four open registries and a CLI run never wait each other out."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from registry.api import Registry

    (repo / "procreg.toml").write_text("[sandbox]\nuids = 6\npool_size = 2\nuid_wait_s = 60\n")
    commit_all(repo, "chore: six sandbox uids")
    registries = [Registry.open(repo) for _ in range(4)]
    try:

        def runs(reg: Registry) -> list[bool]:
            return [reg.run("echo", text=f"r{i}").ok for i in range(8)]

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(runs, reg) for reg in registries]
            cli = subprocess.run(
                [sys.executable, "-m", "registry", "-C", str(repo), "run", "echo",
                 "--arg", "text=cli", "--json"],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            results = [f.result(timeout=120) for f in futures]
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["result"] == "cli"
        assert results == [[True] * 8] * 4
    finally:
        for reg in registries:
            reg.close()


def test_every_run_record_names_its_isolation_engine(repo: Path) -> None:
    result, _ = asyncio.run(run_once(repo, "echo", text="x"))
    assert result.ok and result.isolation == "bubblewrap"
    (record,) = _recorded(repo, "echo")
    assert record.isolation == "bubblewrap"


def test_without_the_engine_run_records_say_isolation_none(repo: Path, monkeypatch) -> None:
    from registry.config import SandboxSection

    monkeypatch.setenv("PATH", "/nonexistent")  # no bubblewrap on this "machine"
    box = Sandbox(SandboxSection(require_isolation=False), pool_size=0)
    try:
        result, _ = asyncio.run(run_once(repo, "echo", sandbox=box, text="x"))
    finally:
        box.close()
    assert result.ok and result.isolation == "none"
    (record,) = _recorded(repo, "echo")
    assert record.isolation == "none"
