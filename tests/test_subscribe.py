"""subscribe: replay, live tail, heartbeats, end, gaps, waiting for a run, and the no-lost-wake-up race."""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import aclosing

import pytest

from eventlog import End, Event, EventLog, Gap, Heartbeat, LogClosed, RetentionPolicy, RunNotFound

pytestmark = pytest.mark.backends


def ids(items) -> list[int]:
    return [item.id for item in items if isinstance(item, Event)]


async def test_replay_then_live_tail(log: EventLog, collect) -> None:
    stored = await log.append_many("run", [("x", i) for i in range(5)])
    async with aclosing(log.subscribe("run", after=stored[1], heartbeat=None)) as sub:
        replay = await collect(sub, 3)
        assert ids(replay) == stored[2:]
        live = await log.append_many("run", [("y", "a"), ("y", "b")])
        got = await collect(sub, 2)
        assert ids(got) == live
        assert [(e.event, e.data) for e in got] == [("y", "a"), ("y", "b")]
        end_id = await log.end("run", reason="success")
        assert await collect(sub, 5) == [End(end_id, "success")]


async def test_after_none_replays_from_the_start(log: EventLog, collect) -> None:
    stored = await log.append_many("run", [("x", i) for i in range(3)])
    end_id = await log.end("run", reason="done")
    items = await collect(log.subscribe("run"), 10)
    assert ids(items) == stored
    assert items[-1] == End(end_id, "done")


async def test_replay_longer_than_a_page(log: EventLog, collect) -> None:
    stored: list[int] = []
    for chunk in range(3):
        stored += await log.append_many("run", [("x", [chunk, i]) for i in range(500)])
    end_id = await log.end("run")
    items = await collect(log.subscribe("run", after=stored[10]), 10_000, timeout=20)
    assert ids(items) == stored[11:]
    assert items[-1] == End(end_id, "success")


async def test_end_after_catching_up_live(log: EventLog, collect) -> None:
    await log.append("run", "x", 0)
    async with aclosing(log.subscribe("run", after=None, heartbeat=None)) as sub:
        assert len(await collect(sub, 1)) == 1

        async def produce() -> int:
            await log.append_many("run", [("x", 1), ("x", 2)])
            return await log.end("run", reason="error")

        producer = asyncio.create_task(produce())
        items = await collect(sub, 10)
        end_id = await producer
        assert [type(i) for i in items] == [Event, Event, End]
        assert items[-1] == End(end_id, "error")


@pytest.mark.parametrize("offset", [0, 1, 1000])
async def test_cursor_at_or_past_end_marker_ends_at_once(log: EventLog, collect, offset: int) -> None:
    await log.append("run", "x", 1)
    end_id = await log.end("run", reason="success")
    items = await collect(log.subscribe("run", after=end_id + offset, heartbeat=0.05), 10, timeout=2)
    assert items == [End(end_id, "success")]


async def test_cursor_before_end_marker_gets_end_after_the_events(log: EventLog, collect) -> None:
    first = await log.append("run", "x", 1)
    last = await log.append("run", "x", 2)
    end_id = await log.end("run")
    items = await collect(log.subscribe("run", after=first, heartbeat=0.05), 10, timeout=2)
    assert ids(items) == [last]
    assert items[-1] == End(end_id, "success")


async def test_cursor_beyond_newest_of_open_run_tails_live(log: EventLog, collect) -> None:
    newest = await log.append("run", "x", 1)
    async with aclosing(log.subscribe("run", after=newest + 1000, heartbeat=0.05)) as sub:
        first = await collect(sub, 1)
        assert isinstance(first[0], Heartbeat)  # nothing replayed, and it did not end
        live = await log.append("run", "x", 2)
        items = [i for i in await collect(sub, 3, timeout=2) if not isinstance(i, Heartbeat)]
        while not items:
            items = [i for i in await collect(sub, 1, timeout=2) if not isinstance(i, Heartbeat)]
        assert ids(items)[:1] == [live]


