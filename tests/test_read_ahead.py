"""Pages read ahead by the change feed answer only the read they were meant for: the very cursor,
a limit they can fill, and only during the turn of the event loop that delivered them (a later
read could otherwise miss a commit it was told about)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from eventlog import EventLog
from eventlog.storage.connection import connect
from eventlog.storage.read_ahead import FOLLOWED, PAGE_ROWS, ReadAhead
from eventlog.storage.sqlite import read_page


async def test_a_page_answers_its_cursor_during_the_turn_that_offered_it(db_path: Path) -> None:
    async with EventLog.open(db_path) as log:
        ids = [await log.append("run", "x", i) for i in range(5)]
    conn = connect(db_path, durability="process", writer=False, busy_timeout=5.0)
    try:
        read_ahead = ReadAhead(read_page)
        page = read_ahead.read(conn, "run", ids[1])
        assert not conn.in_transaction
    finally:
        conn.close()
    assert [e.id for e in page.events] == ids[2:]
    assert page.run is not None and page.run.last_id == ids[-1]

    read_ahead.offer({"run": (ids[1], page)})
    assert read_ahead.take("run", ids[0], 100) is None  # another cursor: to the file
    assert read_ahead.take("other", ids[1], 100) is None
    assert read_ahead.take("run", ids[1], 100) is page
    short = read_ahead.take("run", ids[1], 2)
    assert short is not None and [e.id for e in short.events] == ids[2:4]
    await asyncio.sleep(0)
    assert read_ahead.take("run", ids[1], 100) is None  # a later turn: to the file


async def test_a_full_page_does_not_answer_a_read_for_more(db_path: Path) -> None:
    async with EventLog.open(db_path) as log:
        await log.append_many("run", [("x", i) for i in range(PAGE_ROWS + 10)])
    conn = connect(db_path, durability="process", writer=False, busy_timeout=5.0)
    try:
        read_ahead = ReadAhead(read_page)
        page = read_ahead.read(conn, "run", 0)
    finally:
        conn.close()
    assert len(page.events) == PAGE_ROWS
    read_ahead.offer({"run": (0, page)})
    assert read_ahead.take("run", 0, PAGE_ROWS + 1) is None  # it may not hold them all
    assert read_ahead.take("run", 0, PAGE_ROWS) is page


def test_only_recently_read_runs_are_followed() -> None:
    read_ahead = ReadAhead(read_page)
    read_ahead.follow("old")
    assert read_ahead.follows("old")
    for i in range(FOLLOWED):
        read_ahead.follow(f"run-{i}")
    assert not read_ahead.follows("old")
    assert read_ahead.follows(f"run-{FOLLOWED - 1}")


async def test_a_subscriber_here_gets_every_event_another_process_writes(open_log, db_path: Path, helper_script) -> None:
    """End to end with the read-ahead on (the run is followed once the subscriber has read it):
    nothing another process writes is lost or reordered on the way."""
    log = await open_log()
    first = await log.append("run", "x", -1)
    count = 300
    received: list[int] = []

    async def subscribe() -> None:
        async for item in log.subscribe("run", after=first, heartbeat=None):
            received.append(item.data["n"])
            if len(received) == count:
                return

    reader = asyncio.create_task(subscribe())
    await asyncio.sleep(0.1)  # subscribed, and the run is followed
    proc = await asyncio.create_subprocess_exec(
        *helper_script("append_events"), str(db_path), "run", str(count), "0.002",
        stdout=subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    await asyncio.wait_for(reader, 30)
    assert received == list(range(count))
