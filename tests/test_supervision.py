"""Background work that fails never hangs, leaks or goes silent: each component is made to fail
by an injected fault (a listener that raises, a connect that raises, a feed that raises, a
janitor pass that raises, a checkpoint that raises, a writer thread that dies), and the test
checks that nobody waits forever, waiters get a typed error, the failure is counted (and logged
once), the component is restarted where it must be, and nothing is left behind after close."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from eventlog import Event, EventLog, LogClosed, RetentionPolicy, StorageError
from eventlog.storage import sqlite as sqlite_storage
from eventlog.storage.base import Append
from eventlog.storage.change_feed import ChangeFeed, LocalCommits
from eventlog.storage.checkpoint import Checkpointer
from eventlog.storage.connection import connect
from eventlog.storage.sqlite import SQLiteStorage
from eventlog.storage.writer import GroupCommit, WriterThread
from eventlog.supervision import Supervisor

BOUND = 30.0
"""A generous deadline on every wait: it only turns a hang into a failure."""


def open_fds() -> list[int]:
    """This process' descriptors (the one listing /proc/self/fd is reused, so lists compare)."""
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))


def eventlog_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("eventlog")}


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = BOUND) -> None:
    async def poll() -> None:
        while True:
            result = condition()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def failure_records(caplog: pytest.LogCaptureFixture, component: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and f"eventlog {component} failed" in r.getMessage()]


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[threading.ExceptHookArgs]:
    """Exceptions that escaped any thread during the test."""
    caught: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", caught.append)
    return caught


def writer_connect(db_path: Path) -> Callable[[], sqlite3.Connection]:
    return lambda: connect(db_path, durability="process", writer=True, busy_timeout=5.0)


def injected_connect_failure() -> sqlite3.Connection:
    raise sqlite3.OperationalError("unable to open database file (injected)")


# --- change feed / file watch ------------------------------------------------------------------


async def test_failing_feeds_never_write_into_a_closed_or_reused_descriptor(db_path: Path, thread_errors) -> None:
    """Many feeds whose connect raises, stopped at random moments around their thread's end,
    while another thread keeps opening pipes (which reuse freed descriptor numbers): no EBADF,
    no stray byte in anyone's pipe, and every descriptor given back."""
    loop = asyncio.get_running_loop()
    supervisor = Supervisor()
    stray: list[bytes] = []
    churning = threading.Event()

    def churn() -> None:
        while not churning.is_set():
            read, write = os.pipe()
            os.set_blocking(read, False)
            time.sleep(0.0001)
            try:
                stray.append(os.read(read, 64))
            except BlockingIOError:
                pass
            os.close(read)
            os.close(write)

    before = open_fds()
    churner = threading.Thread(target=churn)
    churner.start()
    rng = random.Random(8)
    delivered: list[Any] = []
    try:
        for _ in range(300):
            feed = ChangeFeed(db_path, injected_connect_failure, LocalCommits(), 1.0, supervisor)
            feed.start(loop, delivered.append)
            time.sleep(rng.choice([0, 0, 0.00005, 0.0002, 0.001]))
            feed.stop()  # raised EBADF (or wrote into a reused descriptor) before the fix
            feed.stop()
            await asyncio.wait_for(feed.join(), BOUND)
    finally:
        churning.set()
        churner.join(BOUND)
    await asyncio.sleep(0)  # deliveries already posted to the loop
    assert stray == []
    assert thread_errors == []
    assert all(isinstance(item, sqlite3.OperationalError) for item in delivered)
    assert open_fds() == before


async def test_a_feed_failure_reaches_its_consumer_and_the_thread_cleans_up(db_path: Path) -> None:
    await (await EventLog.open(db_path)).close()  # the file exists
    received: asyncio.Queue[Any] = asyncio.Queue()
    before = open_fds()
    feed = ChangeFeed(db_path, injected_connect_failure, LocalCommits(), 1.0, Supervisor())
    feed.start(asyncio.get_running_loop(), received.put_nowait)
    error = await asyncio.wait_for(received.get(), BOUND)
    assert isinstance(error, sqlite3.OperationalError)
    await asyncio.wait_for(feed.join(), BOUND)
    feed.stop()  # after the end: nothing happens
    assert open_fds() == before


# --- writer thread and group commit -------------------------------------------------------------


