"""What a Durable Streams request asks for: its headers, parameters and body, checked.

Each malformed part is a ``ProtocolError`` naming it (a 400; a body too large is the run API's
413), before anything is read from or written to the log.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from eventlog.http.durable import wire
from eventlog.http.errors import read_bytes
from eventlog.log.streams import Fork, StreamConfig, parse_time
from eventlog.log.validation import RUN_ID_PATTERN, encode_message
from eventlog.storage.base import Producer, StreamRow

PREFIX = "/v1/stream/"
DEFAULT_CONTENT_TYPE = "application/octet-stream"


class ProtocolError(Exception):
    """A failure answered with ``status`` and the protocol's ``headers``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


def run_id(request: Request) -> str:
    run_id = request.path_params["run_id"]
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise ProtocolError(400, "invalid_stream_path", f"a stream's path must be 1-128 characters of A-Z a-z 0-9 . _ : - (got {run_id[:150]!r})")
    return run_id


def closes(request: Request) -> bool:
    """``Stream-Closed`` counts only as ``true`` (any case); other values are no header."""
    return request.headers.get("stream-closed", "").strip().lower() == "true"


async def read_body(request: Request) -> bytes:
    """The body, at most the server's ``max_body_bytes`` (a 413 JSON error beyond)."""
    return await read_bytes(request, request.app.state.settings.max_body_bytes)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def messages_of(config: StreamConfig, body: bytes, *, creating: bool) -> list[StreamRow]:
    """A request body as messages: a byte stream's body is one message as it is; a JSON body
    is one message, or one per element of a top-level array (``[]`` only creates)."""
    if not body:
        return []
    if not config.is_json:
        return [encode_message(body=body)]
    try:
        value = json.loads(body.decode(), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, list):
        return [encode_message(value)]
    if not value and not creating:
        raise ProtocolError(400, "empty_json_array", "an append of an empty JSON array appends nothing")
    return [encode_message(item) for item in value]


def stream_config(request: Request) -> tuple[StreamConfig, bool]:
    """The stream configuration a PUT asks for, and whether it asks for a fork."""
    headers = request.headers
    ttl_text, expires_at = headers.get("stream-ttl"), headers.get("stream-expires-at")
    if ttl_text is not None and expires_at is not None:
        raise ProtocolError(400, "ttl_and_expiry", "give Stream-TTL or Stream-Expires-At, not both")
    ttl = None
    if ttl_text is not None:
        ttl = wire.parse_decimal(ttl_text.strip())
        if ttl is None:
            raise ProtocolError(400, "invalid_ttl", f"Stream-TTL must be a whole number of seconds (got {ttl_text[:64]!r})")
    if expires_at is not None:
        parse_time(expires_at.strip())
        expires_at = expires_at.strip()
    forked_from = headers.get("stream-forked-from")
    sub_text = headers.get("stream-fork-sub-offset")
    offset_text = headers.get("stream-fork-offset")
    if forked_from is None:
        if sub_text is not None or offset_text is not None:
            raise ProtocolError(400, "fork_header_without_fork", "Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From")
        content_type = _content_type(headers.get("content-type")) or DEFAULT_CONTENT_TYPE
        return StreamConfig(content_type, ttl, expires_at), False
    parent = forked_from.strip()
    parent = parent[len(PREFIX):] if parent.startswith(PREFIX) else parent.lstrip("/")
    offset = None
    if offset_text is not None:
        offset = wire.parse_offset(offset_text.strip())
        if offset is None:
            raise ProtocolError(400, "invalid_offset", f"Stream-Fork-Offset is not an offset of this server (got {offset_text[:64]!r})")
    sub_offset = 0
    if sub_text is not None:
        parsed = wire.parse_decimal(sub_text.strip())
        if parsed is None:
            raise ProtocolError(400, "invalid_sub_offset", f"Stream-Fork-Sub-Offset must be a non-negative integer (got {sub_text[:64]!r})")
        sub_offset = parsed
    fork = Fork(parent, offset, sub_offset)
    return StreamConfig(_content_type(headers.get("content-type")) or "", ttl, expires_at, fork), True


def _content_type(value: str | None) -> str | None:
    """A content type worth keeping: ``type/subtype``, with its parameters (None otherwise)."""
    if value is None or "/" not in value.split(";", 1)[0] or not value.split(";", 1)[0].strip("/ "):
        return None
    return value.strip()


def producer_of(request: Request) -> Producer | None:
    """The idempotent producer's headers: all three or none."""
    values = [request.headers.get(name) for name in ("producer-id", "producer-epoch", "producer-seq")]
    if all(value is None for value in values):
        return None
    if any(value is None for value in values):
        raise ProtocolError(400, "incomplete_producer", "Producer-Id, Producer-Epoch and Producer-Seq go together")
    producer_id, epoch_text, seq_text = (value.strip() for value in values)  # type: ignore[union-attr]
    epoch, seq = wire.parse_decimal(epoch_text), wire.parse_decimal(seq_text)
    if not producer_id:
        raise ProtocolError(400, "invalid_producer", "Producer-Id must not be empty")
    if epoch is None or seq is None:
        raise ProtocolError(400, "invalid_producer", f"Producer-Epoch and Producer-Seq must be integers from 0 to {wire.MAX_SAFE_INTEGER}")
    return Producer(producer_id, epoch, seq)


def read_params(request: Request) -> tuple[str | None, str | None]:
    offsets = request.query_params.getlist("offset")
    if len(offsets) > 1:
        raise ProtocolError(400, "invalid_offset", "give one offset")
    offset = offsets[0] if offsets else None
    if offset is not None and offset != wire.NOW and wire.parse_offset(offset) is None:
        raise ProtocolError(400, "invalid_offset", f"{offset[:64]!r} is not an offset of this server")
    live = request.query_params.get("live")
    if live not in (None, "long-poll", "sse"):
        raise ProtocolError(400, "invalid_live", f"live must be long-poll or sse (got {live[:32]!r})")
    if live is not None and offset is None:
        raise ProtocolError(400, "missing_offset", f"a {live} read needs an offset")
    return offset, live
