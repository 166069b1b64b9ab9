"""SSE fan-out: end-to-end latency and memory per stream, eventlog next to a plain in-memory broadcast.

    .venv/bin/python benchmarks/sse.py                 # about 2.5 minutes
    .venv/bin/python benchmarks/sse.py --quick         # about a minute, rough figures
    .venv/bin/python benchmarks/sse.py --seconds 5 --subscribers 1,100,1000 --servers eventlog

Two servers, each run as its own uvicorn process on 127.0.0.1, one after the other:

- ``eventlog``: ``python -m eventlog serve --db <fresh file>`` with its default settings;
- ``baseline``: ``benchmarks/baselines/memory_broadcast.py``, a minimal Starlette app with the
  same two endpoints and the same SSE wire format over a shared in-memory list of frames.

For each server and each subscriber count N (1, 100, 1,000 by default), on a fresh run:

1. N subscribers connect to ``GET /runs/{run}/stream``. They are real HTTP/1.1 clients, but
   lightweight: raw asyncio protocols (uvloop when installed) in one or two child processes
   (``--client-procs``), which decode the chunked body and pick the send timestamps out of the
   ``data:`` lines with one regex per chunk, so the client is not the bottleneck.
2. Half a second of warm-up events, then a producer (an asyncio task of this driver process, raw
   keep-alive HTTP/1.1 connections, open loop: a POST is started on schedule whether or not the
   previous ones have returned) POSTs ``--rate`` events/s for ``--seconds``. Each event's data is
   ``{"t": time.time(), "i": n}``, ``t`` taken just before the request is written. A subscriber
   computes ``time.time() - t`` for every event when the chunk carrying it arrives: end-to-end
   latency from the start of the POST to the event in the subscriber's hands, through the commit
   (eventlog) and the server's fan-out. All processes share the machine's clock.
3. A final marker event; each subscriber stops when it has seen it. Every subscriber must have
   received every event (checked: ``delivered`` column).

Memory per idle stream: on a fresh server after a short warm-up, the server's ``VmRSS`` (from
``/proc/PID/status``) before and two seconds after opening ``--idle-streams`` streams that
receive nothing, divided by their number.

Details table, per configuration and server: ``delivered`` (latency samples / events sent x N),
the producer's achieved ``rate`` and POST round-trip p50/p99, the share of one core used during
the producing window by the server (``srv CPU``; ~100 %: its event loop is saturated), by the
subscriber processes together (``subs CPU``) and by every *other* process on the machine
(``others``, from /proc/stat: a shared machine makes every latency figure noisy), and
``us/chunk``: server CPU time per chunk written to a subscriber (over the whole configuration),
the fan-out cost that decides how many subscribers one process can serve; ``ev/chunk`` is how
many events a chunk carried on average (above 1 when the server fell behind and batched).

Processes: servers get SIGTERM if this driver dies (PR_SET_PDEATHSIG), subscriber processes exit
when their stdin closes; SIGTERM/Ctrl-C of the driver stops everything it started. The soft
``RLIMIT_NOFILE`` is raised (up to the hard limit) before the children are started; uvicorn's
default backlog (2048) covers 1,000 connections, which the subscribers open in waves of 100.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STAMP = re.compile(rb'"t":([0-9.]+)')
FIN = b'"fin":'
TARGET_SUBSCRIBERS = 1000
TARGET_P99 = 0.050  # seconds, from issue 3


# --- shared helpers ----------------------------------------------------------------------------


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with the server extra
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main) -> object:
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)


def raise_nofile(needed: int) -> int:
    """Raise the soft limit of open files towards ``needed`` (up to the hard limit); children
    started afterwards inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# --- subscriber child process ------------------------------------------------------------------


class Group:
    """The subscribers of one child process."""

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int) -> None:
        self.n = n
        self.ready = 0
        self.done = 0
        self.lost = 0
        self.errors: list[str] = []
        self.latencies = array.array("d")
        self.all_ready = loop.create_future()
        self.all_done = loop.create_future()

    def fail(self, message: str) -> None:
        self.errors.append(message)
        for future in (self.all_ready, self.all_done):
            if not future.done():
                future.set_exception(RuntimeError(message))


