"""Producer kill -9 with group commit in flight: a child process appends from many tasks (so
batches of several requests are committing) and is killed with SIGKILL at random moments, cycle
after cycle, on the same file (or PostgreSQL database). Every write it acknowledged must
survive, intact, in order, exactly once; a file must pass ``PRAGMA integrity_check``; the runs'
bookkeeping must match their rows; idempotency keys must make a retry of the interrupted request
safe."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

from eventlog import EventLog
from tests.peer import peer_query
from tests.torture.figures import Figures

pytestmark = pytest.mark.backends

TASKS = 16


def parse(path: Path) -> list[dict]:
    lines = []
    for raw in path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            pass  # the line being written when the kill came
    return lines


def wait_for_ready(out: Path, proc: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if out.exists() and '"ready"' in out.read_text():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


async def check_log(db: Path | str) -> None:
    """Raw SQL checks on the log, before any eventlog code touches it again."""
    if isinstance(db, Path):
        assert await peer_query(db, "PRAGMA integrity_check") == [("ok",)]
    size = "length(CAST(data AS BLOB))" if isinstance(db, Path) else "octet_length(data)"
    rows = await peer_query(
        db,
        "SELECT r.run_id, r.event_count, r.total_bytes, r.last_id, r.end_id, "
        "  (SELECT count(*) FROM events e WHERE e.run_id = r.run_id AND e.event != 'end'), "
        f"  (SELECT coalesce(sum({size}), 0) FROM events e "
        "     WHERE e.run_id = r.run_id AND e.event != 'end'), "
        "  (SELECT max(id) FROM events e WHERE e.run_id = r.run_id), "
        "  (SELECT id FROM events e WHERE e.run_id = r.run_id AND e.event = 'end') "
        "FROM runs r",
    )
    for run_id, count, size_, last_id, end_id, real_count, real_size, real_last, real_end in rows:
        assert (count, size_, last_id, end_id) == (real_count, real_size, real_last or 0, real_end), run_id
    assert await peer_query(db, "SELECT count(*) FROM events WHERE run_id NOT IN (SELECT run_id FROM runs)") == [(0,)]
    # Nothing after an end marker.
    late = "SELECT count(*) FROM events e JOIN runs r USING (run_id) WHERE r.end_id IS NOT NULL AND e.id > r.end_id"
    assert await peer_query(db, late) == [(0,)]


async def verify_cycle(db: Path | str, cycle: int, lines: list[dict], floor: int, figures: Figures) -> int:
    """Check the acknowledged writes of one cycle, counting losses and duplicates into
    ``figures``; returns the newest id in the file."""
    await check_log(db)
    acked = [line for line in lines if "ids" in line]
    ends = [line for line in lines if "end" in line]
    figures.acknowledged += sum(len(line["ids"]) for line in acked) + len(ends)
    async with EventLog.open(db) as log:
        by_run: dict[str, list] = {}
        for run in {line["run"] for line in lines if "run" in line}:
            by_run[run] = await log.read(run, limit=10_000)
        stored = {e.id: e for events in by_run.values() for e in events}
        figures.tally([eid for line in acked for eid in line["ids"]] + [line["end"] for line in ends],
                      [e.id for events in by_run.values() for e in events])

        for line in acked:
            assert line["ids"], line
            for k, eid in enumerate(line["ids"]):
                event = stored.get(eid)
                if event is None:
                    continue  # counted as lost above
                assert event.run_id == line["run"]
                assert (event.data["t"], event.data["i"], event.data["k"]) == (line["t"], line["i"], k)
        for line in ends:
            info = await log.run(line["run"])
            assert info is not None and info.end_id == line["end"] and info.end_reason == line["reason"]
            assert stored[line["end"]].event == "end"

        for run, events in by_run.items():
            ids = [e.id for e in events]
            assert ids == sorted(ids), f"ids of {run} not increasing"
            assert all(eid > floor for eid in ids), f"cycle {cycle} reused an id at or below {floor}"
            seen: dict[int, list[tuple[int, int]]] = defaultdict(list)
            for e in events:
                if e.event != "end":
                    seen[e.data["t"]].append((e.data["i"], e.data["k"]))
            for t, steps in seen.items():
                # Each task's writes appear once each, in the order it made them, with no holes
                # (a task makes its next write only after the previous one was acknowledged).
                figures.duplicated += len(steps) - len(set(steps))
                assert steps == sorted(steps), f"{run}: task {t} has reordering"
                batches = sorted({i for i, _ in steps})
                assert batches == list(range(batches[0], batches[0] + len(batches))), f"{run}: task {t} has a hole"

        # The interrupted request of each keyed task, retried with its key, is written once.
        intents = {}
        for line in lines:
            if "intent" in line:
                intents[(line["run"], line["t"])] = line
        for (run, t), intent in intents.items():
            figures.operations += 1
            retried = await log.append_many(run, [tuple(e) for e in intent["events"]], idempotency_key=intent["intent"])
            done = [line for line in acked if line.get("key") == intent["intent"] and line["run"] == run]
            if done:
                assert retried == done[0]["ids"]
            events = await log.read(run, limit=10_000)
            batches = [e.data["i"] for e in events if e.data["k"] == 0]
            figures.duplicated += len(batches) - len(set(batches))
            assert sorted(set(batches)) == list(range(len(set(batches)))), f"{run}: a batch is missing"
        newest = max([floor, *(e.id for events in by_run.values() for e in events)])
    await check_log(db)
    figures.check()
    return newest


def test_producer_kill9_group_commit(database: Path | str, tmp_path: Path, helper_script, scale: int, figures: Figures, rng: random.Random) -> None:
    """``10 x scale`` kill -9s of a producer of 16 concurrent tasks; every fifth during start-up,
    every fourth with ``durability="power"``."""
    db = database
    cycles = 10 * scale
    floor = 0
    killed_early = 0
    for cycle in range(cycles):
        out, err = tmp_path / f"out-{cycle}.jsonl", tmp_path / f"err-{cycle}.txt"
        durability = "power" if cycle % 4 == 3 else "process"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(
                [*helper_script("crash_writer"), str(db), str(cycle), str(TASKS), durability],
                stdout=stdout,
                stderr=stderr,
            )
        try:
            if cycle % 5 == 4:
                # Now and then, a kill during start-up (opening, migrating, the first writes).
                time.sleep(rng.uniform(0.0, 0.4))
            else:
                assert wait_for_ready(out, proc, time.monotonic() + 30), err.read_text()
                time.sleep(rng.uniform(0.05, 0.5))
            assert proc.poll() is None, f"the writer died on its own: {err.read_text()}"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        figures.faults += 1
        assert proc.returncode == -signal.SIGKILL
        lines = parse(out)
        figures.operations += sum(1 for line in lines if "ids" in line or "end" in line)
        if not any("ids" in line for line in lines):
            killed_early += 1
        assert "database is locked" not in err.read_text()
        floor = asyncio.run(verify_cycle(db, cycle, lines, floor, figures))
    figures.note(f"{killed_early} of {cycles} kills came before the first acknowledgement")
    assert killed_early < cycles, "no cycle got as far as acknowledging a write"
