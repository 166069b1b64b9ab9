"""A Durable Streams stream across kill -9 of the server: an idempotent producer writes it, a
long-poll reader and an SSE reader tail it, and the server is SIGKILLed twice, mid-stream and
right after the stream's closure, and restarted on the same database and port each time.

What must hold (PROTOCOL.md 5.2.1, 5.7, 5.8): each reader resumes from its last
Stream-Next-Offset (long-poll) or control event's streamNextOffset (SSE) and ends with every
acknowledged byte exactly once, in order, and the closure; the producer's retry of a batch that
was acknowledged before the kill is deduplicated (204), the closing one included; the closure
written before the last kill is there after the restart, for new readers too.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.http.durable_streams import Producer, append_headers, new_stream, next_offset, stream_url
from tests.http.server import ServerProcess

pytestmark = pytest.mark.backends

TEXT = "text/plain"
BATCHES = 30  # the last one closes the stream
KILL_AFTER = 12  # batches acknowledged before the first kill
READ_DEADLINE = 60.0
RETRY_PAUSE = 0.1  # between a reader's failed connection and its next attempt


def batch(seq: int) -> bytes:
    """Batch ``seq``'s bytes: lines that name it, of sizes that vary with it."""
    return b"".join(b"batch %03d line %02d\n" % (seq, line) for line in range(1 + seq % 7))


@dataclass
class Read:
    """What a reader took from the stream: the bytes up to the offsets it was given, the
    connections that failed under it, and whether it saw the closure."""

    data: bytes = b""
    offset: str = "-1"
    interruptions: int = 0
    closed: bool = False


async def read_long_poll(url: str, read: Read, stop_at: str | None = None) -> Read:
    """Long-poll from ``read.offset`` until the closure (or, with ``stop_at``, that offset),
    retrying each failed request at the offset of the last answer."""
    cursor: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as http:
        while not read.closed and read.offset != stop_at:
            try:
                response = await http.get(url, params={"offset": read.offset, "live": "long-poll", **cursor})
            except httpx.TransportError:
                read.interruptions += 1
                await asyncio.sleep(RETRY_PAUSE)
                continue
            assert response.status_code in (200, 204), (response.status_code, response.text)
            read.data += response.content
            read.offset = next_offset(response)
            read.closed = response.headers.get("Stream-Closed") == "true"
            cursor = {"cursor": response.headers["Stream-Cursor"]} if "Stream-Cursor" in response.headers else {}
    return read


async def read_sse(url: str, read: Read, stop_at: str | None = None) -> Read:
    """Read with ``live=sse`` from ``read.offset`` until the closure (or ``stop_at``); data counts
    once the control event after it gives its offset, and a dropped connection resumes there."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as http:
        while not read.closed and read.offset != stop_at:
            pending = b""
            try:
                async with aconnect_sse(http, "GET", url, params={"offset": read.offset, "live": "sse"}) as source:
                    assert source.response.status_code == 200, source.response.status_code
                    async for event in source.aiter_sse():
                        if event.event == "data":
                            pending += event.data.encode()
                        elif event.event == "control":
                            control = json.loads(event.data)
                            read.data, pending = read.data + pending, b""
                            read.offset = control["streamNextOffset"]
                            read.closed = control.get("streamClosed", False)
                            if read.closed or read.offset == stop_at:
                                break
            except httpx.TransportError:
                read.interruptions += 1
                await asyncio.sleep(RETRY_PAUSE)
    return read


READERS = {"long-poll": read_long_poll, "sse": read_sse}


async def produce(http: httpx.AsyncClient, url: str, producer: Producer, seq: int, *, close: bool = False) -> httpx.Response:
    body = batch(seq)
    return await http.post(url, content=body, headers=append_headers(TEXT, body, close=close, producer=producer, seq=seq))


async def restart(server: ServerProcess) -> None:
    server.kill()
    await asyncio.to_thread(server.start)


def test_readers_and_an_idempotent_producer_across_kill9(database: Path | str, tmp_path: Path) -> None:
    server = ServerProcess(database, env={"EVENTLOG_LONG_POLL_TIMEOUT": "0.5"}, log_path=tmp_path / "server.log").start()
    url = stream_url(server.url, new_stream("kill9"))
    producer = Producer("kill9-producer")

    async def scenario() -> dict[str, Read]:
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.put(url, headers={"Content-Type": TEXT})).status_code == 201
            offsets = []
            for seq in range(KILL_AFTER):
                response = await produce(http, url, producer, seq)
                assert response.status_code == 200, (seq, response.status_code, response.text)
                offsets.append(next_offset(response))

            # Both readers tail the stream; once they have all of it they are waiting live
            # (a long-poll or an open SSE response) when the kill comes.
            reads = {name: Read() for name in READERS}
            await asyncio.wait_for(asyncio.gather(*(reader(url, reads[name], stop_at=offsets[-1])
                                                    for name, reader in READERS.items())), READ_DEADLINE)
            tails = [asyncio.create_task(reader(url, reads[name])) for name, reader in READERS.items()]
            await asyncio.sleep(0.3)
            await restart(server)

            retry = await produce(http, url, producer, KILL_AFTER - 1)
            assert retry.status_code == 204, ("the retry of an acknowledged batch", retry.status_code, retry.text)
            for seq in range(KILL_AFTER, BATCHES):
                response = await produce(http, url, producer, seq, close=seq == BATCHES - 1)
                assert response.status_code == 200, (seq, response.status_code, response.text)
            assert response.headers.get("Stream-Closed") == "true"
            tail = next_offset(response)
            await restart(server)

            retry = await produce(http, url, producer, BATCHES - 1, close=True)
            assert retry.status_code == 204, ("the retry of the closing batch", retry.status_code, retry.text)
            assert retry.headers.get("Stream-Closed") == "true"
            head = await http.head(url)
            assert head.headers.get("Stream-Closed") == "true" and next_offset(head) == tail
            await asyncio.wait_for(asyncio.gather(*tails), READ_DEADLINE)
            assert all(read.offset == tail for read in reads.values()), {name: read.offset for name, read in reads.items()}
            # New readers after the restart: from the start, and at the tail (EOF at once).
            for name, reader in READERS.items():
                reads[f"{name}, new"] = await asyncio.wait_for(reader(url, Read()), READ_DEADLINE)
                reads[f"{name}, at the tail"] = await asyncio.wait_for(reader(url, Read(offset=tail)), READ_DEADLINE)
            return reads

    try:
        reads = asyncio.run(scenario())
    finally:
        server.kill()
    written = b"".join(batch(seq) for seq in range(BATCHES))
    for name in READERS:
        assert reads[name].interruptions >= 1, f"the {name} reader was never cut off"
        assert reads[name].data == written, f"{name}: {len(reads[name].data)} bytes read of {len(written)}"
        assert reads[f"{name}, new"].data == written and reads[f"{name}, new"].closed
        assert reads[f"{name}, at the tail"].data == b"" and reads[f"{name}, at the tail"].closed
