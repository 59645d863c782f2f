"""``pylock.toml`` (PEP 751): what a procedure's lock pins, read with ``tomllib``.

Pure: a lock is parsed from its text, compared with the metadata's
``requirements`` and with another lock (for the bump), and hashed (what the
release tag's ``Lock:`` trailer and the environment cache's key name).

``procreg lock`` writes the lock with uv and adds a ``[tool.procreg]`` table
(PEP 751 reserves ``[tool]`` for tools): the requirements it was locked for,
and the top-level modules of each locked distribution, read from the wheels'
installed ``RECORD`` files, so validation can allow exactly those imports
without importing or guessing anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from registry.errors import LockError

LOCK_FILE = "pylock.toml"
TOOL_TABLE = "procreg"

# packaging and tomllib are imported when a lock or a requirement is read, not with this
# module (`procreg show` of a procedure without a lock never needs them: CLI start-up time)


def _canonical_name(name: str) -> str:
    """The PEP 503 normalised form of a distribution name (``packaging``'s)."""
    from packaging.utils import canonicalize_name as canonical

    return str(canonical(name))


class LockedDistribution(BaseModel):
    """One distribution a lock pins, and the top-level modules it provides."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    modules: list[str] = Field(default_factory=list)


class Lock(BaseModel):
    """A parsed ``pylock.toml``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    hash: str
    requires_python: str | None = None
    packages: list[LockedDistribution] = Field(default_factory=list)
    requirements: list[str] | None = None
    """What ``procreg lock`` locked (``[tool.procreg] requirements``); None for a foreign lock."""

    def find(self, name: str) -> LockedDistribution | None:
        """The locked distribution called ``name`` (any spelling PEP 503 folds together)."""
        wanted = _canonical_name(name)
        return next((p for p in self.packages if _canonical_name(p.name) == wanted), None)

    @property
    def modules(self) -> list[str]:
        """Every top-level module the locked distributions provide."""
        return sorted({m for p in self.packages for m in p.modules})


def lock_hash(text: str) -> str:
    """The lock's identity: sha256 of its text (what ``Lock:`` trailers carry)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_lock(text: str, path: str = LOCK_FILE) -> Lock:
    """The :class:`Lock` in ``text``; :class:`LockError` naming ``path`` when it is not one."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"{path} is not TOML: {exc}; run `procreg lock ID` again", path) from None
    if not isinstance(data.get("lock-version"), str):
        raise LockError(f"{path} has no lock-version: it is not a PEP 751 lock file", path)
    tool = data.get("tool", {}).get(TOOL_TABLE, {})
    modules = tool.get("modules", {}) if isinstance(tool, dict) else {}
    packages = []
    for entry in data.get("packages", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise LockError(f"{path} has a package without a name", path)
        version = entry.get("version")
        if not isinstance(version, str):
            raise LockError(f"{path}: package {entry['name']!r} is not pinned to a version", path)
        provided = modules.get(_canonical_name(entry["name"]), []) if modules else []
        packages.append(
            LockedDistribution(
                name=entry["name"],
                version=version,
                modules=[m for m in provided if isinstance(m, str)],
            )
        )
    requirements = tool.get("requirements") if isinstance(tool, dict) else None
    return Lock(
        hash=lock_hash(text),
        requires_python=data.get("requires-python"),
        packages=packages,
        requirements=[str(r) for r in requirements] if isinstance(requirements, list) else None,
    )


def tool_table(requirements: Sequence[str], modules: dict[str, list[str]]) -> str:
    """The ``[tool.procreg]`` table ``procreg lock`` appends to uv's lock."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "",
        f"[tool.{TOOL_TABLE}]",
        "requirements = [" + ", ".join(quoted(r) for r in requirements) + "]",
        "",
        f"[tool.{TOOL_TABLE}.modules]",
    ]
    for name in sorted(modules):
        listed = ", ".join(quoted(m) for m in sorted(modules[name]))
        lines.append(f"{quoted(_canonical_name(name))} = [{listed}]")
    return "\n".join(lines) + "\n"


def _satisfied(requirement: str, lock: Lock) -> str | None:
    """Why ``requirement`` is not met by ``lock``, or None."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    try:
        req = Requirement(requirement)
    except InvalidRequirement as exc:
        return f"requirement {requirement!r} is not a PEP 508 string: {exc}"
    locked = lock.find(req.name)
    if locked is None:
        return f"requirement {requirement!r} is not in {LOCK_FILE}"
    try:
        allowed = req.specifier.contains(Version(locked.version), prereleases=True)
    except InvalidVersion:
        return f"{LOCK_FILE} pins {locked.name} to {locked.version!r}, which is not a version"
    if not allowed:
        return f"{LOCK_FILE} pins {locked.name} {locked.version}, which {requirement!r} excludes"
    return None


def lock_problems(requirements: Sequence[str], lock: Lock | None) -> list[str]:
    """How the metadata's ``requirements`` and the lock disagree (empty when they agree)."""
    again = "; run `procreg lock ID` and commit pylock.toml"
    if lock is None:
        return [f"requirements are declared but there is no {LOCK_FILE}" + again] * bool(
            requirements
        )
    if not requirements and lock.packages:
        return [
            f"{LOCK_FILE} pins {len(lock.packages)} distribution(s) but metadata.json "
            "declares no requirements; remove pylock.toml or declare them"
        ]
    problems = [p + again for r in requirements if (p := _satisfied(r, lock)) is not None]
    if lock.requirements is not None and sorted(lock.requirements) != sorted(requirements):
        problems.append(
            f"{LOCK_FILE} was locked for {sorted(lock.requirements)} but metadata.json "
            f"requires {sorted(requirements)}" + again
        )
    return problems


def lock_changes(old: Lock | None, new: Lock | None) -> list[tuple[str, str | None, str | None]]:
    """``(name, old version, new version)`` for every distribution the locks pin differently."""
    before = {_canonical_name(p.name): p for p in (old.packages if old else [])}
    after = {_canonical_name(p.name): p for p in (new.packages if new else [])}
    changes: list[tuple[str, str | None, str | None]] = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a is not None and b is not None and a.version == b.version:
            continue
        name = (b or a).name  # type: ignore[union-attr]
        changes.append((name, a.version if a else None, b.version if b else None))
    return changes


def read_lock(text: str | None, path: str = LOCK_FILE) -> Lock | None:
    """:func:`parse_lock` of ``text``, or None when there is no lock file."""
    return None if text is None else parse_lock(text, path)


def requirement_names(requirements: Sequence[str]) -> dict[str, str]:
    """Canonical distribution name -> the requirement string naming it (unparsable ones skipped)."""
    from packaging.requirements import InvalidRequirement, Requirement

    names: dict[str, str] = {}
    for text in requirements:
        try:
            names[_canonical_name(Requirement(text).name)] = text
        except InvalidRequirement:
            continue
    return names


def as_data(lock: Lock) -> dict[str, Any]:
    """The lock as JSON-ready data (``procreg show --json``)."""
    return lock.model_dump(mode="json")
