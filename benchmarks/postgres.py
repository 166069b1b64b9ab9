"""The PostgreSQL backend next to SQLite, in the same run on the same machine.

    .venv/bin/python benchmarks/postgres.py            # about a minute and a half
    .venv/bin/python benchmarks/postgres.py --quick    # about 12 seconds, rough figures
    .venv/bin/python benchmarks/postgres.py --url postgresql://user@host/db   # an existing server

Without ``--url`` it starts a throwaway cluster (``tests/postgres_server.py``: ``initdb`` in a
temporary directory, ``fsync=on``, 127.0.0.1 on a free port) and removes it afterwards.

1. Append throughput: ``append.bench_eventlog`` (N producers, each awaiting its own durable
   append, one run each) on a fresh SQLite file and on a fresh PostgreSQL database, rounds
   interleaved, the median round of each; the ratio is PostgreSQL / SQLite. The PostgreSQL
   baselines of the same run: plain asyncpg, one producer doing ``INSERT`` + commit per event
   (what a naive app does), and ``executemany`` of 100 rows per transaction (near the server's
   limit for this row shape), both into eventlog's ``events`` table.
2. SSE end-to-end latency: ``eventlog serve`` on each backend; one ``httpx-sse`` subscriber
   streams a run while this process POSTs ``--rate`` events/s, each stamped with ``time.time()``
   just before its request; latency is receive time minus stamp (p50/p99).
3. Cross-server wake-up: two servers on one log, the POST to A, the stream on B: with PostgreSQL
   the wake-up is a NOTIFY, with SQLite (both servers on one file) the file watch. The same-server
   figure of the same backend is the baseline.

Nothing is asserted; read the ratios (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from append import bench_eventlog, median_rate, percentile  # noqa: E402

from eventlog import EventLog  # noqa: E402
from tests.http.server import ServerProcess  # noqa: E402
from tests.postgres_server import PostgresCluster, find_bin  # noqa: E402

Database = Path | str


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine (and no ``--url``)."""


async def bench_asyncpg(url: str, seconds: float, warmup: float, batch: int) -> float:
    """Rows per second of plain asyncpg: ``batch`` rows per transaction, one connection."""
    import asyncpg

    from append import encode, payload

    async with EventLog.open(url):  # the schema
        pass
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE SEQUENCE IF NOT EXISTS bench_ids")
        done, i = 0, 0
        start = time.perf_counter()
        counted_from, count_start = None, 0
        while True:
            now = time.perf_counter()
            if counted_from is None and now - start >= warmup:
                counted_from, count_start = now, done
            if counted_from is not None and now - counted_from >= seconds:
                return (done - count_start) / (now - counted_from)
            rows = [("bench", "updates", encode(payload(i + k)), time.time()) for k in range(batch)]
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO events (id, run_id, event, data, created_at) VALUES (nextval('bench_ids'), $1, $2, $3, $4)", rows
                )
            done, i = done + batch, i + batch
    finally:
        await conn.close()


async def latencies(stream_url: str, post_url: str, rate: float, seconds: float) -> list[float]:
    """Receive time minus send stamp of every event POSTed to ``post_url`` and read from
    ``stream_url``, at ``rate`` events per second for ``seconds``."""
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    samples: list[float] = []
    count = int(rate * seconds)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as http:
        assert (await http.post(f"{post_url}/runs", json={"run_id": run_id})).status_code == 201
        ready = asyncio.Event()

        async def subscribe() -> None:
            async with aconnect_sse(http, "GET", f"{stream_url}/runs/{run_id}/stream") as source:
                ready.set()
                async for sse in source.aiter_sse():
                    if sse.event == "end":
                        return
                    if sse.data and sse.id:
                        samples.append(time.time() - json.loads(sse.data)["t"])

        reader = asyncio.create_task(subscribe())
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.sleep(0.3)
        start = time.monotonic()
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            await http.post(f"{post_url}/runs/{run_id}/events", json={"event": "updates", "data": {"t": time.time(), "n": n}})
        await http.post(f"{post_url}/runs/{run_id}/end")
        await asyncio.wait_for(reader, 30)
    assert len(samples) == count, (len(samples), count)
    return samples


