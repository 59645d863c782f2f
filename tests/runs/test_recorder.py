"""Run records: batched delivery, the spool while the index is down, none lost, none twice."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from registry.errors import IndexUnavailable
from registry.index.connect import connect_index
from registry.index.contract import ExecutionRecord, IndexBackend
from registry.runs.recorder import RunRecorder, spooled_records


def record(pid: str = "proc", ok: bool = True) -> ExecutionRecord:
    return ExecutionRecord(
        run_id=uuid.uuid4().hex,
        id=pid,
        version="1.0.0",
        started_at=datetime.now(UTC),
        duration_ms=1.5,
        outcome="success" if ok else "failure",
        error_type=None if ok else "ValueError",
    )


async def sqlite(tmp_path: Path) -> IndexBackend:
    return await connect_index(tmp_path / "index.sqlite3")


async def unreachable() -> IndexBackend:
    raise IndexUnavailable("cannot reach the PostgreSQL index (test)")


def test_records_are_batched_until_full_or_closed(tmp_path: Path) -> None:
    async def go():
        backend = await sqlite(tmp_path)
        rec = RunRecorder(tmp_path / "spool", backend, batch_size=3, flush_interval_s=60)
        await rec.record(record())
        await rec.record(record())
        before = await backend.count_executions()
        await rec.record(record())  # the third fills the batch
        full = await backend.count_executions()
        await rec.record(record())
        await rec.close()
        closed = await backend.count_executions()
        await backend.close()
        return before, full, closed

    assert asyncio.run(go()) == (0, 3, 4)


def test_records_are_flushed_after_the_interval(tmp_path: Path) -> None:
    async def go():
        backend = await sqlite(tmp_path)
        rec = RunRecorder(tmp_path / "spool", backend, batch_size=100, flush_interval_s=0.05)
        await rec.record(record())
        for _ in range(200):  # wait for the background flush, not for a fixed time
            if await backend.count_executions() == 1:
                break
            await asyncio.sleep(0.02)
        count = await backend.count_executions()
        await rec.close()
        await backend.close()
        return count

    assert asyncio.run(go()) == 1


def test_unreachable_index_spools_then_delivers_once(tmp_path: Path) -> None:
    spool = tmp_path / "spool"

    async def down():
        async with RunRecorder(spool, connect=unreachable, batch_size=2) as rec:
            for _ in range(5):
                await rec.record(record())
        return rec.totals

    totals = asyncio.run(down())
    assert totals.spooled == 5 and totals.delivered == 0
    assert len(spooled_records(spool)) == 5

    async def up():
        backend = await sqlite(tmp_path)
        async with RunRecorder(spool, backend) as rec:
            await rec.record(record())
        count = await backend.count_executions()
        await backend.close()
        return count, rec.totals

    count, totals = asyncio.run(up())
    assert count == 6 and totals.from_spool == 5
    assert spooled_records(spool) == [] and list(spool.glob("*.jsonl")) == []


def test_redelivery_after_a_crash_counts_nothing_twice(tmp_path: Path) -> None:
    """A crash between the insert and the spool delete re-delivers; run_id dedup absorbs it."""
    spool = tmp_path / "spool"
    records = [record() for _ in range(4)]

    async def go():
        async with RunRecorder(spool, connect=unreachable) as rec:
            await rec.record_many(records)
        backend = await sqlite(tmp_path)
        # the "crashed" delivery: records stored, spool file not yet deleted
        await backend.record_executions(records[:3])
        async with RunRecorder(spool, backend) as rec:
            report = await rec.deliver_spool()
        count = await backend.count_executions()
        await backend.close()
        return report, count

    report, count = asyncio.run(go())
    assert report.from_spool == 4 and report.new == 1
    assert count == 4


def test_a_torn_spool_line_is_kept_aside_not_lost(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    good = record()
    (spool / "123-crashed.jsonl").write_text(good.model_dump_json() + "\n" + '{"run_id": "ab')

    async def go():
        backend = await sqlite(tmp_path)
        async with RunRecorder(spool, backend) as rec:
            await rec.deliver_spool()
        count = await backend.count_executions()
        await backend.close()
        return count

    assert asyncio.run(go()) == 1
    kept = (spool / "123-crashed.rejected").read_text()
    assert '{"run_id": "ab' in kept


def test_the_after_flush_hook_sees_delivered_ids_and_cannot_break_recording(
    tmp_path: Path,
) -> None:
    seen: list[set[str]] = []

    async def hook(ids: set[str]) -> None:
        seen.append(ids)
        raise RuntimeError("a broken hook")

    async def go():
        backend = await sqlite(tmp_path)
        async with RunRecorder(tmp_path / "spool", backend, batch_size=2, on_flush=hook) as rec:
            await rec.record(record("a"))
            await rec.record(record("b"))
        count = await backend.count_executions()
        await backend.close()
        return count

    assert asyncio.run(go()) == 2
    assert seen == [{"a", "b"}]


# --------------------------------------------------------------------------- PostgreSQL


class Proxy:
    """A TCP proxy on 127.0.0.1 to the PostgreSQL server that a test can stop and restart.

    Stopping it closes the listening socket *and* every live connection, which is what
    a client sees when the server goes away.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


