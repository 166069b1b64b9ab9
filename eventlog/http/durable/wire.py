"""The Durable Streams protocol's wire formats: offsets, cursors, ETags, bodies and SSE frames.

Offsets are positions of the log (``eventlog.log.streams``) written as two fixed-width decimal
fields, ``0000000000000000_<position>``: lexicographic order is position order, and the zero
offset is the one clients of the reference server know. The first field is reserved (always
0). A position has up to 16 digits here, ids far beyond what one log hands out.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
from collections.abc import Sequence
from typing import Any

from eventlog.log.streams import Slice, StreamConfig
from eventlog.models import Event

START = "-1"
NOW = "now"
_OFFSET = re.compile(r"0{1,16}_(\d{1,16})")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer JavaScript clients hold exactly: the cap of producer epochs and seqs."""

CURSOR_EPOCH = 1728432000.0
"""2024-10-09T00:00:00Z: the protocol's default epoch of cursor intervals."""
CURSOR_INTERVAL = 20


def format_offset(position: int) -> str:
    return f"{0:016d}_{position:016d}"


def parse_offset(text: str) -> int | None:
    """The position of an offset this server minted (``-1`` is the start), None otherwise."""
    if text == START:
        return 0
    match = _OFFSET.fullmatch(text)
    return int(match.group(1)) if match else None


def parse_decimal(text: str, high: int = MAX_SAFE_INTEGER) -> int | None:
    """A non-negative decimal integer without sign, leading zeros or fraction, up to ``high``."""
    if not _DECIMAL.fullmatch(text) or len(text) > 19 or int(text) > high:
        return None
    return int(text)


def response_cursor(client_cursor: str | None, now: float | None = None) -> str:
    """The cursor of a live response: the current 20-second interval since the epoch, or,
    when the client already holds that one (or a later one), a later one by 1 to 3600
    seconds of jitter, so cursors never repeat and a CDN cannot serve one reply forever."""
    interval = int(((time.time() if now is None else now) - CURSOR_EPOCH) // CURSOR_INTERVAL)
    held = parse_decimal(client_cursor, 2**62) if client_cursor else None
    if held is None or held < interval:
        return str(interval)
    return str(held + max(1, -(-random.randint(1, 3600) // CURSOR_INTERVAL)))


def etag(run_id: str, start: str, end: str, closed: bool) -> str:
    """The ETag of a read from offset ``start`` to ``end``; it changes when the stream closes."""
    return f'"{run_id}:{start}:{end}{":c" if closed else ""}"'


def is_text(config: StreamConfig) -> bool:
    """SSE sends text and JSON streams as UTF-8 text, any other content as base64."""
    return config.media_type.startswith("text/") or config.is_json


def body_of(config: StreamConfig, messages: Sequence[Event]) -> bytes:
    """A read's body: the messages' bytes one after another, or for a JSON stream a JSON array
    of its messages (``[]`` for none)."""
    if config.is_json:
        return ("[" + ",".join(m.data_json for m in messages) + "]").encode()
    return b"".join(m.body or b"" for m in messages)


def _field_lines(field: str, payload: str) -> str:
    return "".join(f"{field}:{line}\n" for line in re.split(r"\r\n|\r|\n", payload))


def sse_data(config: StreamConfig, messages: Sequence[Event]) -> bytes:
    """One ``data`` event holding the messages (base64 for a byte stream). SSE has no way to
    tell CR, LF and CRLF apart, so a text stream's line ends arrive as LF: readers that need
    its exact bytes read without ``live=sse``."""
    raw = body_of(config, messages)
    payload = raw.decode(errors="replace") if is_text(config) else base64.b64encode(raw).decode()
    return f"event: data\n{_field_lines('data', payload)}\n".encode()


def sse_control(offset: str, *, cursor: str | None, up_to_date: bool, closed: bool) -> bytes:
    """The ``control`` event that follows each data event (and stands alone when there is none)."""
    control: dict[str, Any] = {"streamNextOffset": offset}
    if closed:
        control["streamClosed"] = True
    elif cursor is not None:
        control["streamCursor"] = cursor
    if up_to_date or closed:
        control["upToDate"] = True
    return f"event: control\ndata:{json.dumps(control, separators=(',', ':'))}\n\n".encode()


def slice_frames(config: StreamConfig, part: Slice, cursor: str) -> bytes:
    """A read's messages as a data event and its control event (the control event alone when
    there are no messages)."""
    control = sse_control(format_offset(part.next), cursor=cursor, up_to_date=part.up_to_date, closed=part.closed)
    return (sse_data(config, part.messages) if part.messages else b"") + control
