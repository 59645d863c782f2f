"""Tokens and rights (registry.serve.tokens), the [serve]/[mcp] config, and `procreg tools`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from registry.config import TokenSection, parse_config
from registry.core.model import Metadata
from registry.errors import ConfigError, PermissionDenied
from registry.serve.tokens import LOCAL, TokenTable
from tests.helpers import git, run_cli, write_proc


def meta(pid: str = "p", category: str = "general", tags: list[str] | None = None) -> Metadata:
    return Metadata(id=pid, name="P", category=category, tags=tags or [])


def table(tmp_path: Path, *tokens: TokenSection, env: dict[str, str] | None = None) -> TokenTable:
    return TokenTable.from_config(tokens, root=tmp_path, max_concurrent_runs=2, environ=env or {})


def test_tokens_from_env_and_from_a_hash_file(tmp_path: Path) -> None:
    (tmp_path / "b.sha256").write_text(hashlib.sha256(b"bee").hexdigest() + "  -\n")
    t = table(
        tmp_path,
        TokenSection(name="a", env="TOK_A", rights=["read", "run"]),
        TokenSection(name="b", hash_file="b.sha256", rights=["read"]),
        env={"TOK_A": "ay"},
    )
    a, b = t.lookup("ay"), t.lookup("bee")
    assert a is not None and a.name == "a" and a.rights == {"read", "run"}
    assert b is not None and b.name == "b"
    assert t.lookup("nope") is None
    assert t.lookup("") is None


@pytest.mark.parametrize(
    ("token", "env", "message"),
    [
        (TokenSection(name="a", env="MISSING"), {}, "environment variable MISSING is not set"),
        (TokenSection(name="a", hash_file="absent"), {}, "cannot read hash_file"),
    ],
)
def test_unusable_tokens_are_config_errors(
    tmp_path: Path, token: TokenSection, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        table(tmp_path, token, env=env)


def test_a_hash_file_must_hold_a_sha256(tmp_path: Path) -> None:
    (tmp_path / "h").write_text("the-secret-itself\n")
    with pytest.raises(ConfigError, match="SHA-256 in hex"):
        table(tmp_path, TokenSection(name="a", hash_file="h"))


def test_a_token_needs_exactly_one_secret_source() -> None:
    with pytest.raises(ConfigError, match="exactly one of env"):
        parse_config('[[serve.tokens]]\nname = "a"\nrights = ["read"]\n')
    with pytest.raises(ConfigError, match="rights"):
        parse_config('[[serve.tokens]]\nname = "a"\nenv = "X"\nrights = ["admin"]\n')
    cfg = parse_config('[mcp]\nchannel = "beta"\nfallback = "none"\n')
    assert (cfg.mcp.channel, cfg.mcp.fallback) == ("beta", "none")


def test_rights_and_run_limits(tmp_path: Path) -> None:
    t = table(
        tmp_path,
        TokenSection(name="r", env="R", rights=["read"]),
        TokenSection(name="l", env="L", rights=["read", "run"], run_categories=["text"]),
        env={"R": "r", "L": "l"},
    )
    reader, limited = t.lookup("r"), t.lookup("l")
    assert reader is not None and limited is not None
    reader.require("read")
    with pytest.raises(PermissionDenied) as denied:
        reader.require_run(meta())
    assert denied.value.right == "run"
    assert "lacks the 'run' right" in str(denied.value)
    limited.require_run(meta(category="text"))
    with pytest.raises(PermissionDenied, match="categories text"):
        limited.require_run(meta(category="web"))
    with pytest.raises(PermissionDenied, match="'propose'"):
        limited.require("propose")
    LOCAL.require_run(meta())
    LOCAL.require("propose")


def test_procreg_tools_exports_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "reg"
    run_cli(capsys, "init", str(repo))
    write_proc(repo, "echo", description="say it back")
    write_proc(repo, "later", description="not released")
    git(repo, "add", "procedures/echo")
    git(repo, "commit", "-qm", "feat: echo")
    assert run_cli(capsys, "-C", str(repo), "release", "--skip-examples").code == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: later")

    mcp = run_cli(capsys, "-C", str(repo), "tools", "--json").json()
    names = [t["name"] for t in mcp]
    assert names[:4] == ["search_procedures", "get_procedure", "run_procedure", "propose_procedure"]
    assert names[4:] == ["echo"]
    echo = mcp[4]
    assert echo["inputSchema"]["required"] == ["text"]
    assert echo["_meta"]["dev.procreg/resolved_from"] == "latest"

    openai = run_cli(capsys, "-C", str(repo), "tools", "--format", "openai", "--json", "--no-meta")
    assert json.loads(openai.out) == [
        {
            "type": "function",
            "function": {
                "name": "echo",
                "description": echo["description"],
                "parameters": echo["inputSchema"],
            },
        }
    ]
    anthropic = run_cli(capsys, "-C", str(repo), "tools", "--format", "anthropic", "--json")
    assert json.loads(anthropic.out)[4] == {
        "name": "echo",
        "description": echo["description"],
        "input_schema": echo["inputSchema"],
    }
    # pinned to a channel: none exists, and with fallback none nothing is served
    none = run_cli(capsys, "-C", str(repo), "tools", "--fallback", "none", "--json", "--no-meta")
    assert json.loads(none.out) == []
    assert (
        run_cli(capsys, "-C", str(repo), "promote", "echo", "1.0.0", "--channel", "beta").code == 0
    )
    beta = run_cli(
        capsys, "-C", str(repo), "tools", "--channel", "beta", "--fallback", "none", "--json"
    )
    assert [t["name"] for t in beta.json()][4:] == ["echo"]
    assert beta.json()[4]["_meta"]["dev.procreg/resolved_from"] == "channel"
    text = run_cli(capsys, "-C", str(repo), "tools")
    assert "echo" in text.out and "1.0.0 (latest)" in text.out
    bad = run_cli(capsys, "-C", str(repo), "tools", "--channel", "Not A Channel")
    assert bad.code == 1 and "invalid channel name" in bad.err
