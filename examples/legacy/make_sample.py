"""Build examples/legacy/sample.db: a small legacy procedure database (20 procedures).

It has the legacy schema (procedures, procedure_params, procedure_executions)
and a few of the quirks real databases have: steps as JSON, as numbered text
and as a comma list; `bash:` steps; a template variable with no declared
parameter; a dashed and a keyword parameter name; NULL statistics; a
category outside the standard list; examples that hold and one that does not.

    python examples/legacy/make_sample.py            # writes examples/legacy/sample.db
    procreg migrate --from examples/legacy/sample.db -C /tmp/registry

The output is byte-for-byte reproducible (fixed timestamps, no randomness).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from registry.migrate.legacy import SQLITE_SCHEMA

T0 = 1_700_000_000  # 2023-11-14, so the file never changes between builds

# (name, category, description, template, steps, examples, params, contexts)
PROCEDURES: list[tuple[str, str, str, str, Any, Any, list[tuple[Any, ...]], Any]] = [
    (
        "Create feature branch",
        "git",
        "Start a feature branch named after the ticket.",
        "git checkout -b feature/{{ticket}}-{{slug}}",
        [
            "Fetch the latest main",
            "bash: git fetch origin main",
            "bash: git checkout -b feature/{{ticket}}-{{slug}} origin/main",
        ],
        [
            {
                "input": {"ticket": "PROJ-12", "slug": "login-form"},
                "output": "git checkout -b feature/PROJ-12-login-form",
            }
        ],
        [
            ("ticket", "string", 1, None, "Ticket key, e.g. PROJ-12"),
            ("slug", "string", 1, None, "Short kebab-case summary"),
        ],
        '["feature work", "new ticket"]',
    ),
    (
        "Squash fixup commits",
        "git",
        "Fold fixup! commits into their targets before review.",
        "git rebase -i --autosquash {{base}}",
        "1. Make sure the tree is clean\n2. bash: git rebase -i --autosquash {{base}}\n"
        "3. Force-push with lease",
        [{"input": {"base": "origin/main"}, "output": "git rebase -i --autosquash origin/main"}],
        [("base", "string", 0, "origin/main", "Upstream to rebase onto")],
        "before review",
    ),
    (
        "Bisect a regression",
        "debugging",
        "Find the commit that broke a test.",
        "git bisect start {{bad}} {{good}} && git bisect run {{test-command}}",
        [
            {"description": "Start bisecting", "command": "git bisect start {{bad}} {{good}}"},
            {"description": "Let git run the test", "command": "git bisect run {{test-command}}"},
            {"description": "Reset when done", "command": "git bisect reset"},
        ],
        [
            {
                "input": {"bad": "HEAD", "good": "v1.2.0", "test-command": "pytest -x"},
                "output": "git bisect start HEAD v1.2.0 && git bisect run pytest -x",
            }
        ],
        [
            ("bad", "string", 1, None, "A bad commit"),
            ("good", "string", 1, None, "A good one"),
            ("test-command", "string", 1, None, "Exits non-zero when broken"),
        ],
        '[{"symptom": "test started failing"}]',
    ),
    (
        "Reproduce a flaky test",
        "testing",
        "Run one test many times to catch a flake.",
        "pytest {{path}} -x --count={{runs}} -p no:randomly",
        "run once, run {{runs}} times, record failures",
        "run it 50 times",
        [
            ("path", "file", 1, None, "Test node id or file"),
            ("runs", "number", 0, "50", "How many runs"),
        ],
        None,
    ),
    (
        "Extract function",
        "refactoring",
        "Pull a block of code into a named function.",
        "Extract lines {{start}}-{{end}} of {{file}} into {{name}}()",
        '["Select the block", "Check the variables it reads and writes", '
        '"Create the function", "Replace the block with a call", "Run the tests"]',
        [
            {
                "input": {"start": 10, "end": 24, "file": "app.py", "name": "load_config"},
                "output": "Extract lines 10-24 of app.py into load_config()",
            }
        ],
        [
            ("start", "number", 1, None, None),
            ("end", "number", 1, None, None),
            ("file", "file", 1, None, None),
            ("name", "string", 1, None, "New function name"),
        ],
        "python, typescript",
    ),
    (
        "Rename a module",
        "refactoring",
        "Move a module and update every import.",
        "git mv {{from}} {{to}} && grep -rl '{{from}}' .",
        ["bash: git mv {{from}} {{to}}", "Update imports", "Run the type checker"],
        None,
        [
            ("from", "file", 1, None, "Old path (a keyword name in Python)"),
            ("to", "file", 1, None, "New path"),
        ],
        '["python"]',
    ),
    (
        "Deploy to staging",
        "deployment",
        "Ship a tagged build to staging.",
        "deploy {{service}} {{version}} --env staging --replicas {{replicas}}",
        [
            "Check CI is green",
            "$ ./deploy.sh {{service}} {{version}} staging",
            "Watch the dashboards for 10 minutes",
        ],
        [
            {
                "input": {"service": "api", "version": "1.4.2"},
                "output": "deploy api 1.4.2 --env staging --replicas 2",
            }
        ],
        [
            ("service", "string", 1, None, None),
            ("version", "string", 1, None, None),
            ("replicas", "number", 0, "2", None),
        ],
        "staging",
    ),
    (
        "Roll back a release",
        "deployment",
        "Return production to the previous version.",
        "deploy {{service}} {{previous}} --env production",
        "Find the previous version, deploy it, announce it",
        "roll back quickly",
        [("service", "string", 1, None, None), ("previous", "string", 1, None, None)],
        '["production incident"]',
    ),
    (
        "Write an ADR",
        "architecture",
        "Record an architecture decision.",
        "docs/adr/{{number}}-{{title}}.md",
        ["Copy the template", "Write context, decision, consequences", "Open a pull request"],
        [
            {
                "input": {"number": "0007", "title": "use-postgres"},
                "output": "docs/adr/0007-use-postgres.md",
            }
        ],
        [("number", "string", 1, None, "Zero-padded"), ("title", "string", 1, None, None)],
        None,
    ),
    (
        "Review a pull request",
        "code_review",
        "Checklist for a careful review.",
        "Review {{pr}}: tests, naming, errors, docs",
        [
            "Read the description",
            "Run it locally",
            "Check tests cover the change",
            "Leave specific comments",
        ],
        None,
        [("pr", "string", 1, None, "PR URL or number")],
        '["every pull request"]',
    ),
    (
        "Profile a slow endpoint",
        "performance",
        "Find where time goes in one request.",
        "py-spy record -o {{output}} --pid {{pid}}",
        [
            {"action": "Attach py-spy", "cmd": "py-spy record -o {{output}} --pid {{pid}}"},
            {"action": "Open the flame graph"},
        ],
        [
            {
                "input": {"output": "profile.svg", "pid": 4242},
                "output": "py-spy record -o profile.svg --pid 4242",
            }
        ],
        [("output", "file", 0, "profile.svg", None), ("pid", "number", 1, None, None)],
        "latency regression",
    ),
    (
        "Rotate a leaked secret",
        "security",
        "Revoke and replace a credential that leaked.",
        "Rotate {{secret_name}} in {{vault}}",
        [
            "Revoke the old secret",
            "Issue a new one",
            "Update deployments",
            "bash: git log -S '{{secret_name}}' --all",
        ],
        None,
        [("secret_name", "string", 1, None, None), ("vault", "string", 0, "prod-vault", None)],
        '["secret found in git history"]',
    ),
    (
        "Update the changelog",
        "documentation",
        "Add a release section to CHANGELOG.md.",
        "## {{version}} - {{date}}",
        "Collect merged PRs, group by type, write the section",
        [{"input": {"version": "2.0.0", "date": "2024-03-01"}, "output": "## 2.0.0 - 2024-03-01"}],
        [("version", "string", 1, None, None), ("date", "string", 1, None, "ISO date")],
        None,
    ),
    (
        "Tag a release",
        "git",
        "Create an annotated release tag.",
        "git tag -a v{{version}} -m 'Release {{version}}'",
        [
            "bash: git tag -a v{{version}} -m 'Release {{version}}'",
            "bash: git push origin v{{version}}",
        ],
        [{"input": {"version": "3.1.0"}, "output": "git tag -a v3.1.0 -m 'Release 3.1.0'"}],
        [("version", "string", 1, None, "Semver without the v")],
        "release day",
    ),
    (
        "Clean merged branches",
        "git",
        "Delete local branches already merged into main.",
        "git branch --merged {{base}} | grep -v {{base}} | xargs git branch -d",
        "list merged, delete",
        None,
        [("base", "string", 0, "main", None), ("dry-run", "boolean", 0, "true", "Only list")],
        None,
    ),
    (
        "Triage a crash report",
        "debugging",
        "From a stack trace to an owner and a severity.",
        "Crash in {{component}} (severity {{severity}})",
        '["Symbolicate the trace", "Find the owning team", "Set severity"]',
        [{"input": {"component": "sync"}, "output": "Crash in sync (severity {{severity}})"}],
        [("component", "string", 1, None, None)],
        '["crash", "stack trace"]',
    ),
    (
        "Add a regression test",
        "testing",
        "Pin a fixed bug with a test.",
        "tests/test_{{module}}.py::test_{{bug_id}}",
        ["Write the failing test first", "Fix the bug", "Watch it pass"],
        [
            {
                "input": {"module": "parser", "bug_id": "1234"},
                "output": "tests/test_parser.py::test_1234",
            }
        ],
        [("module", "string", 1, None, None), ("bug_id", "string", 1, None, None)],
        None,
    ),
    (
        "Onboard a service to monitoring",
        "Observability",
        "Dashboards and alerts for a service.",
        "Create dashboards and alerts for {{service}}",
        ["Add the exporter", "Create the dashboard", "Define SLO alerts"],
        None,
        [("service", "string", 1, None, None)],
        "new service",
    ),
    (
        "Audit dependencies",
        "security",
        "Check third-party packages for known issues.",
        "pip-audit -r {{requirements}}",
        ["bash: pip-audit -r {{requirements}}", "Open issues for findings"],
        [
            {
                "input": {"requirements": "requirements.txt"},
                "output": "pip-audit -r requirements.txt",
            }
        ],
        [("requirements", "file", 0, "requirements.txt", None)],
        '["weekly"]',
    ),
    (
        "Write a runbook",
        "Ops Docs",
        "Document how to operate a service at 3 a.m.",
        "runbooks/{{service}}.md owned by {{owner}}, paged via {{pager}}",
        "see the wiki page",
        "ask the on-call person",
        [("service", "enum", 1, None, None), ("class", None, 0, "tier-2", "Service class")],
        None,
    ),
]


def _as_text(value: Any) -> str | None:
    """Lists and objects as JSON text; text and NULL as they are."""
    return value if value is None or isinstance(value, str) else json.dumps(value)


def build(path: Path) -> Path:
    """Write the sample database to ``path`` (replacing it)."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(SQLITE_SCHEMA)
        param_id = run_id = 0
        for i, (name, cat, desc, template, steps, examples, params, ctx) in enumerate(PROCEDURES):
            pid = i + 1
            conn.execute(
                "INSERT INTO procedures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    pid,
                    name,
                    cat,
                    desc,
                    None if i % 3 else f"^{name.split()[0].lower()}",
                    ctx,
                    template,
                    _as_text(steps),
                    _as_text(examples),
                    None if i % 7 == 6 else round(0.7 + (i % 4) * 0.1, 2),
                    None if i % 7 == 6 else 3 + i * 2,
                    None if i % 7 == 6 else 1000 + 250 * i,
                    T0 + i * 86_400,
                    None if i % 7 == 6 else T0 + 30 * 86_400 + i * 3600,
                    ["alice", "bob", None][i % 3],
                ),
            )
            for p in params:
                param_id += 1
                conn.execute(
                    "INSERT INTO procedure_params VALUES (?, ?, ?, ?, ?, ?, ?)", (param_id, pid, *p)
                )
            for k in range(i % 4):
                run_id += 1
                conn.execute(
                    "INSERT INTO procedure_executions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        pid,
                        ["web", "api", None][k % 3],
                        T0 + 40 * 86_400 + run_id * 600,
                        ["success", "success", "failure", "partial"][(i + k) % 4],
                        400 + 37 * run_id,
                        json.dumps({"run": k}),
                        None if k else "worked",
                    ),
                )
    conn.close()
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("sample.db")
    print(build(target))
