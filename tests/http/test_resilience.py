"""Several processes on one file, graceful shutdown. (The kill -9 loop and the disconnect storm
are in tests/torture/.)"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.http.server import ServerProcess
from tests.http.sse_client import Received, consume


pytestmark = pytest.mark.backends


def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


def test_two_servers_on_one_file_wake_each_other(database: Path | str, tmp_path: Path) -> None:
    """A stream held by one process wakes when another process appends: with a 30 s fallback
    poll, only the file-change notification (or PostgreSQL's NOTIFY) can make it arrive quickly."""
    env = {"EVENTLOG_POLL_INTERVAL": "30"}
    a = ServerProcess(database, env=env, log_path=tmp_path / "a.log").start()
    b = ServerProcess(database, env=env, log_path=tmp_path / "b.log").start()
    try:
        run_id = new_run()
        httpx.post(f"{a.url}/runs/{run_id}/events", json={"event": "updates", "data": 0})

        async def scenario() -> Received:
            reader = asyncio.create_task(consume(f"{a.url}/runs/{run_id}/stream", deadline=20))
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient(base_url=b.url) as http:
                for i in range(1, 6):
                    await http.post(f"/runs/{run_id}/events", json={"event": "updates", "data": i})
                started = time.monotonic()
                await http.post(f"/runs/{run_id}/end")
            received = await reader
            assert time.monotonic() - started < 5
            return received

        received = asyncio.run(scenario())
        assert received.data == [0, 1, 2, 3, 4, 5]
    finally:
        a.kill()
        b.kill()


def test_workers_share_wakeups(database: Path | str, tmp_path: Path) -> None:
    """With --workers 2, streams on either worker are woken by appends handled by either."""
    server = ServerProcess(database, workers=2, env={"EVENTLOG_POLL_INTERVAL": "30"}, log_path=tmp_path / "server.log").start()
    try:
        assert len(server.worker_pids()) >= 3  # the supervisor and two workers
        run_id = new_run()
        httpx.post(f"{server.url}/runs/{run_id}/events", json={"event": "updates", "data": 0})

        async def scenario() -> list[Received]:
            readers = [asyncio.create_task(consume(f"{server.url}/runs/{run_id}/stream", deadline=20)) for _ in range(8)]
            await asyncio.sleep(1.0)
            async with httpx.AsyncClient(base_url=server.url) as http:
                for i in range(1, 11):
                    await http.post(f"/runs/{run_id}/events", json={"event": "updates", "data": i})
                await http.post(f"/runs/{run_id}/end")
            return await asyncio.gather(*readers)

        for received in asyncio.run(scenario()):
            assert received.data == list(range(11))
    finally:
        server.kill()


def test_sigterm_closes_streams_promptly_and_loses_nothing(server: ServerProcess) -> None:
    run_id = new_run()
    ids = httpx.post(f"{server.url}/runs/{run_id}/events", json={"events": [{"event": "updates", "data": i} for i in range(5)]}).json()["ids"]

    async def hold_stream() -> float:
        async with httpx.AsyncClient(timeout=30) as http:
            async with http.stream("GET", f"{server.url}/runs/{run_id}/stream") as response:
                signalled = None
                try:
                    async for line in response.aiter_lines():
                        if line.startswith(f"id: {ids[-1]}") and signalled is None:
                            assert server.process is not None
                            server.process.send_signal(signal.SIGTERM)
                            signalled = time.monotonic()
                except httpx.HTTPError:
                    pass
                assert signalled is not None
                return time.monotonic() - signalled

    closed_after = asyncio.run(hold_stream())
    assert closed_after < 2.0, f"stream stayed open {closed_after:.2f}s after SIGTERM"
    assert server.process is not None
    server.process.wait(10)  # uvicorn re-raises SIGTERM after a graceful shutdown
    assert "Application shutdown complete" in server.log_path.read_text()
    server.start()
    events = httpx.get(f"{server.url}/runs/{run_id}/events").json()["events"]
    assert [e["id"] for e in events] == ids