@pytest.mark.postgres
def test_records_survive_postgres_going_away_and_coming_back(tmp_path: Path, pg_url: str) -> None:
    """The count of records equals the count of runs across an outage of the server."""
    from urllib.parse import urlsplit, urlunsplit

    url = urlsplit(pg_url)
    spool = tmp_path / "spool"
    runs = 0

    async def go() -> tuple[int, int, int]:
        nonlocal runs
        proxy = Proxy(url.hostname or "127.0.0.1", url.port or 5432)
        await proxy.start()
        netloc = f"{url.username or 'postgres'}@127.0.0.1:{proxy.port}"
        via_proxy = urlunsplit(url._replace(netloc=netloc))

        async def connect() -> IndexBackend:
            return await connect_index(via_proxy)

        rec = RunRecorder(spool, connect=connect, batch_size=5, flush_interval_s=60)
        try:
            for _ in range(12):  # delivered while up
                await rec.record(record())
                runs += 1
            await proxy.stop()  # the server "stops" mid-way
            for _ in range(13):
                await rec.record(record(ok=False))
                runs += 1
            await rec.flush()
            spooled_while_down = len(spooled_records(spool))
            await proxy.start()  # ... and comes back on the same address
            for _ in range(7):
                await rec.record(record())
                runs += 1
            await rec.close()
        finally:
            with contextlib.suppress(Exception):
                await proxy.stop()
        direct = await connect_index(pg_url)
        try:
            count = await direct.count_executions()
        finally:
            await direct.close()
        return spooled_while_down, count, len(spooled_records(spool))

    spooled_while_down, count, left = asyncio.run(go())
    assert spooled_while_down > 0  # the outage really happened
    assert count == runs == 32
    assert left == 0


# -- a spool that cannot be written: records are kept and reported, never dropped silently ---


def test_a_read_only_spool_keeps_records_and_says_so(tmp_path: Path, small_disk: Path) -> None:
    from tests.helpers import remount_read_only

    spool = small_disk / "spool"
    spool.mkdir()
    remount_read_only(small_disk)
    state = {"up": False}

    async def connect() -> IndexBackend:
        if not state["up"]:
            raise IndexUnavailable("cannot reach the PostgreSQL index (test)")
        return await sqlite(tmp_path)

    async def go():
        rec = RunRecorder(spool, connect=connect, batch_size=1)
        await rec.record(record())  # index down, spool read-only: nowhere to go
        down = (rec.unsaved, rec.unsaved_reason, rec.totals.undeliverable)
        state["up"] = True
        report = await rec.flush()  # the index is back: the kept record is delivered
        await rec.close()
        backend = await sqlite(tmp_path)
        count = await backend.count_executions()
        await backend.close()
        return down, report, rec.unsaved, count

    (unsaved, reason, undeliverable), report, after, count = asyncio.run(go())
    assert (unsaved, undeliverable) == (1, 1)
    assert "spool" in reason and "Read-only file system" in reason
    assert (report.delivered, report.undeliverable, after, count) == (1, 0, 0, 1)


def test_a_full_spool_disk_keeps_records_and_says_so(tmp_path: Path, small_disk: Path) -> None:
    from tests.helpers import fill_disk

    spool = small_disk / "spool"
    spool.mkdir()
    fill_disk(small_disk)

    async def go():
        rec = RunRecorder(spool, connect=unreachable, batch_size=1)
        await rec.record(record())
        await rec.record(record())
        await rec.close()
        return rec.unsaved, rec.unsaved_reason

    unsaved, reason = asyncio.run(go())
    assert unsaved == 2
    assert reason is not None and "No space left on device" in reason