async def test_writer_post_after_stop_raises_log_closed(db_path: Path) -> None:
    before = open_fds()
    writer = WriterThread(writer_connect(db_path), Supervisor())
    await writer.start()
    queued = writer.submit(lambda conn: conn.execute("SELECT 1").fetchone()[0])
    writer.stop()
    writer.stop()  # idempotent
    assert await asyncio.wait_for(queued, BOUND) == 1, "jobs queued before stop still run"
    with pytest.raises(LogClosed):
        writer.submit(lambda conn: None)
    await asyncio.wait_for(asyncio.gather(writer.join(), writer.join()), BOUND)
    with pytest.raises(LogClosed):
        await writer.call(lambda conn: None)
    assert open_fds() == before


async def test_stop_from_many_threads_at_once(db_path: Path) -> None:
    before = open_fds()
    supervisor = Supervisor()
    writer = WriterThread(writer_connect(db_path), supervisor)
    await writer.start()
    checkpointer = Checkpointer(lambda: connect(db_path, durability="process", writer=False, busy_timeout=5.0), supervisor)
    checkpointer.start()
    queued = [writer.submit(lambda conn: conn.execute("SELECT 1").fetchone()[0]) for _ in range(20)]
    go = threading.Barrier(8)

    def stop_all() -> None:
        go.wait(BOUND)
        writer.stop()
        checkpointer.stop()

    stoppers = [threading.Thread(target=stop_all) for _ in range(8)]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join(BOUND)
    assert await asyncio.wait_for(asyncio.gather(*queued), BOUND) == [1] * 20
    await asyncio.wait_for(asyncio.gather(writer.join(), checkpointer.join(), writer.join()), BOUND)
    assert supervisor.counts()["failures"] == dict.fromkeys(supervisor.counts()["failures"], 0)
    assert open_fds() == before


class WriterDeath(BaseException):
    """What a job can raise that no job handler catches: it ends the writer thread."""


async def test_a_writer_thread_that_dies_settles_every_waiter(db_path: Path, caplog) -> None:
    before = open_fds()
    supervisor = Supervisor()
    writer = WriterThread(writer_connect(db_path), supervisor)
    await writer.start()
    release = threading.Event()
    first = writer.submit(lambda conn: release.wait(BOUND))
    dying = writer.submit(lambda conn: (_ for _ in ()).throw(WriterDeath()))
    queued = [writer.submit(lambda conn: 1) for _ in range(5)]
    release.set()

    assert await asyncio.wait_for(first, BOUND) is True
    outcomes = await asyncio.wait_for(asyncio.gather(dying, *queued, return_exceptions=True), BOUND)
    assert all(isinstance(outcome, LogClosed) for outcome in outcomes), outcomes
    assert isinstance(outcomes[0].__cause__, WriterDeath)
    await asyncio.wait_for(writer.join(), BOUND)
    with pytest.raises(LogClosed):
        writer.submit(lambda conn: None)
    assert supervisor.counts()["failures"]["writer"] == 1
    assert len(failure_records(caplog, "writer")) == 1
    writer.stop()
    assert open_fds() == before


async def test_a_writer_that_cannot_connect_fails_the_opener_and_then_every_caller(db_path: Path) -> None:
    writer = WriterThread(injected_connect_failure, Supervisor())
    with pytest.raises(sqlite3.OperationalError, match="injected"):
        await asyncio.wait_for(writer.start(), BOUND)
    await asyncio.wait_for(writer.join(), BOUND)
    with pytest.raises(LogClosed):
        writer.submit(lambda conn: None)


async def test_group_commit_settles_every_future_when_on_commit_raises(db_path: Path, caplog) -> None:
    supervisor = Supervisor()
    writer = WriterThread(writer_connect(db_path), supervisor)
    await writer.start()
    notices: list[list[int]] = []

    def on_commit(notice: list[int]) -> None:
        notices.append(notice)
        raise RuntimeError("listener failed (injected)")

    group: GroupCommit[int, int, list[int]] = GroupCommit(writer, lambda conn, batch: (batch, batch), on_commit)
    results = await asyncio.wait_for(asyncio.gather(*(group.submit(n) for n in range(50))), BOUND)
    assert results == list(range(50))
    assert await asyncio.wait_for(group.submit(50), BOUND) == 50, "the group commit is not stuck"
    await asyncio.wait_for(group.drain(), BOUND)
    assert sorted(n for notice in notices for n in notice) == list(range(51))
    assert supervisor.counts()["failures"]["commit_listener"] == len(notices) >= 2
    assert len(failure_records(caplog, "commit_listener")) == 1, "logged once per streak"

    writer.stop()
    await asyncio.wait_for(writer.join(), BOUND)
    with pytest.raises(LogClosed):  # a closed writer fails the batch instead of hanging it
        await asyncio.wait_for(group.submit(51), BOUND)
    await asyncio.wait_for(group.drain(), BOUND)