class Subscriber(asyncio.Protocol):
    """One SSE client: HTTP/1.1 GET, chunked body decoding, timestamps from ``data:`` lines."""

    def __init__(self, group: Group, request: bytes) -> None:
        self.group = group
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.sse = b""
        self.headers_done = False
        self.ready = False
        self.done = False
        self.count = 0
        self.chunks = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf + data if self.buf else data
        if not self.headers_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            head = buf[:end]
            if head.split(b" ", 2)[1] != b"200" or b"chunked" not in head.lower():
                self.group.fail(f"unexpected response: {head[:200]!r}")
                return
            self.headers_done = True
            buf = buf[end + 4 :]
        parts = []
        pos, size_total = 0, len(buf)
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol], 16)
            start = eol + 2
            if size_total < start + size + 2:
                break
            if size == 0:  # the server ended the response
                pos = size_total
                break
            parts.append(buf[start : start + size])
            pos = start + size + 2
        self.buf = buf[pos:]
        if parts:
            self.chunks += len(parts)
            self.on_sse(parts[0] if len(parts) == 1 else b"".join(parts), now)

    def on_sse(self, data: bytes, now: float) -> None:
        sse = self.sse + data if self.sse else data
        cut = sse.rfind(b"\n\n")
        if cut < 0:
            self.sse = sse
            return
        block, self.sse = sse[: cut + 2], sse[cut + 2 :]
        group = self.group
        if not self.ready and b"retry:" in block:
            self.ready = True
            group.ready += 1
            if group.ready == group.n and not group.all_ready.done():
                group.all_ready.set_result(None)
        stamps = STAMP.findall(block)
        if stamps:
            self.count += len(stamps)
            append = group.latencies.append
            for stamp in stamps:
                append(now - float(stamp))
        if not self.done and FIN in block:
            self.done = True
            group.done += 1
            if group.done == group.n and not group.all_done.done():
                group.all_done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self.group.lost += 1


