"""Two nodes: two ``eventlog serve`` processes on different ports sharing one PostgreSQL
database, as the README's two-node setup. An append through A reaches a stream on B (NOTIFY,
not polling: the fallback poll is 30 s), and a stream on A resumes on B after A is kill -9'ed,
with nothing lost or repeated."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.http.server import ServerProcess
from tests.http.sse_client import Received, consume

pytestmark = pytest.mark.postgres


async def arrived(received: Received, count: int, deadline: float = 10.0) -> None:
    stop_at = time.monotonic() + deadline
    while len(received.ids) < count:
        assert time.monotonic() < stop_at, f"{len(received.ids)} of {count} events arrived within {deadline}s"
        await asyncio.sleep(0.02)


def test_an_append_through_a_reaches_b_and_a_stream_resumes_on_b_after_a_is_killed(postgres_cluster, tmp_path: Path) -> None:
    database = postgres_cluster.new_database()
    env = {"EVENTLOG_POLL_INTERVAL": "30"}
    a = ServerProcess(database, env=env, log_path=tmp_path / "a.log").start()
    b = ServerProcess(database, env=env, log_path=tmp_path / "b.log").start()
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    on_a, on_b = Received(), Received()
    try:
        assert httpx.post(f"{a.url}/runs", json={"run_id": run_id}).status_code == 201

        async def scenario() -> None:
            b_stream = asyncio.create_task(consume(f"{b.url}/runs/{run_id}/stream", received=on_b, deadline=60))
            a_stream = asyncio.create_task(consume(f"{a.url}/runs/{run_id}/stream", received=on_a, deadline=60))
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient(timeout=10) as http:
                for i in range(5):
                    assert (await http.post(f"{a.url}/runs/{run_id}/events", json={"event": "updates", "data": i})).status_code == 201
                await arrived(on_b, 5)  # appended through A, streamed by B
                await arrived(on_a, 5)
                a.kill()  # SIGKILL: no shutdown code runs
                a_stream.cancel()
                resumed = asyncio.create_task(
                    consume(f"{b.url}/runs/{run_id}/stream", last_event_id=on_a.ids[-1], received=on_a, deadline=60)
                )
                for i in range(5, 10):
                    assert (await http.post(f"{b.url}/runs/{run_id}/events", json={"event": "updates", "data": i})).status_code == 201
                assert (await http.post(f"{b.url}/runs/{run_id}/end")).status_code == 201
            await asyncio.wait_for(asyncio.gather(b_stream, resumed), 30)

        asyncio.run(scenario())
        stored = httpx.get(f"{b.url}/runs/{run_id}/events").json()["events"]
        assert on_b.data == on_a.data == list(range(10))
        assert on_a.ids == on_b.ids == [e["id"] for e in stored]
        assert on_a.connections == 2  # the second one, to B, resumed after the last id seen on A
    finally:
        a.kill()
        b.kill()
