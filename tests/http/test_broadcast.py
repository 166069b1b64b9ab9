"""The live edge of SSE: one broadcast per run, slow clients falling back to the file, failures.

Over HTTP with a real server, and, for the failure paths of the broadcast itself, against a real
EventLog with members that record what they are given (or fail)."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest

from eventlog import EventLog
from eventlog.http.broadcast import Broadcasts, Live
from eventlog.http.sse import StreamCounter
from eventlog.http.stream import Stream, finish_suspended
from tests.http.server import ServerProcess
from tests.http.sse_client import consume


def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


def metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]


async def test_streams_at_the_live_edge_and_late_joiners_get_every_event(shared_server: ServerProcess) -> None:
    run_id = new_run()
    url = f"{shared_server.url}/runs/{run_id}/stream"
    async with httpx.AsyncClient(base_url=shared_server.url) as http:
        first = (await http.post(f"/runs/{run_id}/events", json={"event": "updates", "data": 0})).json()["ids"]
        live = [asyncio.create_task(consume(url, deadline=30)) for _ in range(20)]
        await asyncio.sleep(0.5)
        ids = list(first)
        for i in range(1, 40):
            ids += (await http.post(f"/runs/{run_id}/events", json={"event": "updates", "data": i})).json()["ids"]
            if i == 20:  # joins mid-run: replays from the file, then takes the broadcast
                late = asyncio.create_task(consume(url, last_event_id=ids[10], deadline=30))
        end = (await http.post(f"/runs/{run_id}/end")).json()["id"]
    for received in await asyncio.gather(*live):
        assert received.ids == ids + [end]
        assert received.data == list(range(40))
    assert (await late).ids == ids[11:] + [end]


def test_a_slow_client_falls_back_to_the_file_and_holds_nobody_up(shared_server: ServerProcess) -> None:
    """A client that stops reading fills its socket buffers: it leaves the broadcast while a
    fast client keeps receiving, and once it reads again it gets every event, in order."""
    run_id = new_run()
    payload = "x" * 60_000
    start = httpx.post(f"{shared_server.url}/runs/{run_id}/events", json={"event": "updates", "data": "start"}).json()["ids"]
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", shared_server.port))
    slow.sendall(f"GET /runs/{run_id}/stream HTTP/1.1\r\nHost: x\r\n\r\n".encode())

    async def fast_reader_and_producer() -> tuple[list[int], list[int]]:
        reader = asyncio.create_task(consume(f"{shared_server.url}/runs/{run_id}/stream", deadline=60))
        await asyncio.sleep(0.5)
        ids = list(start)
        async with httpx.AsyncClient(base_url=shared_server.url, timeout=10) as http:
            for i in range(150):  # 9 MB: far more than the slow client's buffers hold
                ids += (await http.post(f"/runs/{run_id}/events", json={"event": "updates", "data": payload})).json()["ids"]
            ids.append((await http.post(f"/runs/{run_id}/end")).json()["id"])
            return ids, (await asyncio.wait_for(reader, 30)).ids  # done while the slow one still stalls

    ids, fast = asyncio.run(fast_reader_and_producer())
    assert fast == ids
    slow.settimeout(20)
    raw = b""
    while not raw.endswith(b"0\r\n\r\n"):
        chunk = slow.recv(1 << 20)
        assert chunk, "the slow client's stream was cut"
        raw += chunk
    slow.close()
    received = [int(i) for i in re.findall(rb"^id: (\d+)$", raw, re.M)]
    assert received == ids


def open_raw_stream(port: int, run_id: str) -> socket.socket:
    """A stream read by hand, once its ``retry:`` hint has arrived."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET /runs/{run_id}/stream HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.settimeout(10)
    head = b""
    while b"retry:" not in head:
        head += sock.recv(4096)
    return sock


