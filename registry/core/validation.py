"""Procedure validation: files, ids, ``metadata.json``, the entry point, the examples.

:func:`validate_snapshot` checks a whole procedure folder: the id and the
files (modes, sizes, encodings) here; ``metadata.json`` against the model
(:mod:`registry.core.metadatafile`); every ``.py`` file against the code rules,
the import policy and the ``ast`` checks (:mod:`registry.core.codecheck`); the
entry point's form, its parameters against the metadata, and the examples
(:mod:`registry.core.entrypoint`).

Every rule name is listed, with its fix, in ``docs/validation.md``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

from pydantic import BaseModel

from registry.config import ValidationSection
from registry.core.codecheck import (
    ALWAYS_DENIED_IMPORTS,
    CODE_RULES,
    NETWORK_IMPORTS,
    check_source,
    dedupe,
)
from registry.core.entrypoint import check_entry, example_problems
from registry.core.ids import ID_RE
from registry.core.metadatafile import MetadataFile, load_metadata
from registry.core.model import Metadata
from registry.core.problems import Problem
from registry.core.pylock import LOCK_FILE, Lock, lock_problems, parse_lock
from registry.core.signature import Signature
from registry.core.snapshot import (
    MAIN_FILE,
    METADATA_FILE,
    MODE_EXECUTABLE,
    MODE_SUBMODULE,
    MODE_SYMLINK,
    Snapshot,
)
from registry.errors import LockError

__all__ = [
    "ALLOWED_EXTENSIONS",
    "RULES",
    "ValidationResult",
    "id_problems",
    "validate_snapshot",
]

_STDLIB = frozenset(sys.stdlib_module_names)

# Every rule this module reports, the code rules included (documented in docs/validation.md).
RULES: frozenset[str] = CODE_RULES | frozenset(
    {"id-invalid", "id-mismatch", "missing-file", "unexpected-file", "symlink", "submodule",
     "executable-file", "file-too-large", "folder-too-large", "too-many-files", "binary-file",
     "encoding", "shadows-stdlib", "metadata-json", "metadata-schema", "entry-point-missing",
     "entry-point-not-function", "entry-point-async", "entry-point-generator",
     "entry-point-decorated", "entry-point-positional-only", "entry-point-varargs",
     "parameter-not-in-code", "parameter-not-in-metadata", "parameter-required-mismatch",
     "parameter-default-mismatch", "parameter-default-not-literal", "parameter-type-mismatch",
     "example-unknown-parameter", "example-missing-parameter", "example-type-mismatch",
     "lock-invalid", "lock-mismatch"}
)  # fmt: skip

# Other files a procedure may carry (documentation, data); anything else is unexpected.
ALLOWED_EXTENSIONS: frozenset[str] = frozenset(
    {".py", ".md", ".txt", ".rst", ".json", ".csv", ".tsv", ".toml", ".yaml", ".yml"}
)


class ValidationResult(BaseModel):
    """The outcome of validating one procedure folder."""

    id: str
    metadata: Metadata | None = None
    signature: Signature | None = None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def id_problems(value: str, path: str) -> list[Problem]:
    """Problems with a procedure id (the folder name): rule ``id-invalid``.

    Says why an id is invalid; :func:`registry.core.tags.check_id` raises instead.
    """
    if ID_RE.match(value):
        return []
    if not value:
        why = "it is empty"
    elif len(value) > 64:
        why = f"it is {len(value)} characters long (at most 64)"
    elif value.lower() != value and ID_RE.match(value.lower()):
        why = "it has uppercase letters"
    elif bad := sorted({c for c in value if not re.match(r"[a-z0-9_-]", c)}):
        why = f"it contains {', '.join(repr(c) for c in bad)}"
    else:
        why = "it must start with a lowercase letter or digit"
    return [
        Problem(
            path=path,
            rule="id-invalid",
            message=f"procedure id {value!r} is invalid: {why}; use lowercase letters, digits, "
            "'_' and '-' (1 to 64 characters, matching ^[a-z0-9][a-z0-9_-]{0,63}$)",
        )
    ]


# ---------------------------------------------------------------- files and the folder


def _local_modules(names: Iterable[str]) -> dict[str, str]:
    """Importable module names of the folder's ``.py`` files, mapped to their file."""
    modules: dict[str, str] = {}
    for name in names:
        if not name.endswith(".py"):
            continue
        parts = name[:-3].split("/")
        if parts[-1] == "__init__":
            parts.pop()
        if parts and all(p.isidentifier() for p in parts):
            for end in range(1, len(parts) + 1):
                modules.setdefault(".".join(parts[:end]), name)
    return modules


