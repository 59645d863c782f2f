"""Builders of legacy procedure databases with every quirk real ones have.

``legacy_rows(n)`` makes deterministic rows (procedures, parameters,
executions); ``build_sqlite``, ``build_json`` and ``build_postgres`` store them
the way each legacy system did. Quirks: JSON, plain text, comma lists, broken
JSON and NULL in contexts/steps/examples; templates with ``{{vars}}`` bound,
unbound, spaced and dashed; odd categories; parameter names that are keywords,
dashed, start with digits or repeat; names that slugify alike, very long
names, ``../../etc/passwd``, empty and non-Latin names; REAL, INTEGER, TEXT
and NULL where the column type says otherwise.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from registry.migrate.legacy import SQLITE_SCHEMA

PG_SCHEMA = """
CREATE TABLE procedures (
    id BIGSERIAL PRIMARY KEY, project_id TEXT, learned_from_event_id BIGINT,
    name VARCHAR(255), category VARCHAR(100), description TEXT, steps TEXT,
    inputs TEXT[], outputs TEXT[], success_rate REAL, execution_count INTEGER,
    last_executed TIMESTAMP, created_by TEXT, created_at TIMESTAMP, updated_at TIMESTAMP,
    UNIQUE (project_id, name)
);
"""

SPECIAL_NAMES = [
    "Deploy App",
    "deploy-app",
    "DEPLOY  app!",
    "Rebuild the search index after a schema migration " * 6,
    "Rebuild the search index after a schema migration " * 5 + "and warm the caches",
    "../../etc/passwd",
    "etc passwd",
    "",
    "部署应用",
    "Café résumé ünïcode",
    "   ",
    "42",
    "multi\nline name",
    'quotes """ and \\ backslashes',
    "..",
    "a" * 300,
]

CATEGORIES = [
    "git", "refactoring", "debugging", "testing", "deployment", "architecture",
    "code_review", "performance", "security", "documentation",
    "Code Review", "misc", "", "DevOps/CI", "x" * 150, "  Testing  ",
]  # fmt: skip

CONTEXTS: list[Any] = [
    '["python", "monorepo"]',
    '[{"language": "go"}, {"repo": "api", "env": ["ci"]}]',
    "when the build is red",
    "ci, staging, production",
    None,
    "",
    "[broken json",
    '"just a json string"',
]

STEPS: list[Any] = [
    '["Check out the branch", "bash: git checkout -b {{branch}}", "$ make test"]',
    '[{"description": "Run the linter", "command": "ruff check {{path}}"}, '
    '{"action": "Review"}, {"weird": 1}, 7]',
    "1. Open the logs\n2. Find the first error\n3. bash: touch /tmp/never-{{ticket}}",
    "lint, test, deploy",
    None,
    "[not json",
    '{"step": "single object step", "cmd": "echo hi"}',
    "Just do it carefully with __init__.py in mind",
    "",
]

TEMPLATES = [
    "git checkout -b {{branch}}",
    "Deploy {{service}} to {{ environment }} with {{undeclared-var}}",
    "No variables here",
    "Edit __init__.py then run {{dry-run}} and {{class}}",
    "",
    "Fix {{ticket}}: {{summary}} {{unbound_one}} {{ #if x }}",
    'Quotes """ \\ and {{2fa}}',
]


