"""Child process: open the log, append COUNT events to RUN, INTERVAL seconds apart.

Usage: append_events.py DB RUN COUNT INTERVAL

Prints {"id": ..., "at": time.time()} after each acknowledged append, then {"done": true}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from eventlog import EventLog


async def main() -> None:
    path, run, count, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    async with EventLog.open(path) as log:
        for n in range(count):
            if n:
                await asyncio.sleep(interval)
            eid = await log.append(run, "updates", {"n": n})
            print(json.dumps({"id": eid, "at": time.time()}), flush=True)
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