def _file_problem(
    name: str, data: bytes, mode: int, path: str, config: ValidationSection
) -> Problem | None:
    """The first problem that makes a file unusable, if any (content is then not read)."""

    def problem(rule: str, message: str, line: int | None = None) -> Problem:
        return Problem(path=path, line=line, rule=rule, message=message)

    if mode == MODE_SUBMODULE:
        return problem("submodule", "git submodules are not allowed; copy the code in")
    if mode == MODE_SYMLINK:
        return problem("symlink", "symbolic links are not allowed; commit a regular file")
    if mode not in (MODE_EXECUTABLE, 0o100644):
        return problem("unexpected-file", f"unexpected git mode {mode:o}; commit a regular file")
    parts = name.split("/")
    suffix = "." + name.rsplit(".", 1)[-1] if "." in parts[-1] else ""
    if any(p.startswith(".") or p == "__pycache__" for p in parts) or (
        suffix not in ALLOWED_EXTENSIONS
    ):
        return problem(
            "unexpected-file",
            f"{name} is not part of a procedure; allowed are "
            f"{', '.join(sorted(ALLOWED_EXTENSIONS))} files (no hidden files or caches)",
        )
    if len(data) > config.max_file_bytes:
        return problem(
            "file-too-large",
            f"{len(data)} bytes, more than max_file_bytes ({config.max_file_bytes}); "
            "shrink it or raise [validation] max_file_bytes",
        )
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        return problem("binary-file", "contains NUL bytes; only text files are allowed", line)
    if data.startswith(b"\xef\xbb\xbf"):
        return problem("encoding", "starts with a UTF-8 byte order mark; save without BOM", 1)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return problem(
            "encoding",
            f"not valid UTF-8 at byte {exc.start} ({exc.reason}); save the file as UTF-8",
            line,
        )
    return None


def _read_files(
    snapshot: Snapshot, config: ValidationSection
) -> tuple[dict[str, str], list[Problem]]:
    """The text of every usable file, and the problems of each file on its own."""
    texts: dict[str, str] = {}
    problems: list[Problem] = []
    for name in sorted(snapshot.files):
        data, mode = snapshot.files[name]
        path = f"{snapshot.path}/{name}"
        bad = _file_problem(name, data, mode, path, config)
        if bad is not None:
            problems.append(bad)
            continue
        if mode == MODE_EXECUTABLE:
            problems.append(
                Problem(
                    path=path,
                    rule="executable-file",
                    message="the file is executable; procedures are called, not run "
                    "(git update-index --chmod=-x or chmod -x)",
                )
            )
        texts[name] = data.decode("utf-8")
    return texts, problems


def _folder_problems(snapshot: Snapshot, config: ValidationSection) -> list[Problem]:
    """The folder as a whole: how many files, how many bytes, the files every procedure needs."""
    base = snapshot.path
    problems: list[Problem] = []
    if len(snapshot.files) > config.max_files:
        problems.append(
            Problem(
                path=base,
                rule="too-many-files",
                message=f"{len(snapshot.files)} files, more than max_files ({config.max_files})",
            )
        )
    size = sum(len(e.data) for e in snapshot.files.values())
    if size > config.max_folder_bytes:
        problems.append(
            Problem(
                path=base,
                rule="folder-too-large",
                message=f"{size} bytes in all, more than max_folder_bytes "
                f"({config.max_folder_bytes})",
            )
        )
    for required in (METADATA_FILE, MAIN_FILE):
        if required not in snapshot.files:
            problems.append(
                Problem(
                    path=f"{base}/{required}",
                    rule="missing-file",
                    message=f"every procedure needs {required}; add it",
                )
            )
    return problems


