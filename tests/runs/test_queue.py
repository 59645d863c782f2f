"""Queued runs against the real PostgreSQL server: workers are real ``procreg worker`` processes.

Each test makes its own database (``pg_url``) and registry, starts workers on it as a
user would (``python -m registry worker --database-url URL -C CLONE``), submits through
the API or the CLI, and waits for conditions with a deadline (never a fixed sleep).
Heartbeats are fast here (``[queue] heartbeat_s``) so that a killed worker is noticed
in seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import asyncpg
import jsonschema
import pytest

from registry import JobError, QueueUnavailable, Registry
from registry.core.model import Limits, Parameter
from tests.helpers import (
    REPO_ROOT,
    commit_all,
    git,
    release,
    run_cli,
    stop,
    wait_for,
    write_proc,
)

pytestmark = pytest.mark.postgres

QUEUE_TOML = """
[queue]
heartbeat_s = 0.5
stalled_after_s = 2.0
"""
NUMBER = Parameter(name="n", type="integer", description="a number")
SECONDS = Parameter(name="seconds", type="number", description="how long")


def make_registry(root: Path, capsys: pytest.CaptureFixture[str], extra_toml: str = "") -> Path:
    assert run_cli(capsys, "init", str(root)).code == 0
    toml = root / "procreg.toml"
    text = toml.read_text().replace("allow_imports = []", 'allow_imports = ["time"]')
    toml.write_text(text + QUEUE_TOML + extra_toml)
    write_proc(root, "echo")
    write_proc(root, "double", "return n * 2", [NUMBER], returns="integer")
    write_proc(
        root,
        "nap",
        "import time\ntime.sleep(seconds)\nreturn seconds",
        [SECONDS],
        returns="number",
        limits=Limits(timeout_s=60),
    )
    write_proc(root, "broken", "raise ValueError('no: ' + text)", retries=2)
    write_proc(root, "fragile", "raise ValueError('no: ' + text)")
    commit_all(root, "feat: queued procedures")
    for pid in ("echo", "double", "nap", "broken", "fragile"):
        release(root, pid)
    return root


class Workers:
    """``procreg worker`` processes on one database, stopped (SIGTERM) at the end."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.logs = logs
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, clone: Path, *args: str) -> subprocess.Popen[str]:
        """Start a worker on ``clone``; what it says goes to ``logs/worker-N.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "registry", "worker", "--database-url", self.url]
        with (self.logs / f"worker-{len(self.procs)}.log").open("w") as log:
            proc = subprocess.Popen(
                [*command, "-C", str(clone), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                stop(proc, signal.SIGTERM, timeout=30)


@pytest.fixture
def workers(pg_url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(pg_url, tmp_path / "logs")
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def reg_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    return make_registry(tmp_path / "reg", capsys)


def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def job_state(reg: Registry, job_id: int) -> str:
    return reg.job(job_id).state


# --------------------------------------------------------------------------- basics


def test_submit_then_result_is_the_run_result_with_its_record(
    reg_root: Path, pg_url: str, workers: Workers
) -> None:
    with Registry.open(reg_root, database_url=pg_url) as reg:
        handle = reg.submit("double", n=21)
        assert (handle.id, handle.version, handle.queue) == ("double", "1.0.0", "default")
        assert handle.commit == git(reg_root, "rev-parse", "HEAD").strip()
        workers.start(reg_root)
        result = reg.result(handle.job_id, timeout=60)
        assert result.ok and result.result == 42
        assert (result.id, result.version, result.commit) == ("double", "1.0.0", handle.commit)
        job = reg.job(handle.job_id)
        assert job.state == "succeeded"
        assert [a.outcome for a in job.attempts] == ["success"]
        assert job.result is not None and job.result.run_id == result.run_id
        assert reg.metrics("double").runs == 1
    (row,) = fetch(pg_url, "SELECT job_id, attempt, worker, run_id FROM executions")
    assert (row["job_id"], row["attempt"], row["run_id"]) == (handle.job_id, 1, result.run_id)
    assert row["worker"] == os.uname().nodename


def test_version_is_resolved_at_submit_even_if_a_release_lands_before_a_worker_runs_it(
    reg_root: Path, pg_url: str, workers: Workers
) -> None:
    with Registry.open(reg_root, database_url=pg_url) as reg:
        handle = reg.submit("echo", text="hi")
        write_proc(reg_root, "echo", "return text + '!'")
        commit_all(reg_root, "fix: echo shouts")
        assert release(reg_root, "echo") == "1.0.1"
        workers.start(reg_root)
        result = reg.result(handle.job_id, timeout=60)
        assert (result.version, result.result) == ("1.0.0", "hi")
        assert reg.result(reg.submit("echo", text="hi").job_id, timeout=60).result == "hi!"


def test_a_cancelled_job_does_not_run(reg_root: Path, pg_url: str, workers: Workers) -> None:
    with Registry.open(reg_root, database_url=pg_url) as reg:
        doomed = reg.submit("echo", text="never")
        assert reg.cancel_job(doomed.job_id).state == "cancelled"
        after = reg.submit("echo", text="after")  # same queue, behind it
        workers.start(reg_root)
        assert reg.result(after.job_id, timeout=60).result == "after"
        job = reg.job(doomed.job_id)
        assert (job.state, job.attempts, job.result) == ("cancelled", [], None)
        with pytest.raises(JobError, match="cancelled") as caught:
            reg.result(doomed.job_id, timeout=10)
        assert caught.value.state == "cancelled"
        with pytest.raises(Exception, match="already succeeded"):
            reg.cancel_job(after.job_id)
    runs = fetch(pg_url, "SELECT job_id FROM executions")
    assert [r["job_id"] for r in runs] == [after.job_id]


def test_a_failure_is_retried_only_as_its_metadata_says(
    reg_root: Path, pg_url: str, workers: Workers
) -> None:
    workers.start(reg_root)
    with Registry.open(reg_root, database_url=pg_url) as reg:
        broken = reg.submit("broken", text="x")  # retries: 2
        fragile = reg.submit("fragile", text="x")  # no retries
        first = reg.result(broken.job_id, timeout=60)
        second = reg.result(fragile.job_id, timeout=60)
        assert not first.ok and first.error is not None and first.error.type == "ValueError"
        assert not second.ok
        assert [a.outcome for a in reg.job(broken.job_id).attempts] == ["failure"] * 3
        assert [a.outcome for a in reg.job(fragile.job_id).attempts] == ["failure"]
        assert reg.job(broken.job_id).state == reg.job(fragile.job_id).state == "failed"
        assert (reg.metrics("broken").runs, reg.metrics("fragile").runs) == (3, 1)


# --------------------------------------------------------------------------- many workers


def test_three_workers_run_300_jobs_exactly_once(
    reg_root: Path, pg_url: str, workers: Workers
) -> None:
    write_proc(reg_root, "double", "return n + n", [NUMBER], returns="integer")
    commit_all(reg_root, "fix: double by adding")
    assert release(reg_root, "double") == "1.0.1"
    for _ in range(3):
        workers.start(reg_root, "--concurrency", "2")
    with Registry.open(reg_root, database_url=pg_url) as reg:
        handles: list[tuple[Any, Any]] = []
        for i in range(300):
            if i % 3 == 0:
                handles.append((reg.submit("echo", text=f"t{i}"), f"t{i}"))
            elif i % 3 == 1:
                handles.append((reg.submit("double", "1.0.0", n=i), 2 * i))
            else:
                handles.append((reg.submit("double", "1.0.1", n=i), 2 * i))
        for handle, expected in handles:
            result = reg.result(handle.job_id, timeout=120)
            assert result.ok and result.result == expected
            assert result.version == handle.version
        assert reg.metrics("echo").runs + reg.metrics("double").runs == 300
        assert set(reg.metrics("double").versions) == {"1.0.0", "1.0.1"}
    runs = fetch(pg_url, "SELECT job_id, attempt, count(*) AS n FROM executions GROUP BY 1, 2")
    assert len(runs) == 300 and {(r["attempt"], r["n"]) for r in runs} == {(1, 1)}
    attempts = fetch(pg_url, "SELECT job_id, count(*) AS n FROM job_attempts GROUP BY 1")
    assert len(attempts) == 300 and {r["n"] for r in attempts} == {1}
    states = fetch(
        pg_url, "SELECT status::text AS s, count(*) AS n FROM procrastinate_jobs GROUP BY 1"
    )
    assert [(r["s"], r["n"]) for r in states] == [("succeeded", 300)]
    pids = fetch(pg_url, "SELECT DISTINCT pid FROM job_attempts")
    assert len(pids) >= 2  # the work was shared


def test_a_worker_killed_mid_job_loses_nothing_and_counts_nothing_twice(
    reg_root: Path, pg_url: str, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    first = workers.start(reg_root)
    with Registry.open(reg_root, database_url=pg_url) as reg:
        handle = reg.submit("nap", seconds=3)
        other = reg.submit("nap", seconds=0.1)  # waits: the first worker runs one job at once
        wait_for(lambda: reg.job(handle.job_id).attempts, "the first attempt to start")
        assert reg.job(handle.job_id).attempts[0].pid == first.pid
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = workers.start(reg_root)
        result = reg.result(handle.job_id, timeout=90)
        assert result.ok and result.result == 3
        assert reg.result(other.job_id, timeout=90).ok
        job = reg.job(handle.job_id)
        assert job.state == "succeeded"  # the job's final state is one
        assert [(a.attempt, a.outcome) for a in job.attempts] == [(1, "lost"), (2, "success")]
        assert job.attempts[1].pid == second.pid
        assert "no heartbeat" in (job.attempts[0].error or "")
        stats = reg.metrics("nap")
        assert (stats.runs, stats.success_rate) == (2, 1.0)  # each job counts once
        assert stats.errors == {}
    said = run_cli(capsys, "-C", str(reg_root), "--database-url", pg_url, "metrics", "nap",
                   "--json")  # fmt: skip
    assert said.code == 0, said.err
    shown = json.loads(said.out)
    assert (shown["runs"], shown["success_rate"]) == (2, 1.0)  # runs == the number of jobs
    assert shown["errors"] == {}
    # every attempt has its own run record; the killed one says the worker was lost
    records = fetch(
        pg_url,
        """SELECT job_id, attempt, outcome, error_type, error_message, worker, run_id,
            started_at, duration_ms, version, "commit", tree_id
        FROM executions ORDER BY job_id, attempt""",
    )
    attempts = fetch(pg_url, "SELECT job_id, attempt, run_id FROM job_attempts ORDER BY 1, 2")
    assert [(r["job_id"], r["attempt"], r["run_id"]) for r in records] == [
        (a["job_id"], a["attempt"], a["run_id"]) for a in attempts
    ]
    assert [(r["job_id"], r["attempt"], r["outcome"], r["error_type"]) for r in records] == [
        (handle.job_id, 1, "failure", "WorkerLost"),
        (handle.job_id, 2, "success", None),
        (other.job_id, 1, "success", None),
    ]
    lost = records[0]
    assert lost["worker"] == socket.gethostname()  # the dead worker's host
    assert socket.gethostname() in lost["error_message"]
    assert "no heartbeat" in lost["error_message"] and "attempt 2" in lost["error_message"]
    assert (lost["version"], lost["commit"], lost["tree_id"]) == (
        handle.version,
        handle.commit,
        handle.tree_id,
    )
    assert lost["started_at"] == job.attempts[0].started_at
    assert lost["duration_ms"] > 0
    shown_job = run_cli(capsys, "-C", str(reg_root), "--database-url", pg_url, "job",
                        str(handle.job_id))  # fmt: skip
    assert shown_job.code == 0 and "lost" in shown_job.out


def test_two_reapers_write_a_lost_attempts_run_record_once(reg_root: Path, pg_url: str) -> None:
    from registry.config import Config
    from registry.runs.queue import Queue, Worker, lost_run_id

    with Registry.open(reg_root, database_url=pg_url) as reg:
        handle = reg.submit("echo", text="parked", queue="nobody")  # no worker takes it

    async def go() -> None:
        async with Queue(pg_url) as queue:
            await queue.connector.execute_query_async(
                """INSERT INTO job_attempts (job_id, attempt, worker, pid, started_at)
                VALUES (%(job_id)s, 1, 'dead-host', 1, now() - interval '5 seconds')""",
                job_id=handle.job_id,
            )
            (job,) = await queue.app.job_manager.list_jobs_async(id=handle.job_id)
            reapers = [
                Worker(cast(Any, None), cast(Any, None), cast(Any, None), Config(), queue)
                for _ in range(2)
            ]
            await asyncio.gather(*(r._lose(job, 1, 12.0) for r in reapers))

    asyncio.run(go())
    (record,) = fetch(
        pg_url,
        "SELECT run_id, worker, error_type, error_message, duration_ms, version FROM executions",
    )
    assert record["run_id"] == lost_run_id(handle.job_id, 1)
    assert (record["worker"], record["error_type"]) == ("dead-host", "WorkerLost")
    assert "dead-host" in record["error_message"] and "12 s" in record["error_message"]
    assert record["duration_ms"] >= 5000 and record["version"] == handle.version
    (attempt,) = fetch(pg_url, "SELECT outcome, run_id FROM job_attempts")
    assert (attempt["outcome"], attempt["run_id"]) == ("lost", record["run_id"])
    with Registry.open(reg_root, database_url=pg_url) as reg:
        assert reg.metrics("echo").runs == 0  # a lost attempt is not a run that counts


# --------------------------------------------------------------------------- remote fetch


def test_a_worker_fetches_a_commit_only_its_remote_has(
    tmp_path: Path, reg_root: Path, pg_url: str, workers: Workers
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(reg_root, "remote", "add", "origin", str(remote))
    git(reg_root, "push", "-q", "origin", "main", "--tags")
    clone = tmp_path / "worker-clone"
    git(tmp_path, "clone", "-q", str(remote), str(clone))
    write_proc(reg_root, "echo", "return text.upper()")
    commit_all(reg_root, "fix: echo upper")
    assert release(reg_root, "echo") == "1.0.1"
    git(reg_root, "push", "-q", "origin", "main", "--tags")
    write_proc(reg_root, "echo", "return text.lower()")
    commit_all(reg_root, "fix: echo lower (never pushed)")
    assert release(reg_root, "echo") == "1.0.2"
    workers.start(clone)
    with Registry.open(reg_root, database_url=pg_url) as reg:
        pushed = reg.submit("echo", "1.0.1", text="Hi")
        assert reg.result(pushed.job_id, timeout=60).result == "HI"
        local = reg.submit("echo", "1.0.2", text="Hi")
        with pytest.raises(JobError, match="nor its remote 'origin' has") as caught:
            reg.result(local.job_id, timeout=60)
        assert caught.value.state == "failed"
        job = reg.job(local.job_id)
        assert job.state == "failed" and [a.outcome for a in job.attempts] == ["error"]
    assert git(clone, "cat-file", "-t", pushed.commit).strip() == "commit"
    assert [r["job_id"] for r in fetch(pg_url, "SELECT job_id FROM executions")] == [pushed.job_id]


# --------------------------------------------------------------------------- schedules


def test_a_schedule_fires_once_per_tick_with_two_workers(
    tmp_path: Path, pg_url: str, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_registry(
        tmp_path / "reg",
        capsys,
        '\n[[schedule]]\nid = "echo"\ncron = "* * * * * */2"\nargs = { text = "tick" }\n',
    )
    workers.start(root)
    workers.start(root)

    def ticks() -> list[asyncpg.Record]:
        """Each tick's timestamp, how many jobs it made, and how many runs they had."""
        return fetch(
            pg_url,
            "SELECT j.args->>'timestamp' AS ts, count(DISTINCT j.id) AS jobs, "
            "count(e.run_id) AS runs FROM procrastinate_jobs j "
            "LEFT JOIN executions e ON e.job_id = j.id "
            "WHERE j.task_name = 'procreg.scheduled' GROUP BY 1 ORDER BY 1",
        )

    wait_for(
        lambda: sum(r["runs"] for r in ticks()) >= 3,
        "three ticks run",
        timeout=60,
        tolerate=(asyncpg.UndefinedTableError,),  # until a worker has migrated the database
    )
    found = ticks()
    assert all(r["jobs"] == 1 and r["runs"] <= 1 for r in found)  # one job a tick, run once
    stamps = [int(r["ts"]) for r in found]
    assert all(b - a >= 2 for a, b in itertools.pairwise(stamps))  # every 2 s
    shown = run_cli(capsys, "-C", str(root), "--database-url", pg_url, "schedules", "--json")
    assert shown.code == 0, shown.err
    (entry,) = shown.json()
    assert (entry["id"], entry["cron"]) == ("echo", "* * * * * */2")
    assert entry["args"] == {"text": "tick"}
    assert entry["last_run"] is not None and entry["next_run"] > entry["last_run"]


