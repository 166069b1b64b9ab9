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