def test_a_client_that_goes_away_is_noticed_at_once(tmp_path: Path) -> None:
    """Idle streams send nothing for a minute (the heartbeat): only listening for the
    disconnect can notice within seconds."""
    server = ServerProcess(tmp_path / "eventlog.db", env={"EVENTLOG_HEARTBEAT": "60"}).start()
    try:
        run_id = new_run()
        httpx.post(f"{server.url}/runs/{run_id}/events", json={"event": "updates", "data": 0})
        sockets = [open_raw_stream(server.port, run_id) for _ in range(5)]
        assert metric(server, "eventlog_active_streams") == 5
        for sock in sockets:
            sock.close()
        deadline = time.monotonic() + 5
        while metric(server, "eventlog_active_streams") != 0:
            assert time.monotonic() < deadline, "closed connections still count as streams"
            time.sleep(0.05)
    finally:
        server.kill()


class Recorder:
    """A member that keeps what the broadcast hands it."""

    def __init__(self, run_id: str, cursor: int | None = None, *, fail: bool = False) -> None:
        self.run_id = run_id
        self.cursor = cursor
        self.fail = fail
        self.chunks: list[bytes] = []
        self.closed = 0

    def deliver(self, live: Live) -> None:
        if self.fail:
            raise RuntimeError("this stream is broken")
        self.chunks.append(live.chunk)
        self.cursor = live.last or self.cursor

    def close(self) -> None:
        self.closed += 1


async def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_a_failing_member_is_dropped_and_closed_and_the_others_go_on(log: EventLog, caplog: pytest.LogCaptureFixture) -> None:
    await log.append("r", "updates", 0)
    cursor = (await log.run("r")).last_id  # type: ignore[union-attr]
    broadcasts = Broadcasts(log, heartbeat=30)
    good, broken = Recorder("r", cursor), Recorder("r", cursor, fail=True)
    broadcast = broadcasts.join(good)
    assert broadcast is not None and broadcasts.join(broken) is broadcast
    await log.append("r", "updates", 1)
    await wait_for(lambda: len(good.chunks) == 1)
    assert broken.closed == 1 and list(broadcast.members) == [good]
    assert "this stream is broken" in caplog.text
    await log.append("r", "updates", 2)
    await wait_for(lambda: len(good.chunks) == 2)
    assert b'data: 2' in good.chunks[1]
    broadcast.leave(good)
    assert broadcasts.runs == 0  # the last member gone, the broadcast stops


async def test_a_member_behind_the_broadcast_must_catch_up_first(log: EventLog) -> None:
    await log.append("r", "updates", 0)
    cursor = (await log.run("r")).last_id  # type: ignore[union-attr]
    broadcasts = Broadcasts(log, heartbeat=30)
    first = Recorder("r", cursor)
    broadcasts.join(first)
    await log.append("r", "updates", 1)
    await wait_for(lambda: len(first.chunks) == 1)
    assert broadcasts.join(Recorder("r", cursor)) is None
    assert broadcasts.join(Recorder("r", first.cursor)) is not None


async def test_heartbeats_and_the_end_reach_every_member(log: EventLog) -> None:
    await log.append("r", "updates", 0)
    cursor = (await log.run("r")).last_id  # type: ignore[union-attr]
    broadcasts = Broadcasts(log, heartbeat=0.1)
    members = [Recorder("r", cursor) for _ in range(3)]
    for member in members:
        broadcasts.join(member)
    await wait_for(lambda: all(member.chunks for member in members))
    assert all(member.chunks[0] == b": heartbeat\n\n" for member in members)
    await log.end("r")
    await wait_for(lambda: all(member.chunks[-1].endswith(b'data: {"reason":"success"}\n\n') for member in members))
    await wait_for(lambda: broadcasts.runs == 0)
    assert all(member.closed == 0 for member in members)  # ended by the end frame, not closed


async def test_closing_the_log_or_the_server_closes_the_members(db_path: Path) -> None:
    async with EventLog.open(db_path) as log:
        await log.append("a", "updates", 0)
        await log.append("b", "updates", 0)
        broadcasts = Broadcasts(log, heartbeat=30)
        a, b = Recorder("a", (await log.run("a")).last_id), Recorder("b", (await log.run("b")).last_id)  # type: ignore[union-attr]
        broadcasts.join(a)
        broadcasts.join(b)
        await asyncio.sleep(0.1)
        broadcasts.close()  # the server is told to stop
        assert a.closed and b.closed and broadcasts.runs == 0
        late = Recorder("a", a.cursor)
        assert broadcasts.join(late) is None and late.closed == 1
        broadcasts = Broadcasts(log, heartbeat=30)
        c = Recorder("a", a.cursor)
        broadcasts.join(c)
        await asyncio.sleep(0.1)
    await wait_for(lambda: c.closed == 1)  # the log closed under the broadcast


