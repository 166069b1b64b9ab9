"""Server-Sent Events frames for log items.

Frames are encoded here, once per event: an event's JSON is stored compact, so it goes out as
it is. The response that writes them is ``stream.py``; the live edge is ``broadcast.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache

from eventlog import HEARTBEAT, End, Event, Gap, StorageError

HEARTBEAT_FRAME = b": heartbeat\n\n"


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=8192)
def event_frame(event: Event) -> bytes:
    """``id``/``event``/``data`` lines of one event. Cached: a stream that filters events or
    joined a broadcast mid-batch re-encodes the chunk the broadcast just built, and clients that
    reconnect replay the same recent events. Names are validated (no CR/LF) and compact JSON
    holds no newline, so nothing a producer stores can inject a frame."""
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


def error_frame(error: StorageError) -> bytes:
    """The last frame of a stream whose storage failed (a corrupt file, say): the client learns
    why the stream ends instead of seeing it cut."""
    return f"event: error\ndata: {_compact({'code': error.code, 'message': str(error)})}\n\n".encode()


def retry_frame(retry_ms: int) -> bytes:
    return f"retry: {retry_ms}\n\n".encode()


class StreamCounter:
    """How many streams this process serves right now, for /metrics."""

    def __init__(self) -> None:
        self.active = 0
        self.total = 0


def encode_batch(batch: list[object], keep: Callable[[Event], bool] | None = None) -> bytes:
    """The frames of a batch of items as one chunk: once per wake-up for all the streams at a
    run's live edge (``broadcast.Live``), once per page for a stream catching up. ``keep``
    filters the events sent (None: all)."""
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
