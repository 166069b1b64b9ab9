"""The Durable Streams protocol beyond what its conformance suite checks: the same log as the run
API, the same credentials, wake-ups across processes, retention, byte-exact bodies and the SSE
base64 encoding, on a real server (both backends)."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eventlog.http.auth import mint_token
from tests.conftest import new_database
from tests.http.server import ServerProcess

pytestmark = pytest.mark.backends

KEY = "producer-key"
SECRET = "reader-secret-for-tests-0123456789abcdef"


def stream_url(server: ServerProcess, name: str) -> str:
    return f"{server.url}/v1/stream/{name}"


def sse_events(response: httpx.Response) -> list[tuple[str, str]]:
    """The (event, data) pairs of a whole SSE body (the data lines of an event joined by LF)."""
    events = []
    for block in response.text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next(line[6:].strip() for line in lines if line.startswith("event:"))
        data = "\n".join(line[5:] for line in lines if line.startswith("data:"))
        events.append((name, data))
    return events


def test_a_stream_is_a_run_of_the_log(client: httpx.Client) -> None:
    """A JSON stream's messages are the run's events; closing it ends the run; a run made
    with the run API is no stream, and its path cannot be taken for one."""
    name = "ds-interop-1"
    assert client.put(f"/v1/stream/{name}", headers={"Content-Type": "application/json"}, content=b'[{"a":1}]').status_code == 201
    assert client.post(f"/v1/stream/{name}", headers={"Content-Type": "application/json"}, content=b'[{"b":2},3]').status_code == 204
    assert client.post(f"/v1/stream/{name}", headers={"Stream-Closed": "true"}).status_code == 204
    events = client.get(f"/runs/{name}/events").json()["events"]
    assert [(e["event"], e["data"]) for e in events] == [
        ("message", {"a": 1}), ("message", {"b": 2}), ("message", 3), ("end", {"reason": "closed"}),
    ]
    run = client.get(f"/runs/{name}").json()
    assert run["status"] == "ended" and run["metadata"]["stream"]["content_type"] == "application/json"

    client.post("/runs", json={"run_id": "plain-run-1"}).raise_for_status()
    assert client.get("/v1/stream/plain-run-1").status_code == 404
    taken = client.put("/v1/stream/plain-run-1", headers={"Content-Type": "text/plain"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "stream_conflict"


def test_bodies_are_stored_byte_exact(client: httpx.Client) -> None:
    body = bytes(range(256)) * 3 + b"\x00\xff\r\n\r"
    name = "ds-bytes-1"
    put = client.put(f"/v1/stream/{name}", headers={"Content-Type": "application/octet-stream"}, content=body[:100])
    assert put.status_code == 201
    assert client.post(f"/v1/stream/{name}", headers={"Content-Type": "application/octet-stream"}, content=body[100:]).status_code == 204
    read = client.get(f"/v1/stream/{name}", params={"offset": "-1"})
    assert read.content == body
    client.post(f"/v1/stream/{name}", headers={"Stream-Closed": "true"}).raise_for_status()
    sse = client.get(f"/v1/stream/{name}", params={"offset": "-1", "live": "sse"})
    assert sse.headers["stream-sse-data-encoding"] == "base64"
    data = b"".join(base64.b64decode(d.replace("\n", "")) for e, d in sse_events(sse) if e == "data")
    assert data == body
    assert json.loads(sse_events(sse)[-1][1])["streamClosed"] is True


def test_bad_stream_paths_and_bodies_are_clear_errors(client: httpx.Client) -> None:
    bad_path = client.put("/v1/stream/not%20a%20run%20id", headers={"Content-Type": "text/plain"})
    assert bad_path.status_code == 400 and bad_path.json()["error"]["code"] == "invalid_stream_path"
    client.put("/v1/stream/ds-json-1", headers={"Content-Type": "application/json"}).raise_for_status()
    for body in (b"{", b"NaN", b"[1, Infinity]", b"\xff"):
        response = client.post("/v1/stream/ds-json-1", headers={"Content-Type": "application/json"}, content=body)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json", body
    assert client.get("/v1/stream/ds-json-1").json() == []


@pytest.fixture(scope="module")
def secured(request: pytest.FixtureRequest, backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("ds-auth")
    server = ServerProcess(
        new_database(request, backend, folder / "eventlog.db"), log_path=folder / "server.log",
        env={"EVENTLOG_API_KEY": KEY, "EVENTLOG_JWT_SECRET": SECRET},
    ).start()
    yield server
    server.kill()


def test_writers_need_the_api_key_and_readers_a_token_for_the_stream(secured: ServerProcess) -> None:
    url = stream_url(secured, "ds-secret-1")
    producer = {"Authorization": f"Bearer {KEY}"}
    reader = {"Authorization": f"Bearer {mint_token(SECRET, ['ds-secret-*'], 60)}"}
    stranger = {"Authorization": f"Bearer {mint_token(SECRET, ['other-*'], 60)}"}
    assert httpx.put(url, headers={"Content-Type": "text/plain"}, content=b"x").status_code == 401
    assert httpx.put(url, headers={**reader, "Content-Type": "text/plain"}, content=b"x").status_code == 403
    assert httpx.put(url, headers={**producer, "Content-Type": "text/plain"}, content=b"hello").status_code == 201
    for method in ("POST", "DELETE"):
        assert httpx.request(method, url, headers={**reader, "Content-Type": "text/plain"}, content=b"!").status_code == 403
    assert httpx.get(url, headers=reader).content == b"hello"
    assert httpx.head(url, headers=reader).status_code == 200
    assert httpx.get(url, headers=stranger).status_code == 403
    assert httpx.get(url).status_code == 401
    # EventSource cannot set headers: the token may come as a query parameter, as for runs
    token = reader["Authorization"].removeprefix("Bearer ")
    closed = httpx.post(url, headers={**producer, "Stream-Closed": "true"})
    assert closed.status_code == 204
    sse = httpx.get(url, params={"offset": "-1", "live": "sse", "access_token": token})
    assert sse.status_code == 200 and sse_events(sse)[0] == ("data", "hello")


def test_a_long_poll_is_woken_by_an_append_through_another_server(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    """Two servers on one log (SQLite: one file; PostgreSQL: one database): a reader waiting on
    one is woken by an append through the other, long before the long-poll timeout."""
    database = new_database(request, backend, tmp_path / "shared.db")
    env = {"EVENTLOG_LONG_POLL_TIMEOUT": "30"}
    first = ServerProcess(database, env=env, log_path=tmp_path / "first.log").start()
    second = ServerProcess(database, env=env, log_path=tmp_path / "second.log").start()
    try:
        created = httpx.put(stream_url(first, "ds-wake-1"), headers={"Content-Type": "text/plain"})
        tail = created.headers["stream-next-offset"]
        with httpx.Client(timeout=60) as http:
            answers: list[httpx.Response] = []
            waiter = threading.Thread(target=lambda: answers.append(http.get(
                stream_url(second, "ds-wake-1"), params={"offset": tail, "live": "long-poll"}
            )))
            started = time.monotonic()
            waiter.start()
            time.sleep(0.5)  # the reader is waiting on the second server by now
            httpx.post(stream_url(first, "ds-wake-1"), headers={"Content-Type": "text/plain"}, content=b"news")
            waiter.join(30)
        assert answers and answers[0].status_code == 200 and answers[0].content == b"news"
        assert time.monotonic() - started < 25, "woken by the long-poll timeout, not by the append"
        assert answers[0].headers["stream-cursor"]
    finally:
        first.kill()
        second.kill()


def test_retention_trims_streams_and_an_offset_before_what_it_kept_is_gone(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    database = new_database(request, backend, tmp_path / "trimmed.db")
    server = ServerProcess(database, env={"EVENTLOG_RETENTION_MAX_EVENTS": "2", "EVENTLOG_RETENTION_INTERVAL": "0.1"},
                           log_path=tmp_path / "server.log").start()
    try:
        url = stream_url(server, "ds-trim-1")
        offsets = [httpx.put(url, headers={"Content-Type": "text/plain"}).headers["stream-next-offset"]]
        for part in (b"a", b"b", b"c", b"d"):
            offsets.append(httpx.post(url, headers={"Content-Type": "text/plain"}, content=part).headers["stream-next-offset"])
        deadline = time.monotonic() + 20
        while httpx.get(url).content != b"cd" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(url).content == b"cd"  # from the start: what retention kept
        gone = httpx.get(url, params={"offset": offsets[1]})
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "offset_gone"
        assert httpx.get(url, params={"offset": offsets[2]}).content == b"cd"
    finally:
        server.kill()


def test_a_parent_kept_for_its_forks_is_gone_from_the_run_api(client: httpx.Client) -> None:
    text = {"Content-Type": "text/plain"}
    client.put("/v1/stream/ds-parent-1", headers=text, content=b"inherited,").raise_for_status()
    client.put("/v1/stream/ds-child-1", headers={"Stream-Forked-From": "/v1/stream/ds-parent-1"}).raise_for_status()
    assert client.delete("/v1/stream/ds-parent-1").status_code == 204
    assert client.get("/v1/stream/ds-parent-1").status_code == 410
    assert client.get("/runs/ds-parent-1").status_code == 404
    assert "ds-parent-1" not in [run["run_id"] for run in client.get("/runs", params={"limit": 1000}).json()["runs"]]
    refused = client.post("/runs/ds-parent-1/events", json={"event": "x", "data": 1})
    assert refused.status_code == 410 and refused.json()["error"]["code"] == "run_deleted"
    assert client.get("/v1/stream/ds-child-1").content == b"inherited,"  # still read through the fork


def test_sigterm_ends_sse_and_long_poll_reads_at_once_and_whole(server: ServerProcess) -> None:
    """uvicorn waits for open responses before it stops; live protocol reads end as soon as
    it is told to, as complete responses (no cut connection, no graceful-shutdown timeout)."""
    url = stream_url(server, "ds-sigterm-1")
    httpx.put(url, headers={"Content-Type": "text/plain"}, content=b"before").raise_for_status()

    async def read_live() -> tuple[list[tuple[str, str]], int]:
        async with httpx.AsyncClient(timeout=30) as http:
            long_poll = asyncio.ensure_future(http.get(url, params={"offset": "now", "live": "long-poll"}))
            async with http.stream("GET", url, params={"offset": "-1", "live": "sse"}) as sse:
                body = b""
                async for chunk in sse.aiter_bytes():  # a cut connection raises here
                    body += chunk
                    if b"event: control" in body and server.process is not None and server.process.poll() is None:
                        await asyncio.sleep(0.2)  # the long-poll is waiting too
                        server.process.send_signal(signal.SIGTERM)
            return sse_events(httpx.Response(200, content=body)), (await long_poll).status_code

    events, long_poll_status = asyncio.run(read_live())
    assert events[0] == ("data", "before") and events[-1][0] == "control"
    assert long_poll_status == 204
    assert server.process is not None
    server.process.wait(10)
    log = server.log_path.read_text()
    assert "Application shutdown complete" in log and "timeout graceful shutdown exceeded" not in log


def test_a_reader_leaving_a_live_read_mid_wait_ends_it_cleanly(server: ServerProcess) -> None:
    """SSE and long-poll readers that hang up while the server waits for data: their waits
    end with them, without an error (an error there used to break the connection's
    neighbours)."""
    url = stream_url(server, "ds-leave-1")
    httpx.put(url, headers={"Content-Type": "text/plain"}).raise_for_status()
    for _ in range(3):
        with httpx.Client(timeout=5) as http:
            with http.stream("GET", url, params={"offset": "-1", "live": "sse"}) as sse:
                next(sse.iter_bytes())  # the first control event: the server now waits
        with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=0.3) as http:
            http.get(url, params={"offset": "now", "live": "long-poll"})
    assert httpx.post(url, headers={"Content-Type": "text/plain"}, content=b"after").status_code == 204
    time.sleep(0.3)
    log = server.log_path.read_text()
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log[-3000:]
