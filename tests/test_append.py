"""append / append_many / end / create_run / idempotency keys / group commit, against a real file."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from eventlog import (
    DatabaseFull,
    EventLog,
    IdempotencyConflict,
    InvalidData,
    RunEnded,
    RunExists,
    RunInfo,
    RunNotFound,
)

pytestmark = pytest.mark.backends


async def test_append_returns_increasing_ids_and_reads_back(log: EventLog) -> None:
    first = await log.append("run-1", "updates", {"step": 1})
    more = await log.append_many("run-1", [("values", [1, 2]), ("custom", "text"), ("messages", None)])
    other = await log.append("run-2", "updates", {"step": 1})
    last = await log.append("run-1", "updates", {"step": 2})

    ids = [first, *more, last]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert more == list(range(first + 1, first + 4))  # one append_many is one contiguous block
    assert other not in ids

    events = await log.read("run-1")
    assert [e.id for e in events] == ids
    assert [(e.event, e.data) for e in events] == [
        ("updates", {"step": 1}),
        ("values", [1, 2]),
        ("custom", "text"),
        ("messages", None),
        ("updates", {"step": 2}),
    ]
    assert all(e.run_id == "run-1" for e in events)
    assert [(e.id, e.data) for e in await log.read("run-2")] == [(other, {"step": 1})]


async def test_stored_json_is_compact_and_utf8(log: EventLog) -> None:
    data = {"text": "héllo ☃", "n": [1, 2.5, None, True], "nested": {"a": {}}}
    await log.append("run", "custom", data)
    await log.end("run", reason="success")
    stored, marker = await log.read("run")
    assert stored.data == data
    assert stored.data_json == json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    # The end marker is stored like any event, in the same compact encoding.
    assert marker.data == {"reason": "success"}
    assert marker.data_json == json.dumps({"reason": "success"}, separators=(",", ":"))


async def test_data_is_a_snapshot_taken_at_append(log: EventLog) -> None:
    data = {"items": [1]}
    await log.append("run", "values", data)
    data["items"].append(2)
    (event,) = await log.read("run")
    assert event.data == {"items": [1]}
    event.data["items"].append(3)  # each access parses a fresh copy
    assert event.data == {"items": [1]}


async def test_created_at_is_the_commit_time(log: EventLog) -> None:
    import time

    before = time.time()
    await log.append("run", "x", 1)
    after = time.time()
    (event,) = await log.read("run")
    assert before - 1 <= event.created_at <= after + 1


async def test_read_paging(log: EventLog) -> None:
    ids = await log.append_many("run", [("x", i) for i in range(25)])
    assert [e.id for e in await log.read("run", limit=10)] == ids[:10]
    assert [e.id for e in await log.read("run", after=ids[9], limit=10)] == ids[10:20]
    assert [e.id for e in await log.read("run", after=ids[19], limit=10)] == ids[20:]
    assert await log.read("run", after=ids[-1]) == []
    assert await log.read("no-such-run") == []


async def test_end_writes_a_marker_row(log: EventLog) -> None:
    a = await log.append("run", "updates", 1)
    end_id = await log.end("run", reason="error")
    assert end_id > a
    events = await log.read("run")
    assert [(e.id, e.event, e.data) for e in events] == [(a, "updates", 1), (end_id, "end", {"reason": "error"})]
    info = await log.run("run")
    assert info is not None
    assert (info.end_id, info.end_reason, info.last_id, info.ended) == (end_id, "error", end_id, True)
    assert info.ended_at is not None and info.ended_at >= info.created_at


async def test_end_twice_same_reason_returns_same_id(log: EventLog) -> None:
    await log.append("run", "x", 1)
    end_id = await log.end("run", reason="success")
    assert await log.end("run", reason="success") == end_id
    assert len(await log.read("run")) == 2  # nothing written by the repeat


async def test_end_with_none_reason_is_repeatable(log: EventLog) -> None:
    await log.append("run", "x", 1)
    end_id = await log.end("run", reason=None)
    assert await log.end("run", reason=None) == end_id
    assert (await log.read("run"))[-1].data == {"reason": None}
    with pytest.raises(RunEnded):
        await log.end("run", reason="success")


async def test_end_with_other_reason_raises(log: EventLog) -> None:
    await log.append("run", "x", 1)
    end_id = await log.end("run", reason="success")
    with pytest.raises(RunEnded) as caught:
        await log.end("run", reason="error")
    assert (caught.value.end_id, caught.value.reason, caught.value.run_id) == (end_id, "success", "run")
    assert (await log.run("run")).end_reason == "success"  # type: ignore[union-attr]


async def test_append_after_end_raises(log: EventLog) -> None:
    await log.append("run", "x", 1)
    end_id = await log.end("run")
    with pytest.raises(RunEnded) as caught:
        await log.append("run", "x", 2)
    assert caught.value.end_id == end_id
    with pytest.raises(RunEnded):
        await log.append_many("run", [("x", 3), ("x", 4)])
    assert [e.id for e in await log.read("run")][-1] == end_id
    assert (await log.run("run")).event_count == 1  # type: ignore[union-attr]


async def test_end_of_unknown_run(log: EventLog) -> None:
    with pytest.raises(RunNotFound):
        await log.end("ghost")
    assert await log.run("ghost") is None
    end_id = await log.end("ghost", reason="cancelled", must_exist=False)
    info = await log.run("ghost")
    assert info is not None and info.end_id == end_id and info.end_reason == "cancelled"
    assert [e.event for e in await log.read("ghost")] == ["end"]


async def test_create_run_with_metadata(log: EventLog) -> None:
    info = await log.create_run("run", metadata={"thread_id": "t-1", "n": 3})
    assert isinstance(info, RunInfo)
    assert info.metadata == {"thread_id": "t-1", "n": 3}
    assert (info.event_count, info.last_id, info.end_id) == (0, 0, None)
    stored = await log.run("run")
    assert stored is not None and stored.metadata == {"thread_id": "t-1", "n": 3}
    assert (stored.first_id, stored.last_id, stored.trimmed_through) == (0, 0, 0)
    with pytest.raises(RunExists):
        await log.create_run("run", metadata={"thread_id": "other"})
    eid = await log.append("run", "x", 1)
    stored = await log.run("run")
    assert stored is not None
    assert stored.metadata == {"thread_id": "t-1", "n": 3}  # appends keep the metadata
    assert (stored.first_id, stored.last_id, stored.event_count) == (eid, eid, 1)


async def test_create_run_after_implicit_creation_raises(log: EventLog) -> None:
    await log.append("run", "x", 1)
    with pytest.raises(RunExists):
        await log.create_run("run")
    assert (await log.create_run("fresh")).metadata == {}


async def test_run_info_counters(log: EventLog) -> None:
    ids = await log.append_many("run", [("x", "ab"), ("y", [1, 2, 3])])
    info = await log.run("run")
    assert info is not None
    assert info.event_count == 2
    assert info.total_bytes == len('"ab"') + len("[1,2,3]")
    assert (info.first_id, info.last_id, info.trimmed_through, info.end_id) == (ids[0], ids[1], 0, None)
    assert not info.ended
    assert await log.run("nope") is None


async def test_runs_listing_and_delete(log: EventLog) -> None:
    await log.append("open-1", "x", 1)
    await log.append("done-1", "x", 1)
    await log.end("done-1")
    await log.create_run("open-2")
    everything = {r.run_id for r in await log.runs()}
    assert everything == {"open-1", "done-1", "open-2"}
    assert {r.run_id for r in await log.runs(status="running")} == {"open-1", "open-2"}
    assert {r.run_id for r in await log.runs(status="ended")} == {"done-1"}
    assert len(await log.runs(limit=2)) == 2
    assert len(await log.runs(limit=2, offset=2)) == 1

    assert await log.delete("done-1") is True
    assert await log.delete("done-1") is False
    assert await log.run("done-1") is None
    assert await log.read("done-1") == []
    # A deleted run's id can be used again, as a new run.
    eid = await log.append("done-1", "x", 2)
    assert [e.id for e in await log.read("done-1")] == [eid]
    stats = await log.stats()
    assert stats["runs"] == 3 and stats["events"] == 2


async def test_a_big_run_is_deleted_in_parts_while_a_producer_appends(log: EventLog) -> None:
    """Deleting a run of several transactions' worth of rows: rows a producer appended during
    the deletion go with the run, and so do its idempotency keys: nothing is left behind."""
    from eventlog.storage.sqlite import DELETE_BATCH

    await log.append_many("big", [("x", {"i": i}) for i in range(3 * DELETE_BATCH + 7)], idempotency_key="k")
    await log.append("other", "x", 1)
    stop = asyncio.Event()

    async def produce() -> int:
        appended = 0
        while not stop.is_set():
            await log.append("big", "x", {"late": appended})
            appended += 1
        return appended

    producer = asyncio.create_task(produce())
    await asyncio.sleep(0)  # let it start
    assert await log.delete("big") is True
    stop.set()
    late = await producer
    left = await log.read("big", limit=10_000)
    info = await log.run("big")
    # Appends after the final step recreate the run, as after any delete; none from before it stay.
    assert info is None or (info.event_count == len(left) and info.first_id == left[0].id)
    assert len(left) <= late
    # The key went with the run: reusing it with other events is a new append, not a conflict.
    assert await log.append_many("big", [("y", 0)], idempotency_key="k")
    assert len(await log.read("other")) == 1


async def test_ids_are_never_reused_after_delete(log: EventLog) -> None:
    await log.append_many("a", [("x", i) for i in range(5)])
    newest = await log.append("b", "x", 0)
    await log.delete("b")
    await log.delete("a")
    assert await log.append("c", "x", 0) > newest


async def test_async_with_and_reopen(database) -> None:
    async with EventLog.open(database) as log:
        ids = await log.append_many("run", [("x", 1), ("y", 2)])
    async with EventLog.open(database) as log:
        assert [e.id for e in await log.read("run")] == ids
        assert await log.append("run", "z", 3) > ids[-1]


async def test_durability_power(open_log, database) -> None:
    log = await open_log(durability="power")
    ids = await log.append_many("run", [("x", 1), ("y", 2)])
    await log.close()
    log = await open_log()
    assert [e.id for e in await log.read("run")] == ids


# --- idempotency keys ------------------------------------------------------------------------


async def test_idempotency_key_repeat_writes_nothing(log: EventLog) -> None:
    ids = await log.append_many("run", [("x", 1), ("y", 2)], idempotency_key="k1")
    assert await log.append_many("run", [("x", 1), ("y", 2)], idempotency_key="k1") == ids
    single = await log.append("run", "z", 3, idempotency_key="k2")
    assert await log.append("run", "z", 3, idempotency_key="k2") == single
    assert [e.id for e in await log.read("run")] == [*ids, single]
    assert (await log.run("run")).event_count == 3  # type: ignore[union-attr]


async def test_idempotency_key_conflict(log: EventLog) -> None:
    await log.append("run", "x", 1, idempotency_key="k")
    with pytest.raises(IdempotencyConflict) as caught:
        await log.append("run", "x", 2, idempotency_key="k")
    assert (caught.value.run_id, caught.value.key) == ("run", "k")
    with pytest.raises(IdempotencyConflict):
        await log.append("run", "y", 1, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        await log.append_many("run", [("x", 1), ("x", 1)], idempotency_key="k")
    assert len(await log.read("run")) == 1


async def test_idempotency_keys_are_scoped_per_run(log: EventLog) -> None:
    a = await log.append("run-a", "x", 1, idempotency_key="same")
    b = await log.append("run-b", "x", 1, idempotency_key="same")
    assert a != b
    assert len(await log.read("run-b")) == 1


async def test_idempotency_key_survives_reopen(database) -> None:
    async with EventLog.open(database) as log:
        ids = await log.append_many("run", [("x", 1), ("y", {"a": 1})], idempotency_key="retry-me")
    async with EventLog.open(database) as log:
        assert await log.append_many("run", [("x", 1), ("y", {"a": 1})], idempotency_key="retry-me") == ids
        with pytest.raises(IdempotencyConflict):
            await log.append_many("run", [("x", 1)], idempotency_key="retry-me")
        assert [e.id for e in await log.read("run")] == ids


async def test_idempotent_repeat_after_end_returns_original_ids(log: EventLog) -> None:
    ids = await log.append_many("run", [("x", 1)], idempotency_key="k")
    await log.end("run")
    assert await log.append_many("run", [("x", 1)], idempotency_key="k") == ids
    with pytest.raises(RunEnded):
        await log.append_many("run", [("x", 1)], idempotency_key="new-key")


async def test_idempotency_duplicates_in_one_concurrent_batch(log: EventLog) -> None:
    events = [("x", 1), ("y", 2)]
    results = await asyncio.gather(
        *(log.append_many("run", events, idempotency_key="dup") for _ in range(10)),
        log.append_many("run", [("other", 0)], idempotency_key="dup"),
        return_exceptions=True,
    )
    first = results[0]
    assert isinstance(first, list) and len(first) == 2
    assert all(r == first for r in results[:10]), results
    assert isinstance(results[10], IdempotencyConflict)
    assert [e.id for e in await log.read("run")] == first


async def test_failed_request_does_not_record_its_key(log: EventLog) -> None:
    await log.append("run", "x", 1)
    await log.end("run")
    with pytest.raises(RunEnded):
        await log.append("run", "x", 2, idempotency_key="k")
    await log.delete("run")
    # The key was never stored: after the run is gone the same key is simply new.
    eid = await log.append("run", "x", 3, idempotency_key="k")
    assert [e.id for e in await log.read("run")] == [eid]


# --- group commit -----------------------------------------------------------------------------


async def test_many_concurrent_appends(log: EventLog) -> None:
    runs = [f"run-{i}" for i in range(5)]
    calls = [(runs[i % 5], i) for i in range(600)]
    ids = await asyncio.gather(*(log.append(run, "x", {"i": i}) for run, i in calls))
    assert len(set(ids)) == len(ids)
    for run in runs:
        submitted = [(eid, i) for (r, i), eid in zip(calls, ids) if r == run]
        # Submission order is commit order: ids increase in the order the calls were made.
        assert [eid for eid, _ in submitted] == sorted(eid for eid, _ in submitted)
        stored = await log.read(run, limit=1000)
        assert [(e.id, e.data["i"]) for e in stored] == submitted


async def test_concurrent_append_many_blocks_stay_contiguous(log: EventLog) -> None:
    blocks = await asyncio.gather(
        *(log.append_many("run", [("x", [b, k]) for k in range(random.randint(1, 8))]) for b in range(50))
    )
    for block in blocks:
        assert block == list(range(block[0], block[0] + len(block)))
    stored = await log.read("run", limit=1000)
    assert [e.id for e in stored] == [eid for block in blocks for eid in block]
    assert [e.data for e in stored] == [[b, k] for b, block in enumerate(blocks) for k in range(len(block))]


async def test_failing_requests_in_a_batch_do_not_fail_the_others(log: EventLog) -> None:
    await log.append("ended", "x", 0)
    await log.end("ended")
    await log.append("keyed", "x", 0, idempotency_key="used")
    await log.create_run("existing")
    results = await asyncio.gather(
        log.append("ok-1", "x", 1),
        log.append("ended", "x", 1),
        log.append("ok-2", "x", 2),
        log.create_run("existing"),
        log.append("keyed", "x", "different", idempotency_key="used"),
        log.end("missing"),
        log.append_many("ok-1", [("y", 1), ("y", 2)]),
        log.end("ok-2", reason="done"),
        return_exceptions=True,
    )
    assert isinstance(results[0], int)
    assert isinstance(results[1], RunEnded)
    assert isinstance(results[2], int)
    assert isinstance(results[3], RunExists)
    assert isinstance(results[4], IdempotencyConflict)
    assert isinstance(results[5], RunNotFound)
    assert isinstance(results[6], list) and results[6][0] > results[0]
    assert isinstance(results[7], int) and results[7] > results[2]
    assert [e.data for e in await log.read("ok-1")] == [1, 1, 2]
    assert [e.event for e in await log.read("ok-2")] == ["x", "end"]
    assert await log.run("missing") is None


async def test_invalid_data_in_a_batch_does_not_fail_the_others(log: EventLog) -> None:
    # Lone surrogates pass json.dumps but cannot be stored as UTF-8 text.
    results = await asyncio.gather(
        log.append("ok", "x", 1),
        log.append("bad", "x", "\ud800"),
        log.append("ok", "x", 2),
        return_exceptions=True,
    )
    assert isinstance(results[0], int) and isinstance(results[2], int), results
    assert isinstance(results[1], InvalidData), results
    assert [e.data for e in await log.read("ok")] == [1, 2]
    assert await log.run("bad") is None


@pytest.mark.sqlite_only  # max_page_count caps an SQLite file
async def test_database_full_in_a_batch_fails_only_the_big_request(open_log) -> None:
    log = await open_log(max_page_count=64)
    await log.append("small", "x", 0)  # schema and first pages in place
    results = await asyncio.gather(
        log.append("small", "x", 1),
        log.append("big", "x", "x" * 2_000_000),
        log.append("small", "x", 2),
        return_exceptions=True,
    )
    assert isinstance(results[0], int) and isinstance(results[2], int), results
    assert isinstance(results[1], DatabaseFull), results
    assert [e.data for e in await log.read("small")] == [0, 1, 2]
    assert await log.run("big") is None


async def test_close_waits_for_appends_in_flight(database) -> None:
    log = await EventLog.open(database)
    tasks = [asyncio.create_task(log.append("run", "x", i)) for i in range(3000)]
    await asyncio.sleep(0.005)  # some batches committed, others still queued
    await asyncio.wait_for(log.close(), 10)
    done, pending = await asyncio.wait(tasks, timeout=10)
    assert not pending, f"{len(pending)} appends never returned after close"
    acked = [t.result() for t in done if t.exception() is None]
    async with EventLog.open(database) as reopened:
        stored = {e.id for e in await reopened.read("run", limit=10_000)}
    assert set(acked) <= stored


async def test_end_twice_in_one_batch(log: EventLog) -> None:
    first, second, appended, other = await asyncio.gather(
        log.end("run", reason="success", must_exist=False),
        log.end("run", reason="success"),
        log.append("run", "x", 1),
        log.end("run", reason="error"),
        return_exceptions=True,
    )
    assert isinstance(first, int) and second == first
    assert isinstance(appended, RunEnded) and appended.end_id == first
    assert isinstance(other, RunEnded) and other.end_id == first and other.reason == "success"
    assert [(e.id, e.event) for e in await log.read("run")] == [(first, "end")]
