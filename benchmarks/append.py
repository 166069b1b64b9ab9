"""Append throughput and wake-up latency of eventlog, each next to a baseline measured in the same run.

    .venv/bin/python benchmarks/append.py            # about a minute
    .venv/bin/python benchmarks/append.py --quick    # a few seconds, rough figures

Every measurement uses a fresh SQLite file (WAL, ``synchronous=NORMAL``: eventlog's default
``process`` durability) with eventlog's own schema, and rows of the same shape: a run id, the
event name ``updates`` and a small JSON payload (about 70 bytes), encoded with ``json.dumps`` in
the timed loop by every contender. See benchmarks/README.md for what each line compares.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
import redis.asyncio

from eventlog import EventLog, Event, End
from eventlog.storage.migrations import migrate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from baselines.memory_bridge import MemoryStreamBridge  # noqa: E402
from redis_server import RedisMissing, redis_server  # noqa: E402

INSERT = "INSERT INTO events (run_id, event, data, created_at) VALUES (?, ?, ?, ?)"
TEXT = "the quick brown fox jumps over the lazy dog"


def payload(i: int) -> dict:
    return {"step": i, "node": "agent", "text": TEXT}


def encode(value: object) -> str:
    # What eventlog's validation does to every event's data.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


PAYLOAD_BYTES = len(encode(payload(12345)))


# --- plumbing ----------------------------------------------------------------------------------


class Files:
    """Fresh database paths in one temporary directory, removed at exit."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="eventlog-bench-")
        self._n = 0

    def new(self, name: str) -> Path:
        self._n += 1
        return Path(self._dir.name) / f"{self._n:02d}-{name}.db"

    def cleanup(self) -> None:
        self._dir.cleanup()


