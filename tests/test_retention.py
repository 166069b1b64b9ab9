"""Retention: per-run max_events / max_bytes / max_age, ended_ttl, the background janitor."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from eventlog import End, EventLog, RetentionPolicy

pytestmark = pytest.mark.backends


async def open_with(open_log, **policy) -> EventLog:
    # A long interval: passes run when the test says so (the start-up pass finds nothing to do).
    log = await open_log(retention=RetentionPolicy(**policy), retention_interval=3600)
    await asyncio.sleep(0.1)  # the janitor's start-up pass finds nothing; let it finish first
    return log


async def test_max_events(open_log) -> None:
    log = await open_with(open_log, max_events=3)
    a = await log.append_many("a", [("x", i) for i in range(10)])
    b = await log.append_many("b", [("x", i) for i in range(2)])
    report = await log.apply_retention()
    assert report.trimmed_events == 7
    assert [e.id for e in await log.read("a")] == a[-3:]
    assert [e.id for e in await log.read("b")] == b
    info = await log.run("a")
    assert info is not None
    assert (info.event_count, info.first_id, info.trimmed_through, info.last_id) == (3, a[7], a[6], a[9])
    assert info.total_bytes == sum(len(json.dumps(i)) for i in range(7, 10))
    untouched = await log.run("b")
    assert untouched is not None and (untouched.trimmed_through, untouched.first_id) == (0, b[0])
    # A second pass has nothing left to do.
    assert (await log.apply_retention()).trimmed_events == 0


async def test_max_events_on_a_large_run(open_log) -> None:
    log = await open_with(open_log, max_events=10)
    ids = await log.append_many("big", [("x", i) for i in range(1300)])
    report = await log.apply_retention()
    assert report.trimmed_events == 1290
    assert [e.id for e in await log.read("big")] == ids[-10:]
    info = await log.run("big")
    assert info is not None and info.trimmed_through == ids[-11] and info.first_id == ids[-10]


async def test_trimmed_ids_are_not_reused_and_appends_continue(open_log) -> None:
    log = await open_with(open_log, max_events=2)
    ids = await log.append_many("run", [("x", i) for i in range(5)])
    await log.apply_retention()
    new = await log.append("run", "x", 5)
    assert new > ids[-1]
    assert [e.id for e in await log.read("run")] == [ids[3], ids[4], new]


async def test_max_bytes(open_log) -> None:
    log = await open_with(open_log, max_bytes=350)
    ids = await log.append_many("run", [("x", "y" * 100) for _ in range(8)])  # 102 bytes each
    report = await log.apply_retention()
    assert report.trimmed_events == 5
    assert [e.id for e in await log.read("run")] == ids[-3:]
    info = await log.run("run")
    assert info is not None and info.total_bytes == 306 and info.trimmed_through == ids[4]


async def test_max_bytes_counts_utf8_bytes(open_log) -> None:
    log = await open_with(open_log, max_bytes=100)
    # "é" is 2 bytes in UTF-8: each event's data is 2 + 2*20 = 42 bytes.
    ids = await log.append_many("run", [("x", "é" * 20) for _ in range(4)])
    await log.apply_retention()
    assert [e.id for e in await log.read("run")] == ids[-2:]
    assert (await log.run("run")).total_bytes == 84  # type: ignore[union-attr]


async def test_max_age(open_log) -> None:
    log = await open_with(open_log, max_age=100)
    old = await log.append_many("run", [("x", i) for i in range(3)])
    await asyncio.sleep(0.02)
    young = await log.append_many("run", [("y", i) for i in range(2)])
    events = await log.read("run")
    young_at = events[3].created_at
    assert events[2].created_at < young_at

    # Right now, nothing is a hundred seconds old.
    assert (await log.apply_retention()).trimmed_events == 0
    # Simulated time: the first batch is just past the limit, the second just within it.
    report = await log.apply_retention(now=young_at + 100 - 0.001)
    assert report.trimmed_events == 3
    assert [e.id for e in await log.read("run")] == young
    info = await log.run("run")
    assert info is not None and info.trimmed_through == old[-1] and info.first_id == young[0]
    # Much later, everything is gone, but the run and its bookkeeping remain.
    await log.apply_retention(now=young_at + 10_000)
    info = await log.run("run")
    assert info is not None
    assert (info.event_count, info.first_id, info.trimmed_through, info.last_id) == (0, 0, young[-1], young[-1])


async def test_end_marker_is_never_trimmed(open_log) -> None:
    log = await open_with(open_log, max_events=2, max_bytes=10, max_age=1)
    ids = await log.append_many("run", [("x", "z" * 50) for _ in range(5)])
    end_id = await log.end("run", reason="success")
    await log.apply_retention(now=time.time() + 3600)
    events = await log.read("run")
    assert [(e.id, e.event) for e in events] == [(end_id, "end")]
    info = await log.run("run")
    assert info is not None
    assert (info.first_id, info.last_id, info.end_id, info.trimmed_through, info.event_count) == (
        end_id, end_id, end_id, ids[-1], 0
    )


async def test_max_events_keeps_the_end_marker_besides_the_events(open_log) -> None:
    log = await open_with(open_log, max_events=2)
    ids = await log.append_many("run", [("x", i) for i in range(5)])
    end_id = await log.end("run")
    await log.apply_retention()
    assert [e.id for e in await log.read("run")] == [ids[3], ids[4], end_id]
    assert (await log.run("run")).event_count == 2  # type: ignore[union-attr]


async def test_ended_ttl(open_log) -> None:
    log = await open_with(open_log, ended_ttl=60)
    await log.append_many("old", [("x", i) for i in range(3)])
    await log.end("old")
    await log.append("open", "x", 1)
    ended_at = (await log.run("old")).ended_at  # type: ignore[union-attr]
    assert ended_at is not None

    report = await log.apply_retention(now=ended_at + 59)
    assert report.expired_runs == [] and await log.run("old") is not None

    await asyncio.sleep(0.02)
    await log.end("newer", must_exist=False)  # ends later than "old": not expired by the next pass
    newer_at = (await log.run("newer")).ended_at  # type: ignore[union-attr]
    assert newer_at is not None and newer_at > ended_at
    report = await log.apply_retention(now=ended_at + 60.001)
    assert report.expired_runs == ["old"]
    assert report.expired_events == 4  # three events and the end marker
    assert await log.run("old") is None
    assert await log.read("old") == []
    assert await log.run("open") is not None and await log.run("newer") is not None
    # Open runs never expire, however old.
    await log.apply_retention(now=time.time() + 10**6)
    assert await log.run("open") is not None
    assert await log.run("newer") is None
    assert {r.run_id for r in await log.runs()} == {"open"}


async def test_ended_ttl_removes_large_runs_completely(open_log) -> None:
    log = await open_with(open_log, ended_ttl=1)
    await log.append_many("big", [("x", i) for i in range(1200)])
    await log.end("big")
    report = await log.apply_retention(now=time.time() + 10)
    assert report.expired_runs == ["big"] and report.expired_events == 1201
    assert await log.run("big") is None
    stats = await log.stats()
    assert stats["runs"] == 0 and stats["events"] == 0


async def test_expired_run_id_can_be_reused(open_log) -> None:
    log = await open_with(open_log, ended_ttl=1)
    await log.append("run", "x", 1, idempotency_key="k")
    await log.end("run")
    await log.apply_retention(now=time.time() + 10)
    fresh = await log.append("run", "x", 1, idempotency_key="k")  # the key went with the run
    assert [e.id for e in await log.read("run")] == [fresh]


async def test_background_janitor_trims(open_log) -> None:
    log = await open_log(retention=RetentionPolicy(max_events=2), retention_interval=0.05)
    ids = await log.append_many("run", [("x", i) for i in range(10)])
    deadline = time.monotonic() + 5
    while True:
        info = await log.run("run")
        assert info is not None
        if info.event_count == 2:
            break
        assert time.monotonic() < deadline, "the janitor did not trim within 5 s"
        await asyncio.sleep(0.02)
    assert [e.id for e in await log.read("run")] == ids[-2:]
    assert info.trimmed_through == ids[-3]
    assert (await log.stats())["trimmed"] == 8


async def test_background_janitor_expires_ended_runs(open_log) -> None:
    log = await open_log(retention=RetentionPolicy(ended_ttl=0.1), retention_interval=0.05)
    await log.append("run", "x", 1)
    await log.end("run")
    await log.append("open", "x", 1)
    deadline = time.monotonic() + 5
    while await log.run("run") is not None:
        assert time.monotonic() < deadline, "the janitor did not expire the run within 5 s"
        await asyncio.sleep(0.02)
    assert await log.run("open") is not None
    assert (await log.stats())["expired_runs"] == 1


async def test_no_policy_trims_nothing(log: EventLog) -> None:
    ids = await log.append_many("run", [("x", i) for i in range(50)])
    await log.end("run")
    report = await log.apply_retention(now=time.time() + 10**9)
    assert (report.trimmed_events, report.expired_runs, report.expired_events) == (0, [], 0)
    assert [e.id for e in await log.read("run")][:-1] == ids


async def test_retention_keeps_appending_producers_correct(open_log) -> None:
    """The janitor trims while producers append: what remains is always a suffix of the run."""
    log = await open_log(retention=RetentionPolicy(max_events=20), retention_interval=0.01)
    produced: list[int] = []
    for i in range(60):
        produced += await log.append_many("run", [("x", [i, k]) for k in range(5)])
        if i % 10 == 0:
            await asyncio.sleep(0.02)
    await log.apply_retention()
    stored = [e.id for e in await log.read("run", limit=10_000)]
    assert stored == produced[-20:]
    info = await log.run("run")
    assert info is not None and info.trimmed_through == produced[-21]


async def test_abandoned_runs_are_ended_so_no_reader_waits_forever(database: Path | str) -> None:
    """A producer that crashed never ends its run: after ``abandon_after`` seconds without an
    event the janitor ends it with reason "abandoned", and tailing readers get End."""
    async with EventLog.open(database, retention=RetentionPolicy(abandon_after=60), retention_interval=3600) as log:
        await log.append("crashed", "updates", 1)
        await log.append("busy", "updates", 1)
        await log.create_run("never-started")
        await log.append("finished", "updates", 1)
        await log.end("finished", "success")
        received: list[object] = []

        async def tail() -> None:
            async for item in log.subscribe("crashed", after=0, heartbeat=None):
                received.append(item)
                if isinstance(item, End):
                    return

        reader = asyncio.create_task(tail())
        now = time.time()
        assert (await log.apply_retention(now=now + 30)).abandoned_runs == []
        report = await log.apply_retention(now=now + 120)
        assert sorted(report.abandoned_runs) == ["busy", "crashed", "never-started"]
        await asyncio.wait_for(reader, 5)
        assert isinstance(received[-1], End) and received[-1].reason == "abandoned"
        finished = await log.run("finished")
        assert finished is not None and finished.end_reason == "success"
        assert (await log.apply_retention(now=now + 240)).abandoned_runs == []  # ended stays ended


async def test_a_run_that_moves_on_is_not_abandoned(database: Path | str) -> None:
    """The janitor's end is conditional on the newest id it saw: an event that lands between
    finding the run idle and ending it keeps the run open."""
    from eventlog import RunActive
    from eventlog.storage.base import EndRun

    async with EventLog.open(database) as log:
        first = await log.append("racy", "updates", 1)
        await log.append("racy", "updates", 2)
        with pytest.raises(RunActive):
            await log._storage.write(EndRun("racy", "abandoned", if_last_id=first))
        info = await log.run("racy")
        assert info is not None and not info.ended
