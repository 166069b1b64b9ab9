"""PostgreSQL failing under the log: restarted under load, unreachable behind the HTTP server,
a pool with no free connection, a stalled server. Each test that breaks a server has a cluster
of its own; every failure must come out typed and bounded, and no acknowledged event is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest

from eventlog import DatabaseBusy, DatabaseUnavailable, End, Event, EventLog, EventLogError, StorageError
from tests.conftest import POSTGRES_BIN
from tests.http.server import ServerProcess
from tests.postgres_server import PostgresCluster

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster this test may stop, restart and freeze."""
    assert POSTGRES_BIN is not None
    cluster = PostgresCluster(POSTGRES_BIN).start()
    try:
        yield cluster
    finally:
        cluster.resume_if_paused()
        cluster.destroy()


async def eventually(condition, what: str, deadline: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    stop_at = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < stop_at, f"{what} did not happen within {deadline}s"
        await asyncio.sleep(0.05)


async def test_a_restart_under_load_loses_no_acknowledged_event_and_listening_resumes(own_cluster: PostgresCluster) -> None:
    url = own_cluster.new_database()
    writer = await EventLog.open(url, lock_timeout=2, command_timeout=2)
    reader = await EventLog.open(url, lock_timeout=2, command_timeout=2, poll_interval=0.2)
    acked: list[int] = []
    errors: list[Exception] = []
    stop = asyncio.Event()

    async def produce(producer: int) -> None:
        """Append with an idempotency key, retrying a failed append with the same key."""
        n = 0
        while not stop.is_set():
            try:
                ids = await writer.append_many("load", [("x", {"p": producer, "n": n})], idempotency_key=f"{producer}-{n}")
            except EventLogError as exc:
                errors.append(exc)
                await asyncio.sleep(0.05)
                continue
            acked.append(ids[0])
            n += 1

    followed: list[int] = []
    resubscribed = 0

    async def follow() -> None:
        """A subscriber of the other log, woken only by its LISTEN feed (no heartbeat); like
        an SSE client it resumes from its cursor when a read of its own fails."""
        nonlocal resubscribed
        while True:
            try:
                async with aclosing(reader.subscribe("load", after=followed[-1] if followed else 0, heartbeat=None)) as items:
                    async for item in items:
                        if isinstance(item, End):
                            followed.append(item.id)
                            return
                        assert isinstance(item, Event)
                        followed.append(item.id)
            except StorageError:
                resubscribed += 1
                await asyncio.sleep(0.1)

    await writer.create_run("load")
    follower = asyncio.create_task(follow())
    producers = [asyncio.create_task(produce(p)) for p in range(4)]
    await eventually(lambda: len(acked) > 50, "appends before the restart")
    await asyncio.to_thread(own_cluster.stop, "fast")
    await asyncio.sleep(0.5)
    await asyncio.to_thread(own_cluster.run)
    before = len(acked)
    await eventually(lambda: len(acked) > before + 50, "appends after the restart")
    stop.set()
    await asyncio.gather(*producers)
    end_id = await writer.end("load")
    await asyncio.wait_for(follower, 30)  # the end marker came through the re-established LISTEN

    stored = [e.id for e in await writer.read("load", limit=10_000)]
    assert set(acked) <= set(stored), "an acknowledged event was lost"
    assert len(stored) == len(set(acked)) + 1  # retried keys wrote nothing twice
    assert followed == stored and followed[-1] == end_id
    assert errors and all(isinstance(e, (DatabaseUnavailable, DatabaseBusy, StorageError)) for e in errors), errors
    stats = await reader.stats()
    assert stats["background_restarts"]["follower"] >= 1  # the LISTEN feed was started anew
    await writer.close()
    await reader.close()


def test_the_server_answers_503_json_while_postgres_is_down_and_recovers(own_cluster: PostgresCluster, tmp_path: Path) -> None:
    server = ServerProcess(own_cluster.new_database(), log_path=tmp_path / "server.log",
                           env={"EVENTLOG_LOCK_TIMEOUT": "2", "EVENTLOG_COMMAND_TIMEOUT": "3"}).start()
    try:
        assert httpx.post(f"{server.url}/runs/r/events", json={"event": "x", "data": 1}).status_code == 201
        own_cluster.stop("immediate")  # a crash: recovery from the WAL at the next start
        started = time.monotonic()
        down = httpx.post(f"{server.url}/runs/r/events", json={"event": "x", "data": 2}, timeout=30)
        assert time.monotonic() - started < 10
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "database_unavailable"
        assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 503
        own_cluster.run()
        deadline = time.monotonic() + 20
        while (up := httpx.post(f"{server.url}/runs/r/events", json={"event": "x", "data": 3}, timeout=30)).status_code != 201:
            assert up.status_code == 503 and time.monotonic() < deadline, up.text
            time.sleep(0.2)
        stored = httpx.get(f"{server.url}/runs/r/events").json()["events"]
        assert [e["data"] for e in stored] == [1, 3]
    finally:
        server.kill()


async def test_an_exhausted_pool_is_database_busy_within_the_lock_timeout(postgres_cluster: PostgresCluster) -> None:
    log = await EventLog.open(postgres_cluster.new_database(), pool_size=1, lock_timeout=0.5)
    try:
        await log.append("run", "x", 1)
        async with log.dump(None, page_rows=10):  # holds the only pooled connection
            started = time.monotonic()
            with pytest.raises(DatabaseBusy, match="1 connections to PostgreSQL stayed busy"):
                await log.append("run", "x", 2)
            assert time.monotonic() - started < 5
        assert await log.append("run", "x", 3)
        assert [e.data for e in await log.read("run")] == [1, 3]
    finally:
        await log.close()


async def test_a_stalled_server_is_a_bounded_typed_error(own_cluster: PostgresCluster) -> None:
    """Every server process frozen (a network that stopped answering): calls fail within their
    timeout, the LISTEN feed notices by its probe and is started anew, and once the server
    answers again appends work and reach a waiting subscriber."""
    url = own_cluster.new_database()
    log = await EventLog.open(url, lock_timeout=1, command_timeout=1, poll_interval=0.2)
    other = await EventLog.open(url, lock_timeout=1, command_timeout=1)
    try:
        await log.append("run", "x", 1)
        subscriber = log.subscribe("run", after=None, heartbeat=None)
        assert (await anext(subscriber)).data == 1  # at the live edge, following through LISTEN
        own_cluster.pause()
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="did not answer within 1s"):
            await log.append("run", "x", 2)
        with pytest.raises(DatabaseUnavailable):
            await log.health()
        assert time.monotonic() - started < 15
        await eventually(lambda: log._supervisor.counts()["failures"]["follower"] >= 1, "the feed noticing the stall")
        own_cluster.resume()
        deadline = time.monotonic() + 20
        while True:
            try:
                appended = await other.append("run", "x", 3)
                break
            except DatabaseUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        # The append that timed out was not acknowledged; it may still have committed.
        item = await asyncio.wait_for(anext(subscriber), 20)
        if item.data == 2:
            item = await asyncio.wait_for(anext(subscriber), 20)
        assert (item.id, item.data) == (appended, 3)
        await subscriber.aclose()
    finally:
        await log.close()
        await other.close()
