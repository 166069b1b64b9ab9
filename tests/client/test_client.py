"""``eventlog.client`` against a real server on 127.0.0.1: every method, sync and async, typed
errors, retries (a lost answer, a busy file, a kill -9), and ``follow`` without duplicates."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx_sse import ServerSentEvent

from eventlog import DatabaseBusy, End, Gap, InvalidData, InvalidEventName, InvalidInput, InvalidRunId, RunEnded, RunNotFound
from eventlog.client import AsyncClient, AuthRefused, Client, Core, ServerError, ServerUnreachable, StreamedEvent
from tests.client.proxy import Proxy
from tests.helpers.hold_lock import LockHolder
from tests.http.server import ServerProcess, free_port

pytestmark = pytest.mark.backends

AnyClient = Client | AsyncClient


@pytest.fixture(params=["sync", "async"])
async def any_client(request: pytest.FixtureRequest, shared_server: ServerProcess) -> AsyncIterator[AnyClient]:
    if request.param == "sync":
        with Client(shared_server.url) as client:
            yield client
    else:
        async with AsyncClient(shared_server.url) as client:
            yield client


async def call(client: AnyClient, method: str, *args: Any, **kwargs: Any) -> Any:
    """``client.method(...)``, awaited when the client is an AsyncClient."""
    result = getattr(client, method)(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


async def followed(client: AnyClient, run_id: str, after: int | None = None) -> list[Any]:
    """Every item of ``follow`` up to its end."""
    items = client.follow(run_id, after)
    if isinstance(items, AsyncIterator):
        return [item async for item in items]
    return await asyncio.to_thread(list, items)


async def test_every_method(any_client: AnyClient, request: pytest.FixtureRequest) -> None:
    run = f"methods-{request.node.callspec.id}"
    assert await call(any_client, "run", run) is None
    first = await call(any_client, "append", run, "step", {"n": 1})
    ids = await call(any_client, "append_many", run, [("step", {"n": 2}), ("note", "naïve ✓")])
    assert ids == [first + 1, first + 2]

    info = await call(any_client, "run", run)
    assert (info.run_id, info.event_count, info.first_id, info.last_id, info.ended) == (run, 3, first, first + 2, False)
    assert run in [i.run_id for i in await call(any_client, "runs", status="running", limit=1000)]
    assert run not in [i.run_id for i in await call(any_client, "runs", status="ended", limit=1000)]
    page = await call(any_client, "read", run, after=first, limit=1)
    assert [(e.id, e.event, e.data) for e in page] == [(first + 1, "step", {"n": 2})]

    end_id = await call(any_client, "end", run, "done")
    assert await call(any_client, "end", run, "done") == end_id  # ending again is a no-op
    assert (await call(any_client, "run", run)).end_reason == "done"
    assert [i.run_id for i in await call(any_client, "runs", status="ended", limit=1000)].count(run) == 1

    items = await followed(any_client, run)
    assert items == [
        StreamedEvent(first, run, "step", '{"n":1}'), StreamedEvent(first + 1, run, "step", '{"n":2}'),
        StreamedEvent(first + 2, run, "note", '"naïve ✓"'), End(end_id, "done"),
    ]
    assert await followed(any_client, run, after=first + 1) == items[2:]

    assert await call(any_client, "delete", run) is True
    assert await call(any_client, "delete", run) is False
    assert await call(any_client, "run", run) is None


async def test_runs_pages(any_client: AnyClient, request: pytest.FixtureRequest) -> None:
    names = [f"page-{request.node.callspec.id}-{i}" for i in range(3)]
    for name in names:
        await call(any_client, "append", name, "x")
    newest = [i.run_id for i in await call(any_client, "runs", limit=2)]
    older = [i.run_id for i in await call(any_client, "runs", limit=2, offset=2)]
    assert newest == names[::-1][:2] and older[0] == names[0]


async def test_typed_errors(any_client: AnyClient, request: pytest.FixtureRequest) -> None:
    run = f"errors-{request.node.callspec.id}"
    with pytest.raises(RunNotFound) as missing:
        await call(any_client, "end", run)
    assert missing.value.run_id == run and run in str(missing.value)
    with pytest.raises(RunNotFound):
        await followed(any_client, run)

    await call(any_client, "append", run, "x")
    await call(any_client, "end", run, "success")
    with pytest.raises(RunEnded) as ended:
        await call(any_client, "append", run, "late")
    assert ended.value.run_id == run
    with pytest.raises(RunEnded):
        await call(any_client, "end", run, "another reason")

    with pytest.raises(InvalidEventName):  # checked by the server
        await call(any_client, "append", run, "end")
    with pytest.raises(ServerError) as bad:  # a code that has no eventlog.errors class
        await call(any_client, "runs", limit=5000)
    assert (bad.value.code, bad.value.status) == ("invalid_limit", 400)

    with pytest.raises(InvalidRunId):  # checked before sending
        await call(any_client, "append", "no spaces allowed", "x")
    with pytest.raises(InvalidData):
        await call(any_client, "append", run, "x", float("nan"))


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://host", "http://", "http://host/?q=1"])
def test_base_url_is_checked(url: str) -> None:
    with pytest.raises(InvalidInput):
        Client(url)
    with pytest.raises(InvalidInput):
        AsyncClient(url)


async def test_unreachable_after_the_deadline() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, retry_deadline=0.3) as client:
        with pytest.raises(ServerUnreachable, match=url):
            client.append("r", "x")
        with pytest.raises(ServerUnreachable):
            list(client.follow("r"))
    async with AsyncClient(url, retry_deadline=0.3) as aclient:
        with pytest.raises(ServerUnreachable, match=url):
            await aclient.runs()


async def test_token_is_sent_as_bearer(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "eventlog.db", env={"EVENTLOG_API_KEY": "s3cret"}).start()
    try:
        with Client(server.url, token="s3cret") as client:
            assert client.append("r", "x") == 1
            client.end("r")
            assert [type(item) for item in client.follow("r")] == [StreamedEvent, End]
        for token in (None, "wrong"):
            with Client(server.url, token=token) as client, pytest.raises(AuthRefused) as refused:
                client.runs()
            assert refused.value.status == 401
            async with AsyncClient(server.url, token=token) as aclient:
                with pytest.raises(AuthRefused):
                    [i async for i in aclient.follow("r")]
    finally:
        server.kill()


def test_a_lost_answer_is_retried_and_written_once(shared_server: ServerProcess) -> None:
    """The server commits the batch, the answer is lost on the way: the retry carries the same
    idempotency key, so it answers the same ids and writes nothing more."""
    proxy = Proxy(shared_server.port)
    try:
        with Client(proxy.url) as client:
            proxy.lose_next_answer = True
            ids = client.append_many("lost-answer", [("x", 1), ("x", 2)])
            assert not proxy.lose_next_answer, "the first answer was lost"
            stored = client.read("lost-answer")
            assert [(e.id, e.data) for e in stored] == [(ids[0], 1), (ids[1], 2)]
    finally:
        proxy.close()


async def test_a_busy_file_is_retried_after_retry_after(tmp_path: Path) -> None:
    """503 database_busy with Retry-After: retried until the peer lets go (written once), or
    raised as DatabaseBusy once the deadline has passed."""
    server = ServerProcess(tmp_path / "eventlog.db", env={"EVENTLOG_LOCK_TIMEOUT": "0.2"}).start()
    proxy = Proxy(server.port)
    try:
        with Client(proxy.url, retry_deadline=0.5) as client:
            client.append("busy", "x", 0)
            peer = LockHolder(server.db)
            try:
                with pytest.raises(DatabaseBusy):
                    client.append("busy", "x", -1)
            finally:
                peer.release()
        async with AsyncClient(proxy.url, retry_deadline=60) as aclient:
            peer = LockHolder(server.db)
            try:
                proxy.statuses.clear()
                appending = asyncio.create_task(aclient.append_many("busy", [("x", 1), ("x", 2)]))
                await asyncio.to_thread(proxy.wait_for_status, 503)
            finally:
                peer.release()
            await appending
            assert [e.data for e in await aclient.read("busy")] == [0, 1, 2]
    finally:
        proxy.close()
        server.kill()


def test_follow_across_dropped_connections(shared_server: ServerProcess) -> None:
    """The relay drops the stream three times while the server lives on: each reconnect asks
    to resume after the last event yielded, and every event comes once."""
    proxy = Proxy(shared_server.port)
    try:
        with Client(shared_server.url) as producer, Client(proxy.url) as client:
            producer.append_many("dropped", [("step", n) for n in range(3)])
            items = client.follow("dropped")
            received = [next(items) for _ in range(3)]
            cursors = []
            for n in range(3, 9, 2):
                cursors.append(received[-1].id)
                proxy.cut()
                producer.append_many("dropped", [("step", n), ("step", n + 1)])
                received += [next(items) for _ in range(2)]
            producer.end("dropped")
            assert isinstance(next(items), End)
        assert [e.data for e in received] == list(range(9))
        streams = [head.lower() for head in proxy.requests if head.startswith(b"GET /runs/dropped/stream")]
        assert b"last-event-id" not in streams[0]
        assert [f"last-event-id: {cursor}\r\n".encode() in head for head, cursor in zip(streams[1:], cursors)] == [True] * 3
    finally:
        proxy.close()


def test_follow_across_kill_9(server: ServerProcess) -> None:
    """A producer appends (with the client) while the server is killed with SIGKILL and
    started again: the follower yields every event once, in order, then the end."""
    total, half = 40, 20
    followed_items: list[Any] = []
    seen_half, killed = threading.Event(), threading.Event()
    produced: list[int] = []

    def follow() -> None:
        with Client(server.url, retry_deadline=60) as client:
            for item in client.follow("crash"):
                followed_items.append(item)
                if len(followed_items) == half:
                    seen_half.set()

    def produce() -> None:
        with Client(server.url, retry_deadline=60) as client:
            for n in range(1, total):
                if n == half:
                    assert killed.wait(60)
                produced.append(client.append("crash", "step", {"n": n}))
            produced.append(client.end("crash"))

    with Client(server.url) as client:
        produced.append(client.append("crash", "step", {"n": 0}))  # the run exists before it is followed
    threads = [threading.Thread(target=follow), threading.Thread(target=produce)]
    for thread in threads:
        thread.start()
    assert seen_half.wait(60)
    server.kill()
    killed.set()  # the producer now appends into a dead server, retrying
    server.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()

    events, end = followed_items[:-1], followed_items[-1]
    assert [e.data["n"] for e in events] == list(range(total))
    assert [e.id for e in events] + [end.id] == produced
    assert end == End(produced[-1], "success")


async def test_async_follow_across_kill_9(server: ServerProcess) -> None:
    async with AsyncClient(server.url, retry_deadline=60) as client:
        first = await client.append_many("crash", [("step", n) for n in range(5)])
        items = client.follow("crash")
        assert [(await anext(items)).data for _ in range(5)] == list(range(5))
        server.kill()
        restarting = asyncio.create_task(asyncio.to_thread(server.start))
        later = await client.append_many("crash", [("step", n) for n in range(5, 10)])  # retried
        await restarting
        await client.end("crash", "done")
        rest = [item async for item in items]
    assert [e.data for e in rest[:-1]] == list(range(5, 10))
    assert [e.id for e in rest[:-1]] == later and later[0] > first[-1]
    assert rest[-1] == End(later[-1] + 1, "done")


async def test_a_gap_is_a_typed_item(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "eventlog.db", env={
        "EVENTLOG_RETENTION_MAX_EVENTS": "5", "EVENTLOG_RETENTION_INTERVAL": "0.1",
    }).start()
    try:
        async with AsyncClient(server.url) as client:
            ids = await client.append_many("trimmed", [("step", n) for n in range(20)])
            for _ in range(600):
                info = await client.run("trimmed")
                if info is not None and info.trimmed_through >= ids[-6]:
                    break
                await asyncio.sleep(0.05)
            await client.end("trimmed")
            items = [item async for item in client.follow("trimmed", after=ids[0])]
        gap, *events, end = items
        assert isinstance(gap, Gap) and gap.requested == ids[0] and gap.earliest > ids[0]
        assert [e.id for e in events] == [i for i in ids if i >= gap.earliest]
        assert isinstance(end, End)
    finally:
        server.kill()


def test_heartbeats_repeats_and_a_repeated_gap_yield_nothing() -> None:
    """What httpx-sse yields for heartbeat comments (an empty message carrying the last id), an
    event already yielded, and the same gap on a second connection: none of them is an item."""
    follow = Core("http://127.0.0.1:1", token=None, timeout=1, stream_timeout=1, retry_deadline=0).follow("r", None)
    gap = '{"code":"stream_replay_gap","requested_event_id":0,"earliest_available_event_id":5,"latest_available_event_id":9}'
    frames = [
        ServerSentEvent(retry=1000), ServerSentEvent(event="gap", data=gap), ServerSentEvent(event="step", data="1", id="5"),
        ServerSentEvent(data="", id="5"),  # a heartbeat
        ServerSentEvent(event="gap", data=gap),  # reconnected: the same gap again
        ServerSentEvent(event="step", data="1", id="5"), ServerSentEvent(event="step", data="2", id="6"),
        ServerSentEvent(event="end", data='{"reason":"done"}', id="7"),
    ]
    items = [item for item in map(follow.item, frames) if item is not None]
    assert items == [Gap(0, 5, 9), StreamedEvent(5, "r", "step", "1"), StreamedEvent(6, "r", "step", "2"), End(7, "done")]
    assert follow.done and follow.cursor == 7