async def subscribers_main(port: int, run_id: str, n: int, out: str) -> None:
    """Child process: open ``n`` streams, print ``ready``, collect until every subscriber saw the
    final marker (or ``stop`` arrives on stdin), write the latencies to ``out``, print a summary."""
    raise_nofile(n + 64)
    loop = asyncio.get_running_loop()
    group = Group(loop, n)
    request = (
        f"GET /runs/{run_id}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    subscribers: list[Subscriber] = []
    for start in range(0, n, 100):  # in waves, so the accept queue never overflows
        made = await asyncio.gather(
            *(loop.create_connection(lambda: Subscriber(group, request), "127.0.0.1", port) for _ in range(min(100, n - start)))
        )
        subscribers.extend(protocol for _, protocol in made)  # type: ignore[misc]
    await asyncio.wait_for(group.all_ready, 60)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    print("ready", flush=True)

    stop = loop.run_in_executor(None, sys.stdin.readline)
    await asyncio.wait([group.all_done, stop], return_when=asyncio.FIRST_COMPLETED)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    with open(out, "wb") as f:
        group.latencies.tofile(f)
    counts = [s.count for s in subscribers]
    summary = {
        "n": n,
        "done": group.done,
        "lost": group.lost,
        "errors": group.errors[:3],
        "min_count": min(counts),
        "max_count": max(counts),
        "chunks": sum(s.chunks for s in subscribers) - len(subscribers),  # not the retry: frames
        "cpu": (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
    }
    print(json.dumps(summary), flush=True)
    for s in subscribers:
        if s.transport is not None:
            s.transport.abort()
    os._exit(0)  # the stdin reader thread may still be blocked


# --- driver ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes with ``--workers``)."""
    pids, i = [pid], 0
    while i < len(pids):
        try:
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{task}/children") as f:
                    pids.extend(int(child) for child in f.read().split())
        except OSError:
            pass
        i += 1
    return pids


def sum_over_tree(pid: int, proc_file: str, read: Callable[[str], float]) -> float:
    """``read`` applied to ``/proc/<p>/<proc_file>`` of the process and its descendants, summed
    (a process that exits meanwhile counts as 0)."""
    total = 0.0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/{proc_file}") as f:
                total += read(f.read())
        except (OSError, StopIteration):
            pass
    return total


def vmrss_kib(pid: int) -> int:
    """Resident memory of the server: the process and its children, in KiB."""
    return int(sum_over_tree(pid, "status", lambda text: next(
        int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:"))))


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by the server process and its children."""
    def user_plus_system(text: str) -> float:
        fields = text.rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    return sum_over_tree(pid, "stat", user_plus_system) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float:
    """CPU-seconds the whole machine has been busy (all CPUs), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Http:
    """Minimal keep-alive HTTP/1.1 client for the producer (raw asyncio streams)."""

    IDLE_MAX = 3.0
    """Connections idle longer than this are dropped, not reused: uvicorn closes idle keep-alive
    connections after 5 s, and a POST written into one being closed would fail."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self.pool:  # round robin, so that every pooled connection stays in use
            reader, writer, used = self.pool.pop(0)
            if now - used < self.IDLE_MAX and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, float]:
        """Returns status, body and the time.time() at which the request started being written."""
        reader, writer = await self._connection()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        started = time.time()
        writer.write(head + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        status = int(raw.split(b" ", 2)[1])
        length = 0
        for line in raw.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await reader.readexactly(length)
        self.pool.append((reader, writer, time.monotonic()))
        return status, payload, started

    async def open(self, count: int) -> None:
        for _ in range(count):
            self.pool.append((*await asyncio.open_connection("127.0.0.1", self.port), time.monotonic()))

    async def close(self) -> None:
        for _, writer, _ in self.pool:
            writer.close()
        self.pool.clear()


async def post_event(http: Http, run_id: str, data: object) -> None:
    body = json.dumps({"event": "updates", "data": data}, separators=(",", ":")).encode()
    status, payload, _ = await http.request("POST", f"/runs/{run_id}/events", body)
    if status != 201:
        raise RuntimeError(f"POST returned {status}: {payload[:200]!r}")


@dataclass
class Produced:
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    post_latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0


async def produce(http: Http, run_id: str, rate: float, seconds: float, *, measured: bool, max_conns: int = 64) -> Produced:
    """Open loop: event i is started at t0 + i/rate on a free keep-alive connection of ``http``
    (at most ``max_conns`` in flight), whether or not earlier POSTs have returned."""
    result = Produced()
    slots = asyncio.Semaphore(max_conns)
    path = f"/runs/{run_id}/events"

    async def one(i: int) -> None:
        async with slots:
            t = time.time()
            data = {"t": t, "i": i} if measured else {"w": t}
            body = json.dumps({"event": "updates", "data": data}, separators=(",", ":")).encode()
            try:
                status, payload, _ = await http.request("POST", path, body)
            except Exception as exc:
                status, payload = 0, repr(exc).encode()
            if status == 201:
                result.sent += 1
                result.post_latencies.append(time.time() - t)
            else:
                result.failed += 1
                if len(result.errors) < 3:
                    result.errors.append(f"{status} {payload[:200]!r}")

    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    tasks = []
    t0 = loop.time()
    for i in range(total):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    result.seconds = loop.time() - t0
    return result


class Clients:
    """The subscriber child processes of one configuration."""

    def __init__(self, port: int, run_id: str, n: int, procs: int, tmp: Path) -> None:
        self.port, self.run_id, self.n, self.tmp = port, run_id, n, tmp
        per = [n // procs + (1 if k < n % procs else 0) for k in range(procs)]
        self.counts = [c for c in per if c > 0]
        self.outs = [tmp / f"lat-{uuid.uuid4().hex}.bin" for _ in self.counts]
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        for count, out in zip(self.counts, self.outs):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--_subscribers", str(self.port), self.run_id, str(count), str(out),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
            )
            self.procs.append(proc)
        for proc in self.procs:
            line = await asyncio.wait_for(proc.stdout.readline(), 90)  # type: ignore[union-attr]
            if line.strip() != b"ready":
                raise RuntimeError(f"subscriber process failed to start: {line!r}")

    async def finish(self, timeout: float) -> tuple[list[dict], array.array]:
        """Wait for every subscriber to see the final marker (``stop`` after ``timeout``)."""
        summaries = []
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
            except TimeoutError:
                proc.stdin.write(b"stop\n")  # type: ignore[union-attr]
                await proc.stdin.drain()  # type: ignore[union-attr]
                line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
            summaries.append(json.loads(line))
            await proc.wait()
        latencies = array.array("d")
        for out in self.outs:
            with open(out, "rb") as f:
                latencies.frombytes(f.read())
            out.unlink()
        return summaries, latencies

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                try:
                    proc.stdin.write(b"stop\n")  # type: ignore[union-attr]
                    await proc.stdin.drain()  # type: ignore[union-attr]
                except (BrokenPipeError, ConnectionResetError):
                    pass
        summaries = []
        for proc in self.procs:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 10)  # type: ignore[union-attr]
                if line:
                    summaries.append(json.loads(line))
                await asyncio.wait_for(proc.wait(), 10)
            except (TimeoutError, ValueError):
                pass
        self.kill()
        for out in self.outs:
            out.unlink(missing_ok=True)

    def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()


@dataclass
class ConfigResult:
    n: int
    p50: float
    p99: float
    samples: int
    delivered: str
    complete: bool
    rate: float
    post_p50: float
    post_p99: float
    server_cpu: float
    client_cpu: float
    us_per_chunk: float
    events_per_chunk: float
    others: float


def _die_with_parent() -> None:
    """In the server child: get SIGTERM should the benchmark die without cleaning up (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Server:
    def __init__(self, kind: str, tmp: Path, heartbeat: float, workers: int = 1) -> None:
        self.kind = kind
        self.port = free_port()
        self.log_path = tmp / f"{kind}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "EVENTLOG_HEARTBEAT": str(heartbeat)}
        if kind == "eventlog":
            db = tmp / "eventlog.db"
            cmd = [sys.executable, "-m", "eventlog", "serve", "--db", str(db), "--host", "127.0.0.1", "--port", str(self.port)]
            if workers > 1:
                cmd += ["--workers", str(workers)]
        else:
            script = HERE / "baselines" / "memory_broadcast.py"
            cmd = [sys.executable, str(script), "--host", "127.0.0.1", "--port", str(self.port), "--heartbeat", str(heartbeat)]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=tmp, preexec_fn=_die_with_parent
        )
        self.pid = self.proc.pid

    async def wait_healthy(self, timeout: float = 30) -> None:
        http = Http(self.port)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited: {self.log_tail()}")
            try:
                status, _, _ = await http.request("GET", "/healthz")
                if status == 200:
                    await http.close()
                    return
            except OSError:
                http.pool.clear()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} server did not come up: {self.log_tail()}")
            await asyncio.sleep(0.1)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


async def run_config(server: Server, n: int, args: argparse.Namespace, tmp: Path, *, seconds: float) -> ConfigResult:
    run_id = f"bench-{n}-{uuid.uuid4().hex[:8]}"
    http = Http(server.port)
    await post_event(http, run_id, {"w": 0})  # creates the run (both servers) before anyone subscribes
    clients = Clients(server.port, run_id, n, 1 if n < 100 else args.client_procs, tmp)
    try:
        await clients.start()
        await http.open(8)  # a producer holds keep-alive connections; more open if POSTs pile up
        cpu_ready = cpu_seconds(server.pid)
        await produce(http, run_id, args.rate, 0.5, measured=False)  # warm-up, not measured
        cpu0, wall0, machine0, own0 = cpu_seconds(server.pid), time.monotonic(), machine_cpu(), own_cpu()
        produced = await produce(http, run_id, args.rate, seconds, measured=True)
        cpu1, wall1, machine1, own1 = cpu_seconds(server.pid), time.monotonic(), machine_cpu(), own_cpu()
        await post_event(http, run_id, {"fin": 1})
        summaries, latencies = await clients.finish(timeout=30)
        cpu_done = cpu_seconds(server.pid)
    finally:
        clients.kill()
        await http.close()
    ordered = sorted(latencies)
    posts = sorted(produced.post_latencies)
    low = min(s["min_count"] for s in summaries)
    complete = all(s["done"] == s["n"] and s["min_count"] == s["max_count"] == produced.sent for s in summaries)
    errors = [e for s in summaries for e in s["errors"]]
    if errors:
        print(f"  ! subscriber errors: {errors}", file=sys.stderr)
    if produced.failed:
        print(f"  ! {produced.failed} POSTs failed (not counted as sent): {produced.errors}", file=sys.stderr)
    wall = wall1 - wall0
    server_cpu, client_cpu = cpu1 - cpu0, sum(s["cpu"] for s in summaries)
    return ConfigResult(
        n=n,
        p50=percentile(ordered, 50),
        p99=percentile(ordered, 99),
        samples=len(ordered),
        delivered=f"{len(ordered)}/{produced.sent * n}" + ("" if complete else f" (min {low}/sub)")
        + (f" ({produced.failed} POSTs failed)" if produced.failed else ""),
        complete=complete,
        rate=produced.sent / produced.seconds if produced.seconds else 0.0,
        post_p50=percentile(posts, 50),
        post_p99=percentile(posts, 99),
        server_cpu=server_cpu / wall,
        client_cpu=client_cpu / wall,
        us_per_chunk=(cpu_done - cpu_ready) / max(1, sum(s["chunks"] for s in summaries)) * 1e6,
        events_per_chunk=(produced.sent * n) / max(1, sum(s["chunks"] for s in summaries)),
        others=max(0.0, (machine1 - machine0) - server_cpu - client_cpu - (own1 - own0)) / wall,
    )


async def measure_memory(server: Server, n: int, tmp: Path, procs: int) -> float:
    """KiB of server RSS per idle open stream."""
    run_id = f"idle-{uuid.uuid4().hex[:8]}"
    http = Http(server.port)
    await post_event(http, run_id, {"w": 0})
    await http.close()
    await asyncio.sleep(0.5)
    before = vmrss_kib(server.pid)
    clients = Clients(server.port, run_id, n, procs, tmp)
    try:
        await clients.start()
        await asyncio.sleep(2.0)
        after = vmrss_kib(server.pid)
        await clients.stop()
    finally:
        clients.kill()
    return (after - before) / n


@dataclass
class ServerResult:
    configs: dict[int, ConfigResult] = field(default_factory=dict)
    kib_per_stream: float = float("nan")
    rss_start_mib: float = float("nan")


async def bench_server(kind: str, args: argparse.Namespace, tmp: Path) -> ServerResult:
    result = ServerResult()
    server = Server(kind, tmp, args.heartbeat, args.eventlog_workers if kind == "eventlog" else 1)
    where = ""
    if kind == "eventlog":
        import importlib.util

        spec = importlib.util.find_spec("eventlog")
        where = f" (package {Path(spec.origin).parent if spec and spec.origin else '?'})"
    print(f"{kind}: server pid {server.pid} on 127.0.0.1:{server.port}{where}", file=sys.stderr)
    try:
        await server.wait_healthy()
        await run_config(server, 10, args, tmp, seconds=0.5)  # warm the server's code paths
        result.rss_start_mib = vmrss_kib(server.pid) / 1024
        if args.idle_streams:
            result.kib_per_stream = await measure_memory(server, args.idle_streams, tmp, args.client_procs)
            print(f"  memory: {result.kib_per_stream:.1f} KiB per idle stream ({args.idle_streams} streams)", file=sys.stderr)
        for n in args.subscribers:
            r = await run_config(server, n, args, tmp, seconds=args.seconds)
            result.configs[n] = r
            print(
                f"  {n:>5} subscribers: p50 {r.p50 * 1000:.1f} ms  p99 {r.p99 * 1000:.1f} ms  delivered {r.delivered}  "
                f"rate {r.rate:.0f}/s  POST p99 {r.post_p99 * 1000:.1f} ms  cpu server {r.server_cpu:.0%} clients {r.client_cpu:.0%} "
                f"other processes {r.others:.0%}  server {r.us_per_chunk:.1f} us CPU/chunk, {r.events_per_chunk:.2f} events/chunk",
                file=sys.stderr,
            )
    finally:
        server.stop()
    return result


def ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def report(results: dict[str, ServerResult], args: argparse.Namespace) -> None:
    ev, base = results.get("eventlog"), results.get("baseline")
    print()
    print(f"SSE fan-out, one run, {args.rate:.0f} events/s for {args.seconds:g} s per config "
          f"({os.cpu_count()} CPUs, Python {sys.version.split()[0]}); latency = POST start -> event received, ms")
    header = f"{'subscribers':>11} | {'eventlog p50/p99':>17} | {'baseline p50/p99':>17} | {'ratio p50/p99':>13} | {'target p99<50ms @1000':>21}"
    print(header)
    print("-" * len(header))
    for n in args.subscribers:
        e = ev.configs.get(n) if ev else None
        b = base.configs.get(n) if base else None
        es = f"{ms(e.p50)} / {ms(e.p99)}" if e else "-"
        bs = f"{ms(b.p50)} / {ms(b.p99)}" if b else "-"
        ratio = f"{e.p50 / b.p50:.2f} / {e.p99 / b.p99:.2f}" if e and b else "-"
        if n == TARGET_SUBSCRIBERS and e:
            target = "PASS" if e.p99 < TARGET_P99 and e.complete else "MISS"
            target = f"{target} ({ms(e.p99)} ms)"
        else:
            target = "-"
        print(f"{n:>11} | {es:>17} | {bs:>17} | {ratio:>13} | {target:>21}")
    print()
    print(f"{'details':>11} | {'server':<8} | {'delivered':>24} | {'rate/s':>6} | {'POST p50/p99':>14} | {'srv CPU':>7} | "
          f"{'subs CPU':>8} | {'others':>6} | {'us/chunk':>8} | {'ev/chunk':>8}")
    for n in args.subscribers:
        for kind, res in (("eventlog", ev), ("baseline", base)):
            r = res.configs.get(n) if res else None
            if r:
                print(f"{n:>11} | {kind:<8} | {r.delivered:>24} | {r.rate:>6.0f} | {ms(r.post_p50) + ' / ' + ms(r.post_p99):>14} | "
                      f"{r.server_cpu:>7.0%} | {r.client_cpu:>8.0%} | {r.others:>6.0%} | {r.us_per_chunk:>8.1f} | {r.events_per_chunk:>8.2f}")
    print()
    if args.idle_streams:
        parts = []
        for kind, res in (("eventlog", ev), ("baseline", base)):
            if res:
                parts.append(f"{kind} {res.kib_per_stream:.1f} KiB (server RSS at start {res.rss_start_mib:.0f} MiB)")
        print(f"memory per idle stream ({args.idle_streams} streams, VmRSS delta / N): " + "; ".join(parts))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SSE fan-out latency and memory: eventlog vs an in-memory broadcast.")
    parser.add_argument("--seconds", type=float, default=10.0, help="producing time per configuration (default 10)")
    parser.add_argument("--subscribers", default="1,100,1000", help="comma-separated subscriber counts (default 1,100,1000)")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second POSTed (default 200)")
    parser.add_argument("--idle-streams", type=int, default=None, help="streams for the memory figure (default: the largest subscriber count; 0 skips)")
    parser.add_argument("--client-procs", type=int, default=2, help="subscriber processes for 100+ subscribers (default 2)")
    parser.add_argument("--servers", default="eventlog,baseline", help="which servers to measure (default eventlog,baseline)")
    parser.add_argument("--heartbeat", type=float, default=15.0, help="server heartbeat seconds (default 15)")
    parser.add_argument("--eventlog-workers", type=int, default=1,
                        help="serve eventlog with --workers N (default 1; CPU and RSS then cover all its processes)")
    parser.add_argument("--quick", action="store_true", help="3 s per configuration")
    args = parser.parse_args(argv)
    args.subscribers = [int(x) for x in args.subscribers.split(",") if x.strip()]
    if args.quick:
        args.seconds = min(args.seconds, 3.0)
    if args.idle_streams is None:
        args.idle_streams = max(args.subscribers)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in args.servers:
        if s not in ("eventlog", "baseline"):
            parser.error(f"unknown server {s!r}")
    return args


def raise_limits(args: argparse.Namespace) -> None:
    """The server holds one descriptor per stream, each subscriber process one per connection:
    raise the soft limit before any child starts so that every child inherits it (uvicorn's
    backlog is 2048)."""
    limit = raise_nofile(max(args.subscribers + [args.idle_streams]) + 256)
    if limit < max(args.subscribers) + 64:
        sys.exit(f"open-file limit {limit} is too low for {max(args.subscribers)} streams (raise `ulimit -n`)")


async def measure(args: argparse.Namespace) -> dict[str, ServerResult]:
    """Every server in ``args.servers`` measured, one after the other (run it with ``run``:
    the subscribers and the driver use uvloop)."""
    raise_limits(args)
    results: dict[str, ServerResult] = {}
    with tempfile.TemporaryDirectory(prefix="eventlog-sse-bench-") as tmp:
        for kind in args.servers:
            results[kind] = await bench_server(kind, args, Path(tmp))
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_subscribers":
        port, run_id, n, out = sys.argv[2:6]
        run(subscribers_main(int(port), run_id, int(n), out))
        return
    args = parse_args(sys.argv[1:])
    # SIGTERM unwinds like Ctrl-C, so the ``finally`` blocks stop the servers and subscribers.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    report(run(measure(args)), args)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
