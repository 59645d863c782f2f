"""Readers of the legacy procedure sources: SQLite, PostgreSQL (asyncpg) and a JSON dump.

Every row is kept verbatim, keyed by the legacy column names in the source's
column order, with Python values exactly as the driver returns them. Values
JSON cannot hold as they are (timestamps, decimals, bytes) are encoded by
:func:`encode_value` and named in a ``types`` map, so :func:`decode_value`
gives back an equal value of the same type: that is what the migration's
zero-loss verification compares.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from registry.errors import MigrationError

# The legacy SQLite store's schema, as the migration issue describes it; the bundled
# sample and the tests build legacy databases from it.
SQLITE_SCHEMA = """
CREATE TABLE procedures (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, category TEXT NOT NULL,
    description TEXT, trigger_pattern TEXT, applicable_contexts TEXT, template TEXT NOT NULL,
    steps TEXT, examples TEXT, success_rate REAL, usage_count INTEGER,
    avg_completion_time_ms INTEGER, created_at INTEGER, last_used INTEGER, created_by TEXT
);
CREATE TABLE procedure_params (
    id INTEGER PRIMARY KEY, procedure_id INTEGER, param_name TEXT, param_type TEXT,
    required INTEGER, default_value TEXT, description TEXT
);
CREATE TABLE procedure_executions (
    id INTEGER PRIMARY KEY, procedure_id INTEGER, project_id TEXT, timestamp INTEGER,
    outcome TEXT, duration_ms INTEGER, variables TEXT, learned TEXT
);
"""

System = Literal["sqlite", "postgresql", "json"]

KNOWN_CATEGORIES = frozenset(
    {
        "git", "refactoring", "debugging", "testing", "deployment", "architecture",
        "code_review", "performance", "security", "documentation",
    }
)  # fmt: skip

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_PARAM_KEYS = ("params", "parameters", "procedure_params")
_EXECUTION_KEYS = ("executions", "procedure_executions")


@dataclass
class LegacyProcedure:
    """One legacy procedure: its row, parameter rows and execution rows, verbatim.

    ``key`` is the legacy primary key as text (``"42"``); ``system`` names the
    source (``sqlite:legacy.db``) so that keys of different sources never mix.
    """

    system: str
    key: str
    row: dict[str, Any]
    params: list[dict[str, Any]] = field(default_factory=list)
    executions: list[dict[str, Any]] = field(default_factory=list)
    kind: System = "sqlite"

    def text(self, column: str) -> str | None:
        """A column as text (``None`` when absent or NULL); numbers are formatted."""
        value = self.row.get(column)
        if value is None:
            return None
        if isinstance(value, list):
            return json.dumps([_jsonable(v) for v in value], ensure_ascii=False)
        return value if isinstance(value, str) else str(value)

    @property
    def name(self) -> str:
        return self.text("name") or ""

    @property
    def category(self) -> str | None:
        return self.text("category")

    @property
    def description(self) -> str:
        return self.text("description") or ""

    @property
    def template(self) -> str:
        return self.text("template") or ""

    @property
    def identity(self) -> str:
        """``system#key``: what ``Extracted-From`` names and ids are hashed from."""
        return f"{self.system}#{self.key}"


@dataclass
class LegacySource:
    """Everything read from one source, procedures in key order."""

    source: str
    kind: System
    system: str
    procedures: list[LegacyProcedure]


# -- exact values ----------------------------------------------------------------


