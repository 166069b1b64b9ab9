"""Server-Sent Events: frames for log items, and the streaming response for a subscription.

The transport is sse-starlette's ``EventSourceResponse`` (client-disconnect detection, and it
closes open streams when uvicorn begins to shut down, so clients reconnect elsewhere). Frames are
encoded here, once per event: an event's JSON is stored compact, so it goes out as it is.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from functools import lru_cache
from typing import Literal

from sse_starlette import EventSourceResponse
from starlette.requests import Request

from eventlog import HEARTBEAT, End, Event, EventLog, Gap
from eventlog.http.errors import ApiError

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


def resume_cursor(request: Request) -> int | None:
    """The cursor to resume after: the ``Last-Event-ID`` header (browsers send it on their own
    reconnects, so it wins), else the ``last_event_id`` query parameter, else None."""
    raw = request.headers.get("last-event-id")
    source = "Last-Event-ID header"
    if raw is None:
        raw = request.query_params.get("last_event_id")
        source = "last_event_id parameter"
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise ApiError(400, "invalid_last_event_id", f"the {source} must be a non-negative integer event id (got {raw[:64]!r})")
    return int(raw)


def gap_policy(request: Request) -> Literal["continue", "stop"]:
    on_gap = request.query_params.get("on_gap", "continue")
    if on_gap not in ("continue", "stop"):
        raise ApiError(400, "invalid_on_gap", "on_gap must be 'continue' or 'stop'")
    return on_gap  # type: ignore[return-value]


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
    keep: Callable[[Event], bool] = lambda event: True,
    headers: dict[str, str] | None = None,
) -> EventSourceResponse:
    """Stream the run from ``after``: a ``retry:`` hint, the events, heartbeats, and the end."""

    async def frames() -> AsyncIterator[bytes]:
        counter.active += 1
        counter.total += 1
        try:
            yield f"retry: {retry_ms}\n\n".encode()
            async for batch in log.stream(run_id, after=after, heartbeat=heartbeat, on_gap=on_gap):
                chunk = b"".join(_encode(batch, keep))
                if chunk:
                    yield chunk
        finally:
            counter.active -= 1

    return EventSourceResponse(frames(), ping=0, headers={**HEADERS, **(headers or {})})


def _encode(batch: Iterable[object], keep: Callable[[Event], bool]) -> Iterable[bytes]:
    for item in batch:
        if isinstance(item, Event):
            if keep(item):
                yield event_frame(item)
        elif item is HEARTBEAT:
            yield HEARTBEAT_FRAME
        elif isinstance(item, End):
            yield end_frame(item)
        elif isinstance(item, Gap):
            yield gap_frame(item)