async def test_a_raising_commit_listener_harms_neither_appends_nor_other_listeners(db_path: Path) -> None:
    supervisor = Supervisor()
    storage = SQLiteStorage(db_path, supervisor=supervisor)
    await storage.open()
    heard: list[str] = []

    def failing(committed: list[Any]) -> None:
        raise ValueError("listener failed (injected)")

    storage.add_commit_listener(failing)
    storage.add_commit_listener(lambda committed: heard.extend(c.run_id for c in committed))
    try:
        writes = [storage.write(Append(f"run-{n}", [("x", "1")])) for n in range(10)]
        ids = await asyncio.wait_for(asyncio.gather(*writes), BOUND)
        assert len({i for batch in ids for i in batch}) == 10
        assert sorted(heard) == sorted(f"run-{n}" for n in range(10))
        assert supervisor.counts()["failures"]["commit_listener"] >= 1
    finally:
        await asyncio.wait_for(storage.close(), BOUND)


# --- checkpointer -------------------------------------------------------------------------------


class FailingCheckpoints(sqlite3.Connection):
    """A real connection on which ``PRAGMA wal_checkpoint`` fails as on a bad disk."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if "wal_checkpoint" in sql:
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return super().execute(sql, *args)


@pytest.mark.parametrize("fault", ["connect", "checkpoint"])
async def test_a_failing_checkpointer_is_counted_and_stays_down(db_path: Path, caplog, fault: str) -> None:
    await (await EventLog.open(db_path)).close()
    before = open_fds()
    supervisor = Supervisor()

    def connect_with_fault() -> sqlite3.Connection:
        if fault == "connect":
            injected_connect_failure()
        return sqlite3.connect(db_path, factory=FailingCheckpoints, check_same_thread=False)

    checkpointer = Checkpointer(connect_with_fault, supervisor)
    checkpointer.start()
    checkpointer.poke()
    await asyncio.wait_for(checkpointer.join(), BOUND)  # it ended by itself: it stays down
    checkpointer.poke()
    checkpointer.stop()
    assert supervisor.counts()["failures"]["checkpointer"] == 1
    assert supervisor.counts()["restarts"]["checkpointer"] == 0
    assert len(failure_records(caplog, "checkpointer")) == 1
    assert open_fds() == before, "its connection was closed"


# --- the notifier's cross-process follower ------------------------------------------------------


async def spawn_appender(helper_script, db_path: Path, run: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *helper_script("append_events"), str(db_path), run, "1", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def assert_woken_by_another_process(log: EventLog, db_path: Path, helper_script, subscription) -> None:
    """heartbeat=None and a 60 s poll: only a working change feed can deliver this event."""
    pending = asyncio.ensure_future(anext(subscription))
    proc = await spawn_appender(helper_script, db_path, "run")
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    assert proc.returncode == 0, err.decode()
    item = await asyncio.wait_for(pending, BOUND)
    assert isinstance(item, Event) and item.id == json.loads(out.decode().splitlines()[0])["id"]


async def test_follower_restarts_after_the_feed_raises(open_log, db_path: Path, helper_script, caplog) -> None:
    log = await open_log(poll_interval=60)
    storage = log._storage  # fault injection into the real storage's change feed
    real_changes = storage.changes
    calls = 0

    async def changes_failing_once() -> AsyncIterator[list[tuple[str, int]]]:
        nonlocal calls
        calls += 1
        async with aclosing(real_changes()) as feed:
            async for changed in feed:
                yield changed
                if calls == 1:
                    raise sqlite3.OperationalError("disk I/O error (injected)")

    storage.changes = changes_failing_once  # type: ignore[method-assign]
    first = await log.append("run", "x", -1)
    async with aclosing(log.subscribe("run", heartbeat=None)) as sub:
        assert (await asyncio.wait_for(anext(sub), BOUND)).id == first
        await until(lambda: calls >= 2)
        await assert_woken_by_another_process(log, db_path, helper_script, sub)
        await assert_woken_by_another_process(log, db_path, helper_script, sub)
    stats = await log.stats()
    assert stats["background_failures"]["follower"] == 1
    assert stats["background_restarts"]["follower"] == 1
    assert len(failure_records(caplog, "follower")) == 1


async def test_follower_restarts_while_the_feed_cannot_connect(
    open_log, db_path: Path, helper_script, monkeypatch, caplog
) -> None:
    failures_left = 3

    class FlakyFeed(ChangeFeed):
        def __init__(self, path: Path, connect: Callable[[], sqlite3.Connection], *args: Any) -> None:
            def flaky() -> sqlite3.Connection:
                nonlocal failures_left
                if failures_left:
                    failures_left -= 1
                    injected_connect_failure()
                return connect()

            super().__init__(path, flaky, *args)

    monkeypatch.setattr(sqlite_storage, "ChangeFeed", FlakyFeed)
    log = await open_log(poll_interval=60)
    first = await log.append("run", "x", -1)
    async with aclosing(log.subscribe("run", heartbeat=None)) as sub:
        assert (await asyncio.wait_for(anext(sub), BOUND)).id == first  # not held up by the feed
        await assert_woken_by_another_process(log, db_path, helper_script, sub)
    stats = await log.stats()
    assert stats["background_failures"]["follower"] == 3
    assert stats["background_restarts"]["follower"] == 3
    assert len(failure_records(caplog, "follower")) == 1, "one log line for the whole streak"


# --- janitor ------------------------------------------------------------------------------------


async def test_a_janitor_pass_that_raises_is_counted_and_retried(open_log, caplog) -> None:
    log = await open_log(retention=RetentionPolicy(ended_ttl=0.001), retention_interval=0.02)
    storage = log._storage  # fault injection: the first passes fail
    real_expire = storage.expire_ended
    failures_left = 3

    async def expire_failing(ended_before: float, max_rows: int) -> tuple[list[str], int]:
        nonlocal failures_left
        if failures_left:
            failures_left -= 1
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return await real_expire(ended_before, max_rows)

    storage.expire_ended = expire_failing  # type: ignore[method-assign]
    await log.end("run", must_exist=False)

    async def gone() -> bool:
        return await log.run("run") is None

    await until(gone)
    stats = await log.stats()
    assert stats["background_failures"]["janitor"] == 3
    assert stats["expired_runs"] == 1
    assert len(failure_records(caplog, "janitor")) == 1


# --- the whole log ------------------------------------------------------------------------------


async def test_close_leaves_no_thread_and_no_descriptor(db_path: Path, helper_script) -> None:
    await (await EventLog.open(db_path)).close()
    threads, fds = eventlog_threads(), open_fds()
    log = await EventLog.open(db_path, poll_interval=60, retention=RetentionPolicy(ended_ttl=3600))
    first = await log.append("run", "x", -1)
    async with aclosing(log.subscribe("run", heartbeat=None)) as sub:
        assert (await asyncio.wait_for(anext(sub), BOUND)).id == first
        await assert_woken_by_another_process(log, db_path, helper_script, sub)
        await asyncio.wait_for(asyncio.gather(log.close(), log.close()), BOUND)
    # join() returns once a thread has settled its waiters; it may still be returning.
    await until(lambda: eventlog_threads() - threads == set())
    assert open_fds() == fds
    with pytest.raises(LogClosed):
        await log.append("run", "x", 0)


async def test_stats_list_every_component(log: EventLog) -> None:
    stats = await log.stats()
    for key in ("background_failures", "background_restarts"):
        assert set(stats[key]) >= {"writer", "commit_listener", "checkpointer", "follower", "janitor"}
        assert set(stats[key].values()) == {0}



async def test_health_reports_a_writer_that_has_died(db_path: Path) -> None:
    """``/healthz`` asks ``health``: a process whose writer died must say so (and be restarted
    by its supervisor), not answer "ok" while every append fails."""
    log = await EventLog.open(db_path)
    try:
        await log.health()
        writer = log._storage._writer  # type: ignore[attr-defined]  # the fault is injected there
        with pytest.raises(LogClosed):
            await writer.call(lambda conn: (_ for _ in ()).throw(WriterDeath()))
        await asyncio.wait_for(writer.join(), BOUND)
        with pytest.raises(StorageError, match="writer thread"):
            await log.health()
        with pytest.raises(LogClosed):
            await log.append("run", "x", 1)
    finally:
        await log.close()
    with pytest.raises(LogClosed):
        await log.health()
