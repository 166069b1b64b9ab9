"""Server-Sent Events: frames for log items, and the streaming response for a subscription.

The transport is sse-starlette's ``EventSourceResponse`` (client-disconnect detection, and it
closes open streams when uvicorn begins to shut down, so clients reconnect elsewhere). Frames are
encoded here, once per event: an event's JSON is stored compact, so it goes out as it is.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from typing import Literal

from sse_starlette import EventSourceResponse
from starlette.types import Message, Send

from eventlog import HEARTBEAT, End, Event, EventLog, Gap, StorageError

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
HEARTBEAT_FRAME = b": heartbeat\n\n"


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=8192)
def event_frame(event: Event) -> bytes:
    """``id``/``event``/``data`` lines of one event. Cached: every subscriber at the live edge
    sends the same bytes. Names are validated (no CR/LF) and compact JSON holds no newline, so
    nothing a producer stores can inject a frame."""
    return f"id: {event.id}\nevent: {event.event}\ndata: {event.data_json}\n\n".encode()


def end_frame(end: End) -> bytes:
    return f"id: {end.id}\nevent: end\ndata: {_compact({'reason': end.reason})}\n\n".encode()


def gap_frame(gap: Gap) -> bytes:
    data = {
        "code": "stream_replay_gap",
        "requested_event_id": gap.requested,
        "earliest_available_event_id": gap.earliest,
        "latest_available_event_id": gap.latest,
        "recovery": "reload_durable_state",
    }
    return f"event: gap\ndata: {_compact(data)}\n\n".encode()


class _EventSourceResponse(EventSourceResponse):
    """sse-starlette's response without the per-chunk cancel scope of a send timeout that these
    streams never set. ``_send_with_timeout`` enters an anyio ``move_on_after(None)`` for every
    chunk: with a thousand subscribers at the live edge that is a thousand cancel scopes per
    event, a measurable share of the fan-out (benchmarks/sse.py). Should sse-starlette rename
    the method, this override simply stops applying."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


class StreamCounter:
    """How many streams this process serves right now, for /metrics."""

    def __init__(self) -> None:
        self.active = 0
        self.total = 0


def stream_response(
    log: EventLog,
    run_id: str,
    *,
    after: int | None,
    heartbeat: float,
    retry_ms: int,
    on_gap: Literal["continue", "stop"],
    counter: StreamCounter,
    keep: Callable[[Event], bool] | None = None,
    headers: dict[str, str] | None = None,
) -> EventSourceResponse:
    """Stream the run from ``after``: a ``retry:`` hint, the events, heartbeats, and the end.
    ``keep`` filters the events sent (None: all)."""

    async def frames() -> AsyncIterator[bytes]:
        counter.active += 1
        counter.total += 1
        try:
            yield f"retry: {retry_ms}\n\n".encode()
            async for batch in log.stream(run_id, after=after, heartbeat=heartbeat, on_gap=on_gap):
                chunk = encode_batch(batch, keep)
                if chunk:
                    yield chunk
        except StorageError as exc:  # e.g. the file turned out corrupt: say so, do not cut the stream
            yield f"event: error\ndata: {_compact({'code': exc.code, 'message': str(exc)})}\n\n".encode()
        finally:
            counter.active -= 1

    return _EventSourceResponse(frames(), ping=0, headers={**HEADERS, **(headers or {})})


_CHUNKS: dict[tuple[Event, Event, int], bytes] = {}
_CHUNKS_MAX = 64


def _events_chunk(events: list[Event]) -> bytes:
    """The frames of a run's consecutive events, joined. Subscribers at the live edge are each
    handed the same slice of the run's tail at a wake-up, so the chunk is built once per
    wake-up rather than once per subscriber. A slice of a run's events is identified by its
    first and last event and its length (events compare by value, ids included)."""
    key = (events[0], events[-1], len(events))
    chunk = _CHUNKS.get(key)
    if chunk is None:
        chunk = b"".join(map(event_frame, events))
        if len(_CHUNKS) >= _CHUNKS_MAX:
            _CHUNKS.clear()
        _CHUNKS[key] = chunk
    return chunk


def encode_batch(batch: list[object], keep: Callable[[Event], bool] | None = None) -> bytes:
    """The frames of a batch of items as one chunk (runs once per subscriber per wake-up).

    A batch of ``subscribe_batches`` holds a run's consecutive events, then at most its end; a
    gap or a heartbeat comes alone. So a batch that starts and ends with an event is events
    only, and an unfiltered one is served from the shared chunk of that slice."""
    if keep is None and len(batch) > 1 and type(batch[0]) is Event and type(batch[-1]) is Event:
        return _events_chunk(batch)  # type: ignore[arg-type]
    frames = []
    for item in batch:
        if isinstance(item, Event):
            if keep is None or keep(item):
                frames.append(event_frame(item))
        elif item is HEARTBEAT:
            frames.append(HEARTBEAT_FRAME)
        elif isinstance(item, End):
            frames.append(end_frame(item))
        elif isinstance(item, Gap):
            frames.append(gap_frame(item))
    return frames[0] if len(frames) == 1 else b"".join(frames)
