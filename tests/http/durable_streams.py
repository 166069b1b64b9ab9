"""Writing to a Durable Streams stream (PROTOCOL.md) over plain httpx, for the tests that read it
with other clients: the TypeScript client, long-poll and SSE readers across a kill -9."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx


def new_stream(prefix: str) -> str:
    """A fresh stream name (each test writes streams of its own on a shared server)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def stream_url(server_url: str, name: str) -> str:
    return f"{server_url}/v1/stream/{name}"


@dataclass(frozen=True)
class Producer:
    """An idempotent producer's identity: the Producer-Id/-Epoch/-Seq headers of one batch."""

    id: str
    epoch: int = 0

    def headers(self, seq: int) -> dict[str, str]:
        return {"Producer-Id": self.id, "Producer-Epoch": str(self.epoch), "Producer-Seq": str(seq)}


def create(http: httpx.Client, url: str, content_type: str, body: bytes = b"") -> httpx.Response:
    """PUT the stream; asserts it was created (201)."""
    response = http.put(url, content=body, headers={"Content-Type": content_type})
    assert response.status_code == 201, (response.status_code, response.text)
    return response


def append_headers(content_type: str, body: bytes, *, close: bool = False, producer: Producer | None = None,
                   seq: int = 0) -> dict[str, str]:
    """The headers of a POST of ``body`` (``close``: with ``Stream-Closed: true``; an empty body
    only closes, and then needs no Content-Type)."""
    headers = {"Content-Type": content_type} if body else {}
    if close:
        headers["Stream-Closed"] = "true"
    if producer is not None:
        headers.update(producer.headers(seq))
    return headers


def append(http: httpx.Client, url: str, content_type: str, body: bytes, **options: Any) -> httpx.Response:
    """POST a batch; ``options`` are those of ``append_headers``."""
    return http.post(url, content=body, headers=append_headers(content_type, body, **options))


def next_offset(response: httpx.Response) -> str:
    offset = response.headers.get("Stream-Next-Offset")
    assert offset, f"no Stream-Next-Offset in a {response.status_code} answer: {dict(response.headers)}"
    return offset
