"""Child process of the multi-process tests: one writer of a shared run.

Usage: mp_writer.py DB RUN WRITER TASKS EVENTS_PER_TASK START_AT

Opens the log, waits until the wall clock reaches START_AT (so that the writers overlap), then
each task appends EVENTS_PER_TASK events numbered 0, 1, ... (in batches of 1-3) with data
{"w": WRITER, "t": task, "seq": n}. Prints {"acked": count} at the end; exits non-zero on error.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from eventlog import EventLog


async def main() -> None:
    path, run, writer = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tasks, per_task, start_at = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    log = await EventLog.open(path)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    rng = random.Random(writer)

    async def produce(t: int) -> int:
        seq = 0
        while seq < per_task:
            size = min(rng.randint(1, 3), per_task - seq)
            await log.append_many(run, [("updates", {"w": writer, "t": t, "seq": seq + k}) for k in range(size)])
            seq += size
            if rng.random() < 0.2:
                await asyncio.sleep(0)
        return seq

    acked = sum(await asyncio.gather(*(produce(t) for t in range(tasks))))
    await log.close()
    print(json.dumps({"acked": acked}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
