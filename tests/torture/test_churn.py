"""Connection churn and never-reading clients against a real server: thousands of SSE
connections opened and dropped, then 300 clients that send the stream request and never read a
byte while a producer appends, then a few that 20 MB go past (so the server's sends to them
stall beyond what the kernel buffers). No stream, task or descriptor stays behind (the server's fds come
back to the baseline), its memory stays flat within a generous bound once they are gone, and a
consumer reading alongside them gets every event, in order."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

import httpx

from benchmarks.sse import process_tree, vmrss_kib
from tests.http.server import ServerProcess
from tests.http.sse_client import consume
from tests.torture.figures import Figures
from tests.torture.producer import post_acknowledged

RUN = "churn"
PAD = "x" * 2000
NEVER_READERS = 300
POSTS = 1  # of 200 KB, read by each never-reader: on loopback the kernel's socket buffers take it
STALLED = 4
STALL_POSTS = 100  # 20 MB per stalled reader: far more than the kernel buffers (4 MB at most)
STALL_BOUND_KIB = 40 * 1024  # what buffering the 16 MB beyond them would cost, and then some
FD_SLACK = 5  # descriptors the server may legitimately open meanwhile (reader threads' files...)
RSS_BOUND_KIB = 64 * 1024  # generous: what the server may keep after the storm (allocator caches)
SETTLE = 20.0  # seconds to wait for the server to let go of everything


def server_fds(server: ServerProcess) -> int:
    """Open descriptors of the server and its worker processes."""
    assert server.process is not None
    total = 0
    for pid in process_tree(server.process.pid):
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass  # exited meanwhile
    return total


def server_rss_kib(server: ServerProcess) -> int:
    assert server.process is not None
    return vmrss_kib(server.process.pid)


def metric(server: ServerProcess, name: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def settle(condition: Callable[[], bool]) -> bool:
    """Wait (up to ``SETTLE``) for ``condition``; its last answer."""
    deadline = time.monotonic() + SETTLE
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


async def churn(server: ServerProcess, connections: int, figures: Figures) -> None:
    """Open streams 20 at a time and drop each one after its first line (or mid-replay)."""

    async def one(http: httpx.AsyncClient, n: int) -> None:
        async with http.stream("GET", f"{server.url}/runs/{RUN}/stream") as response:
            assert response.status_code == 200
            lines = 0
            async for _ in response.aiter_lines():
                lines += 1
                if lines > n % 6:  # the retry hint, the blank line, then into the event
                    break  # leave: closes the connection

    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=20)) as http:
        for start in range(0, connections, 20):
            await asyncio.gather(*(one(http, n) for n in range(start, min(connections, start + 20))))
            figures.operations += min(20, connections - start)
            figures.faults += min(20, connections - start)


def never_reader(server: ServerProcess, run: str) -> socket.socket:
    """A client that asks for the stream and then never reads (a small receive buffer: the
    socket's buffers fill sooner)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET /runs/{run}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


async def never_readers_round(server: ServerProcess, http: httpx.AsyncClient, run: str, readers: int,
                              posts: int, figures: Figures) -> tuple[list[int], int]:
    """``readers`` never-readers on ``run`` while a producer makes ``posts`` POSTs of 100 events
    of 2 KB (200 KB each) and a consumer reads the run to its end; the consumer must get every
    event. Returns the acknowledged ids and the server's highest RSS meanwhile."""
    acked = (await post_acknowledged(http, f"/runs/{run}/events", {"event": "metadata", "data": {}}, "first", figures))["ids"]
    sockets = [never_reader(server, run) for _ in range(readers)]
    figures.faults += readers
    figures.operations += readers
    peak = 0
    try:
        assert await asyncio.to_thread(settle, lambda: metric(server, "eventlog_active_streams") >= readers)
        consumer = asyncio.create_task(consume(f"{server.url}/runs/{run}/stream", deadline=120))
        for b in range(posts):
            body = {"events": [{"event": "updates", "data": {"b": b, "k": k, "pad": PAD}} for k in range(100)]}
            acked += (await post_acknowledged(http, f"/runs/{run}/events", body, f"b{b}", figures))["ids"]
            peak = max(peak, server_rss_kib(server))
        assert metric(server, "eventlog_active_streams") >= readers, "a never-reader's stream was dropped"
        acked.append((await post_acknowledged(http, f"/runs/{run}/end", {"reason": "success"}, None, figures))["id"])
        received = await asyncio.wait_for(consumer, 120)
    finally:
        for sock in sockets:
            sock.close()
    figures.tally(acked, received.ids)
    assert received.ids == acked, "the consumer beside the never-readers missed or repeated events"
    return acked, peak


def streams_closed(server: ServerProcess) -> bool:
    return metric(server, "eventlog_active_streams") == 0 and metric(server, "eventlog_live_runs") == 0


async def test_churn_and_never_reading_clients(tmp_path, scale: int, figures: Figures) -> None:
    """``2000 x scale`` dropped connections, then ``300`` never-readers (``scale`` rounds)."""
    server = ServerProcess(tmp_path / "churn.db").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            acked = (await post_acknowledged(http, f"/runs/{RUN}/events", {"event": "metadata", "data": {}}, "first", figures))["ids"]
            # Warm up allocations, caches and thread pools: streams dropped, and 20 MB written and
            # read (the first time takes the server some 50 MB that it keeps, readers or not).
            await churn(server, 100, figures)
            acked += (await never_readers_round(server, http, "warm-up", 0, STALL_POSTS, figures))[0]
            assert await asyncio.to_thread(settle, lambda: streams_closed(server))
            fds, rss = server_fds(server), server_rss_kib(server)

            await churn(server, 2000 * scale, figures)
            assert metric(server, "eventlog_streams_total") >= 100 + 2000 * scale  # they all got a stream
            assert await asyncio.to_thread(settle, lambda: streams_closed(server))
            assert await asyncio.to_thread(settle, lambda: server_fds(server) <= fds + FD_SLACK), (server_fds(server), fds)
            rss_churned = server_rss_kib(server)

            peak = 0
            for r in range(scale):
                round_acked, rss_held = await never_readers_round(server, http, f"hung-{r}", NEVER_READERS, POSTS, figures)
                acked += round_acked
                peak = max(peak, rss_held)
                assert await asyncio.to_thread(settle, lambda: streams_closed(server))

            # A few never-readers that 20 MB go past: the server's sends to them stall, and a slow
            # reader must cost no memory (it reads from the file at its own pace).
            rss_before_stall = server_rss_kib(server)
            round_acked, rss_stalled = await never_readers_round(server, http, "stalled", STALLED, STALL_POSTS, figures)
            acked += round_acked
            assert await asyncio.to_thread(settle, lambda: streams_closed(server))

            assert await asyncio.to_thread(settle, lambda: server_fds(server) <= fds + FD_SLACK), (server_fds(server), fds)
            rss_after = server_rss_kib(server)
    finally:
        server.kill()
    figures.acknowledged = len(acked)
    figures.note(f"server fds {fds} at baseline and after; RSS {rss // 1024} MB at baseline, {rss_churned // 1024} "
                 f"after churn, {peak // 1024} peak with 300 never-readers, {rss_stalled // 1024} peak with "
                 f"{STALLED} stalled (from {rss_before_stall // 1024}), {rss_after // 1024} after they left")
    assert rss_churned - rss <= RSS_BOUND_KIB and rss_after - rss <= RSS_BOUND_KIB, "the server kept memory"
    assert rss_stalled - rss_before_stall <= STALL_BOUND_KIB, "the server buffers what stalled readers do not read"
    figures.check()