async def test_heartbeats_while_idle(log: EventLog) -> None:
    await log.append("run", "x", 1)
    items = []
    start = time.monotonic()
    async with aclosing(log.subscribe("run", after=None, heartbeat=0.2)) as sub:
        async for item in sub:
            items.append(item)
            if time.monotonic() - start >= 1.0:
                break
    heartbeats = [i for i in items if isinstance(i, Heartbeat)]
    assert isinstance(items[0], Event)
    assert 2 <= len(heartbeats) <= 8, len(heartbeats)


async def test_no_heartbeat_while_events_flow(log: EventLog, collect) -> None:
    await log.append("run", "x", 0)
    async with aclosing(log.subscribe("run", after=None, heartbeat=2.0)) as sub:
        await collect(sub, 1)
        for i in range(10):
            await log.append("run", "x", i + 1)
            (item,) = await collect(sub, 1, timeout=1.9)
            assert isinstance(item, Event) and item.data == i + 1


async def test_heartbeat_none_waits_silently(log: EventLog) -> None:
    await log.append("run", "x", 1)
    async with aclosing(log.subscribe("run", after=None, heartbeat=None)) as sub:
        assert isinstance(await anext(sub), Event)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(sub), 0.3)


async def test_subscribe_before_run_exists_waits_with_heartbeats(log: EventLog, collect) -> None:
    async with aclosing(log.subscribe("later", heartbeat=0.05)) as sub:
        waiting = await collect(sub, 2, timeout=2)
        assert all(isinstance(i, Heartbeat) for i in waiting)
        eid = await log.append("later", "x", 1)
        items = await collect(sub, 5, timeout=2)
        events = [i for i in items if isinstance(i, Event)]
        while not events:
            events = [i for i in await collect(sub, 1, timeout=2) if isinstance(i, Event)]
        assert events[0].id == eid


async def test_subscribe_before_run_is_created_explicitly(log: EventLog, collect) -> None:
    async with aclosing(log.subscribe("later", heartbeat=None)) as sub:
        pending = asyncio.ensure_future(collect(sub, 1, timeout=3))
        await asyncio.sleep(0.05)
        await log.create_run("later", metadata={"thread_id": "t"})
        eid = await log.append("later", "x", 1)
        assert ids(await pending) == [eid]


async def test_subscribe_to_missing_run_without_waiting(log: EventLog) -> None:
    with pytest.raises(RunNotFound):
        async for _ in log.subscribe("missing", wait_for_run=False):
            pass
    await log.append("present", "x", 1)
    async with aclosing(log.subscribe("present", wait_for_run=False, heartbeat=None)) as sub:
        assert isinstance(await anext(sub), Event)


async def test_many_subscribers_see_the_same_stream(log: EventLog, collect) -> None:
    await log.append("run", "x", -1)

    async def follow() -> list:
        return await collect(log.subscribe("run", after=None, heartbeat=None), 1000, timeout=10)

    followers = [asyncio.create_task(follow()) for _ in range(20)]
    await asyncio.sleep(0.05)
    produced = [await log.append("run", "x", i) for i in range(50)]
    end_id = await log.end("run")
    for result in await asyncio.gather(*followers):
        assert ids(result)[1:] == produced
        assert result[-1] == End(end_id, "success")


async def test_deleted_run_subscriber_does_not_see_stale_events(log: EventLog, collect) -> None:
    await log.append("run", "x", 1)
    async with aclosing(log.subscribe("run", after=None, heartbeat=0.05)) as sub:
        await collect(sub, 1)
        await log.delete("run")
        fresh = await log.append("run", "x", 2)
        items = await collect(sub, 1, timeout=2)
        while not ids(items):
            items = await collect(sub, 1, timeout=2)
        assert ids(items) == [fresh]


async def test_subscriber_ends_when_the_log_closes(database) -> None:
    log = await EventLog.open(database)
    await log.append("run", "x", 1)
    got: list = []

    async def follow(heartbeat: float | None) -> None:
        async for item in log.subscribe("run", after=None, heartbeat=heartbeat):
            got.append(item)

    followers = [asyncio.create_task(follow(None)), asyncio.create_task(follow(0.05))]
    await asyncio.sleep(0.2)
    await asyncio.wait_for(log.close(), 5)
    for follower in followers:
        with pytest.raises(LogClosed):
            await asyncio.wait_for(follower, 2)
    with pytest.raises(LogClosed):
        log.subscribe("run")