def _params(i: int, pid: int, next_id: list[int]) -> list[dict[str, Any]]:
    """Parameter rows for procedure ``i`` (several shapes cycle)."""

    def row(name: Any, ptype: Any, required: Any, default: Any, desc: Any) -> dict[str, Any]:
        next_id[0] += 1
        return {
            "id": next_id[0],
            "procedure_id": pid,
            "param_name": name,
            "param_type": ptype,
            "required": required,
            "default_value": default,
            "description": desc,
        }

    shape = i % 7
    if shape == 0:
        return [row("branch", "string", 1, None, "branch to create")]
    if shape == 1:
        return [
            row("service", "string", 1, None, "service"),
            row("environment", "string", 0, "staging", None),
            row("replicas", "number", 0, "3", "how many"),
            row("force", "boolean", 0, "true", ""),
        ]
    if shape == 2:
        return []
    if shape == 3:
        return [
            row("dry-run", "boolean", 0, "no", "dashed"),
            row("class", "string", 1, None, "a keyword"),
            row("from", "directory", 1, None, None),
            row("2fa", "file", "yes", None, "leading digit"),
            row("values", "list", 0, "a,b", "reserved in generated code"),
        ]
    if shape == 4:
        return [
            row("x", "string", 1, None, "first x"),
            row("x", "number", 0, "abc", "duplicate with a bad default"),
            row("a-b", "enum", None, None, "unknown type"),
            row("a_b", None, 1, None, "no type"),
            row("naïve", "string", 0, "", "unicode"),
        ]
    if shape == 5:
        return [
            row("ticket", "string", 1, None, "ticket id"),
            row("summary", "string", 1, None, "what"),
            row("tags", "list", 0, '["a", "b"]', "json list default"),
            row("", "string", 0, None, "empty name"),
        ]
    return [row("2fa", "string", 1, None, "code"), row("TEMPLATE", "string", 0, "t", "shadow")]


def _examples(i: int) -> Any:
    shape = i % 6
    if shape == 0:  # usable: matches the rendered template (template shape 0 -> "git checkout")
        return json.dumps(
            [
                {"input": {"branch": f"fix/{i}"}, "output": f"git checkout -b fix/{i}"},
                {"input": {"branch": "x"}, "output": "wrong"},
            ]
        )
    if shape == 1:
        return "run it and see"
    if shape == 2:
        return None
    if shape == 3:
        return '["example one", "example two"]'
    if shape == 4:
        return '[{"variables": {"nope": 1}, "expected": "?"}]'
    return "[broken"


def legacy_rows(
    n: int = 110,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """``(procedures, params, executions)`` rows for ``n`` legacy procedures."""
    procs: list[dict[str, Any]] = []
    params: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    param_id = [0]
    run_id = 0
    for i in range(n):
        pid = i + 1
        name = SPECIAL_NAMES[i] if i < len(SPECIAL_NAMES) else f"Procedure {i} {CATEGORIES[i % 10]}"
        template = TEMPLATES[i % len(TEMPLATES)]
        if i % 6 == 0:  # examples shape 0 matches this template
            template = TEMPLATES[0]
        success: Any = [0.95, None, 1, "n/a", 0.1 + 0.2, 0.0][i % 6]
        avg: Any = [1200, None, 1234.5, 0, "slow"][i % 5]
        procs.append(
            {
                "id": pid,
                "name": name,
                "category": CATEGORIES[i % len(CATEGORIES)],
                "description": [None, "Does a thing.", 'Mentions __init__ and "quotes"'][i % 3],
                "trigger_pattern": [None, r"^deploy\s+(\w+)$", "on failure"][i % 3],
                "applicable_contexts": CONTEXTS[i % len(CONTEXTS)],
                "template": template,
                "steps": STEPS[i % len(STEPS)],
                "examples": _examples(i),
                "success_rate": success,
                "usage_count": [10, None, 0, 2**40][i % 4],
                "avg_completion_time_ms": avg,
                "created_at": 1_700_000_000 + i,
                "last_used": None if i % 4 == 0 else 1_710_000_000 + i * 60,
                "created_by": [None, "alice", "bob@example.com"][i % 3],
            }
        )
        params += _params(i, pid, param_id)
        for k in range(i % 4):
            run_id += 1
            runs.append(
                {
                    "id": run_id,
                    "procedure_id": pid,
                    "project_id": [None, "proj-a", "proj-b"][k % 3],
                    "timestamp": 1_710_000_000 + run_id * 3600,
                    "outcome": ["success", "failure", "partial"][(i + k) % 3],
                    "duration_ms": [250, None, 12.5][k % 3],
                    "variables": ['{"branch": "main"}', None, "plain"][k % 3],
                    "learned": [None, "learned something", 1][k % 3],
                }
            )
    return procs, params, runs


def build_sqlite(path: Path, n: int = 110) -> Path:
    """A legacy SQLite database of ``n`` procedures at ``path``."""
    procs, params, runs = legacy_rows(n)
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(SQLITE_SCHEMA)
        for table, rows in (
            ("procedures", procs),
            ("procedure_params", params),
            ("procedure_executions", runs),
        ):
            cols = list(rows[0])
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [tuple(r[c] for c in cols) for r in rows],
            )
    conn.close()
    return path


