"""The writer's run cache (storage/run_cache.py) never answers from a stale view: whatever else
wrote the file since its last commit (another process, another connection, retention or a delete
on its own connection) drops it, and the append decides on the rows as they are."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from eventlog import DatabaseFull, EventLog, RetentionPolicy, RunEnded


def cache_hits(log: EventLog) -> int:
    return log._storage._run_cache.hits  # type: ignore[attr-defined]


async def test_appends_after_the_first_reuse_the_cached_run(log: EventLog) -> None:
    ids = [await log.append("r", "updates", {"n": n}) for n in range(5)]
    assert cache_hits(log) == 4
    info = await log.run("r")
    assert info is not None and (info.event_count, info.last_id) == (5, ids[-1])


async def test_a_run_ended_by_another_connection_refuses_the_next_append(open_log) -> None:
    first, second = await open_log(), await open_log()
    await first.append("r", "updates", {"n": 0})
    await first.append("r", "updates", {"n": 1})  # the run is in first's cache now
    end_id = await second.end("r", "cancelled")
    with pytest.raises(RunEnded) as caught:
        await first.append("r", "updates", {"n": 2})
    assert (caught.value.reason, caught.value.end_id) == ("cancelled", end_id)


async def test_events_another_process_appended_are_counted_and_ids_follow_them(
    open_log, db_path: Path, helper_script
) -> None:
    log = await open_log()
    await log.append("r", "updates", {"n": 0})
    await log.append("r", "updates", {"n": 1})
    child = await asyncio.create_subprocess_exec(
        *helper_script("append_events"), str(db_path), "r", "3", "0",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    assert child.returncode == 0
    theirs = [json.loads(line)["id"] for line in out.decode().splitlines()[:-1]]
    mine = await log.append("r", "updates", {"n": 2})
    assert mine > max(theirs)
    info = await log.run("r")
    assert info is not None and (info.event_count, info.last_id) == (6, mine)
    assert [e.id for e in await log.read("r")][-4:] == [*theirs, mine]


async def test_retention_on_the_writers_own_connection_is_not_undone(log: EventLog) -> None:
    for n in range(5):
        await log.append("r", "updates", {"n": n})
    report = await log.apply_retention(policy=RetentionPolicy(max_events=2))
    assert report.trimmed_events == 3
    await log.append("r", "updates", {"n": 5})
    info = await log.run("r")
    assert info is not None and info.event_count == 3


async def test_a_deleted_run_starts_afresh(log: EventLog) -> None:
    await log.append("r", "updates", {"n": 0})
    await log.end("r")
    assert await log.delete("r")
    new_id = await log.append("r", "updates", {"n": 1})
    info = await log.run("r")
    assert info is not None and (info.event_count, info.last_id, info.end_id) == (1, new_id, None)


async def test_a_failed_transaction_leaves_no_trace_in_the_cache(open_log) -> None:
    """The batch changes the cached run in place before its insert fails on a full file: the
    failure must drop the cache, or the next append would count the refused event."""
    log = await open_log(max_page_count=64)
    await log.append("r", "updates", {"n": 0})
    await log.append("r", "updates", {"n": 1})  # cached now
    with pytest.raises(DatabaseFull):
        await log.append("r", "updates", {"blob": "x" * 1_000_000})
    last = await log.append("r", "updates", {"n": 2})
    info = await log.run("r")
    assert info is not None
    assert (info.event_count, info.last_id) == (3, last)
    assert info.total_bytes == sum(len(e.data_json) for e in await log.read("r"))
