"""Child process for the cross-process wake-up benchmark (run by ``benchmarks/append.py``).

    python benchmarks/_producer.py eventlog PATH RUN_ID COUNT INTERVAL
    python benchmarks/_producer.py pipe - - COUNT INTERVAL

``eventlog``: opens the log at PATH and appends COUNT events to RUN_ID, one every INTERVAL
seconds, each carrying ``{"i": n, "t": time.time()}`` taken just before the append starts; then
ends the run. ``pipe``: writes the same timestamps as lines on stdout (the floor for any
cross-process hand-off). Prints ``ready`` on stdout once it is set up (eventlog mode).
"""

from __future__ import annotations

import asyncio
import sys
import time


async def produce_eventlog(path: str, run_id: str, count: int, interval: float) -> None:
    from eventlog import EventLog

    async with EventLog.open(path, cross_process=False) as log:
        print("ready", flush=True)
        for i in range(count):
            await log.append(run_id, "updates", {"i": i, "t": time.time()})
            await asyncio.sleep(interval)
        await log.end(run_id, reason="success")


async def produce_pipe(count: int, interval: float) -> None:
    out = sys.stdout
    for i in range(count):
        out.write(f"{i} {time.time()!r}\n")
        out.flush()
        await asyncio.sleep(interval)


def main() -> None:
    mode, path, run_id, count, interval = sys.argv[1:6]
    if mode == "eventlog":
        asyncio.run(produce_eventlog(path, run_id, int(count), float(interval)))
    elif mode == "pipe":
        asyncio.run(produce_pipe(int(count), float(interval)))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
