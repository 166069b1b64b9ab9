"""Server kill -9 loop: an idempotent HTTP producer keeps appending while the server is killed
with SIGKILL and restarted on the same file and port, cycle after cycle; three SSE consumers
(one from the start, two joining later, one of them resuming from a Last-Event-ID) reconnect
after every kill. Each must see every acknowledged event exactly once, in order, with no gap,
and the file must hold exactly the acknowledged events."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from eventlog import EventLog
from tests.http.server import ServerProcess
from tests.http.sse_client import Received, consume
from tests.torture.figures import Figures
from tests.torture.producer import post_acknowledged
from tests.torture.waits import wait_until

pytestmark = pytest.mark.backends

RUN = "kill-loop"
PROGRESS = 8  # events acknowledged between two kills, so every kill interrupts real traffic


async def test_server_kill9_loop(database, tmp_path, scale: int, figures: Figures, rng: random.Random) -> None:  # type: ignore[no-untyped-def]
    """``6 x scale`` kills; batches of 1-3 events, each POST with its own key. On PostgreSQL the
    server process dies, the database does not: the same contract holds."""
    cycles = 6 * scale
    server = ServerProcess(database, log_path=tmp_path / "server.log").start()
    url = f"{server.url}/runs/{RUN}"
    acknowledged: list[int] = []
    produced: list[dict] = []
    killing = True

    async def produce(http: httpx.AsyncClient) -> None:
        i = 0
        while killing or i < 20:
            batch = [{"event": "updates", "data": {"i": i, "k": k}} for k in range(1 + i % 3)]
            answer = await post_acknowledged(http, f"{url}/events", {"events": batch}, f"batch-{i}", figures)
            acknowledged.extend(answer["ids"])
            produced.extend(event["data"] for event in batch)
            i += 1
            await asyncio.sleep(rng.uniform(0, 0.01))
        # Ending is idempotent by itself: a repeat with the same reason returns the same id.
        end = await post_acknowledged(http, f"{url}/end", {"reason": "success"}, None, figures)
        acknowledged.append(end["id"])

    async def kill_loop() -> None:
        nonlocal killing
        for _ in range(cycles):
            reached = len(acknowledged) + PROGRESS
            await wait_until(lambda: len(acknowledged) >= reached)
            await asyncio.sleep(rng.uniform(0, 0.05))
            await asyncio.to_thread(server.restart)
            figures.faults += 1
        killing = False

    async def join_later(after_kills: int, resume: bool) -> tuple[int | None, Received]:
        await wait_until(lambda: figures.faults >= after_kills, deadline)
        last_event_id = acknowledged[len(acknowledged) // 2] if resume else None
        received = Received()
        await consume(f"{url}/stream", last_event_id=last_event_id, deadline=deadline, received=received)
        return last_event_id, received

    deadline = 60.0 + 15 * cycles
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            await post_acknowledged(http, f"{url}/events", {"event": "metadata", "data": {}}, "first", figures)
            consumers = [asyncio.create_task(join_later(n, resume=n == 2)) for n in range(3)]
            await asyncio.gather(kill_loop(), produce(http))
        results = await asyncio.wait_for(asyncio.gather(*consumers), deadline)
    finally:
        server.kill()

    figures.acknowledged = len(acknowledged) + 1  # and the first event
    async with EventLog.open(server.db) as log:
        stored = await log.read(RUN, limit=10_000)
    everything = [stored[0].id, *acknowledged]
    figures.tally(everything, [e.id for e in stored])
    assert [e.id for e in stored] == everything, "the file holds other events than the acknowledged ones"
    assert [e.data for e in stored[1:-1]] == produced

    for last_event_id, received in results:
        expected = [eid for eid in everything if last_event_id is None or eid > last_event_id]
        figures.tally(expected, received.ids)
        figures.error("consumer reconnects", received.connections - 1)
        assert received.gaps == []
        assert received.ids == expected, "a consumer saw a gap, a repeat or a reordering"
        assert received.end == {"reason": "success"}
    assert results[0][1].connections >= 2  # the first consumer really was cut off, and came back
    figures.check()
