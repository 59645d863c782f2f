"""The registry config, ``procreg.toml`` at the repository root (optional).

Every key has a default, so a repository without the file is a valid registry.

.. code-block:: toml

    [registry]
    branch = "main"            # the ref the index tracks
    procedures_dir = "procedures"

    [validation]
    allow_imports = ["requests"]   # extends the built-in allowlist
    max_file_bytes = 262144

    [health]
    enabled = true
    window = 20
    min_runs = 10
    threshold = 0.9
    channel = "stable"

    [sandbox]
    pool_size = 2                  # warm sandboxes waiting for a run
    require_isolation = true       # no bubblewrap: runs fail closed (false: run without it)
    max_timeout_s = 300            # ceilings: metadata may ask for less, never more
    max_memory_mb = 2048
    tmpfs_mb = 64                  # each of the run's private /tmp and /dev/shm
    uids = 64                      # unprivileged uids from 61000 (or user = "name")

    [mcp]
    channel = "stable"             # what `procreg mcp` / `serve` pin tools to
    fallback = "latest"            # no such channel: serve the latest release ("none": skip)
    page_size = 0                  # tools per tools/list page (0: all in one)

    [serve]                        # `procreg serve` (HTTP): every request needs a token
    max_body_bytes = 1048576
    max_argument_bytes = 65536
    max_concurrent_runs = 4        # per token
    [[serve.tokens]]
    name = "ci-agent"
    env = "PROCREG_TOKEN_CI"       # the secret is in this environment variable ...
    # hash_file = "/etc/procreg/ci.sha256"   # ... or its sha256 hex is in this file
    rights = ["read", "run"]       # read, run, propose
    run_ids = []                   # run limited to these ids / categories / tags (empty: all)
    run_categories = []
    run_tags = []

    [migration]
    generator = "builtin"          # or "llm"
    [migration.llm]
    url = "http://127.0.0.1:8000/v1"   # a chat-completions endpoint
    model = "my-model"
    api_key_env = "PROCREG_LLM_API_KEY"

    [queue]                        # queued runs (PostgreSQL): `procreg worker`
    heartbeat_s = 2.0              # each worker's heartbeat
    stalled_after_s = 10.0         # a job whose worker is silent this long runs again elsewhere

    [[schedule]]                   # run a procedure at every tick, once across all workers
    id = "business-days"
    spec = "^1"                    # resolved at each tick (default: the latest release)
    cron = "0 6 * * 1-5"           # five fields, or six with seconds last
    args = { start = "2026-01-01", end = "2026-01-31" }
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from registry.errors import ConfigError, NotFoundError

log = logging.getLogger(__name__)

CONFIG_FILE = "procreg.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegistrySection(_Section):
    branch: str | None = None
    procedures_dir: str = "procedures"


class ValidationSection(_Section):
    allow_imports: list[str] = Field(default_factory=list)
    deny_imports: list[str] = Field(default_factory=list)
    max_file_bytes: int = Field(default=256 * 1024, gt=0)
    max_folder_bytes: int = Field(default=1024 * 1024, gt=0)
    max_files: int = Field(default=32, gt=0)


class HealthSection(_Section):
    enabled: bool = True
    window: int = Field(default=20, gt=0)
    min_runs: int = Field(default=10, gt=0)
    threshold: float = Field(default=0.9, ge=0.0, le=1.0)
    channel: str = "stable"


class SandboxSection(_Section):
    user: str | None = None
    uids: int = Field(default=64, ge=1, le=4096)
    uid_wait_s: float = Field(default=60.0, gt=0)
    pool_size: int = Field(default=2, ge=0, le=64)
    max_output_bytes: int = Field(default=64 * 1024, gt=0)
    require_isolation: bool = True
    max_timeout_s: float = Field(default=300.0, gt=0)
    max_memory_mb: int = Field(default=2048, ge=16)
    tmpfs_mb: int = Field(default=64, ge=1)


class EnvsSection(_Section):
    """Where procedure environments are cached and where ``procreg lock`` finds distributions."""

    cache_dir: str | None = None  # default: $PROCREG_CACHE_DIR, else ~/.cache/procreg
    index_url: str | None = None  # default: uv's (PyPI, or UV_INDEX_URL)
    find_links: list[str] = Field(default_factory=list)  # folders or pages of wheels
    no_index: bool = False  # only find_links: lock with no package index at all
    pool_size: int | None = Field(default=None, ge=0, le=64)  # warm sandboxes per environment


class LLMSection(_Section):
    url: str | None = None
    model: str | None = None
    api_key_env: str = "PROCREG_LLM_API_KEY"


class MigrationSection(_Section):
    generator: Literal["builtin", "llm"] = "builtin"
    llm: LLMSection = Field(default_factory=LLMSection)


class McpSection(_Section):
    channel: str = "stable"
    fallback: Literal["latest", "none"] = "latest"
    page_size: int = Field(default=0, ge=0)  # tools/list page; 0: every tool in one page


Right = Literal["read", "run", "propose"]


class TokenSection(_Section):
    name: str = Field(min_length=1, max_length=100)
    env: str | None = None
    hash_file: str | None = None
    rights: list[Right] = Field(default_factory=lambda: list[Right](["read"]))
    run_ids: list[str] = Field(default_factory=list)
    run_categories: list[str] = Field(default_factory=list)
    run_tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_secret_source(self) -> TokenSection:
        if (self.env is None) == (self.hash_file is None):
            raise ValueError(
                f"token {self.name!r} needs exactly one of env (an environment variable "
                "holding the secret) or hash_file (a file holding its sha256)"
            )
        return self


class ServeSection(_Section):
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_argument_bytes: int = Field(default=64 * 1024, gt=0)
    max_concurrent_runs: int = Field(default=4, gt=0)
    tokens: list[TokenSection] = Field(default_factory=list)


class QueueSection(_Section):
    """Queued runs (PostgreSQL): how workers show they are alive and when a job is stalled."""

    heartbeat_s: float = Field(default=2.0, gt=0)  # a worker's heartbeat interval
    stalled_after_s: float = Field(default=10.0, gt=0)  # no heartbeat for this long: stalled


class ScheduleEntry(_Section):
    """One ``[[schedule]]`` entry: run ``id@spec`` with ``args`` at every ``cron`` tick."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    spec: str | None = None
    cron: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = None

    @model_validator(mode="after")
    def _cron_parses(self) -> ScheduleEntry:
        from croniter import croniter

        if not croniter.is_valid(self.cron):
            raise ValueError(
                f"schedule {self.id!r}: cron {self.cron!r} is not a cron expression "
                "(five fields, or six with seconds last, e.g. '*/5 * * * *')"
            )
        return self


