"""Conformance of ``SQLiteStreamBridge`` to the gateways' stream-bridge contract.

One test per behaviour of the contract (see ../shared/README.md, "The bridge contract such
gateways use"), then what the in-memory bridge cannot do: restart survival and cross-process
wake-up (in test_deerflow_bridge_processes.py). Real files in ``tmp_path``; nothing mocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eventlog.compat.deerflow import (
    END_SENTINEL,
    HEARTBEAT_SENTINEL,
    SQLiteStreamBridge,
    StreamEvent,
    StreamGap,
    make_stream_bridge,
)
from eventlog.errors import LogClosed

from .conftest import MAX_EVENTS

pytestmark = pytest.mark.backends

MODES = ["metadata", "values", "updates", "messages", "custom", "error", "updates|agent:1|tools"]


async def drain(source: AsyncIterator[Any], timeout: float = 5.0) -> list[Any]:
    """Every item until the iterator stops by itself; a stall fails the test."""

    async def _all() -> list[Any]:
        return [item async for item in source]

    try:
        return await asyncio.wait_for(_all(), timeout)
    except TimeoutError:
        pytest.fail(f"the subscription did not stop within {timeout}s")


async def take(source: AsyncIterator[Any], n: int, timeout: float = 5.0) -> list[Any]:
    """The next ``n`` items (fewer if it stops); the iterator stays open for more."""
    items: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(items) < n:
                try:
                    items.append(await anext(source))
                except StopAsyncIteration:
                    break
    except TimeoutError:
        pytest.fail(f"only {len(items)} of {n} items within {timeout}s")
    return items


async def next_event(source: AsyncIterator[Any], timeout: float = 5.0) -> Any:
    """The next item that is not a heartbeat."""
    async with asyncio.timeout(timeout):
        while (item := await anext(source)) is HEARTBEAT_SENTINEL:
            pass
    return item


def events(items: list[Any]) -> list[Any]:
    return [item for item in items if isinstance(item, StreamEvent) and item.id != ""]


async def publish_n(bridge: SQLiteStreamBridge, run_id: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await bridge.publish(run_id, MODES[i % len(MODES)], {"i": i})


# --- the contract, one behaviour each --------------------------------------------------------


async def test_events_arrive_in_publish_order(bridge: SQLiteStreamBridge) -> None:
    await publish_n(bridge, "run-1", MAX_EVENTS)
    await bridge.publish_end("run-1")

    items = await drain(bridge.subscribe("run-1"))

    assert items[-1] is END_SENTINEL
    got = items[:-1]
    assert all(type(item) is StreamEvent for item in got)
    assert [(e.event, e.data) for e in got] == [(MODES[i % len(MODES)], {"i": i}) for i in range(MAX_EVENTS)]


async def test_order_holds_across_write_batches_of_concurrent_runs(make_bridge: Any, durable_publish: bool) -> None:
    per_run = 200 if durable_publish else 3000  # queued: more than one write chunk per run
    bridge = await make_bridge(max_events_per_run=per_run)
    runs = ["run-a", "run-b", "run-c"]

    async def produce(run_id: str) -> None:
        for i in range(per_run):
            await bridge.publish(run_id, "messages", {"i": i})
            if i % 1500 == 0:
                await asyncio.sleep(0)  # interleave the runs' publishers in long bursts
        await bridge.publish_end(run_id)

    await asyncio.gather(*(produce(r) for r in runs))
    for run_id in runs:
        items = await drain(bridge.subscribe(run_id), timeout=20)
        assert items[-1] is END_SENTINEL
        assert [e.data["i"] for e in items[:-1]] == list(range(per_run)), run_id


async def test_heartbeat_when_idle(bridge: SQLiteStreamBridge) -> None:
    await bridge.publish("run-1", "metadata", {"run_id": "run-1"})
    sub = bridge.subscribe("run-1", heartbeat_interval=0.1)

    first, idle = await take(sub, 2)
    assert first.event == "metadata"
    assert idle is HEARTBEAT_SENTINEL  # by identity, as gateways compare it

    await bridge.publish("run-1", "values", {"n": 1})
    assert (await next_event(sub)).event == "values"
    await sub.aclose()


async def test_replay_after_cursor(bridge: SQLiteStreamBridge) -> None:
    await publish_n(bridge, "run-1", 6)
    await bridge.publish_end("run-1")
    everything = events(await drain(bridge.subscribe("run-1")))

    items = await drain(bridge.subscribe("run-1", last_event_id=everything[2].id))

    assert items[-1] is END_SENTINEL
    assert items[:-1] == everything[3:]


async def test_gap_for_a_cursor_evicted_by_retention(bridge: SQLiteStreamBridge) -> None:
    await publish_n(bridge, "run-1", 3)
    cursor = events(await take(bridge.subscribe("run-1"), 1))[0].id
    await publish_n(bridge, "run-1", 3 * MAX_EVENTS, start=3)
    await bridge.publish_end("run-1")
    await bridge.apply_retention()
    retained = events(await drain(bridge.subscribe("run-1")))
    assert len(retained) == MAX_EVENTS

    items = await drain(bridge.subscribe("run-1", last_event_id=cursor))

    assert len(items) == 1  # the gap, then the subscription stops
    gap = items[0]
    assert isinstance(gap, StreamGap)
    assert gap.requested_event_id == cursor
    assert gap.earliest_available_event_id == retained[0].id
    assert gap.latest_available_event_id == retained[-1].id  # an event, not the end marker


async def test_gap_for_a_slow_subscriber_after_trim(bridge: SQLiteStreamBridge) -> None:
    await publish_n(bridge, "run-1", 3)
    sub = bridge.subscribe("run-1", heartbeat_interval=5)
    seen = events(await take(sub, 1))

    # The subscriber stalls while the run races far past the retained window.
    await publish_n(bridge, "run-1", 5 * MAX_EVENTS, start=3)
    await bridge.apply_retention()

    rest = await drain(sub)
    gap = rest[-1]
    delivered = seen + rest[:-1]
    assert isinstance(gap, StreamGap)
    assert [e.data["i"] for e in delivered] == list(range(len(delivered)))  # nothing skipped before it
    assert gap.requested_event_id == delivered[-1].id
    retained = events(await take(bridge.subscribe("run-1"), MAX_EVENTS))
    assert gap.earliest_available_event_id == retained[0].id
    assert int(gap.latest_available_event_id) >= int(retained[-1].id)


async def test_end_keeps_a_full_history(bridge: SQLiteStreamBridge) -> None:
    await publish_n(bridge, "run-1", MAX_EVENTS)
    await bridge.publish_end("run-1")
    await bridge.apply_retention()

    items = await drain(bridge.subscribe("run-1"))

    assert items[-1] is END_SENTINEL
    assert [e.data["i"] for e in items[:-1]] == list(range(MAX_EVENTS))


async def test_end_of_a_run_with_no_history(bridge: SQLiteStreamBridge) -> None:
    await bridge.publish_end("never-published")

    assert await bridge.stream_exists("never-published")
    assert await drain(bridge.subscribe("never-published")) == [END_SENTINEL]
    assert await drain(bridge.subscribe("never-published", last_event_id="17")) == [END_SENTINEL]


async def test_history_is_kept_when_there_is_room(bridge: SQLiteStreamBridge) -> None:
    await publish_n(bridge, "run-1", MAX_EVENTS // 2)
    await bridge.publish_end("run-1")
    await bridge.apply_retention()

    items = await drain(bridge.subscribe("run-1"))
    assert items[-1] is END_SENTINEL
    assert [e.data["i"] for e in items[:-1]] == list(range(MAX_EVENTS // 2))
    again = await drain(bridge.subscribe("run-1", last_event_id=items[0].id))
    assert again == items[1:]


async def test_concurrent_slow_consumers_on_several_runs(make_bridge: Any) -> None:
    bridge = await make_bridge(max_events_per_run=256)
    runs, per_run, consumers_per_run = [f"run-{i}" for i in range(4)], 40, 3
    gate = asyncio.Event()

    async def consume(run_id: str) -> list[Any]:
        got: list[Any] = []
        async for item in bridge.subscribe(run_id, heartbeat_interval=5):
            if item is END_SENTINEL:
                return got
            got.append(item)
            if len(got) == 1:
                await gate.wait()  # stalls after its first event...
            else:
                await asyncio.sleep(0.001)  # ...then reads slowly
        raise AssertionError("the subscription stopped without END")

    async def produce(run_id: str) -> None:
        await publish_n(bridge, run_id, per_run)
        await bridge.publish_end(run_id)

    consumers = [asyncio.create_task(consume(r)) for r in runs for _ in range(consumers_per_run)]
    # Publishing never waits for consumers: every producer finishes while all of them stall.
    await asyncio.wait_for(asyncio.gather(*(produce(r) for r in runs)), 10)
    assert not any(task.done() for task in consumers)

    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*consumers), 20)
    for index, got in enumerate(results):
        run_id = runs[index // consumers_per_run]
        assert [e.data["i"] for e in got] == list(range(per_run)), run_id


@pytest.mark.parametrize(
    "cursor", ["1712345678901-5", "abc", "", "0", "-3", "007", " 5", "1e3", "99999999", "9" * 40, "foreign"]
)
async def test_malformed_or_foreign_cursor_replays_all(bridge: SQLiteStreamBridge, cursor: str) -> None:
    for i in range(5):  # interleaved, so that another run's ids fall inside run-1's range
        await bridge.publish("run-1", "updates", {"i": i})
        await bridge.publish("other-run", "updates", {"i": i})
    await bridge.publish_end("run-1")
    if cursor == "foreign":  # a real id, of another run
        cursor = events(await take(bridge.subscribe("other-run"), 3))[-1].id

    items = await drain(bridge.subscribe("run-1", last_event_id=cursor))

    assert items[-1] is END_SENTINEL
    assert [e.data["i"] for e in items[:-1]] == list(range(5))


async def test_subscribe_before_publish_waits(bridge: SQLiteStreamBridge) -> None:
    sub = bridge.subscribe("late-run", heartbeat_interval=0.1)

    waiting = await take(sub, 3)
    assert waiting == [HEARTBEAT_SENTINEL] * 3  # waits, with heartbeats; never ends early

    await bridge.publish("late-run", "metadata", {"i": 0})
    await bridge.publish_end("late-run")
    rest = [item for item in await drain(sub) if item is not HEARTBEAT_SENTINEL]
    assert [type(item) for item in rest] == [StreamEvent, StreamEvent]
    assert rest[0].data == {"i": 0} and rest[1] is END_SENTINEL


async def test_cleanup_then_stream_exists_is_false(bridge: SQLiteStreamBridge) -> None:
    assert not await bridge.stream_exists("run-1")
    await publish_n(bridge, "run-1", 3)
    await bridge.publish_end("run-1")
    assert await bridge.stream_exists("run-1")

    await bridge.cleanup("run-1")
    assert not await bridge.stream_exists("run-1")

    await publish_n(bridge, "run-2", 1)
    delayed = asyncio.create_task(bridge.cleanup("run-2", delay=1.0))
    await asyncio.sleep(0.05)
    assert await bridge.stream_exists("run-2")  # not before the delay
    await asyncio.wait_for(delayed, 5)
    assert not await bridge.stream_exists("run-2")


async def test_runs_are_isolated(bridge: SQLiteStreamBridge) -> None:
    for i in range(6):
        await bridge.publish("run-a", "updates", {"run": "a", "i": i})
        await bridge.publish("run-b", "updates", {"run": "b", "i": i})
    await bridge.publish_end("run-a")
    b_sub = bridge.subscribe("run-b", heartbeat_interval=0.1)

    a_items = await drain(bridge.subscribe("run-a"))
    assert [e.data for e in a_items[:-1]] == [{"run": "a", "i": i} for i in range(6)]
    assert a_items[-1] is END_SENTINEL

    b_items = await take(b_sub, 7)  # run-a's end does not end run-b
    assert [e.data for e in b_items[:6]] == [{"run": "b", "i": i} for i in range(6)]
    assert b_items[6] is HEARTBEAT_SENTINEL

    await bridge.cleanup("run-a")
    assert await bridge.stream_exists("run-b")
    await bridge.publish("run-b", "values", {"run": "b", "i": 6})
    assert (await next_event(b_sub)).data == {"run": "b", "i": 6}
    await b_sub.aclose()


async def test_ids_are_monotonic_strings(bridge: SQLiteStreamBridge) -> None:
    for i in range(10):
        await bridge.publish("run-a", "updates", {"i": i})
        await bridge.publish("run-b", "updates", {"i": i})
    await bridge.publish_end("run-a")
    await bridge.publish_end("run-b")

    a_ids = [e.id for e in events(await drain(bridge.subscribe("run-a")))]
    b_ids = [e.id for e in events(await drain(bridge.subscribe("run-b")))]
    for ids in (a_ids, b_ids):
        assert all(isinstance(i, str) and i.isdigit() for i in ids)
        assert [int(i) for i in ids] == sorted({int(i) for i in ids})  # strictly increasing
    assert not set(a_ids) & set(b_ids)  # never one id for two events

    # Ids keep growing even after a run was cleaned up and its id reused.
    await bridge.cleanup("run-a")
    await bridge.publish("run-a", "updates", {"i": "again"})
    again = events(await take(bridge.subscribe("run-a"), 1))[0]
    assert int(again.id) > max(int(i) for i in a_ids + b_ids)


# --- the adapter's own choices ---------------------------------------------------------------


async def test_reserved_event_names_round_trip(bridge: SQLiteStreamBridge) -> None:
    # Gateways publish an "end" data frame before publish_end; it must not end the stream.
    names = ["end", "gap", "~end", "~", "values"]
    for name in names:
        await bridge.publish("run-1", name, {"name": name})
    await bridge.publish_end("run-1")

    items = await drain(bridge.subscribe("run-1"))

    assert [(e.event, e.data) for e in items[:-1]] == [(n, {"name": n}) for n in names]
    assert items[-1] is END_SENTINEL


async def test_data_that_is_not_json_is_stored_as_text(bridge: SQLiteStreamBridge) -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    circular: list[Any] = []
    circular.append(circular)
    await bridge.publish("run-1", "custom", {"i": 0})
    await bridge.publish("run-1", "custom", {"value": Opaque(), "nan": float("nan")})
    await bridge.publish("run-1", "custom", {"text": "lone \ud800 surrogate"})
    await bridge.publish("run-1", "custom", circular)
    await bridge.publish("run-1", "custom", {"i": 4})  # the same write batch: unharmed
    await bridge.publish_end("run-1")
    await bridge.publish("run-1", "custom", {"late": True})  # after the end: dropped, no error

    items = await drain(bridge.subscribe("run-1"))
    assert [e.data for e in items[:-1]] == [
        {"i": 0}, {"value": "opaque", "nan": None}, {"text": "lone ? surrogate"}, "[[...]]", {"i": 4}
    ]


async def test_close_stops_waiting_subscribers(bridge: SQLiteStreamBridge) -> None:
    await bridge.publish("run-1", "metadata", {})
    sub = bridge.subscribe("run-1", heartbeat_interval=30)
    assert len(await take(sub, 1)) == 1
    waiting = asyncio.create_task(drain(sub, timeout=10))
    await asyncio.sleep(0.1)

    await bridge.close()

    assert await waiting == []  # it stops (without END: clients reconnect with their cursor)
    with pytest.raises(LogClosed):
        await bridge.publish("run-1", "values", {})


async def test_factory_is_an_async_context_manager(bridge_path: Any) -> None:
    assert SQLiteStreamBridge.supports_cross_process is True
    async with make_stream_bridge(bridge_path, max_events_per_run=16) as bridge:
        assert isinstance(bridge, SQLiteStreamBridge)
        await bridge.publish("run-1", "metadata", {"ok": True})
        assert await bridge.stream_exists("run-1")
    with pytest.raises(LogClosed):
        await bridge.publish("run-1", "values", {})
    async with SQLiteStreamBridge(bridge_path) as reopened:  # the bridge is one as well
        assert await reopened.stream_exists("run-1")


async def test_queued_publishes_are_committed_by_flush_end_and_close(make_bridge: Any) -> None:
    bridge = await make_bridge(max_events_per_run=256, max_pending=4)  # tiny: publishers wait for the disk
    other = await make_bridge(max_events_per_run=256)  # a second handle: sees only what is committed

    await publish_n(bridge, "run-1", 50)
    assert await bridge.stream_exists("run-1")
    await bridge.flush()
    assert [e.data["i"] for e in events(await take(other.subscribe("run-1"), 50))] == list(range(50))

    await publish_n(bridge, "run-2", 5)
    await bridge.publish_end("run-2")  # orders after the queued events
    assert [e.data["i"] for e in (await drain(other.subscribe("run-2")))[:-1]] == list(range(5))

    await publish_n(bridge, "run-3", 7)
    await bridge.close()  # commits before closing
    assert [e.data["i"] for e in events(await take(other.subscribe("run-3"), 7))] == list(range(7))
