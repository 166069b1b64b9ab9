"""The real LangGraph SDK (``langgraph_sdk``) consuming eventlog runs through the LangGraph join
surface, across a server kill -9 (and a SIGTERM) and restart.

``client.runs.join_stream(thread_id, run_id)`` GETs ``/threads/{thread_id}/runs/{run_id}/stream``;
the server's same-origin ``Location`` header makes the SDK reconnect by itself after a drop (up to
5 attempts with back-off, sending the last id it saw as ``Last-Event-ID``), and after a clean close
without ``end`` it asks ``GET /threads/{thread_id}/runs/{run_id}`` and reconnects while the run is
``running``. Meanwhile a producer appends with ``Idempotency-Key`` headers and retries every POST
that the crash cut off, so every event must reach the SDK exactly once, in order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import NotFoundError
from langgraph_sdk.schema import StreamPart

from tests.http.server import ServerProcess

pytestmark = [
    pytest.mark.backends,
    pytest.mark.timeout(90),
    # The SDK warns when it reconnects without a cursor (events would be lost): make that fatal.
    pytest.mark.filterwarnings("error:Reconnecting without a Last-Event-ID"),
]

NAMES = ["metadata", "values", "updates", "messages", "custom", "updates|agent|tools"]
RETRY_FOR = 30.0  # seconds a producer keeps retrying a request while the server is down


def new_ids() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:12]
    return f"thread-{suffix}", f"run-{suffix}"


async def post_retrying(http: httpx.AsyncClient, path: str, body: dict[str, Any],
                        headers: dict[str, str] | None = None) -> httpx.Response:
    """POST until the server answers: a request cut off by the crash, or refused while the
    server is down, is sent again (with the same ``Idempotency-Key``, so at most once)."""
    deadline = time.monotonic() + RETRY_FOR
    while True:
        try:
            return await http.post(path, json=body, headers=headers)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def create_run(http: httpx.AsyncClient, thread_id: str, run_id: str) -> None:
    response = await http.post("/runs", json={"run_id": run_id, "metadata": {"thread_id": thread_id}})
    assert response.status_code == 201, response.text


async def end_run(http: httpx.AsyncClient, run_id: str, reason: str = "success") -> int:
    response = await post_retrying(http, f"/runs/{run_id}/end", {"reason": reason})
    assert response.status_code in (200, 201), response.text  # 200: a retry of an end that landed
    return response.json()["id"]


async def consume(client: Any, thread_id: str, run_id: str, parts: list[StreamPart], **kwargs: Any) -> None:
    async for part in client.runs.join_stream(thread_id, run_id, **kwargs):
        parts.append(part)


async def wait_until(condition: Any, *, watch: tuple[asyncio.Task[None], ...] = (), timeout: float = 25.0,
                     what: str = "condition") -> None:
    """Poll ``condition``; a watched task that failed meanwhile fails the test with its own error."""
    deadline = time.monotonic() + timeout
    while not condition():
        for task in watch:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"{task.get_name()} failed while waiting for {what}") from task.exception()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def restart(server: ServerProcess, how: str) -> None:
    """Stop the server (SIGKILL of every process, or SIGTERM) and start it on the same file and
    port, off the event loop so the SDK and the producer keep running meanwhile."""
    if how == "kill":
        await asyncio.to_thread(server.restart)
    else:
        await asyncio.to_thread(server.terminate)
        await asyncio.to_thread(server.start)


@pytest.mark.parametrize("how", ["kill", "term"])
async def test_join_stream_survives_server_restart(server: ServerProcess, how: str) -> None:
    thread_id, run_id = new_ids()
    total = 60
    appended: list[tuple[int, str, Any]] = []  # (id, event, data) as acknowledged, in order
    parts: list[StreamPart] = []

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http, \
            get_client(url=server.url, api_key=None) as client:
        await create_run(http, thread_id, run_id)
        # Some history before the SDK joins: replayed (join_stream without a cursor starts at the beginning).
        first = await http.post(f"/runs/{run_id}/events", headers={"Idempotency-Key": "history"},
                                json={"events": [{"event": "metadata", "data": {"run_id": run_id}},
                                                 {"event": "values", "data": {"n": -1}}]})
        assert first.status_code == 201
        appended += zip(first.json()["ids"], ["metadata", "values"], [{"run_id": run_id}, {"n": -1}], strict=True)

        sent: list[tuple[str, dict[str, Any], int]] = []  # (key, body, id) of every acknowledged POST

        async def produce() -> None:
            for n in range(total):
                event, data = NAMES[n % len(NAMES)], {"n": n, "text": "x" * (n % 7)}
                body, key = {"event": event, "data": data}, f"event-{n}"
                response = await post_retrying(http, f"/runs/{run_id}/events", body, headers={"Idempotency-Key": key})
                assert response.status_code == 201, response.text
                [event_id] = response.json()["ids"]
                appended.append((event_id, event, data))
                sent.append((key, body, event_id))
                await asyncio.sleep(0.01)

        consumer = asyncio.create_task(consume(client, thread_id, run_id, parts), name="the SDK's join_stream")
        producer = asyncio.create_task(produce(), name="the producer")
        try:
            await wait_until(lambda: len(parts) >= 12, watch=(consumer, producer), what="the SDK to receive events before the restart")
            assert not producer.done()  # the restart happens mid-production
            received_before = len(parts)
            acknowledged_before = list(sent[-3:])
            await restart(server, how)
            # A producer whose acknowledgements were lost in the crash sends those POSTs again, with
            # the same keys: the original ids come back and nothing is appended twice.
            for key, body, event_id in acknowledged_before:
                again = await post_retrying(http, f"/runs/{run_id}/events", body, headers={"Idempotency-Key": key})
                assert again.status_code == 201 and again.json() == {"ids": [event_id]}, again.text
            await asyncio.wait_for(producer, 40)
            # Events appended after the restart: the old connection is gone, so the SDK reconnected.
            await wait_until(lambda: len(parts) >= len(appended), watch=(consumer,), what="every event to reach the SDK")
            end_id = await end_run(http, run_id)
            await asyncio.wait_for(consumer, 30)  # the SDK's iterator finishes by itself after `end`
        finally:
            for task in (consumer, producer):
                task.cancel()
            await asyncio.gather(consumer, producer, return_exceptions=True)

    assert received_before < total
    got = [(int(p.id), p.event, p.data) for p in parts[:-1]]
    assert got == appended  # every event exactly once, in order, with its data
    assert len({event_id for event_id, _, _ in appended}) == total + 2
    assert parts[-1] == StreamPart(event="end", data={"reason": "success"}, id=str(end_id))


async def test_join_stream_mode_filter(server: ServerProcess) -> None:
    thread_id, run_id = new_ids()
    names = ["metadata", "values", "updates", "updates|sub|graph", "updatesish", "messages",
             "messages|sub", "custom", "values", "updates"]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http, \
            get_client(url=server.url, api_key=None) as client:
        await create_run(http, thread_id, run_id)
        response = await http.post(f"/runs/{run_id}/events",
                                   json={"events": [{"event": name, "data": {"i": i}} for i, name in enumerate(names)]})
        assert response.status_code == 201
        ids = response.json()["ids"]
        end_id = await end_run(http, run_id)

        async def join(**kwargs: Any) -> list[tuple[int, str, Any]]:
            parts: list[StreamPart] = []
            await asyncio.wait_for(consume(client, thread_id, run_id, parts, **kwargs), 30)
            assert parts[-1] == StreamPart(event="end", data={"reason": "success"}, id=str(end_id))
            return [(int(p.id), p.event, p.data["i"]) for p in parts[:-1]]

        def expected(*modes: str) -> list[tuple[int, str, Any]]:
            return [(ids[i], name, i) for i, name in enumerate(names)
                    if not modes or name in modes or name.split("|")[0] in modes and "|" in name]

        assert await join(stream_mode=["updates"]) == expected("updates")
        assert [name for _, name, _ in expected("updates")] == ["updates", "updates|sub|graph", "updates"]
        assert await join(stream_mode="values") == expected("values")
        assert await join(stream_mode=["messages", "custom"]) == expected("messages", "custom")
        assert await join() == expected()  # no filter: everything
        # A cursor through the SDK's own last_event_id argument, combined with a filter.
        after_cursor = await join(stream_mode=["updates"], last_event_id=str(ids[2]))
        assert after_cursor == [item for item in expected("updates") if item[0] > ids[2]]


async def test_run_status_running_then_from_end_reason(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http, \
            get_client(url=server.url, api_key=None) as client:
        outcomes = {"success": "success", "error": "error", "interrupted": "interrupted"}
        for reason, status in outcomes.items():
            thread_id, run_id = new_ids()
            await create_run(http, thread_id, run_id)
            assert await client.runs.get(thread_id, run_id) == {"run_id": run_id, "thread_id": thread_id, "status": "running"}
            await http.post(f"/runs/{run_id}/events", json={"event": "values", "data": {}})
            assert (await client.runs.get(thread_id, run_id))["status"] == "running"
            await end_run(http, run_id, reason)
            assert await client.runs.get(thread_id, run_id) == {"run_id": run_id, "thread_id": thread_id, "status": status}

            # The SDK joining an ended run gets the history and the end (with its reason), then stops.
            parts: list[StreamPart] = []
            await asyncio.wait_for(consume(client, thread_id, run_id, parts), 30)
            assert [p.event for p in parts] == ["values", "end"]
            assert parts[-1].data == {"reason": reason}

        # The thread id must match the run's metadata.thread_id; unknown runs are 404s too.
        with pytest.raises(NotFoundError):
            await client.runs.get("some-other-thread", run_id)
        with pytest.raises(NotFoundError):
            await client.runs.get(thread_id, "no-such-run")
        with pytest.raises(NotFoundError):
            async for _ in client.runs.join_stream("some-other-thread", run_id):
                pass