# --------------------------------------------------------------------------- the embedded default


def test_without_postgresql_queued_runs_say_what_to_do(
    reg_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Registry.open(reg_root) as reg, pytest.raises(QueueUnavailable, match="PostgreSQL"):
        reg.submit("echo", text="hi")
    said = run_cli(capsys, "-C", str(reg_root), "run", "echo", "--arg", "text=hi", "--queue")
    assert said.code == 1
    assert "queued runs need a PostgreSQL index" in said.err
    assert "--database-url" in said.err and "Traceback" not in said.err
    assert run_cli(capsys, "-C", str(reg_root), "jobs").code == 1
    assert run_cli(capsys, "-C", str(reg_root), "run", "echo", "--arg", "text=hi").code == 0


# --------------------------------------------------------------------------- the CLI


def shape(name: str, data: Any) -> Any:
    """``data`` matches ``registry/data/json-schema/<name>.schema.json``; returned as is."""
    schema = json.loads(
        (REPO_ROOT / "registry" / "data" / "json-schema" / f"{name}.schema.json").read_text()
    )
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]
    assert not errors, f"{name}: {errors}"
    return data


def test_the_cli_queues_waits_lists_shows_and_cancels(
    reg_root: Path, pg_url: str, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    def cli(*args: str) -> Any:
        said = run_cli(capsys, "-C", str(reg_root), "--database-url", pg_url, *args)
        assert said.code == 0, said.err
        return said

    parked = shape("submit", cli("run", "echo", "--arg", "text=parked", "--queue",
                                 "--queue-name", "nobody", "--json").json())  # fmt: skip
    assert (parked["id"], parked["version"], parked["queue"]) == ("echo", "1.0.0", "nobody")
    cancelled = shape("job", cli("job", "cancel", str(parked["job_id"]), "--json").json())
    assert cancelled["state"] == "cancelled" and cancelled["attempts"] == []
    workers.start(reg_root)
    waited = shape(
        "run", cli("run", "double", "--arg", "n=4", "--queue", "--wait", "--json").json()
    )
    assert waited["ok"] and waited["result"] == 8
    plain = cli("run", "echo", "--arg", "text=x", "--queue")
    job_id = int(plain.out.strip())
    assert f"job {job_id} queued" in plain.err
    listed = shape("jobs", cli("jobs", "--json").json())
    waited_id = parked["job_id"] + 1
    assert [j["job_id"] for j in listed] == [job_id, waited_id, parked["job_id"]]  # newest first
    assert [j["state"] for j in listed][1:] == ["succeeded", "cancelled"]
    assert [
        j["job_id"] for j in shape("jobs", cli("jobs", "--state", "cancelled", "--json").json())
    ] == [parked["job_id"]]
    shown = shape("job", cli("job", str(waited_id), "--json").json())
    assert shown["result"]["run_id"] == waited["run_id"]
    assert "succeeded" in cli("job", str(waited_id)).out
    refused = run_cli(capsys, "-C", str(reg_root), "--database-url", pg_url, "job", "cancel",
                      str(waited_id))  # fmt: skip
    assert refused.code == 1 and "already succeeded" in refused.err
    missing = run_cli(capsys, "-C", str(reg_root), "--database-url", pg_url, "job", "999999")
    assert missing.code == 1 and "no job 999999" in missing.err
    bad = run_cli(capsys, "-C", str(reg_root), "--database-url", pg_url, "run", "double",
                  "--arg", "n=x", "--queue")  # fmt: skip
    assert bad.code in (1, 2) and "Traceback" not in bad.err
