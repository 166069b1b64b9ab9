"""eventlog's Durable Streams protocol next to the protocol's Node reference server, in one run.

    .venv/bin/python benchmarks/durable_streams.py            # about four minutes
    .venv/bin/python benchmarks/durable_streams.py --quick    # about 15 seconds, rough figures
    benchmarks/durable_streams/install.sh                     # the reference server, once

Contenders: ``eventlog serve`` on a fresh SQLite file (and on a fresh PostgreSQL database of a
throwaway cluster, as benchmarks/postgres.py starts one, when the PostgreSQL binaries are here;
not in ``--quick``), and ``@durable-streams/server`` (pinned by
benchmarks/durable_streams/package-lock.json) in memory and file-backed (``dataDir``: lmdb and
segment files, an fdatasync per append). Every request comes from httpx (async) in this one
process, the same client code for every server, so the load client costs all of them alike.

1. Append throughput: byte bodies of 100 B, each writer awaiting its POST before the next; one
   writer, 50 writers on a stream each, 50 writers on one stream; each without and with the
   idempotent producer headers (``Producer-Id``/``-Epoch``/``-Seq``). Every server is up at
   once and the rounds go through them in turn (the median round of each); next to appends/s,
   the server's CPU per append, which the load client's own limits do not hide.
2. Live latency: one append at a time; a long-poll reader and an SSE reader (``live=sse``), each
   on its own connection, record when the message arrives; latency from the start of the POST.
3. Catch-up: a JSON stream of 10^4 messages (of about 100 B) read from ``offset=-1`` to its end,
   following ``Stream-Next-Offset`` until ``Stream-Up-To-Date`` (decoding the JSON included:
   with about a megabyte in one response, much of the time is the client's).
4. Crash safety (a fact, not a timing): 20 writers append to one stream; the server is killed
   with SIGKILL while they write, restarted on the same data, and the stream read back: how many
   acknowledged appends it holds.

Ratios are eventlog / reference measured in the same run (the machine is shared and noisy);
nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import httpx
from httpx_sse import aconnect_sse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from append import percentile  # noqa: E402

from tests.http.server import ServerProcess, free_port  # noqa: E402
from tests.postgres_server import PostgresCluster, find_bin  # noqa: E402

INSTALL = REPO / "benchmarks" / "durable_streams" / "install.sh"
BYTES = "application/octet-stream"
RECORD = 100
"""Bytes of every appended body: a fixed width, so that a read splits back into appends."""
LONG_POLL_SECONDS = 30
EVENTLOG_ENV = {
    "EVENTLOG_LONG_POLL_TIMEOUT": str(LONG_POLL_SECONDS),
    "EVENTLOG_HEARTBEAT": "15",
    "EVENTLOG_POLL_INTERVAL": "30",  # wake-ups come from the notifier, as in production
}


class ReferenceMissing(RuntimeError):
    """The reference server is not installed (or node is not on PATH)."""


class Server(Protocol):
    """What the benchmark needs of a server: where it is, a crash, and a start on the same data."""

    @property
    def url(self) -> str: ...

    def start(self) -> Server: ...

    def kill(self) -> None: ...

    def worker_pids(self) -> list[int]: ...


def cpu_seconds(server: Server) -> float:
    """User plus system CPU seconds of the server's processes (every thread) so far."""
    total = 0
    for pid in server.worker_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def reference_dir() -> Path:
    """The reference server's install directory, without touching the network."""
    if shutil.which("node") is None:
        raise ReferenceMissing("node is not on PATH (apt-get install nodejs npm)")
    done = subprocess.run([str(INSTALL), "--no-install"], capture_output=True, text=True)
    if done.returncode != 0:
        raise ReferenceMissing(f"the reference server is not installed (run {INSTALL.relative_to(REPO)}; it needs npm)")
    return Path(done.stdout.strip())


class ReferenceServer:
    """``@durable-streams/server`` in a child process (benchmarks/durable_streams/ref_server.mjs),
    on 127.0.0.1 and a free port; in memory, or file-backed in ``data_dir``."""

    def __init__(self, install: Path, data_dir: Path | None, log_path: Path) -> None:
        self.install, self.data_dir, self.log_path = install, data_dir, log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ReferenceServer:
        command = ["node", str(self.install / "ref_server.mjs"), str(self.port), str(LONG_POLL_SECONDS * 1000)]
        if self.data_dir is not None:
            command.append(str(self.data_dir))
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, cwd=self.install, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"reference server exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                httpx.head(f"{self.url}/v1/stream/not-there", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"reference server did not start: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        return [self.process.pid]