async def test_finish_suspended_runs_a_coroutine_on_in_another_task() -> None:
    loop = asyncio.get_running_loop()
    gates = [loop.create_future(), loop.create_future()]
    steps = []

    async def send() -> None:
        for gate in gates:
            steps.append(await gate)

    coroutine = send()
    waiting = coroutine.send(None)  # as the broadcast does: it suspends on the first gate
    assert waiting is gates[0]
    finisher = asyncio.create_task(finish_suspended(coroutine, waiting))
    gates[0].set_result(1)
    gates[1].set_result(2)
    await finisher
    assert steps == [1, 2]

    gate = loop.create_future()

    async def stuck() -> None:
        await gate

    coroutine = stuck()
    finisher = asyncio.create_task(finish_suspended(coroutine, coroutine.send(None)))
    await asyncio.sleep(0)
    finisher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finisher
    assert coroutine.cr_frame is None  # the coroutine was cancelled too, not left suspended


async def test_a_broadcast_that_fails_closes_its_members(log: EventLog, caplog: pytest.LogCaptureFixture) -> None:
    """Its subscription refuses the run (an invalid id, which a route would have answered with
    422): the failure is logged and every member is closed, so its client reconnects."""
    broadcasts = Broadcasts(log, heartbeat=30)
    members = [Recorder("bad\nid", 0) for _ in range(2)]
    for member in members:
        broadcasts.join(member)
    await wait_for(lambda: all(member.closed for member in members))
    assert "the broadcast of run bad" in caplog.text and "invalid" in caplog.text.lower()
    assert broadcasts.runs == 0


async def test_a_stream_whose_replay_fails_is_ended(log: EventLog, caplog: pytest.LogCaptureFixture) -> None:
    """The catch-up task fails (here its connection's send raises mid-replay): logged, and the
    response is ended rather than left open with no more frames."""
    for i in range(3):
        await log.append("r", "updates", i)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        if message.get("body", b"").startswith(b"id:"):
            raise ConnectionError("the connection broke")
        sent.append(message)

    async def receive() -> dict:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    stream = Stream(log, Broadcasts(log, heartbeat=30), "r", after=None, retry_ms=1000, on_gap="continue", counter=StreamCounter())
    request = asyncio.create_task(stream({"type": "http"}, receive, send))  # type: ignore[arg-type]
    await wait_for(lambda: stream.done)
    assert "a stream of run r failed" in caplog.text and "the connection broke" in caplog.text
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request


async def test_a_replay_under_way_ends_when_the_server_shuts_down(log: EventLog) -> None:
    """Mid-replay (its client reading slowly), the server is told to stop: the stream ends
    after the chunk in flight instead of replaying the rest of the run first."""
    await log.append_many("r", [("updates", i) for i in range(3000)])  # several pages
    sent: list[dict] = []
    reading = asyncio.Event()

    async def send(message: dict) -> None:
        sent.append(message)
        if message.get("body", b"").startswith(b"id:"):
            await reading.wait()  # a client that has stopped reading for now

    async def receive() -> dict:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    broadcasts = Broadcasts(log, heartbeat=30)
    stream = Stream(log, broadcasts, "r", after=None, retry_ms=1000, on_gap="continue", counter=StreamCounter())
    request = asyncio.create_task(stream({"type": "http"}, receive, send))  # type: ignore[arg-type]
    await wait_for(lambda: len(sent) == 3)  # the head, the retry hint, the first page
    broadcasts.close()
    reading.set()
    await wait_for(lambda: stream.done)
    assert len(sent) == 4 and sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert stream.cursor is not None and stream.cursor < (await log.run("r")).last_id  # type: ignore[union-attr]
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
