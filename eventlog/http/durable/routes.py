"""The Durable Streams protocol at ``/v1/stream/{path}``: create, append, close, read (catch-up,
long-poll, SSE), metadata and delete, on the log's streams (``eventlog.log.streams``).

A stream's path is a run id, so the run API reads the same stream (``GET /runs/{id}/stream``)
and the same credentials guard it: writing needs the API key, reading a reader token that
grants the run. Failures answer the protocol's statuses with eventlog's JSON error body.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from eventlog.errors import (
    InvalidInput,
    ProducerFenced,
    ProducerSeqGap,
    RunDeleted,
    RunEnded,
    RunNotFound,
    WriterSeqConflict,
)
from eventlog.http.auth import Need
from eventlog.http.durable import wire
from eventlog.http.errors import ApiError, error_response
from eventlog.http.openapi import ApiRoute, Operation, Param, Reply
from eventlog.log.streams import (
    Fork,
    OffsetGone,
    StreamConfig,
    StreamConflict,
    StreamInfo,
    Streams,
    parse_time,
    tail_position,
)
from eventlog.log.validation import RUN_ID_PATTERN, encode_message
from eventlog.storage.base import Producer, StreamRow

PREFIX = "/v1/stream/"
CHUNK_BYTES = 1 << 20
"""Bytes of messages a catch-up read or an SSE data event holds at most (one message more, if
a single message is larger)."""
SSE_LIFETIME = 60.0
"""Seconds after which an SSE response ends, so that clients reconnect through a CDN (the
protocol's recommendation)."""
DEFAULT_CONTENT_TYPE = "application/octet-stream"

Handler = Callable[[Request], Awaitable[Response]]


class ProtocolError(Exception):
    """A failure answered with ``status`` and the protocol's ``headers``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


def _streams(request: Request) -> Streams:
    return request.app.state.durable_streams


def _answer_errors(handler: Handler) -> Handler:
    """Map the log's typed errors to the protocol's statuses (the run API maps some of them
    otherwise: an invalid input is 400 here, a deleted run 410)."""

    async def answered(request: Request) -> Response:
        try:
            return await handler(request)
        except ProtocolError as exc:
            error = exc
        except InvalidInput as exc:
            error = ProtocolError(400, exc.code, str(exc))
        except (StreamConflict, WriterSeqConflict) as exc:
            error = ProtocolError(409, "stream_conflict", str(exc))
        except OffsetGone as exc:
            error = ProtocolError(410, "offset_gone", str(exc))
        except RunDeleted as exc:
            error = ProtocolError(410, exc.code, str(exc))
        except RunNotFound as exc:
            error = ProtocolError(404, "stream_not_found", str(exc))
        except ProducerFenced as exc:
            error = ProtocolError(403, exc.code, str(exc), {"Producer-Epoch": str(exc.epoch)})
        except ProducerSeqGap as exc:
            error = ProtocolError(409, exc.code, str(exc), {
                "Producer-Expected-Seq": str(exc.expected), "Producer-Received-Seq": str(exc.received),
            })
        if request.method == "HEAD":
            return Response(status_code=error.status, headers=error.headers)
        return error_response(error.status, error.code, str(error), error.headers)

    answered.__name__, answered.__doc__ = handler.__name__, handler.__doc__
    return answered


def _run_id(request: Request) -> str:
    run_id = request.path_params["run_id"]
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise ProtocolError(400, "invalid_stream_path", f"a stream's path must be 1-128 characters of A-Z a-z 0-9 . _ : - (got {run_id[:150]!r})")
    return run_id


async def _existing(request: Request) -> StreamInfo:
    """The stream of the path, or the protocol's 404 / 410."""
    info = await _streams(request).info(_run_id(request))
    if info is None:
        raise RunNotFound(_run_id(request))
    if info.deleted:
        raise RunDeleted(info.run_id)
    return info


def _closed_header(request: Request) -> bool:
    """``Stream-Closed`` counts only as ``true`` (any case); other values are no header."""
    return request.headers.get("stream-closed", "").strip().lower() == "true"


async def _body(request: Request) -> bytes:
    limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(413, "body_too_large", f"the request body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ProtocolError(413, "body_too_large", f"the request body exceeds {limit} bytes")
    return bytes(body)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _messages(config: StreamConfig, body: bytes, *, creating: bool) -> list[StreamRow]:
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


def _stream_headers(info: StreamInfo, tail: int | None = None) -> dict[str, str]:
    headers = {"Content-Type": info.config.content_type, "Stream-Next-Offset": wire.format_offset(info.tail if tail is None else tail)}
    if info.closed:
        headers["Stream-Closed"] = "true"
    return headers


# --- create ---------------------------------------------------------------------------------


def _config(request: Request) -> tuple[StreamConfig, bool]:
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
    fork = Fork(parent, 0, offset, sub_offset)
    return StreamConfig(_content_type(headers.get("content-type")) or "", ttl, expires_at, fork), True


def _content_type(value: str | None) -> str | None:
    """A content type worth keeping: ``type/subtype``, with its parameters (None otherwise)."""
    if value is None or "/" not in value.split(";", 1)[0] or not value.split(";", 1)[0].strip("/ "):
        return None
    return value.strip()


async def create_stream(request: Request) -> Response:
    """Create a stream (or a fork of one), with its first messages and closed at once if
    asked; an existing stream with the same configuration answers 200."""
    run_id = _run_id(request)
    config, forking = _config(request)
    closed = _closed_header(request)
    body = await _body(request)
    if forking:
        parent = await _streams(request).info(config.fork.parent)  # type: ignore[union-attr]
        if parent is None:
            raise ProtocolError(404, "source_not_found", f"the stream {config.fork.parent!r} to fork does not exist")  # type: ignore[union-attr]
        if parent.deleted:
            raise ProtocolError(409, "source_deleted", f"the stream {parent.run_id!r} was deleted; its forks keep it, but it cannot be forked")
        message_config = parent.config if not config.content_type else config
    else:
        message_config = config
    messages = _messages(message_config, body, creating=True)
    try:
        info, created = await _streams(request).create(run_id, config, messages, closed=closed)
    except RunDeleted as exc:  # the parent, deleted meanwhile
        raise ProtocolError(409, "source_deleted", str(exc)) from None
    headers = _stream_headers(info)
    if created:
        headers["Location"] = str(request.url.replace(query=None))
    return Response(status_code=201 if created else 200, headers=headers)


# --- append and close -----------------------------------------------------------------------


def _producer(request: Request) -> Producer | None:
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


async def append(request: Request) -> Response:
    """Append the body (a JSON array: its elements) to the stream; with ``Stream-Closed: true``
    close it after, atomically (an empty body only closes)."""
    producer = _producer(request)
    close = _closed_header(request)
    writer_seq = request.headers.get("stream-seq")
    body = await _body(request)
    info = await _existing(request)
    if not body and not close:
        raise ProtocolError(400, "empty_body", "an append needs a body (an empty one only with Stream-Closed: true)")
    messages: list[StreamRow] = []
    if body and info.closed:
        if producer is None:
            _refuse_closed(info)
        # The storage tells a retry of the producer's closing request (a duplicate) from any
        # other append (refused); the body is not written either way.
        messages = [encode_message(body=body)]
    elif body:
        content_type = request.headers.get("content-type")
        if content_type is None:
            raise ProtocolError(400, "missing_content_type", "an append with a body needs a Content-Type")
        if StreamConfig(content_type).media_type != info.config.media_type:
            raise ProtocolError(409, "content_type_mismatch", f"the stream's content type is {info.config.content_type!r}")
        messages = _messages(info.config, body, creating=False)
    try:
        outcome = await _streams(request).append(info, messages, producer=producer, writer_seq=writer_seq, close=close)
    except RunEnded:
        _refuse_closed(await _existing(request))
        raise
    headers = {"Stream-Next-Offset": wire.format_offset(tail_position(info.config, outcome.last_id, outcome.ended))}
    if outcome.ended:
        headers["Stream-Closed"] = "true"
    if producer is None:
        return Response(status_code=204, headers=headers)
    headers["Producer-Epoch"] = str(producer.epoch)
    headers["Producer-Seq"] = str(outcome.producer_seq if outcome.producer_seq is not None else producer.seq)
    return Response(status_code=204 if outcome.duplicate or not messages else 200, headers=headers)


def _refuse_closed(info: StreamInfo) -> None:
    raise ProtocolError(409, "stream_closed", f"the stream {info.run_id!r} is closed", _stream_headers(info))


# --- metadata and delete --------------------------------------------------------------------


async def head_stream(request: Request) -> Response:
    """The stream's metadata: content type, tail offset, TTL or expiry, closure."""
    info = await _existing(request)
    headers = {**_stream_headers(info), "Cache-Control": "no-store"}
    if info.config.ttl is not None:
        headers["Stream-TTL"] = str(info.config.ttl)
    if info.config.expires_at is not None:
        headers["Stream-Expires-At"] = info.config.expires_at
    headers["ETag"] = wire.etag(info.run_id, wire.START, headers["Stream-Next-Offset"], info.closed)
    return Response(headers=headers)


async def delete_stream(request: Request) -> Response:
    """Delete the stream (its forks keep reading what they inherited)."""
    info = await _existing(request)
    await _streams(request).delete(info.run_id)
    return Response(status_code=204)


# --- read -----------------------------------------------------------------------------------


def _read_params(request: Request) -> tuple[str | None, str | None]:
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


async def read_stream(request: Request) -> Response:
    """Read from an offset: what is there (catch-up), or wait for more (``live=long-poll``),
    or follow the stream as Server-Sent Events (``live=sse``)."""
    offset, live = _read_params(request)
    info = await _existing(request)
    streams = _streams(request)
    streams.touch(info.run_id)
    after = info.tail if offset == wire.NOW else wire.parse_offset(offset or wire.START)
    assert after is not None
    if live == "sse":
        return _sse_response(request, streams, info, after)
    if offset == wire.NOW and live is None:
        headers = {**_stream_headers(info), "Stream-Up-To-Date": "true", "Cache-Control": "no-store"}
        return Response(wire.body_of(info.config, []), headers=headers)
    part = await streams.read(info, after, max_bytes=CHUNK_BYTES)
    cursor = request.query_params.get("cursor")
    if live == "long-poll" and not part.messages:
        if not part.closed:
            timeout = request.app.state.settings.long_poll_timeout
            if await streams.wait(info, part.next, timeout):
                part = await streams.read(info, part.next, max_bytes=CHUNK_BYTES)
            streams.touch(info.run_id)
        if not part.messages:
            headers = {"Stream-Next-Offset": wire.format_offset(part.next), "Stream-Up-To-Date": "true",
                       "Cache-Control": "no-store"}
            if part.closed:
                headers["Stream-Closed"] = "true"
            else:
                headers["Stream-Cursor"] = wire.response_cursor(cursor)
            return Response(status_code=204, headers=headers)
    next_offset = wire.format_offset(part.next)
    tag = wire.etag(info.run_id, offset or wire.START, next_offset, part.closed)
    headers = {"Content-Type": info.config.content_type, "Stream-Next-Offset": next_offset, "ETag": tag,
               "Cache-Control": _cache_control(request)}
    if part.up_to_date:
        headers["Stream-Up-To-Date"] = "true"
    if part.closed:
        headers["Stream-Closed"] = "true"
    if live == "long-poll" and not part.closed:
        headers["Stream-Cursor"] = wire.response_cursor(cursor)
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers={"ETag": tag, "Cache-Control": headers["Cache-Control"]})
    return Response(wire.body_of(info.config, part.messages), headers=headers)


def _cache_control(request: Request) -> str:
    """Catch-up reads are immutable by offset and cacheable; privately only when credentials
    guard the streams."""
    scope = "private" if request.app.state.auth.enabled else "public"
    return f"{scope}, max-age=60, stale-while-revalidate=300"


def _sse_response(request: Request, streams: Streams, info: StreamInfo, after: int) -> Response:
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if not wire.is_text(info.config):
        headers["Stream-SSE-Data-Encoding"] = "base64"
    frames = _sse_frames(streams, info, after, request.query_params.get("cursor"),
                         request.app.state.settings.heartbeat)
    return StreamingResponse(frames, headers=headers)


async def _sse_frames(streams: Streams, info: StreamInfo, after: int, cursor: str | None, heartbeat: float) -> AsyncIterator[bytes]:
    """A data event and its control event per read, from ``after`` on, until the stream is
    closed (a last control event says so) or ``SSE_LIFETIME`` has passed."""
    deadline = time.monotonic() + SSE_LIFETIME
    position, first = after, True
    try:
        while True:
            part = await streams.read(info, position, max_bytes=CHUNK_BYTES)
            if part.messages or first or part.closed:
                yield wire.slice_frames(info.config, part, wire.response_cursor(cursor))
            first = False
            if part.closed:
                return
            position = part.next
            if not part.up_to_date:
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not await streams.wait(info, position, min(heartbeat, remaining)):
                streams.touch(info.run_id)
                if time.monotonic() < deadline:
                    yield wire.sse_control(wire.format_offset(position), cursor=wire.response_cursor(cursor),
                                           up_to_date=True, closed=False)
    except (RunNotFound, OffsetGone):
        return  # deleted, or trimmed past the reader: the next request gets the status


STREAM = Param("run_id", "path", {"type": "string", "pattern": RUN_ID_PATTERN.pattern}, "the stream's path (a run id)")
_PROTOCOL = "Durable Streams protocol"

routes = [
    ApiRoute("/v1/stream/{run_id}", _answer_errors(create_stream), "PUT", Need.PRODUCER, Operation(
        f"{_PROTOCOL}: create a stream or a fork", {201: Reply("Created", media_type=None), 200: Reply("It exists with this configuration", media_type=None)},
        (400, 404, 409, 413), parameters=(STREAM,),
    )),
    ApiRoute("/v1/stream/{run_id}", _answer_errors(append), "POST", Need.PRODUCER, Operation(
        f"{_PROTOCOL}: append, or close", {204: Reply("Appended", media_type=None), 200: Reply("Appended (an idempotent producer's new request)", media_type=None)},
        (400, 403, 404, 409, 410, 413), parameters=(STREAM,),
    )),
    # HEAD first: starlette's GET route answers HEAD as well
    ApiRoute("/v1/stream/{run_id}", _answer_errors(head_stream), "HEAD", Need.READ_RUN, Operation(
        f"{_PROTOCOL}: the stream's metadata", {200: Reply("Its headers", media_type=None)}, (404, 410), parameters=(STREAM,),
    )),
    ApiRoute("/v1/stream/{run_id}", _answer_errors(read_stream), "GET", Need.READ_RUN, Operation(
        f"{_PROTOCOL}: read from an offset (catch-up, long-poll or SSE)",
        {200: Reply("The messages", media_type="application/octet-stream"), 204: Reply("Nothing new in time (long-poll)", media_type=None),
         304: Reply("Not modified", media_type=None)},
        (400, 404, 410), parameters=(
            STREAM, Param("offset", "query", {"type": "string"}), Param("live", "query", {"enum": ["long-poll", "sse"]}),
            Param("cursor", "query", {"type": "string"}),
        ),
    )),
    ApiRoute("/v1/stream/{run_id}", _answer_errors(delete_stream), "DELETE", Need.PRODUCER, Operation(
        f"{_PROTOCOL}: delete a stream", {204: Reply("Deleted", media_type=None)}, (404, 410), parameters=(STREAM,),
    )),
]
