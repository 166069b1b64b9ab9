"""Child process of the crash test: appends from many concurrent tasks until it is killed.

Usage: crash_writer.py DB CYCLE TASKS DURABILITY

Prints one JSON line per acknowledged write, flushed before the next one, *after* the call
returned: a line on stdout is a promise that the write is durable. Task kinds (task % 3):
  0  single appends to its own run, ending the run every 40 events and starting the next one
  1  single appends to a run shared by all kind-1 tasks of the cycle
  2  append_many batches of 1-4 events with an idempotency key per batch
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from eventlog import EventLog


def report(line: dict) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def task(log: EventLog, cycle: int, t: int, rng: random.Random) -> None:
    kind = t % 3
    generation = 0
    i = 0
    while True:
        if kind == 0:
            run = f"c{cycle}-t{t}-g{generation}"
            eid = await log.append(run, "updates", {"t": t, "i": i, "k": 0})
            report({"run": run, "t": t, "i": i, "ids": [eid]})
            if i % 40 == 39:
                end_id = await log.end(run, reason=f"done-{i}")
                report({"run": run, "t": t, "end": end_id, "reason": f"done-{i}"})
                generation += 1
        elif kind == 1:
            run = f"c{cycle}-shared"
            eid = await log.append(run, "values", {"t": t, "i": i, "k": 0})
            report({"run": run, "t": t, "i": i, "ids": [eid]})
        else:
            run = f"c{cycle}-t{t}-keyed"
            size = 1 + (i * 7 + t) % 4  # a function of (t, i): a retry can rebuild the batch
            events = [("custom", {"t": t, "i": i, "k": k, "pad": "x" * rng.randint(0, 300)}) for k in range(size)]
            key = f"t{t}-i{i}"
            report({"run": run, "t": t, "i": i, "intent": key, "events": events})
            ids = await log.append_many(run, events, idempotency_key=key)
            report({"run": run, "t": t, "i": i, "ids": ids, "key": key})
        i += 1
        if rng.random() < 0.1:
            await asyncio.sleep(rng.random() * 0.003)


async def main() -> None:
    path, cycle, tasks, durability = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    log = await EventLog.open(path, durability=durability)  # type: ignore[arg-type]
    report({"ready": True})
    rng = random.Random(cycle)
    await asyncio.gather(*(task(log, cycle, t, random.Random(rng.random())) for t in range(tasks)))


if __name__ == "__main__":
    asyncio.run(main())