def encode_value(value: Any) -> tuple[Any, str | None]:
    """A JSON value for ``value`` and the type tag needed to get it back exactly.

    JSON-native values (None, bool, int, float, str, and lists of them) need
    no tag. Timestamps become ISO 8601 text (``timestamp``/``timestamptz``/
    ``date``/``time``), decimals their exact text (``decimal``), bytes base64
    (``bytes``), UUIDs text (``uuid``); lists holding any of these become
    ``array:<tag>`` with each element encoded.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value, None
    if isinstance(value, dt.datetime):
        return value.isoformat(), "timestamptz" if value.tzinfo else "timestamp"
    if isinstance(value, dt.date):
        return value.isoformat(), "date"
    if isinstance(value, dt.time):
        return value.isoformat(), "time"
    if isinstance(value, decimal.Decimal):
        return str(value), "decimal"
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii"), "bytes"
    if isinstance(value, uuid.UUID):
        return str(value), "uuid"
    if isinstance(value, list | tuple):
        items = [encode_value(v) for v in value]
        tags = {t for _, t in items if t is not None}
        if not tags:
            return [v for v, _ in items], None
        if len(tags) > 1:
            raise MigrationError(f"a list mixes value types {sorted(tags)}; cannot keep it exactly")
        return [v for v, _ in items], f"array:{tags.pop()}"
    if isinstance(value, dict):
        return value, None  # JSON columns (jsonb) arrive decoded only when a codec is set
    raise MigrationError(
        f"legacy value of type {type(value).__name__} cannot be kept exactly; "
        "convert the column to text in the source and rerun"
    )


def decode_value(value: Any, tag: str | None) -> Any:
    """The inverse of :func:`encode_value`."""
    if tag is None or value is None:
        return value
    if tag.startswith("array:"):
        return [decode_value(v, tag[len("array:") :]) for v in value]
    if tag in ("timestamp", "timestamptz"):
        return dt.datetime.fromisoformat(value)
    if tag == "date":
        return dt.date.fromisoformat(value)
    if tag == "time":
        return dt.time.fromisoformat(value)
    if tag == "decimal":
        return decimal.Decimal(value)
    if tag == "bytes":
        return base64.b64decode(value)
    if tag == "uuid":
        return uuid.UUID(value)
    raise MigrationError(f"unknown legacy type tag {tag!r} in metadata.json")


def same_value(a: Any, b: Any) -> bool:
    """Equal in value *and* type (``1 != 1.0 != True`` here), recursively for lists."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:  # NaN stays NaN
        return b != b
    return bool(a == b)


def _jsonable(value: Any) -> Any:
    return encode_value(value)[0]


# -- sources -------------------------------------------------------------------


def describe_source(source: str) -> tuple[System, str]:
    """``(kind, location)`` for a ``--from`` value: a file path or a PostgreSQL URL.

    ``sqlite:///relative.db`` and ``sqlite:////absolute.db`` follow SQLAlchemy;
    a plain path ending in ``.json`` is a JSON dump, any other path a SQLite file.
    """
    text = source.strip()
    if not text:
        raise MigrationError("no legacy source given; pass --from with a .db/.json file or a URL")
    if text.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
        return "postgresql", text.replace("postgresql+asyncpg://", "postgresql://", 1)
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///"):
            raise MigrationError(
                f"{source}: a SQLite URL needs three slashes: sqlite:///relative.db or "
                "sqlite:////absolute/path.db"
            )
        path = unquote(urlsplit(text).path)
        path = path[1:] if path.startswith("/") else path  # sqlite:///x.db -> x.db
        return "sqlite", path
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise MigrationError(
            f"{source}: unsupported source scheme {scheme!r}; use a .db or .json file, "
            "sqlite:///file.db or postgresql://..."
        )
    return ("json" if text.lower().endswith(".json") else "sqlite"), text


async def read_source(source: str) -> LegacySource:
    """Read every legacy procedure from ``source`` (see :func:`describe_source`).

    Raises :class:`MigrationError` naming the source when it is missing,
    unreadable or lacks the legacy tables.
    """
    kind, location = describe_source(source)
    if kind == "postgresql":
        return await _read_postgres(source, location)
    return read_file_source(source, kind, location)


def read_file_source(source: str, kind: System, location: str) -> LegacySource:
    """Read a SQLite file or JSON dump (the synchronous part of :func:`read_source`)."""
    path = Path(location)
    if not path.is_file():
        what = "directory" if path.is_dir() else "file"
        raise MigrationError(
            f"{source}: no such {what} as a legacy database ({path.resolve()}); "
            "check the path given to --from"
        )
    if kind == "json":
        return _read_json(source, path)
    return _read_sqlite(source, path)


