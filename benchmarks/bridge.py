"""Stream bridges compared: eventlog's durable ``SQLiteStreamBridge`` vs the in-memory bridge.

    .venv/bin/python benchmarks/bridge.py            # one to two minutes
    .venv/bin/python benchmarks/bridge.py --quick    # a few seconds, rough figures

Both bridges run in this process, one after the other, on the same workload:

- **publish throughput**: ``--runs`` concurrent runs (100), each with its own publisher task
  awaiting ``publish`` back to back (``--events`` per run), then ``publish_end`` (which returns
  once every event of the run is committed); events per second of wall time, best of
  ``--trials``. No subscribers: this is the producer's cost. The target is SQLite at least 30% of
  in-memory.
- **publish-to-subscriber latency**: the same number of runs, each with one live subscriber and a
  publisher that publishes on a fixed schedule, one event every ``--interval`` seconds; the time
  from the event's scheduled instant (a publisher still busy with its previous publish is late,
  and that counts) to the subscriber receiving it, p50 / p99. Plus one idle run, for the floor.

The payload is a LangGraph ``messages`` chunk of about 230 bytes. Two SQLite configurations run:
``SQLite durable-ack`` is the bridge's default, ``durable_publish=True`` (each publish returns
once its event is committed); ``SQLite`` is write-behind, ``durable_publish=False`` (a publish is
acknowledged once queued for the next group commit, committed a millisecond or so later;
``publish_end``, ``flush`` and ``close`` wait for the commit, and a write that fails is raised by
the run's next publish, its ``publish_end`` and ``flush``). Both use
``durability="process"`` (WAL + ``synchronous=NORMAL``: a commit survives a crash of the process)
and retention of 256 events per run in the background, on a fresh file in a temporary directory
(``--dir`` to choose the disk).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines.memory_bridge import MemoryStreamBridge  # noqa: E402

from eventlog.compat.deerflow import END_SENTINEL, HEARTBEAT_SENTINEL, SQLiteStreamBridge, StreamGap  # noqa: E402

TARGET = 0.30
WIDTH = 18
TOKEN = " the quick brown"


def payload(run: int, i: int, sent: float = 0.0) -> list[Any]:
    """A LangGraph ``messages`` item: (message chunk, metadata)."""
    return [
        {"content": TOKEN, "type": "AIMessageChunk", "id": f"lc_run--{run:08d}-0000-4000-8000-000000000000",
         "tool_call_chunks": [], "seq": i, "sent": sent},
        {"langgraph_node": "agent", "langgraph_step": 3, "thread_id": f"thread-{run}"},
    ]


PAYLOAD_BYTES = len(json.dumps(payload(12, 345, time.perf_counter()), separators=(",", ":")))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


Factory = Callable[[], Awaitable[Any]]


class Bridges:
    """Opens a fresh bridge of each kind for every measurement."""

    def __init__(self, directory: str | None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="eventlog-bridge-bench-", dir=directory)
        self._n = 0

    async def memory(self) -> Any:
        return MemoryStreamBridge(queue_maxsize=256)

    async def sqlite(self) -> Any:
        """Write-behind (``durable_publish=False``): a publish is acknowledged once queued for
        the next group commit."""
        return await self._sqlite(durable_publish=False)

    async def sqlite_durable(self) -> Any:
        """The default, ``durable_publish=True``: a publish returns only once its event is
        committed."""
        return await self._sqlite(durable_publish=True)

    async def _sqlite(self, **options: Any) -> Any:
        self._n += 1
        path = Path(self._dir.name) / f"{self._n:02d}.db"
        return await SQLiteStreamBridge(path, max_events_per_run=256, **options).open()

    def cleanup(self) -> None:
        self._dir.cleanup()


async def publish_throughput(factory: Factory, runs: int, events: int) -> tuple[float, float]:
    """(events per second of wall time, CPU seconds per event of the whole process)."""
    bridge = await factory()
    try:

        async def publisher(run: int) -> None:
            run_id = f"run-{run}"
            for i in range(events):
                await bridge.publish(run_id, "messages", payload(run, i))
            await bridge.publish_end(run_id)

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(publisher(run) for run in range(runs)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        await bridge.close()
    return runs * events / elapsed, cpu / (runs * events)


async def latency(factory: Factory, runs: int, events: int, interval: float) -> list[float]:
    bridge = await factory()
    samples: list[float] = []
    gaps = 0
    try:

        async def subscriber(run_id: str) -> None:
            nonlocal gaps
            # Gateways' default heartbeat: an idle subscriber costs (next to) nothing.
            async for item in bridge.subscribe(run_id, heartbeat_interval=15.0):
                now = time.perf_counter()
                if item is END_SENTINEL:
                    return
                if item is HEARTBEAT_SENTINEL:
                    continue
                if isinstance(item, StreamGap):
                    gaps += 1
                    return
                samples.append(now - item.data[0]["sent"])

        async def publisher(run: int, start: float) -> None:
            run_id = f"run-{run}"
            loop = asyncio.get_running_loop()
            start += interval * (run / runs)  # spread the runs' publish instants
            for i in range(events):
                # On a fixed schedule, so every bridge is offered the same load whatever its
                # publish costs, and latency counts from the scheduled instant: a publisher
                # that is late because its previous publish took long is charged for it.
                due = start + i * interval
                await asyncio.sleep(max(0.0, due - loop.time()))
                sent = time.perf_counter() - max(0.0, loop.time() - due)
                await bridge.publish(run_id, "messages", payload(run, i, sent))
            await bridge.publish_end(run_id)

        subscribers = [asyncio.create_task(subscriber(f"run-{run}")) for run in range(runs)]
        await asyncio.sleep(0.5)  # every subscriber is waiting for its run before the first publish
        start = asyncio.get_running_loop().time()
        await asyncio.gather(*(publisher(run, start) for run in range(runs)))
        await asyncio.gather(*subscribers)
    finally:
        await bridge.close()
    if gaps:
        print(f"  (warning: {gaps} subscribers fell behind and got a gap)")
    return samples


async def measure_throughput(bridges: Bridges, runs: int, events: int, trials: int) -> dict[str, tuple[float, float]]:
    """Best of ``trials`` interleaved trials per bridge (so that a noisy neighbour hurts every
    contender alike): {name: (events/s, CPU seconds per event)}."""
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in contenders(bridges)}
    for _ in range(trials):
        for name, factory in contenders(bridges):
            results[name].append(await publish_throughput(factory, runs, events))
    return {name: max(trials_) for name, trials_ in results.items()}


def contenders(bridges: Bridges) -> tuple[tuple[str, Factory], ...]:
    return (
        ("in-memory", bridges.memory),
        ("SQLite", bridges.sqlite),
        ("SQLite durable-ack", bridges.sqlite_durable),
    )


def describe_disk(directory: str | None) -> str:
    path = Path(directory or tempfile.gettempdir()).resolve()
    try:
        with open("/proc/mounts") as mounts:
            best = ("", "?")
            for line in mounts:
                device, mount, fstype, *_ = line.split()
                if str(path).startswith(mount) and len(mount) > len(best[0]):
                    best = (mount, f"{fstype} on {device}")
            return f"{path} ({best[1]})"
    except OSError:
        return str(path)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, rough figures")
    parser.add_argument("--runs", type=int, default=100, help="concurrent runs (default 100)")
    parser.add_argument("--events", type=int, default=None, help="events per run for throughput")
    parser.add_argument("--trials", type=int, default=None, help="throughput trials per bridge (best kept)")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between a run's publishes (latency)")
    parser.add_argument("--dir", default=None, help="directory for the SQLite files (default: the temp dir)")
    args = parser.parse_args()
    events = args.events or (100 if args.quick else 1000)
    trials = args.trials or (1 if args.quick else 3)
    latency_events = 25 if args.quick else 100

    print(f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, "
          f"{platform.system()} {platform.machine()}")
    print(f"SQLite files in {describe_disk(args.dir)}; payload {PAYLOAD_BYTES} bytes of JSON; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    bridges = Bridges(args.dir)
    try:
        print(f"\npublish throughput: {args.runs} concurrent runs x {events} events, one publisher task "
              f"per run; best of {trials} trials, interleaved")
        rates: dict[str, float] = {}
        for name, (rate, cpu) in (await measure_throughput(bridges, args.runs, events, trials)).items():
            rates[name] = rate
            print(f"  {name:<{WIDTH}} {rate:>10,.0f} events/s   {cpu * 1e6:5.1f} us CPU/event")
        for name in rates:
            if name != "in-memory":
                ratio = rates[name] / rates["in-memory"]
                verdict = "meets" if ratio >= TARGET else "misses"
                print(f"  {name} / in-memory = {ratio:.1%}   (target >= {TARGET:.0%}: {verdict} it)")

        for label, runs, count in (
            (f"under load: {args.runs} runs, one publish per run every {args.interval * 1000:.0f} ms "
             f"(~{args.runs / args.interval:,.0f} events/s), one subscriber per run", args.runs, latency_events),
            (f"idle: 1 run, one publish every {args.interval * 1000:.0f} ms", 1, 4 * latency_events),
        ):
            print(f"\npublish-to-subscriber latency, {label}")
            for name, factory in contenders(bridges):
                samples = await latency(factory, runs, count, args.interval)
                p50, p99 = percentile(samples, 50) * 1e3, percentile(samples, 99) * 1e3
                print(f"  {name:<{WIDTH}} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   "
                      f"max {max(samples) * 1e3:7.3f} ms   (n={len(samples)})")
    finally:
        bridges.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