def servers(database: Database, folder: Path, count: int) -> list[ServerProcess]:
    env = {"EVENTLOG_POLL_INTERVAL": "30"}  # wake-ups must come from the file watch / NOTIFY
    return [ServerProcess(database, env=env, log_path=folder / f"server-{k}.log").start() for k in range(count)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


@dataclass
class Results:
    """What one run measured; ``markdown`` renders it for this script and for report.py."""

    where: str
    producers: list[int]
    throughput: dict[int, tuple[float, float]]
    """producers -> (SQLite, PostgreSQL) appends/s, median round."""
    asyncpg_per_event: float
    asyncpg_batched: float
    rate: float
    latency_seconds: float
    latency: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    """backend -> (same server, POST to A and stream on B) latencies in seconds, sorted."""


async def measure(args: argparse.Namespace) -> Results:
    """Run every measurement of this script (see the module docstring)."""
    cluster = None
    if args.url is None:
        bin_dir = find_bin()
        if bin_dir is None:
            raise PostgresMissing("no PostgreSQL server binaries (apt-get install postgresql), or pass --url")
        cluster = PostgresCluster(bin_dir).start()
    folder = Path(tempfile.mkdtemp(prefix="eventlog-bench-pg-"))
    try:
        fresh_pg = (lambda: cluster.new_database()) if cluster else (lambda: args.url)
        throughput: dict[int, tuple[float, float]] = {}
        for producers in args.producers:
            rounds: dict[str, list] = {"sqlite": [], "postgres": []}
            for r in range(args.rounds):
                rounds["sqlite"].append(await bench_eventlog(folder / f"a-{producers}-{r}.db", args.seconds, args.warmup, producers, 0))
                rounds["postgres"].append(await bench_eventlog(fresh_pg(), args.seconds, args.warmup, producers, 0))
            throughput[producers] = (median_rate(rounds["sqlite"]).per_second, median_rate(rounds["postgres"]).per_second)
        results = Results(
            where="a throwaway cluster, fsync=on" if cluster else args.url,
            producers=list(args.producers),
            throughput=throughput,
            asyncpg_per_event=await bench_asyncpg(fresh_pg(), args.seconds, args.warmup, 1),
            asyncpg_batched=await bench_asyncpg(fresh_pg(), args.seconds, args.warmup, 100),
            rate=args.rate,
            latency_seconds=args.latency_seconds,
        )
        for backend, database in (("SQLite (one file)", folder / "sse.db"), ("PostgreSQL", fresh_pg())):
            a, b = servers(database, folder, 2)
            try:
                same = sorted(await latencies(b.url, b.url, args.rate, args.latency_seconds))
                cross = sorted(await latencies(b.url, a.url, args.rate, args.latency_seconds))
            finally:
                a.kill()
                b.kill()
            results.latency[backend] = (same, cross)
        return results
    finally:
        if cluster is not None:
            cluster.destroy()


def markdown(r: Results) -> str:
    """The two tables of a run, each figure next to its same-run baselines."""
    lines = ["Append throughput (appends/s, each producer awaiting its durable append; median of rounds):", "",
             "| producers | SQLite | PostgreSQL | PostgreSQL / SQLite |", "|---|---|---|---|"]
    for n, (lite, pg) in r.throughput.items():
        lines.append(f"| {n} | {lite:,.0f} | {pg:,.0f} | {pg / lite:.2f} |")
    first, last = r.producers[0], r.producers[-1]
    lines += ["", f"PostgreSQL baselines, same run: asyncpg INSERT + commit per event {r.asyncpg_per_event:,.0f}/s "
              f"(eventlog@{first} / this: {r.throughput[first][1] / r.asyncpg_per_event:.2f}); asyncpg executemany x100 per "
              f"transaction {r.asyncpg_batched:,.0f}/s (eventlog@{last} / this: {r.throughput[last][1] / r.asyncpg_batched:.2f}).", "",
              f"SSE end-to-end and cross-server wake-up latency (ms, p50 / p99; {r.rate:g} events/s for {r.latency_seconds:g} s; "
              "two servers on one log):", "",
              "| backend | same server | POST to A, stream on B | cross / same (p50) |", "|---|---|---|---|"]
    for backend, (same, cross) in r.latency.items():
        lines.append(f"| {backend} | {ms(percentile(same, 50))} / {ms(percentile(same, 99))} | "
                     f"{ms(percentile(cross, 50))} / {ms(percentile(cross, 99))} | {percentile(cross, 50) / percentile(same, 50):.2f} |")
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> None:
    try:
        results = await measure(args)
    except PostgresMissing as exc:
        raise SystemExit(f"benchmarks/postgres.py: {exc}") from None
    print(f"# eventlog on PostgreSQL next to SQLite ({results.where})\n")
    print(markdown(results))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing PostgreSQL database (its tables are created; use an empty one)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--producers", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--latency-seconds", type=float, default=6.0)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.latency_seconds, args.warmup = 0.5, 1, 1.0, 0.1
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