@dataclass
class Contender:
    """One server under test; ``make`` starts a fresh one (a fresh file, database or data dir)."""

    name: str
    make: Callable[[], Server]
    is_reference: bool


def contenders(folder: Path, install: Path, cluster: PostgresCluster | None) -> list[Contender]:
    def eventlog_on(database: Callable[[], Path | str], tag: str) -> Callable[[], Server]:
        def make() -> Server:
            key = uuid.uuid4().hex[:8]
            return ServerProcess(database(), env=EVENTLOG_ENV, log_path=folder / f"eventlog-{tag}-{key}.log").start()
        return make

    def reference(file_backed: bool) -> Callable[[], Server]:
        def make() -> Server:
            key = uuid.uuid4().hex[:8]
            data = folder / f"ref-{key}" if file_backed else None
            return ReferenceServer(install, data, folder / f"ref-{key}.log").start()
        return make

    out = [Contender("eventlog SQLite", eventlog_on(lambda: folder / f"{uuid.uuid4().hex[:8]}.db", "sqlite"), False)]
    if cluster is not None:
        out.append(Contender("eventlog PostgreSQL", eventlog_on(cluster.new_database, "pg"), False))
    out += [Contender("reference memory", reference(False), True), Contender("reference file", reference(True), True)]
    return out


# --- the client side ---------------------------------------------------------------------------


@functools.cache
def tls() -> ssl.SSLContext:
    """One TLS context for every client (none is used on 127.0.0.1): httpx builds one per client
    otherwise, about 20 ms each, which 50 writers' clients would spend in every configuration."""
    return ssl.create_default_context()


def client(connections: int = 1) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(10, read=LONG_POLL_SECONDS + 10), verify=tls())


def record(writer: int, seq: int) -> bytes:
    """A 100-byte body naming its writer and seq, so that a read tells which appends it holds."""
    return f"{writer:05d}:{seq:010d}:".encode().ljust(RECORD, b"x")


def records(body: bytes) -> Iterator[tuple[int, int]]:
    for at in range(0, len(body) - RECORD + 1, RECORD):
        head = body[at:at + 17].decode()
        yield int(head[:5]), int(head[6:16])


async def create(http: httpx.AsyncClient, url: str, name: str, content_type: str = BYTES) -> str:
    response = await http.put(f"{url}/v1/stream/{name}", headers={"Content-Type": content_type})
    assert response.status_code in (200, 201), (response.status_code, response.text)
    return f"{url}/v1/stream/{name}"


async def append(http: httpx.AsyncClient, stream: str, body: bytes, producer: tuple[str, int] | None = None) -> bool:
    """POST one body; whether the server acknowledged it (200 or 204)."""
    headers = {"Content-Type": BYTES}
    if producer is not None:
        headers |= {"Producer-Id": producer[0], "Producer-Epoch": "0", "Producer-Seq": str(producer[1])}
    return (await http.post(stream, content=body, headers=headers)).status_code in (200, 204)


async def read_all(http: httpx.AsyncClient, stream: str) -> tuple[bytes | list, int]:
    """Every message from the start (bytes, or a JSON stream's values), following
    ``Stream-Next-Offset`` until ``Stream-Up-To-Date``; and the number of GETs it took."""
    offset, chunks, values, gets = "-1", [], [], 0
    while True:
        response = await http.get(stream, params={"offset": offset})
        gets += 1
        assert response.status_code == 200, (response.status_code, response.text[:200])
        if response.headers.get("content-type", "").startswith("application/json"):
            values += response.json()
        else:
            chunks.append(response.content)
        offset = response.headers["Stream-Next-Offset"]
        if response.headers.get("Stream-Up-To-Date") == "true":
            return (values if values else b"".join(chunks)), gets


# --- 1. append throughput ----------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One throughput configuration."""

    writers: int
    one_stream: bool
    producer: bool

    @property
    def label(self) -> str:
        where = "" if self.writers == 1 else (", one stream" if self.one_stream else ", a stream each")
        return f"{self.writers} writer{'s' if self.writers > 1 else ''}{where}{', producer headers' if self.producer else ''}"


LOADS = [Load(w, one, p) for p in (False, True) for w, one in ((1, True), (50, False), (50, True))]


@dataclass(frozen=True)
class Rate:
    per_second: float
    server_cpu: float
    """Server CPU seconds per append: what the load client's own limits do not hide."""
    client_share: float
    """The load client's CPU (this process) as a share of a core: near 1, it is the bottleneck."""
    failed: int
    """Appends answered with an error (the reference file store answers 404 when it evicts a file
    handle, beyond 100 streams, during an append's fsync); each is sent again (the same
    producer seq, with producer headers), and only acknowledged ones count."""


