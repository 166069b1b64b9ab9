"""A resuming SSE consumer for the tests: reconnects with ``Last-Event-ID`` like a browser."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
from httpx_sse import aconnect_sse


@dataclass
class Received:
    ids: list[int] = field(default_factory=list)
    data: list[object] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)
    end: dict | None = None
    connections: int = 0


async def consume(url: str, *, last_event_id: int | None = None, deadline: float = 60.0,
                  received: Received | None = None) -> Received:
    """Read the stream until its end frame, reconnecting after drops (server killed...)."""
    received = received or Received()
    stop_at = time.monotonic() + deadline
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as http:
        while time.monotonic() < stop_at:
            headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
            try:
                async with aconnect_sse(http, "GET", url, headers=headers) as source:
                    if source.response.status_code != 200:
                        raise AssertionError(f"stream answered {source.response.status_code}: {await source.response.aread()!r}")
                    received.connections += 1
                    async for sse in source.aiter_sse():
                        if not sse.data:
                            # A heartbeat comment (": heartbeat") and its blank line: per the SSE
                            # spec an empty data buffer dispatches nothing, but httpx-sse yields an
                            # empty "message" that carries over the previous frame's id. Treating
                            # it as an event would record that id twice (or fail on ``json.loads('')``)
                            # whenever the stream idles for a heartbeat interval after an event.
                            continue
                        if sse.event == "end":
                            received.end = json.loads(sse.data)
                            received.ids.append(int(sse.id))
                            return received
                        if sse.event == "gap":
                            received.gaps.append(json.loads(sse.data))
                            continue
                        if not sse.id:
                            continue
                        last_event_id = int(sse.id)
                        received.ids.append(last_event_id)
                        received.events.append(sse.event)
                        received.data.append(json.loads(sse.data))
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"stream did not end within {deadline}s; got {len(received.ids)} events")