def _reserved(module: str) -> bool:
    """True for a top-level name of the standard library or an always-denied import."""
    top = module.split(".")[0]
    return top in _STDLIB or top in ALWAYS_DENIED_IMPORTS


def _local_imports(snapshot: Snapshot) -> tuple[dict[str, str], list[Problem]]:
    """The folder's importable modules (those not shadowing the stdlib), and the shadowing ones."""
    local = _local_modules(snapshot.files)
    problems = [
        Problem(
            path=f"{snapshot.path}/{name}",
            rule="shadows-stdlib",
            message=f"module `{module}` would shadow the standard library's; rename the file",
        )
        for module, name in sorted(local.items())
        if "." not in module and _reserved(module)
    ]
    return {m: n for m, n in local.items() if not _reserved(m)}, problems


def _entry_name(meta: Metadata | None, mf: MetadataFile | None) -> str:
    """The entry point's name: from the metadata, else as metadata.json spells it, else main."""
    if meta is not None:
        return meta.entry_point
    named = mf.data.get("entry_point") if mf is not None and isinstance(mf.data, dict) else None
    return named if isinstance(named, str) and named.isidentifier() else "main"


def _lock(
    snapshot: Snapshot, texts: dict[str, str], meta: Metadata | None
) -> tuple[Lock | None, list[Problem]]:
    """The folder's ``pylock.toml`` and how it disagrees with the metadata's requirements."""
    path = f"{snapshot.path}/{LOCK_FILE}"
    lock = None
    if LOCK_FILE in texts:
        try:
            lock = parse_lock(texts[LOCK_FILE], path)
        except LockError as exc:
            return None, [Problem(path=path, rule="lock-invalid", message=str(exc))]
    if meta is None:
        return lock, []
    return lock, [
        Problem(path=path, rule="lock-mismatch", message=message, field="requirements")
        for message in lock_problems(meta.requirements, lock)
    ]


def _network_imports(meta: Metadata | None) -> list[str]:
    return sorted(NETWORK_IMPORTS) if meta is not None and meta.network is not None else []


def validate_snapshot(
    snapshot: Snapshot, config: ValidationSection | None = None
) -> ValidationResult:
    """Validate a procedure folder; gathers every problem instead of stopping at the first.

    Checks the id, the files (modes, sizes, encodings), ``metadata.json``
    against :class:`~registry.core.model.Metadata`, every ``.py`` file with
    :func:`check_source`, the entry point's form, and the entry point's
    parameters against the metadata and its examples.
    """
    config = config or ValidationSection()
    base = snapshot.path
    problems = id_problems(snapshot.id, base)
    texts, file_problems = _read_files(snapshot, config)
    problems += file_problems
    problems += _folder_problems(snapshot, config)
    local, shadowing = _local_imports(snapshot)
    problems += shadowing

    meta, mf = None, None
    if METADATA_FILE in texts:
        meta, mf, meta_problems = load_metadata(snapshot, texts[METADATA_FILE])
        problems += meta_problems
    lock, lock_found = _lock(snapshot, texts, meta)
    problems += lock_found
    extra = [*(lock.modules if lock is not None else ()), *_network_imports(meta)]
    if extra:
        # What the locked distributions provide, and (with network) the standard library's
        # HTTP clients, may be imported; denials still apply.
        config = config.model_copy(update={"allow_imports": [*config.allow_imports, *extra]})
    for name, text in texts.items():
        if name.endswith(".py"):
            problems += check_source(text, f"{base}/{name}", config, local_modules=local)

    sig = None
    if MAIN_FILE in texts:
        entry = _entry_name(meta, mf)
        sig, entry_problems = check_entry(texts[MAIN_FILE], f"{base}/{MAIN_FILE}", entry, meta, mf)
        problems += entry_problems
    if meta is not None and mf is not None:
        problems += example_problems(meta, mf)
    return ValidationResult(id=snapshot.id, metadata=meta, signature=sig, problems=dedupe(problems))