# --- gaps ------------------------------------------------------------------------------------


async def trimmed_log(open_log, keep: int = 3, **options) -> tuple[EventLog, list[int]]:
    log = await open_log(retention=RetentionPolicy(max_events=keep), retention_interval=3600, **options)
    await asyncio.sleep(0.1)  # let the janitor's start-up pass (nothing to do) finish
    stored = await log.append_many("run", [("x", i) for i in range(10)])
    report = await log.apply_retention()
    assert report.trimmed_events == 10 - keep
    return log, stored


async def test_gap_then_continue_from_earliest(open_log, collect) -> None:
    log, stored = await trimmed_log(open_log)
    info = await log.run("run")
    assert info is not None and info.trimmed_through == stored[6] and info.first_id == stored[7]
    async with aclosing(log.subscribe("run", after=stored[2], heartbeat=None)) as sub:
        items = await collect(sub, 4)
        assert items[0] == Gap(requested=stored[2], earliest=stored[7], latest=stored[9])
        assert ids(items[1:]) == stored[7:]


async def test_gap_with_after_zero(open_log, collect) -> None:
    log, stored = await trimmed_log(open_log)
    items = await collect(log.subscribe("run", after=0, heartbeat=None), 4)
    assert items[0] == Gap(requested=0, earliest=stored[7], latest=stored[9])
    assert ids(items[1:]) == stored[7:]


async def test_gap_stop(open_log, collect) -> None:
    log, stored = await trimmed_log(open_log)
    items = await collect(log.subscribe("run", after=stored[0], on_gap="stop", heartbeat=None), 10, timeout=2)
    assert items == [Gap(requested=stored[0], earliest=stored[7], latest=stored[9])]


async def test_no_gap_at_the_edge_of_the_window(open_log, collect) -> None:
    log, stored = await trimmed_log(open_log)
    # Having seen the newest trimmed event means nothing was missed.
    items = await collect(log.subscribe("run", after=stored[6], heartbeat=None), 3)
    assert ids(items) == stored[7:]


async def test_after_none_on_trimmed_run_has_no_gap(open_log, collect) -> None:
    log, stored = await trimmed_log(open_log)
    end_id = await log.end("run")
    items = await collect(log.subscribe("run", after=None, heartbeat=None), 10)
    assert ids(items) == stored[7:]
    assert items[-1] == End(end_id, "success")


async def test_gap_on_ended_run_reports_latest_as_end_marker(open_log, collect) -> None:
    log, stored = await trimmed_log(open_log)
    end_id = await log.end("run")
    items = await collect(log.subscribe("run", after=stored[1], heartbeat=None), 10)
    assert items[0] == Gap(requested=stored[1], earliest=stored[7], latest=end_id)
    assert ids(items[1:]) == stored[7:]
    assert items[-1] == End(end_id, "success")


async def test_slow_subscriber_falls_behind_a_trim(open_log, collect) -> None:
    # A tiny live tail, so the slow reader goes back to the file, where the events are gone.
    log = await open_log(retention=RetentionPolicy(max_events=5), retention_interval=3600, tail_size=2)
    await asyncio.sleep(0.1)
    first = await log.append_many("run", [("x", i) for i in range(5)])
    async with aclosing(log.subscribe("run", after=None, heartbeat=None)) as sub:
        assert ids(await collect(sub, 5)) == first  # caught up, then falls asleep
        later = await log.append_many("run", [("y", i) for i in range(30)])
        await log.apply_retention()
        info = await log.run("run")
        assert info is not None and info.first_id == later[-5]
        items = await collect(sub, 6)
        assert items[0] == Gap(requested=first[-1], earliest=later[-5], latest=later[-1])
        assert ids(items[1:]) == later[-5:]


