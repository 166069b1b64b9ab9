"""Ids are commit-ordered within a run, on every backend: a reader resuming with ``id > N``
never skips a row that commits late.

Many appenders (child processes, each with its own connections and group commit, and logs of
this process) write the same runs at once while readers poll them, each resuming from the
newest id it has seen with ``read(after=cursor)``, a small random page at a time, and
subscribers follow them live. If a transaction could commit an id below one already visible,
some reader would have passed it: each reader's ids must be exactly the run's stored ids.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from contextlib import aclosing
from pathlib import Path

import pytest

from eventlog import End, Event, EventLog

pytestmark = [pytest.mark.backends, pytest.mark.timeout(300)]

RUNS = ("hot-a", "hot-b")
PROCESSES, TASKS, PER_TASK = 3, 4, 120
LOCAL_LOGS = 3


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def poll(log: EventLog, run_id: str, done: asyncio.Event, seed: int) -> list[int]:
    """Resume with ``after=cursor`` until ``done`` and the run is read to its end."""
    rng = random.Random(seed)
    seen: list[int] = []
    while True:
        finished = done.is_set()
        page = await log.read(run_id, after=seen[-1] if seen else 0, limit=rng.randint(1, 7))
        seen += [event.id for event in page]
        if finished and not page:
            return seen
        if rng.random() < 0.3:
            await asyncio.sleep(0)


async def follow(log: EventLog, run_id: str) -> list[int]:
    seen: list[int] = []
    async with aclosing(log.subscribe(run_id, after=0, heartbeat=0.5)) as items:
        async for item in items:
            if isinstance(item, Event):
                seen.append(item.id)
            elif isinstance(item, End):
                return seen + [item.id]
    return seen


async def test_no_reader_ever_skips_an_id(open_log, database: Path | str, helper_script) -> None:
    logs = [await open_log() for _ in range(LOCAL_LOGS)]
    for run_id in RUNS:
        await logs[0].create_run(run_id)
    done = asyncio.Event()
    pollers = [
        asyncio.create_task(poll(log, run_id, done, seed))
        for seed, (log, run_id) in enumerate((log, run_id) for log in logs for run_id in RUNS)
    ]
    followers = [asyncio.create_task(follow(log, run_id)) for log in logs for run_id in RUNS]
    start_at = time.time() + 1.0
    procs = [
        await spawn(*helper_script("mp_writer"), str(database), RUNS[w % len(RUNS)], str(w), str(TASKS), str(PER_TASK), str(start_at))
        for w in range(PROCESSES)
    ]

    async def local(log: EventLog, writer: int) -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        rng = random.Random(writer)
        for seq in range(PER_TASK):
            await asyncio.gather(*(
                log.append(run_id, "updates", {"w": writer, "seq": seq}) for run_id in RUNS if rng.random() < 0.8
            ))

    await asyncio.wait_for(asyncio.gather(*(local(log, 100 + i) for i, log in enumerate(logs))), 120)
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        assert json.loads(out.decode().splitlines()[-1]) == {"acked": TASKS * PER_TASK}
    for run_id in RUNS:
        await logs[0].end(run_id)
    done.set()
    polled = await asyncio.wait_for(asyncio.gather(*pollers), 60)
    followed = await asyncio.wait_for(asyncio.gather(*followers), 60)

    stored = {run_id: [e.id for e in await logs[0].read(run_id, limit=10_000)] for run_id in RUNS}
    for run_id in RUNS:
        assert len(stored[run_id]) > PER_TASK * LOCAL_LOGS // 2
        assert stored[run_id] == sorted(set(stored[run_id]))
    for seen, (log, run_id) in zip(polled, ((log, run_id) for log in logs for run_id in RUNS)):
        assert seen == stored[run_id], f"a poller of {run_id} skipped ids"
    for seen, run_id in zip(followed, [run_id for _ in logs for run_id in RUNS]):
        assert seen == stored[run_id], f"a subscriber of {run_id} skipped ids"