def _sqlite_rows(conn: sqlite3.Connection, sql: str) -> list[dict[str, Any]]:
    cur = conn.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _read_sqlite(source: str, path: Path) -> LegacySource:
    system = f"sqlite:{path.name}"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise MigrationError(f"{source}: cannot open as SQLite: {exc}") from exc
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "procedures" not in tables:
            raise MigrationError(
                f"{source}: no `procedures` table; is this the legacy procedure database?"
            )
        rows = _sqlite_rows(conn, "SELECT * FROM procedures ORDER BY id")
        params = (
            _sqlite_rows(conn, "SELECT * FROM procedure_params ORDER BY procedure_id, id")
            if "procedure_params" in tables
            else []
        )
        executions = (
            _sqlite_rows(conn, "SELECT * FROM procedure_executions ORDER BY procedure_id, id")
            if "procedure_executions" in tables
            else []
        )
    except sqlite3.DatabaseError as exc:
        raise MigrationError(f"{source}: cannot read as a SQLite database: {exc}") from exc
    finally:
        conn.close()
    by_proc: dict[Any, list[dict[str, Any]]] = {}
    for p in params:
        by_proc.setdefault(p.get("procedure_id"), []).append(p)
    runs: dict[Any, list[dict[str, Any]]] = {}
    for e in executions:
        runs.setdefault(e.get("procedure_id"), []).append(e)
    procs = [
        LegacyProcedure(
            system=system,
            key=str(row.get("id")),
            row=row,
            params=by_proc.get(row.get("id"), []),
            executions=runs.get(row.get("id"), []),
            kind="sqlite",
        )
        for row in rows
    ]
    return LegacySource(source, "sqlite", system, procs)


def _read_json(source: str, path: Path) -> LegacySource:
    system = f"json:{path.name}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MigrationError(f"{source}: not a readable JSON dump: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("procedures"), list):
        data = data["procedures"]
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise MigrationError(
            f"{source}: a JSON dump must be a list of procedure objects "
            "(or {'procedures': [...]})"
        )
    procs = []
    seen: set[str] = set()
    for i, obj in enumerate(data):
        row = dict(obj)
        params = next((row.pop(k) for k in _PARAM_KEYS if k in row), None) or []
        runs = next((row.pop(k) for k in _EXECUTION_KEYS if k in row), None) or []
        if not isinstance(params, list) or not isinstance(runs, list):
            raise MigrationError(f"{source}: item {i}: parameters and executions must be lists")
        key = str(row["id"]) if row.get("id") is not None else f"item-{i}"
        if key in seen:
            raise MigrationError(f"{source}: item {i}: id {key} appears twice; ids must be unique")
        seen.add(key)
        procs.append(LegacyProcedure(system, key, row, list(params), list(runs), "json"))
    return LegacySource(source, "json", system, procs)


async def _read_postgres(source: str, url: str) -> LegacySource:
    import asyncpg

    name = urlsplit(url).path.lstrip("/") or "postgres"
    system = f"postgresql:{name}"
    shown = _redact(source)
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise MigrationError(f"{shown}: cannot connect to PostgreSQL: {exc}") from exc
    try:
        try:
            records = await conn.fetch("SELECT * FROM procedures ORDER BY id")
        except asyncpg.UndefinedTableError as exc:
            raise MigrationError(
                f"{shown}: no `procedures` table; is this the legacy procedure database?"
            ) from exc
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"{shown}: cannot read procedures: {exc}") from exc
    finally:
        await conn.close()
    procs = [
        LegacyProcedure(system, str(r["id"]), dict(r.items()), [], [], "postgresql")
        for r in records
    ]
    return LegacySource(shown, "postgresql", system, procs)


def _redact(url: str) -> str:
    """The URL without its password, for messages and trailers."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