async def test_gap_when_a_whole_open_run_was_trimmed_by_age(open_log, collect) -> None:
    log = await open_log(retention=RetentionPolicy(max_age=60), retention_interval=3600)
    stored = await log.append_many("run", [("x", i) for i in range(3)])
    await log.apply_retention(now=time.time() + 3600)
    info = await log.run("run")
    assert info is not None
    assert (info.event_count, info.first_id, info.trimmed_through, info.last_id) == (0, 0, stored[-1], stored[-1])
    async with aclosing(log.subscribe("run", after=stored[0], heartbeat=None)) as sub:
        assert await collect(sub, 1) == [Gap(requested=stored[0], earliest=0, latest=stored[-1])]
        live = await log.append("run", "x", 3)
        assert ids(await collect(sub, 1)) == [live]


# --- the no-lost-wake-up race ----------------------------------------------------------------


async def _yield_randomly(rng: random.Random) -> None:
    choice = rng.random()
    if choice < 0.4:
        for _ in range(rng.randint(0, 4)):
            await asyncio.sleep(0)
    elif choice < 0.8:
        await asyncio.sleep(rng.random() * 0.002)


async def test_no_lost_wakeup_hammer(log: EventLog, collect) -> None:
    rng = random.Random(1234)
    for iteration in range(400):
        run = f"race-{iteration}"
        start = await log.append(run, "start", 0) if rng.random() < 0.7 else None
        n = rng.randint(1, 4)
        subscribers = [
            asyncio.create_task(collect(log.subscribe(run, after=start, heartbeat=None), n, timeout=5))
            for _ in range(rng.randint(1, 3))
        ]
        await _yield_randomly(rng)
        produced = []
        for k in range(n):
            if rng.random() < 0.5:
                produced.append(await log.append(run, "x", k))
            else:
                produced.append(asyncio.ensure_future(log.append(run, "x", k)))
            await _yield_randomly(rng)
        # Appends left running as tasks may commit in another order than they were made.
        produced = sorted([p if isinstance(p, int) else await p for p in produced])
        for result in await asyncio.gather(*subscribers):
            assert ids(result) == produced, (iteration, ids(result), produced)


async def test_no_lost_wakeup_with_a_second_connection(open_log, database, collect) -> None:
    """The producer writes through another EventLog on the same file: the wake-up comes through
    the cross-process path (file watch + change feed), which must not lose it either."""
    reader = await open_log(poll_interval=30)
    writer = await open_log()
    rng = random.Random(99)
    for iteration in range(150):
        run = f"x-{iteration}"
        start = await writer.append(run, "start", 0) if rng.random() < 0.7 else None
        n = rng.randint(1, 3)
        subscriber = asyncio.create_task(
            collect(reader.subscribe(run, after=start, heartbeat=None), n, timeout=5)
        )
        await _yield_randomly(rng)
        produced = []
        for k in range(n):
            produced.append(await writer.append(run, "x", k))
            await _yield_randomly(rng)
        got = ids(await subscriber)
        assert got == produced, (iteration, got, produced)


async def test_live_subscribers_share_the_tail_also_after_idle_heartbeats(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subscribers at the live edge take new events from the shared tail of committed events,
    not from one query each per event; an idle spell (heartbeats, each followed by one re-read
    of the file) does not change that."""
    await log.append("shared", "updates", 0)
    reads = 0
    real_read = log._storage.read

    async def counting_read(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        return await real_read(*args, **kwargs)

    monkeypatch.setattr(log._storage, "read", counting_read)
    subscribers = 5
    received: list[list[int]] = [[] for _ in range(subscribers)]
    heartbeats = [0] * subscribers

    async def follow(index: int) -> None:
        async for item in log.subscribe("shared", after=None, heartbeat=0.05):
            if isinstance(item, Heartbeat):
                heartbeats[index] += 1
            elif isinstance(item, End):
                return
            else:
                received[index].append(item.data)

    tasks = [asyncio.create_task(follow(i)) for i in range(subscribers)]
    deadline = time.monotonic() + 10
    while min(heartbeats) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert min(heartbeats) >= 2
    reads_before_live = reads
    for value in range(1, 41):
        await log.append("shared", "updates", value)
        await asyncio.sleep(0.005)  # every subscriber catches up between appends
    await log.end("shared")
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert all(r == list(range(41)) for r in received)
    # 40 events to 5 subscribers: one query each per event would be 200.
    assert reads - reads_before_live < 40
