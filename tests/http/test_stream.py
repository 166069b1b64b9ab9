"""The SSE stream: replay, resume, heartbeats, gaps, end, headers, bad cursors."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.http.server import ServerProcess
from tests.http.sse_client import consume

pytestmark = pytest.mark.backends


def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


def append(client: httpx.Client, run_id: str, *values: object) -> list[int]:
    response = client.post(f"/runs/{run_id}/events", json={"events": [{"event": "updates", "data": v} for v in values]})
    assert response.status_code == 201, response.text
    return response.json()["ids"]


def raw_lines(url: str, headers: dict[str, str] | None = None, *, until: str, timeout: float = 10.0) -> list[str]:
    """The raw lines of a stream, up to the first line that starts with ``until``."""
    lines: list[str] = []
    with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith(until):
                return lines
    raise AssertionError(f"stream closed before a line starting with {until!r}: {lines}")


async def test_replay_then_live_then_end(shared_server: ServerProcess, client: httpx.Client) -> None:
    run_id = new_run()
    first = append(client, run_id, 1, 2, 3)
    reader = asyncio.create_task(consume(f"{shared_server.url}/runs/{run_id}/stream", deadline=20))
    await asyncio.sleep(0.5)
    later = await asyncio.to_thread(append, client, run_id, 4, 5)
    end = (await asyncio.to_thread(client.post, f"/runs/{run_id}/end", json={"reason": "success"})).json()["id"]
    received = await reader
    assert received.ids == first + later + [end]
    assert received.data == [1, 2, 3, 4, 5]
    assert received.end == {"reason": "success"}


def test_first_frame_is_retry_hint_and_headers(shared_server: ServerProcess, client: httpx.Client) -> None:
    run_id = new_run()
    append(client, run_id, 1)
    with httpx.stream("GET", f"{shared_server.url}/runs/{run_id}/stream", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        first = next(response.iter_lines())
    assert first == "retry: 1000"


def test_head_gets_the_stream_headers_and_no_stream(shared_server: ServerProcess, client: httpx.Client) -> None:
    run_id = new_run()
    append(client, run_id, 1)
    before = client.get("/metrics").text
    response = client.head(f"/runs/{run_id}/stream", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == b""
    assert client.head(f"/runs/missing-{run_id}/stream").status_code == 404
    # No stream was opened for it (one would stay open, tailing the run, for as long as the
    # connection lives).
    opened = [line for line in (before, client.get("/metrics").text) for line in line.splitlines()
              if line.startswith("eventlog_streams_total")]
    assert opened[0] == opened[1]


def test_frames_are_exact(shared_server: ServerProcess, client: httpx.Client) -> None:
    run_id = new_run()
    [event_id] = client.post(f"/runs/{run_id}/events", json={"event": "messages|sub", "data": {"text": "a\nb", "n": [1, 2]}}).json()["ids"]
    lines = raw_lines(f"{shared_server.url}/runs/{run_id}/stream", until="data:")
    assert lines[-3:] == [f"id: {event_id}", "event: messages|sub", 'data: {"text":"a\\nb","n":[1,2]}']


def test_resume_from_header_and_query(shared_server: ServerProcess, client: httpx.Client) -> None:
    run_id = new_run()
    ids = append(client, run_id, "a", "b", "c", "d")
    end = client.post(f"/runs/{run_id}/end").json()["id"]
    url = f"{shared_server.url}/runs/{run_id}/stream"
    assert asyncio.run(consume(url, last_event_id=ids[1])).ids == ids[2:] + [end]
    assert asyncio.run(consume(f"{url}?last_event_id={ids[2]}")).ids == ids[3:] + [end]
    # The header wins over the query parameter: browsers send it on their own reconnects.
    assert asyncio.run(consume(f"{url}?last_event_id={ids[0]}", last_event_id=ids[2])).ids == ids[3:] + [end]


def test_cursor_at_end_gets_end_at_once(shared_server: ServerProcess, client: httpx.Client) -> None:
    run_id = new_run()
    append(client, run_id, 1)
    end = client.post(f"/runs/{run_id}/end", json={"reason": "error"}).json()["id"]
    for cursor in (end, end + 1000):
        received = asyncio.run(consume(f"{shared_server.url}/runs/{run_id}/stream", last_event_id=cursor, deadline=5))
        assert received.ids == [end] and received.end == {"reason": "error"}


async def test_cursor_beyond_newest_tails_live(shared_server: ServerProcess, client: httpx.Client) -> None:
    run_id = new_run()
    [old] = await asyncio.to_thread(append, client, run_id, "old")
    reader = asyncio.create_task(consume(f"{shared_server.url}/runs/{run_id}/stream", last_event_id=old + 10**9, deadline=20))
    await asyncio.sleep(0.5)
    new = await asyncio.to_thread(append, client, run_id, "new")
    end = (await asyncio.to_thread(client.post, f"/runs/{run_id}/end")).json()["id"]
    assert (await reader).ids == new + [end]


def test_heartbeat_comment_while_idle(shared_server: ServerProcess, client: httpx.Client) -> None:
    run_id = new_run()
    append(client, run_id, 1)
    lines = raw_lines(f"{shared_server.url}/runs/{run_id}/stream", until=":", timeout=10)
    assert lines[-1] == ": heartbeat"


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "1e3", "7 8", "99999999999999999999999"])
def test_malformed_last_event_id_is_400(shared_server: ServerProcess, client: httpx.Client, cursor: str) -> None:
    run_id = new_run()
    append(client, run_id, 1)
    for response in (
        client.get(f"/runs/{run_id}/stream", headers={"Last-Event-ID": cursor}),
        client.get(f"/runs/{run_id}/stream", params={"last_event_id": cursor}),
    ):
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_last_event_id"


def test_stream_errors(shared_server: ServerProcess, client: httpx.Client) -> None:
    assert client.get(f"/runs/{new_run()}/stream").status_code == 404
    assert client.get("/runs/bad%0Aid/stream").json()["error"]["code"] == "invalid_run_id"
    run_id = new_run()
    append(client, run_id, 1)
    assert client.get(f"/runs/{run_id}/stream", params={"on_gap": "explode"}).status_code == 400


@pytest.fixture
def trimming_server(database, tmp_path) -> ServerProcess:
    process = ServerProcess(
        database, env={"EVENTLOG_RETENTION_MAX_EVENTS": "3", "EVENTLOG_RETENTION_INTERVAL": "0.05"},
        log_path=tmp_path / "server.log",
    ).start()
    yield process
    process.kill()


def trimmed(server: ServerProcess, run_id: str, deadline: float = 10.0) -> dict:
    stop_at = time.monotonic() + deadline
    while time.monotonic() < stop_at:
        info = httpx.get(f"{server.url}/runs/{run_id}").json()
        if info["event_count"] <= 3 and info["trimmed_through"]:
            return info
        time.sleep(0.05)
    raise AssertionError("retention did not trim the run")


def test_gap_then_continue_or_stop(trimming_server: ServerProcess) -> None:
    run_id = new_run()
    with httpx.Client(base_url=trimming_server.url) as client:
        ids = append(client, run_id, *range(10))
        info = trimmed(trimming_server, run_id)
        end = client.post(f"/runs/{run_id}/end").json()["id"]
    url = f"{trimming_server.url}/runs/{run_id}/stream"
    received = asyncio.run(consume(url, last_event_id=ids[0]))
    assert received.gaps == [{
        "code": "stream_replay_gap",
        "requested_event_id": ids[0],
        "earliest_available_event_id": ids[-3],
        "latest_available_event_id": end,
        "recovery": "reload_durable_state",
    }]
    assert info["first_id"] == ids[-3]
    assert received.ids == ids[-3:] + [end]
    lines = raw_lines(f"{url}?on_gap=stop", {"Last-Event-ID": str(ids[0])}, until="data:")
    assert lines[-2] == "event: gap"
    with httpx.stream("GET", f"{url}?on_gap=stop", headers={"Last-Event-ID": str(ids[0])}, timeout=10) as response:
        body = response.read().decode()
    assert "event: gap" in body and "id: " not in body  # stopped right after the gap frame
    # No cursor at all: the earliest retained event, no gap.
    assert asyncio.run(consume(url)).gaps == []