def raw_connection(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection on a file carrying eventlog's schema, WAL + NORMAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    migrate(conn)
    return conn


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def run_ids(producers: int, shared_runs: int) -> list[str]:
    """The run each producer appends to: its own, or one of ``shared_runs`` shared ones."""
    if shared_runs:
        return [f"run-{k % shared_runs}" for k in range(producers)]
    return [f"run-{k}" for k in range(producers)]


@dataclass(frozen=True)
class Rate:
    per_second: float
    cpu_per_row: float
    """Process CPU seconds (all threads) per row written."""


def median_rate(rounds: list[Rate]) -> Rate:
    """The round with the median rate (its own CPU figure with it)."""
    ordered = sorted(rounds, key=lambda r: r.per_second)
    return ordered[(len(ordered) - 1) // 2]


@dataclass
class Results:
    rates: dict[str, Rate] = field(default_factory=dict)
    rounds: dict[str, list[Rate]] = field(default_factory=dict)
    latencies: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # p50, p99 seconds, n
    cpu: dict[str, tuple[float, float]] = field(default_factory=dict)  # cpu seconds, wall seconds


# --- throughput --------------------------------------------------------------------------------


def bench_executemany(path: Path, seconds: float, warmup: float, producers: int, shared_runs: int) -> Rate:
    """Plain sqlite3, one thread: executemany of 100 rows, one commit per batch."""
    conn = raw_connection(path)
    runs = run_ids(producers, shared_runs)
    n = 0
    i = 0

    def batch() -> None:
        nonlocal i
        now = time.time()
        rows = []
        for _ in range(100):
            rows.append((runs[i % len(runs)], "updates", encode(payload(i)), now))
            i += 1
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")

    end_warmup = time.perf_counter() + warmup
    while time.perf_counter() < end_warmup:
        batch()
    start, cpu = time.perf_counter(), time.process_time()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline:
        batch()
        n += 100
    cpu = time.process_time() - cpu
    conn.close()
    return Rate(n / (now - start), cpu / n)


async def bench_aiosqlite_per_event(path: Path, seconds: float, warmup: float) -> Rate:
    """aiosqlite, one producer: await execute(INSERT) + await commit() for every event."""
    raw_connection(path).close()
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA synchronous = NORMAL")
        n = 0
        i = 0

        async def one() -> None:
            nonlocal i
            await db.execute(INSERT, ("run-0", "updates", encode(payload(i)), time.time()))
            await db.commit()
            i += 1

        end_warmup = time.perf_counter() + warmup
        while time.perf_counter() < end_warmup:
            await one()
        start, cpu = time.perf_counter(), time.process_time()
        deadline = start + seconds
        while (now := time.perf_counter()) < deadline:
            await one()
            n += 1
        cpu = time.process_time() - cpu
    return Rate(n / (now - start), cpu / n)


Append = Callable[[str, int], Awaitable[object]]


async def drive_producers(append: Append, seconds: float, warmup: float, producers: int, shared_runs: int) -> Rate:
    """``producers`` asyncio tasks, each awaiting ``append(run_id, i)`` in a loop; rows per
    second and process CPU per row over ``seconds`` after ``warmup``. One loop for every
    contender that takes concurrent producers, so they differ only in ``append``."""
    runs = run_ids(producers, shared_runs)
    done = 0
    stop = False

    async def producer(run_id: str) -> None:
        nonlocal done
        i = 0
        while not stop:
            await append(run_id, i)
            done += 1
            i += 1

    tasks = [asyncio.create_task(producer(run_id)) for run_id in runs]
    await asyncio.sleep(warmup)
    n0, t0, c0 = done, time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    n1, t1, c1 = done, time.perf_counter(), time.process_time()
    stop = True
    await asyncio.gather(*tasks)
    return Rate((n1 - n0) / (t1 - t0), (c1 - c0) / (n1 - n0))


async def bench_eventlog(path: Path, seconds: float, warmup: float, producers: int, shared_runs: int) -> Rate:
    """eventlog: each producer awaits its own durable append in a loop."""
    async with EventLog.open(path) as log:
        return await drive_producers(
            lambda run_id, i: log.append(run_id, "updates", payload(i)), seconds, warmup, producers, shared_runs)


async def bench_memory(seconds: float, warmup: float, producers: int, shared_runs: int) -> Rate:
    """The in-memory bounded log (benchmarks/baselines/memory_bridge.py), nothing durable."""
    bridge = MemoryStreamBridge()

    async def append(run_id: str, i: int) -> None:
        await bridge.publish(run_id, "updates", encode(payload(i)))
        # publish never suspends: without this one producer would hold the loop forever.
        await asyncio.sleep(0)

    try:
        return await drive_producers(append, seconds, warmup, producers, shared_runs)
    finally:
        await bridge.close()


async def bench_redis(url: str, seconds: float, warmup: float, producers: int, shared_runs: int) -> Rate:
    """Redis Streams: each producer awaits its own XADD (redis-py asyncio, no pipelining; the
    client pool opens one connection per concurrent producer). CPU is this process' only, not
    redis-server's."""
    client = redis.asyncio.Redis.from_url(url, max_connections=producers + 8)
    try:
        await client.flushall()
        return await drive_producers(
            lambda run_id, i: client.xadd(run_id, {"event": "updates", "data": encode(payload(i))}),
            seconds, warmup, producers, shared_runs)
    finally:
        await client.aclose()


# --- in-process wake-up latency ----------------------------------------------------------------


async def latency_asyncio_event(count: int) -> list[float]:
    """The floor: one task sets an asyncio.Event, another wakes up on it."""
    signal, received = asyncio.Event(), asyncio.Event()
    stamps: list[float] = []

    async def reader() -> None:
        while True:
            await signal.wait()
            signal.clear()
            stamps.append(time.perf_counter())
            received.set()

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    latencies = []
    for _ in range(count):
        received.clear()
        t0 = time.perf_counter()
        signal.set()
        await received.wait()
        latencies.append(stamps[-1] - t0)
    task.cancel()
    return latencies


async def latency_aiosqlite(path: Path, count: int) -> list[float]:
    """aiosqlite: commit one row, signal the reader, which queries it on its own connection."""
    raw_connection(path).close()
    async with aiosqlite.connect(path) as db, aiosqlite.connect(path) as rdb:
        await db.execute("PRAGMA synchronous = NORMAL")
        signal, received = asyncio.Event(), asyncio.Event()
        seen: dict[int, float] = {}

        async def reader() -> None:
            cursor = 0
            while True:
                await signal.wait()
                signal.clear()
                async with rdb.execute(
                    "SELECT id, run_id, event, data, created_at FROM events "
                    "WHERE run_id = ? AND id > ? ORDER BY id LIMIT 100",
                    ("lat", cursor),
                ) as cur:
                    rows = await cur.fetchall()
                now = time.perf_counter()
                for row in rows:
                    seen[row[0]] = now
                    cursor = row[0]
                received.set()

        task = asyncio.create_task(reader())
        latencies = []
        for i in range(count):
            received.clear()
            t0 = time.perf_counter()
            cur = await db.execute(INSERT, ("lat", "updates", encode(payload(i)), time.time()))
            await db.commit()
            signal.set()
            while cur.lastrowid not in seen:
                await received.wait()
                received.clear()
            latencies.append(seen[cur.lastrowid] - t0)
        task.cancel()
    return latencies


async def latency_eventlog(path: Path, count: int, cross_process: bool = True) -> tuple[list[float], list[float]]:
    """eventlog: append start -> a live subscriber (``log.subscribe``) has the event.
    Also returns append start -> append returned (the producer's durable-ack latency).
    ``cross_process=False`` turns off the watch for other processes' commits (which, as it
    stands, also fires for this process' own commits)."""
    async with EventLog.open(path, cross_process=cross_process) as log:
        first = await log.append("lat", "updates", payload(-1))
        seen: dict[int, float] = {}
        received = asyncio.Event()

        async def reader() -> None:
            async for item in log.subscribe("lat", after=first, heartbeat=None):
                if isinstance(item, Event):
                    seen[item.id] = time.perf_counter()
                    received.set()

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.05)  # at the live edge, waiting
        wake, ack = [], []
        for i in range(count):
            received.clear()
            t0 = time.perf_counter()
            eid = await log.append("lat", "updates", payload(i))
            ack.append(time.perf_counter() - t0)
            while eid not in seen:
                await received.wait()
                received.clear()
            wake.append(seen[eid] - t0)
        task.cancel()
    return wake, ack


# --- cross-process wake-up latency and CPU -----------------------------------------------------


def child(*args: str) -> list[str]:
    return [sys.executable, str(HERE / "_producer.py"), *args]


async def latency_pipe(count: int, interval: float) -> list[float]:
    """The floor for any cross-process hand-off: a child writes time.time() to a pipe."""
    proc = await asyncio.create_subprocess_exec(
        *child("pipe", "-", "-", str(count), str(interval)), stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    latencies = []
    while line := await proc.stdout.readline():
        now = time.time()
        latencies.append(now - float(line.split()[1]))
    await proc.wait()
    return latencies


async def latency_cross_process(path: Path, count: int, interval: float) -> tuple[list[float], float, float]:
    """A child process appends (stamping time.time() before each append); this process
    subscribes and records receive - send. Also returns this process' CPU and wall time while
    the stream ran."""
    async with EventLog.open(path) as log:
        proc = await asyncio.create_subprocess_exec(
            *child("eventlog", str(path), "xp", str(count), str(interval)), stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        await proc.stdout.readline()  # "ready": the child has the file open
        latencies = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        async for item in log.subscribe("xp", after=0, heartbeat=None):
            now = time.time()
            if isinstance(item, End):
                break
            if isinstance(item, Event):
                latencies.append(now - item.data["t"])
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        await proc.wait()
    return latencies, cpu, wall


async def idle_cpu(path: Path | None, seconds: float) -> tuple[float, float]:
    """CPU seconds this process spends while idle for ``seconds``: with nothing but the event
    loop (``path`` None), or holding an eventlog subscriber tailing a quiet run."""
    if path is None:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        return time.process_time() - cpu0, time.perf_counter() - wall0
    async with EventLog.open(path) as log:
        first = await log.append("idle", "updates", payload(0))
        tailing = asyncio.Event()

        async def reader() -> None:
            tailing.set()
            async for _ in log.subscribe("idle", after=first, heartbeat=None):
                pass

        task = asyncio.create_task(reader())
        await tailing.wait()
        await asyncio.sleep(0.2)  # the change feed and the subscriber are waiting
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        result = time.process_time() - cpu0, time.perf_counter() - wall0
        task.cancel()
    return result


# --- report ------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} us" if seconds < 0.01 else f"{seconds * 1e3:,.1f} ms"


def print_table(r: Results, args: argparse.Namespace) -> None:
    lines: list[tuple[str, str, str]] = []

    def row(name: str, value: str, note: str = "") -> None:
        lines.append((name, value, note))

    rate = {key: value.per_second for key, value in r.rates.items()}
    base, per_event = rate["executemany"], rate["aiosqlite"]
    layout = f"{args.shared_runs} shared runs" if args.shared_runs else "one run per producer"

    def detail(key: str, note: str = "") -> str:
        rounds = sorted(x.per_second for x in r.rounds[key])
        spread = f"rounds {rounds[0]:,.0f}-{rounds[-1]:,.0f}, " if len(rounds) > 1 else ""
        return f"{spread}CPU {r.rates[key].cpu_per_row * 1e6:.0f} us/row{note}"

    row(f"APPEND THROUGHPUT (rows/s, median of {args.rounds} interleaved rounds)", "", "")
    row("  baseline: sqlite3 executemany x100, 1 commit/batch", f"{base:,.0f}", detail("executemany", ", 1 thread"))
    row("  baseline: aiosqlite execute+commit per event", f"{per_event:,.0f}", detail("aiosqlite"))
    for n in args.producers:
        value = rate[f"eventlog@{n}"]
        row(f"  eventlog, {n} concurrent producer(s)", f"{value:,.0f}", detail(f"eventlog@{n}", f"; {value / base:.2f}x executemany"))
    for n in args.producers:
        row(f"  baseline: in-memory bounded log, {n} producer(s)", f"{rate[f'memory@{n}']:,.0f}", detail(f"memory@{n}"))
        if f"redis@{n}" in rate:
            row(f"  baseline: Redis XADD (AOF everysec), {n} producer(s)", f"{rate[f'redis@{n}']:,.0f}",
                detail(f"redis@{n}", f"; eventlog/redis {rate[f'eventlog@{n}'] / rate[f'redis@{n}']:.2f}x"))
    if 100 in args.producers:
        ratio = rate["eventlog@100"] / base
        row("  target: eventlog@100 / executemany >= 0.7", f"{ratio:.2f}", verdict(ratio >= 0.7))
        cpu = r.rates["eventlog@100"].cpu_per_row / r.rates["executemany"].cpu_per_row
        row("  target: eventlog@100 CPU/row / executemany's <= 2.0", f"{cpu:.2f}", verdict(cpu <= 2.0))
    if 1 in args.producers:
        ratio = rate["eventlog@1"] / per_event
        row("  target: eventlog@1 / aiosqlite per-event >= 2.0", f"{ratio:.2f}", verdict(ratio >= 2.0))

    lat = r.latencies
    row("IN-PROCESS WAKE-UP (append start -> reader has event)", "p50 / p99", "")
    for key, name in [
        ("asyncio.Event", "  baseline: bare asyncio.Event hand-off"),
        ("aiosqlite", "  baseline: aiosqlite commit + reader query"),
        ("eventlog", "  eventlog append -> live subscriber"),
        ("eventlog-ack", "  (eventlog append start -> append returned)"),
        ("eventlog-local", "  (same, EventLog.open(cross_process=False))"),
    ]:
        p50, p99, n = lat[key]
        row(name, f"{us(p50)} / {us(p99)}", f"n={n}")
    p99 = lat["eventlog"][1]
    row("  target: eventlog p99 < 1 ms", us(p99), verdict(p99 < 0.001))

    row("CROSS-PROCESS WAKE-UP (child append -> parent has event)", "p50 / p99", "")
    for key, name in [
        ("pipe", "  baseline: pipe hand-off, child -> parent"),
        ("cross-process", "  eventlog child append -> parent subscriber"),
    ]:
        p50, p99, n = lat[key]
        row(name, f"{us(p50)} / {us(p99)}", f"n={n}, 1 event/{args.interval * 1e3:g} ms")
    p99 = lat["cross-process"][1]
    row("  target: cross-process p99 < 10 ms", us(p99), verdict(p99 < 0.010))

    row("CPU (process time, all threads)", "", "")
    for key, name in [
        ("stream", "  parent while subscribed to the child's stream"),
        ("idle-loop", "  baseline: idle process, bare asyncio loop"),
        ("idle-subscriber", "  idle process holding a live eventlog subscriber"),
    ]:
        cpu, wall = r.cpu[key]
        row(name, f"{cpu * 1e3:,.1f} ms in {wall:.1f} s", f"{100 * cpu / wall:.2f}% of a core")

    width = max(len(a) for a, _, _ in lines) + 2
    vwidth = max(len(b) for _, b, _ in lines) + 2
    print()
    print(
        f"eventlog append benchmark: python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {args.seconds:g} s per throughput round, payload {PAYLOAD_BYTES} B JSON, "
        f"{layout}, WAL + synchronous=NORMAL"
    )
    print("-" * (width + vwidth + 24))
    for name, value, note in lines:
        if not value and not note:
            print(name)
        else:
            print(f"{name:<{width}}{value:>{vwidth}}   {note}")
    print("-" * (width + vwidth + 24))


# --- main --------------------------------------------------------------------------------------


def step(label: str) -> Callable[[], None]:
    print(f"  {label} ...", end="", flush=True, file=sys.stderr)
    t0 = time.perf_counter()
    return lambda: print(f" {time.perf_counter() - t0:.1f} s", file=sys.stderr)


async def main(args: argparse.Namespace) -> Results:
    files = Files()
    r = Results()
    seconds, warmup = args.seconds, args.warmup
    try:
        # Every contender runs once per round, the rounds interleaved, and each figure is the
        # median round: a burst of load from elsewhere on the machine then hits every contender
        # alike instead of one figure.
        contenders: list[tuple[str, Callable[[], Any]]] = [
            ("executemany", lambda: bench_executemany(
                files.new("executemany"), seconds, warmup, max(args.producers), args.shared_runs)),
            ("aiosqlite", lambda: bench_aiosqlite_per_event(files.new("aiosqlite"), seconds, warmup)),
        ]
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(redis_server()) if args.redis else None
            for n in args.producers:
                contenders.append((f"eventlog@{n}", partial(
                    lambda n: bench_eventlog(files.new(f"eventlog-{n}"), seconds, warmup, n, args.shared_runs), n)))
                contenders.append((f"memory@{n}", partial(
                    lambda n: bench_memory(seconds, warmup, n, args.shared_runs), n)))
                if url is not None:
                    contenders.append((f"redis@{n}", partial(
                        lambda n: bench_redis(url, seconds, warmup, n, args.shared_runs), n)))
            for round_ in range(args.rounds):
                done = step(f"throughput round {round_ + 1}/{args.rounds}")
                for key, measure in contenders:
                    outcome = measure()
                    if asyncio.iscoroutine(outcome):
                        outcome = await outcome
                    r.rounds.setdefault(key, []).append(outcome)
                done()
        r.rates = {key: median_rate(rounds) for key, rounds in r.rounds.items()}

        count = args.events

        def keep(key: str, values: list[float]) -> None:
            r.latencies[key] = (percentile(values, 50), percentile(values, 99), len(values))

        done = step("in-process wake-up latency")
        keep("asyncio.Event", await latency_asyncio_event(count))
        keep("aiosqlite", await latency_aiosqlite(files.new("lat-aiosqlite"), count))
        wake, ack = await latency_eventlog(files.new("lat-eventlog"), count)
        keep("eventlog", wake)
        keep("eventlog-ack", ack)
        keep("eventlog-local", (await latency_eventlog(files.new("lat-eventlog-local"), count, cross_process=False))[0])
        done()

        done = step("cross-process wake-up latency")
        xcount = args.cross_events
        keep("pipe", await latency_pipe(xcount, args.interval))
        latencies, cpu, wall = await latency_cross_process(files.new("cross"), xcount, args.interval)
        keep("cross-process", latencies)
        r.cpu["stream"] = (cpu, wall)
        done()

        done = step("idle CPU")
        r.cpu["idle-loop"] = await idle_cpu(None, args.idle)
        r.cpu["idle-subscriber"] = await idle_cpu(files.new("idle"), args.idle)
        done()
    finally:
        files.cleanup()
    return r


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5, help="measured seconds per throughput round")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds, each figure the median (default 3; 1 with --quick)")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each")
    parser.add_argument("--producers", type=int, nargs="+", default=[1, 10, 100], help="producer counts")
    parser.add_argument(
        "--shared-runs", type=int, default=0, metavar="N",
        help="producers append to N shared runs (default 0: each producer to its own run)",
    )
    parser.add_argument("--events", type=int, default=2000, help="events per in-process latency figure")
    parser.add_argument("--cross-events", type=int, default=1000, help="events for the cross-process figure")
    parser.add_argument("--interval", type=float, default=0.003, help="seconds between cross-process events")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measurement")
    parser.add_argument("--redis", action=argparse.BooleanOptionalAction, default=True,
                        help="measure Redis Streams XADD too (starts redis-server on 127.0.0.1; default on)")
    parser.add_argument("--quick", action="store_true", help="short run, rough figures")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.events, args.cross_events, args.idle = 1.0, 0.2, 500, 300, 1.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    return args


if __name__ == "__main__":
    arguments = parse_args()
    try:
        results = asyncio.run(main(arguments))
    except RedisMissing as exc:
        sys.exit(f"append.py: {exc} (or run with --no-redis)")
    print_table(results, arguments)