async def throughput(server: Server, load: Load, seconds: float, warmup: float) -> Rate:
    """Appends per second over ``seconds`` after ``warmup``, with both sides' CPU. Each writer
    has a client (one connection) of its own: one pool of 50 connections costs httpcore more CPU
    per request than the servers spend (it scans every connection for each request)."""
    url = server.url
    async with contextlib.AsyncExitStack() as stack:
        https = [await stack.enter_async_context(client(1)) for _ in range(load.writers)]
        key = uuid.uuid4().hex[:8]
        names = [f"tp-{key}-{0 if load.one_stream else k}" for k in range(load.writers)]
        streams = [await create(https[0], url, name) for name in dict.fromkeys(names)]
        state = {"stop": False, "counting": False, "count": 0, "failed": 0}

        async def writer(k: int) -> None:
            stream, seq = streams[0 if load.one_stream else k], 0
            while not state["stop"]:
                if not await append(https[k], stream, record(k, seq), (f"w{k}", seq) if load.producer else None):
                    state["failed"] += 1
                    continue
                seq += 1
                state["count"] += state["counting"]

        tasks = [asyncio.create_task(writer(k)) for k in range(load.writers)]
        await asyncio.sleep(warmup)
        state["counting"], cpu0, server0, t0 = True, time.process_time(), cpu_seconds(server), time.perf_counter()
        await asyncio.sleep(seconds)
        state["counting"] = False
        wall, cpu, used = time.perf_counter() - t0, time.process_time() - cpu0, cpu_seconds(server) - server0
        count, state["stop"] = state["count"], True
        await asyncio.gather(*tasks)
        return Rate(count / wall, used / max(count, 1), cpu / wall, state["failed"])


# --- 2. live latency ---------------------------------------------------------------------------


