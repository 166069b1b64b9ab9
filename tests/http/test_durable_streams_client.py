"""The protocol's TypeScript client (@durable-streams/client, pinned in tests/durable_streams)
reading eventlog's Durable Streams: what tests/durable_streams/read_stream.mjs (the README's
example) prints must be exactly what Python wrote, at the offsets the server gave, ending at the
stream's closure; in the client's long-poll and SSE modes, from the start, from an offset, and
while Python appends to the stream it is tailing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.durable_streams import append, create, new_stream, next_offset, stream_url
from tests.http.server import ServerProcess
from tests.node_harness import NodeScript

pytestmark = [pytest.mark.backends, pytest.mark.node]

LIVE_MODES = ["long-poll", "sse"]
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
# Text whose bytes a lossy path would change: multi-byte characters, CR LF, a tab, trailing blanks.
TEXT_PARTS = ["first line\r\n", "zweite Zeile: äöü ß\n", "\t☃ snow, 🚀 rocket  ", "\nlast, no newline"]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def read(node_install: Path, url: str, offset: str = "-1", live: str = "true") -> list[dict[str, Any]]:
    """Everything read_stream.mjs printed while reading ``url`` to its closure."""
    reader = NodeScript(node_install, "read_stream.mjs", url, offset, live)
    try:
        return reader.finish()
    finally:
        reader.kill()


def check_ending(lines: list[dict[str, Any]], tail: str) -> list[dict[str, Any]]:
    """The batches of data, after checking that the read ended at the closure, at ``tail``, and
    that their offsets only grow, up to ``tail``."""
    *batches, end = lines
    assert end == {"end": tail, "streamClosed": True}
    offsets = [batch["offset"] for batch in batches]
    assert offsets == sorted(set(offsets)) and offsets[-1] == tail, offsets
    return batches


def items(batches: list[dict[str, Any]]) -> list[Any]:
    return [item for batch in batches for item in batch["items"]]


def text(batches: list[dict[str, Any]]) -> str:
    return "".join(batch["text"] for batch in batches)


@pytest.mark.parametrize("live", LIVE_MODES)
def test_reads_a_json_stream_to_its_closure(node_install: Path, shared_server: ServerProcess, http: httpx.Client,
                                            live: str) -> None:
    url = stream_url(shared_server.url, new_stream("ts-json"))
    messages = [{"n": 0, "text": "grüße"}, [1, [2, 3]], {"n": 2}, "a string", None, {"n": 5, "last": True}]
    create(http, url, JSON, json.dumps(messages[:1]).encode())
    after_second = next_offset(append(http, url, JSON, json.dumps(messages[1:2]).encode()))  # one message, an array
    append(http, url, JSON, json.dumps(messages[2:5]).encode())  # a batch: flattened into three
    tail = next_offset(append(http, url, JSON, json.dumps(messages[5]).encode(), close=True))
    assert next_offset(http.head(url)) == tail

    assert items(check_ending(read(node_install, url, live=live), tail)) == messages
    assert items(check_ending(read(node_install, url, after_second, live), tail)) == messages[2:]


@pytest.mark.parametrize("live", LIVE_MODES)
def test_reads_a_text_stream_byte_for_byte(node_install: Path, shared_server: ServerProcess, http: httpx.Client,
                                           live: str) -> None:
    url = stream_url(shared_server.url, new_stream("ts-text"))
    create(http, url, TEXT, TEXT_PARTS[0].encode())
    offsets = [next_offset(append(http, url, TEXT, part.encode())) for part in TEXT_PARTS[1:]]
    tail = next_offset(append(http, url, TEXT, b"", close=True))  # close only: the tail does not move
    assert tail == offsets[-1]
    assert http.get(url, params={"offset": "-1"}).content == "".join(TEXT_PARTS).encode()

    assert text(check_ending(read(node_install, url, live=live), tail)) == "".join(TEXT_PARTS)
    assert text(check_ending(read(node_install, url, offsets[1], live), tail)) == "".join(TEXT_PARTS[3:])


@pytest.mark.parametrize("live", LIVE_MODES)
def test_tails_a_stream_that_python_appends_to(node_install: Path, shared_server: ServerProcess,
                                               http: httpx.Client, live: str) -> None:
    """Each append reaches the live client on its own (it waits for one before the next), and
    the close-only POST ends its read."""
    url = stream_url(shared_server.url, new_stream("ts-live"))
    start = next_offset(create(http, url, JSON, b'[{"n": 0}]'))
    reader = NodeScript(node_install, "read_stream.mjs", url, "-1", live)
    try:
        assert reader.next_line() == {"items": [{"n": 0}], "offset": start, "upToDate": True, "streamClosed": False}
        for n in range(1, 4):
            offset = next_offset(append(http, url, JSON, json.dumps({"n": n}).encode()))
            assert reader.next_line() == {"items": [{"n": n}], "offset": offset, "upToDate": True, "streamClosed": False}
        tail = next_offset(append(http, url, JSON, b"", close=True))
        assert tail == offset
        assert reader.finish() == [{"end": tail, "streamClosed": True}]
    finally:
        reader.kill()