def read_sqlite(path: Path) -> dict[int, dict[str, Any]]:
    """Every procedure with its params and executions, read directly (for independent checks)."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    out: dict[int, dict[str, Any]] = {}
    for r in conn.execute("SELECT * FROM procedures ORDER BY id"):
        out[r["id"]] = {"row": dict(r), "params": [], "executions": []}
    for r in conn.execute("SELECT * FROM procedure_params ORDER BY procedure_id, id"):
        out[r["procedure_id"]]["params"].append(dict(r))
    for r in conn.execute("SELECT * FROM procedure_executions ORDER BY procedure_id, id"):
        out[r["procedure_id"]]["executions"].append(dict(r))
    conn.close()
    return out


def build_json(path: Path, n: int = 110) -> Path:
    """A JSON dump: a list of objects with the SQLite columns and nested parameters."""
    procs, params, runs = legacy_rows(n)
    items = []
    for p in procs:
        item = dict(p)
        item["params"] = [q for q in params if q["procedure_id"] == p["id"]]
        item["executions"] = [e for e in runs if e["procedure_id"] == p["id"]]
        items.append(item)
    path.write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


async def build_postgres(url: str, n: int = 105) -> None:
    """The later PostgreSQL port: one ``procedures`` table, inputs and outputs as arrays."""
    import datetime as dt

    import asyncpg

    procs, params, _ = legacy_rows(n)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(PG_SCHEMA)
        for i, p in enumerate(procs):
            inputs: Any = [q["param_name"] for q in params if q["procedure_id"] == p["id"]]
            if i % 5 == 4:
                inputs = None
            elif i % 5 == 3:
                inputs = [*inputs, None]
            name = p["name"][:255]
            project = f"proj-{i % 3}"
            if i in (20, 21, 22):  # the same name in three projects
                name = "Shared Name"
            await conn.execute(
                "INSERT INTO procedures (project_id, learned_from_event_id, name, category, "
                "description, steps, inputs, outputs, success_rate, execution_count, "
                "last_executed, created_by, created_at, updated_at) VALUES "
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                project if i % 7 else None,
                None if i % 2 else 10_000 + i,
                name,
                p["category"][:100] if i % 9 else None,
                p["description"],
                p["steps"],
                inputs,
                [] if i % 2 else ["report", "exit code"],
                [0.95, None, 0.333, 1.0][i % 4],
                [0, None, 17][i % 3],
                None
                if i % 3 == 0
                else dt.datetime(2024, 1, 2, 3, 4, 5, 123456) + dt.timedelta(hours=i),
                p["created_by"],
                dt.datetime(2023, 5, 6, 7, 8, 9) + dt.timedelta(days=i),
                dt.datetime(2024, 5, 6, 7, 8, 9, 1),
            )
    finally:
        await conn.close()


async def read_postgres(url: str) -> dict[int, dict[str, Any]]:
    """Rows of the PostgreSQL port, read directly with asyncpg."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT * FROM procedures ORDER BY id")
    finally:
        await conn.close()
    return {r["id"]: {"row": dict(r.items()), "params": [], "executions": []} for r in rows}