class Arrivals:
    """When each append (by seq) reached one reader."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.changed = asyncio.Event()

    def add(self, body: bytes) -> None:
        now = time.perf_counter()
        for _, seq in records(body):
            self.at.setdefault(seq, now)
        self.changed.set()

    async def wait_for(self, seq: int) -> None:
        while seq not in self.at:
            self.changed.clear()
            await self.changed.wait()


async def long_poll(stream: str, offset: str, arrivals: Arrivals) -> None:
    async with client(1) as http:
        while True:
            response = await http.get(stream, params={"offset": offset, "live": "long-poll"})
            if response.status_code == 200:
                arrivals.add(response.content)
            offset = response.headers.get("Stream-Next-Offset", offset)


async def sse(stream: str, offset: str, arrivals: Arrivals, connected: asyncio.Event) -> None:
    """Follows the stream over SSE, reconnecting from the last control event's offset when a
    server ends the response (both do after a while, for CDNs)."""
    async with client(1) as http:
        while True:
            async with aconnect_sse(http, "GET", stream, params={"offset": offset, "live": "sse"}) as source:
                connected.set()
                async for event in source.aiter_sse():
                    if event.event == "data":
                        arrivals.add(base64.b64decode(event.data.replace("\n", "")))
                    elif event.event == "control":
                        offset = json.loads(event.data)["streamNextOffset"]


async def live_latency(url: str, appends: int) -> tuple[list[float], list[float]]:
    """Latencies (seconds) of ``appends`` appends, one at a time, to a long-poll and an SSE reader."""
    async with client(1) as http:
        stream = await create(http, url, f"live-{uuid.uuid4().hex[:8]}")
        offset = (await http.get(stream, params={"offset": "-1"})).headers["Stream-Next-Offset"]
        polled, streamed, connected = Arrivals(), Arrivals(), asyncio.Event()
        readers = [asyncio.create_task(long_poll(stream, offset, polled)),
                   asyncio.create_task(sse(stream, offset, streamed, connected))]
        try:
            await asyncio.wait_for(connected.wait(), 10)
            await asyncio.sleep(0.2)  # the long-poll request is waiting too
            sent: dict[int, float] = {}
            for seq in range(appends):
                sent[seq] = time.perf_counter()
                assert await append(http, stream, record(0, seq)), f"POST {stream} failed"
                await asyncio.wait_for(asyncio.gather(polled.wait_for(seq), streamed.wait_for(seq)), 10)
                await asyncio.sleep(0.002)  # the long-poll reader is back waiting
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        return ([polled.at[s] - sent[s] for s in sent], [streamed.at[s] - sent[s] for s in sent])


# --- 3. catch-up -------------------------------------------------------------------------------


async def catch_up(url: str, messages: int, reads: int) -> tuple[float, int]:
    """Median seconds to read a JSON stream of ``messages`` from the start, and GETs per read."""
    async with client(1) as http:
        stream = await create(http, url, f"catch-{uuid.uuid4().hex[:8]}", "application/json")
        text = "x" * 80
        for start in range(0, messages, 500):
            batch = [{"n": n, "t": text} for n in range(start, min(messages, start + 500))]
            response = await http.post(stream, json=batch)
            assert response.status_code in (200, 204), (response.status_code, response.text[:200])
        times, gets = [], 0
        for _ in range(reads):
            t0 = time.perf_counter()
            values, gets = await read_all(http, stream)
            times.append(time.perf_counter() - t0)
            assert len(values) == messages, (len(values), messages)
        return sorted(times)[len(times) // 2], gets


# --- 4. crash safety ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Crash:
    acknowledged: int
    readable_acknowledged: int
    readable: int


async def crash(server: Server, writers: int, seconds: float) -> Crash:
    """SIGKILL ``server`` while ``writers`` append to one stream, start it again on the same
    data, and count which appends it kept."""
    acked: set[tuple[int, int]] = set()
    async with contextlib.AsyncExitStack() as stack:
        https = [await stack.enter_async_context(client(1)) for _ in range(writers)]
        stream = await create(https[0], server.url, f"crash-{uuid.uuid4().hex[:8]}")

        async def writer(k: int) -> None:
            seq = 0
            while True:
                try:
                    if await append(https[k], stream, record(k, seq)):
                        acked.add((k, seq))
                except httpx.HTTPError:
                    return  # the server is gone
                seq += 1

        tasks = [asyncio.create_task(writer(k)) for k in range(writers)]
        await asyncio.sleep(seconds)
        server.kill()
        await asyncio.gather(*tasks)
    server.start()
    async with client(1) as http:
        try:
            body, _ = await read_all(http, stream)
        except AssertionError:  # the stream itself is gone (a server in memory)
            body = b""
    kept = set(records(body))
    return Crash(len(acked), len(acked & kept), len(kept))


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Results:
    """Every figure of one run, by contender name; ``markdown`` renders it (also for report.py)."""

    names: list[str]
    references: list[str]
    reference_version: str
    throughput: dict[str, dict[str, Rate]] = field(default_factory=dict)
    """load label -> contender -> its rate."""
    latency: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    catch_up: dict[str, tuple[float, int]] = field(default_factory=dict)
    crash: dict[str, Crash] = field(default_factory=dict)
    args: argparse.Namespace | None = None
    notes: list[str] = field(default_factory=list)


async def with_server(contender: Contender, measure: Callable[[Server], Awaitable[object]]) -> object:
    server = contender.make()
    try:
        return await measure(server)
    finally:
        server.kill()


def median_rate(rates: list[Rate]) -> Rate:
    """The round of median throughput (its CPU figures with it); failures of every round."""
    middle = sorted(rates, key=lambda rate: rate.per_second)[len(rates) // 2]
    return replace(middle, failed=sum(rate.failed for rate in rates))


async def measure(args: argparse.Namespace) -> Results:
    """Run every measurement (see the module docstring). Raises ReferenceMissing without the
    reference server: the ratios are the point."""
    install = reference_dir()
    cluster = None
    notes = []
    if args.postgres:
        bin_dir = find_bin()
        if bin_dir is None:
            notes.append("PostgreSQL not measured: no PostgreSQL server binaries (apt-get install postgresql)")
        else:
            cluster = PostgresCluster(bin_dir).start()
    else:
        notes.append("PostgreSQL not measured in this form (--quick)")
    folder = Path(tempfile.mkdtemp(prefix="eventlog-bench-ds-"))
    servers: dict[str, Server] = {}
    try:
        every = contenders(folder, install, cluster)
        version = json.loads((install / "node_modules/@durable-streams/server/package.json").read_text())["version"]
        r = Results([c.name for c in every], [c.name for c in every if c.is_reference], version, args=args, notes=notes)
        # Every server runs through the throughput rounds, interleaved, so that each ratio
        # compares figures of the same minutes on this shared machine.
        servers = {c.name: c.make() for c in every}
        for load in LOADS:
            print(f"[durable_streams] {load.label} ...", file=sys.stderr, flush=True)
            rounds: dict[str, list[Rate]] = {name: [] for name in servers}
            for _ in range(args.rounds):
                for name, server in servers.items():
                    rounds[name].append(await throughput(server, load, args.seconds, args.warmup))
            r.throughput[load.label] = {name: median_rate(rates) for name, rates in rounds.items()}
        print("[durable_streams] live latency, catch-up ...", file=sys.stderr, flush=True)
        for name, server in servers.items():
            r.latency[name] = await live_latency(server.url, args.appends)
            r.catch_up[name] = await catch_up(server.url, args.messages, args.reads)
        for server in servers.values():
            server.kill()
        print("[durable_streams] crash safety ...", file=sys.stderr, flush=True)
        for c in every:
            r.crash[c.name] = await with_server(c, lambda server: crash(server, 20, args.crash_seconds))
        return r
    finally:
        for server in servers.values():
            server.kill()
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(folder, ignore_errors=True)


# --- the tables --------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def markdown(r: Results) -> str:
    """One table of figures, each row with eventlog's ratio to each reference server of the run."""
    ours = [n for n in r.names if n not in r.references]
    ratios = [(o, ref) for o in ours for ref in r.references]
    header = ["measure", *r.names, *(f"{o.removeprefix('eventlog ')} / {ref.removeprefix('reference ')}" for o, ref in ratios)]
    rows = []

    def row(label: str, values: dict[str, float], show: Callable[[float], str]) -> None:
        rows.append([label, *(show(values[n]) for n in r.names), *(f"{values[o] / values[ref]:.2f}x" for o, ref in ratios)])

    for label, by in r.throughput.items():
        row(f"appends/s, {label}", {n: v.per_second for n, v in by.items()}, lambda v: f"{v:,.0f}")
    for label, by in r.throughput.items():
        row(f"server CPU us/append, {label}", {n: v.server_cpu for n, v in by.items()}, lambda v: f"{v * 1e6:,.0f}")
    for k, how in enumerate(("long-poll", "SSE")):
        for p in (50, 99):
            row(f"live latency p{p} ms, {how}", {n: percentile(v[k], p) for n, v in r.latency.items()}, ms)
    a = r.args
    row(f"catch-up ms, {a.messages:,} messages from -1", {n: v[0] for n, v in r.catch_up.items()}, ms)
    lines = [
        f"Throughput: {a.rounds} round(s) of {a.seconds:g} s per configuration after {a.warmup:g} s warm-up, every server "
        f"in turn, the median round; {RECORD} B bodies; latency: "
        f"{a.appends} appends one at a time; catch-up: median of {a.reads} reads. Ratios are eventlog / reference "
        "(higher is better for appends/s, lower for ms).", "",
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(x) + " |" for x in rows), "",
        "GETs per catch-up read: " + ", ".join(f"{n} {v[1]}" for n, v in r.catch_up.items()) + ". Load client CPU "
        "(this process) at 50 writers on a stream each: " + ", ".join(
            f"{n} {r.throughput[LOADS[1].label][n].client_share:.0%}" for n in r.names) + " of a core (near 100%: "
        "the client is the bottleneck and appends/s understates the faster server; server CPU per append does not).", "",
        f"Crash safety: 20 writers on one stream, SIGKILL after {a.crash_seconds:g} s, restart on the same data, read back:", "",
        "| server | acknowledged | acknowledged and readable | readable (incl. unacknowledged) |", "|---|---|---|---|",
        *(f"| {n} | {c.acknowledged:,} | {c.readable_acknowledged:,} | {c.readable:,} |" for n, c in r.crash.items()),
    ]
    failed = {f"{label}: {n}": v.failed for label, by in r.throughput.items() for n, v in by.items() if v.failed}
    if failed:
        lines += ["", "Appends answered with an error during the throughput runs (sent again; not counted): "
                  + "; ".join(f"{k} {v:,}" for k, v in failed.items()) + "."]
    if r.notes:
        lines += ["", *(f"{note}." for note in r.notes)]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short configurations, no PostgreSQL (well under 30 s)")
    parser.add_argument("--seconds", type=float, default=1.5, help="per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds, every server in turn; the median")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--crash-seconds", type=float, default=2.0)
    parser.add_argument("--no-postgres", dest="postgres", action="store_false")
    args = parser.parse_args(argv)
    if args.quick:
        (args.seconds, args.rounds, args.warmup, args.appends, args.messages, args.reads, args.crash_seconds,
         args.postgres) = (0.3, 1, 0.1, 30, 2_000, 1, 0.3, False)
    return args


async def main(args: argparse.Namespace) -> None:
    try:
        results = await measure(args)
    except ReferenceMissing as exc:
        raise SystemExit(f"benchmarks/durable_streams.py: {exc}") from None
    print(f"# eventlog's Durable Streams protocol next to the reference server {results.reference_version}\n")
    print(markdown(results))


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