class Config(_Section):
    registry: RegistrySection = Field(default_factory=RegistrySection)
    validation: ValidationSection = Field(default_factory=ValidationSection)
    health: HealthSection = Field(default_factory=HealthSection)
    sandbox: SandboxSection = Field(default_factory=SandboxSection)
    envs: EnvsSection = Field(default_factory=EnvsSection)
    migration: MigrationSection = Field(default_factory=MigrationSection)
    mcp: McpSection = Field(default_factory=McpSection)
    serve: ServeSection = Field(default_factory=ServeSection)
    queue: QueueSection = Field(default_factory=QueueSection)
    schedule: list[ScheduleEntry] = Field(default_factory=list)


def parse_config(text: str | bytes | None, path: str = CONFIG_FILE) -> Config:
    """Parse ``procreg.toml`` contents; ``None`` (no file) gives the defaults."""
    if text is None:
        return Config()
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: {loc}: {err['msg']}") from None


# --------------------------------------------------------------------------- loading


class ConfigSource(Protocol):
    """What loading the config reads from a repository (a :class:`registry.git.store.GitStore`)."""

    @property
    def workdir(self) -> Path | None: ...

    def read_path(self, path: str, ref: str = "HEAD") -> bytes | None: ...

    def current_branch(self) -> str | None: ...

    def branch_ref(self, branch: str | None) -> str: ...


def worktree_config(store: ConfigSource) -> Config:
    """``procreg.toml`` from the working tree (or HEAD in a bare repo); defaults if absent."""
    if store.workdir is not None:
        path = store.workdir / CONFIG_FILE
        return parse_config(path.read_bytes() if path.is_file() else None)
    return config_at(store, "HEAD")


def config_at(store: ConfigSource, commit: str | None) -> Config:
    """``procreg.toml`` as committed at ``commit``; defaults when absent or unreadable.

    A broken config in one commit must not stop sync: it falls back to the
    defaults and logs why.
    """
    if commit is None:
        return Config()
    try:
        return parse_config(store.read_path(CONFIG_FILE, commit), f"{CONFIG_FILE}@{commit[:12]}")
    except ConfigError as exc:
        log.warning("%s; using the default config for this commit", exc)
        return Config()
    except NotFoundError:
        return Config()


def tracked_ref(store: ConfigSource, config: Config | None = None) -> str:
    """The full ref the index follows: ``[registry] branch``, else HEAD's branch.

    A detached HEAD with no configured branch tracks ``HEAD`` itself.
    """
    if config is None:
        config = worktree_config(store)
    if config.registry.branch:
        return store.branch_ref(config.registry.branch)
    return store.current_branch() or "HEAD"
