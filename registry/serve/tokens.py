"""Who may do what over HTTP: bearer tokens from ``procreg.toml`` ``[serve]``, with rights.

A token is configured by name, with its secret kept out of the repository:
either the name of an environment variable holding the secret (``env``) or a
file holding the secret's SHA-256 in hex (``hash_file``, relative paths from
the repository root; ``printf %s "$SECRET" | sha256sum``). Only digests are
kept in memory and compared in constant time.

Rights: ``read`` (list, search, get, resources), ``run`` (call procedure
tools and ``run_procedure``; optionally limited to ids, categories or tags)
and ``propose``. stdio trusts the local user: :data:`LOCAL` has every right.
Each grant also bounds its concurrent runs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from registry.config import Right, TokenSection
from registry.core.model import Metadata
from registry.errors import ConfigError, PermissionDenied

ALL_RIGHTS: frozenset[Right] = frozenset({"read", "run", "propose"})


@dataclass
class Grant:
    """What one caller (a token, or the local user) may do."""

    name: str
    rights: frozenset[Right]
    run_ids: frozenset[str] = frozenset()
    run_categories: frozenset[str] = frozenset()
    run_tags: frozenset[str] = frozenset()
    max_concurrent_runs: int = 4
    _slots: anyio.CapacityLimiter | None = field(default=None, repr=False)

    @property
    def slots(self) -> anyio.CapacityLimiter:
        """The concurrent runs this grant may have (created on first use, on the running loop)."""
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self.max_concurrent_runs)
        return self._slots

    def require(self, right: Right) -> None:
        """Raise :class:`PermissionDenied` unless this grant has ``right``."""
        if right not in self.rights:
            raise PermissionDenied(
                f"token {self.name!r} lacks the {right!r} right "
                f"(it has: {', '.join(sorted(self.rights)) or 'none'})",
                right,
            )

    def require_run(self, meta: Metadata) -> None:
        """Raise unless this grant may run ``meta``'s procedure (the right and its limits)."""
        self.require("run")
        limited = self.run_ids or self.run_categories or self.run_tags
        if not limited:
            return
        if (
            meta.id in self.run_ids
            or meta.category in self.run_categories
            or bool(self.run_tags.intersection(meta.tags))
        ):
            return
        raise PermissionDenied(
            f"token {self.name!r} has the 'run' right only for "
            f"{_limits(self)}; {meta.id} (category {meta.category}) is not among them",
            "run",
        )


def _limits(grant: Grant) -> str:
    parts = []
    if grant.run_ids:
        parts.append("ids " + ", ".join(sorted(grant.run_ids)))
    if grant.run_categories:
        parts.append("categories " + ", ".join(sorted(grant.run_categories)))
    if grant.run_tags:
        parts.append("tags " + ", ".join(sorted(grant.run_tags)))
    return "; ".join(parts)


LOCAL = Grant("local", ALL_RIGHTS, max_concurrent_runs=64)
"""The stdio caller: the local user, trusted with every right."""


def digest(secret: str) -> str:
    """The hex SHA-256 of a token secret (what ``hash_file`` holds)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _read_hash(path: Path, name: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"[serve] token {name!r}: cannot read hash_file {path}: {exc}") from None
    text = text.split()[0] if text else ""  # `sha256sum` output: "<hex>  -"
    text = text.removeprefix("sha256:").lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ConfigError(
            f"[serve] token {name!r}: {path} must hold the secret's SHA-256 in hex "
            '(printf %s "$SECRET" | sha256sum)'
        )
    return text


class TokenTable:
    """The configured tokens, by digest; verifies bearer tokens for the SDK's auth middleware."""

    def __init__(self, grants: Mapping[str, Grant]) -> None:
        self._by_digest = dict(grants)

    @classmethod
    def from_config(
        cls,
        tokens: Sequence[TokenSection],
        *,
        root: Path,
        max_concurrent_runs: int,
        environ: Mapping[str, str] | None = None,
    ) -> TokenTable:
        """Read every token's digest (environment or hash file); ConfigError if one fails."""
        env = os.environ if environ is None else environ
        grants: dict[str, Grant] = {}
        names: set[str] = set()
        for t in tokens:
            if t.name in names:
                raise ConfigError(f"[serve] token {t.name!r} is configured twice")
            names.add(t.name)
            if t.env is not None:
                secret = env.get(t.env)
                if not secret:
                    raise ConfigError(
                        f"[serve] token {t.name!r}: environment variable {t.env} is not set"
                    )
                key = digest(secret)
            else:
                assert t.hash_file is not None
                path = Path(t.hash_file)
                key = _read_hash(path if path.is_absolute() else root / path, t.name)
            grants[key] = Grant(
                t.name,
                frozenset(t.rights),
                frozenset(t.run_ids),
                frozenset(t.run_categories),
                frozenset(t.run_tags),
                max_concurrent_runs,
            )
        return cls(grants)

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, secret: str) -> Grant | None:
        """The grant of a presented secret, compared in constant time against each digest."""
        presented = digest(secret)
        found = None
        for key, grant in self._by_digest.items():
            if hmac.compare_digest(key, presented):
                found = grant
        return found

    def by_name(self, name: str) -> Grant | None:
        """The grant configured under ``name``."""
        return next((g for g in self._by_digest.values() if g.name == name), None)
