"""Several processes on one file: concurrent writers, a live reader, cross-process wake-ups."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from collections import defaultdict
from contextlib import aclosing
from pathlib import Path

import pytest

from eventlog import End, Event, EventLog, Heartbeat
from eventlog.storage.migrations import load_migrations

pytestmark = pytest.mark.backends


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def test_writers_in_several_processes_and_a_live_reader(open_log, database: Path | str, helper_script) -> None:
    writers, tasks, per_task = 3, 2, 250
    log = await open_log(poll_interval=30)  # wake-ups from the other processes come from the file watch
    await log.append("shared", "metadata", {"w": -1, "t": 0, "seq": 0})  # the run exists: the reader seeds a tail

    received: list[Event] = []
    heartbeats = 0
    ended: list[End] = []

    async def read() -> None:
        nonlocal heartbeats
        async with aclosing(log.subscribe("shared", after=None, heartbeat=1.0)) as sub:
            async for item in sub:
                if isinstance(item, Event):
                    received.append(item)
                elif isinstance(item, Heartbeat):
                    heartbeats += 1
                elif isinstance(item, End):
                    ended.append(item)

    reader = asyncio.create_task(read())
    start_at = time.time() + 1.0
    procs = [
        await spawn(*helper_script("mp_writer"), str(database), "shared", str(w), str(tasks), str(per_task), str(start_at))
        for w in range(writers)
    ]

    # This process writes too, through its own writer, while the others do.
    async def local_writer() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        for seq in range(per_task):
            await log.append("shared", "updates", {"w": writers, "t": 0, "seq": seq})
            if seq % 10 == 0:
                await asyncio.sleep(0.001)

    await asyncio.wait_for(local_writer(), 60)
    results = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err.decode()
        assert b"locked" not in err, err.decode()
        assert json.loads(out.decode().splitlines()[-1]) == {"acked": tasks * per_task}
    end_id = await log.end("shared")
    await asyncio.wait_for(reader, 30)

    assert ended == [End(end_id, "success")]
    ids = [e.id for e in received]
    assert ids == sorted(set(ids)), "the reader saw ids out of order or twice"
    sequences: dict[tuple[int, int], list[int]] = defaultdict(list)
    for e in received[1:]:
        sequences[(e.data["w"], e.data["t"])].append(e.data["seq"])
    expected_keys = {(w, t) for w in range(writers) for t in range(tasks)} | {(writers, 0)}
    assert set(sequences) == expected_keys
    for key, seqs in sequences.items():
        assert seqs == list(range(per_task)), f"writer/task {key}: gap or reordering"
    # What the reader saw is exactly what the file holds.
    stored = await log.read("shared", limit=10_000)
    assert [e.id for e in stored] == [*ids, end_id]


async def test_cross_process_wakeup(open_log, database: Path | str, helper_script) -> None:
    """poll_interval=30: only the file watch can deliver another process' commit quickly."""
    log = await open_log(poll_interval=30)
    first = await log.append("run", "updates", {"n": -1})
    async with aclosing(log.subscribe("run", after=None, heartbeat=None)) as sub:
        assert (await anext(sub)).id == first  # at the live edge now
        proc = await spawn(*helper_script("append_events"), str(database), "run", "3", "0.3")
        try:
            for n in range(3):
                item = await asyncio.wait_for(anext(sub), 10)
                received_at = time.time()
                assert isinstance(item, Event) and item.data == {"n": n}
                line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))  # type: ignore[union-attr]
                assert line["id"] == item.id
                assert received_at - line["at"] < 5.0, "the wake-up took the slow path"
        finally:
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()


async def test_cross_process_wakeup_for_a_run_created_elsewhere(open_log, database: Path | str, helper_script) -> None:
    log = await open_log(poll_interval=30)
    await log.append("unrelated", "x", 0)  # the file exists
    async with aclosing(log.subscribe("elsewhere", after=None, heartbeat=None)) as sub:
        pending = asyncio.ensure_future(anext(sub))
        await asyncio.sleep(0.2)
        assert not pending.done()
        proc = await spawn(*helper_script("append_events"), str(database), "elsewhere", "1", "0")
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        line = json.loads(out.decode().splitlines()[0])
        item = await asyncio.wait_for(pending, 5)
        assert isinstance(item, Event) and item.id == line["id"]


async def test_end_from_another_process_reaches_the_subscriber(open_log, database: Path | str) -> None:
    log = await open_log(poll_interval=30)
    await log.append("run", "x", 0)
    async with aclosing(log.subscribe("run", after=None, heartbeat=None)) as sub:
        await anext(sub)
        code = (
            "import asyncio, sys\n"
            "from eventlog import EventLog\n"
            "async def main():\n"
            "    async with EventLog.open(sys.argv[1]) as log:\n"
            "        await log.append('run', 'x', 1)\n"
            "        print(await log.end('run', reason='remote'))\n"
            "asyncio.run(main())\n"
        )
        proc = await spawn(sys.executable, "-c", code, str(database))
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        end_id = int(out.decode())
        event = await asyncio.wait_for(anext(sub), 5)
        assert isinstance(event, Event) and event.data == 1
        assert await asyncio.wait_for(anext(sub), 5) == End(end_id, "remote")


async def test_processes_opening_a_new_file_at_once(tmp_path: Path, helper_script) -> None:
    db = tmp_path / "fresh.db"
    procs = [await spawn(*helper_script("append_events"), str(db), f"p{n}", "2", "0") for n in range(4)]
    outputs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err.decode()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == load_migrations()[-1].version
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 8
    conn.close()
    async with EventLog.open(db) as log:
        for n, (out, _) in enumerate(outputs):
            acked = [json.loads(line)["id"] for line in out.decode().splitlines() if '"id"' in line]
            assert [e.id for e in await log.read(f"p{n}")] == acked
