"""The Durable Streams protocol at ``/v1/stream/{path}``: create, append, close, read (catch-up,
long-poll, SSE), metadata and delete, on the log's streams (``eventlog.log.streams``).

A stream's path is a run id, so the run API reads the same stream (``GET /runs/{id}/stream``)
and the same credentials guard it: writing needs the API key, reading a reader token that
grants the run. Failures answer the protocol's statuses with eventlog's JSON error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

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
from eventlog.http.durable import parsing, wire
from eventlog.http.durable.parsing import ProtocolError
from eventlog.http.errors import error_response
from eventlog.http.openapi import ApiRoute, Operation, Param, Reply
from eventlog.http.schemas import RUN_ID_SCHEMA
from eventlog.http.shutdown import until_stopped
from eventlog.log.streams import (
    OffsetGone,
    Slice,
    StreamConflict,
    StreamInfo,
    Streams,
    media_type,
    tail_position,
)
from eventlog.log.validation import encode_message
from eventlog.storage.base import StreamRow

CHUNK_BYTES = 1 << 20
"""Bytes of messages a catch-up read or an SSE data event holds at most (one message more, if
a single message is larger)."""
SSE_LIFETIME = 60.0
"""Seconds after which an SSE response ends, so that clients reconnect through a CDN (the
protocol's recommendation)."""

Handler = Callable[[Request], Awaitable[Response]]


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
        if request.method == "HEAD":  # the headers of the GET's error, without its body
            return Response(status_code=error.status, headers={**error.headers, "Content-Type": "application/json"})
        return error_response(error.status, error.code, str(error), error.headers)

    answered.__name__, answered.__doc__ = handler.__name__, handler.__doc__
    return answered


async def _existing(request: Request) -> StreamInfo:
    """The stream of the path, or the protocol's 404 / 410."""
    info = await _streams(request).info(parsing.run_id(request))
    if info is None:
        raise RunNotFound(parsing.run_id(request))
    if info.deleted:
        raise RunDeleted(info.run_id)
    return info


def _stream_headers(info: StreamInfo) -> dict[str, str]:
    headers = {"Content-Type": info.config.content_type, "Stream-Next-Offset": wire.format_offset(info.tail)}
    if info.closed:
        headers["Stream-Closed"] = "true"
    return headers


# --- create ---------------------------------------------------------------------------------


async def create_stream(request: Request) -> Response:
    """Create a stream (or a fork of one), with its first messages and closed at once if
    asked; an existing stream with the same configuration answers 200."""
    run_id = parsing.run_id(request)
    config, forking = parsing.stream_config(request)
    closed = parsing.closes(request)
    body = await parsing.read_body(request)
    if forking:
        parent = await _streams(request).info(config.fork.parent)  # type: ignore[union-attr]
        if parent is None:
            raise ProtocolError(404, "source_not_found", f"the stream {config.fork.parent!r} to fork does not exist")  # type: ignore[union-attr]
        if parent.deleted:
            raise ProtocolError(409, "source_deleted", f"the stream {parent.run_id!r} was deleted; its forks keep it, but it cannot be forked")
        message_config = parent.config if not config.content_type else config
    else:
        message_config = config
    messages = parsing.messages_of(message_config, body, creating=True)
    try:
        info, created = await _streams(request).create(run_id, config, messages, closed=closed)
    except RunDeleted as exc:  # the parent, deleted meanwhile
        raise ProtocolError(409, "source_deleted", str(exc)) from None
    headers = _stream_headers(info)
    if created:
        headers["Location"] = str(request.url.replace(query=None))
    return Response(status_code=201 if created else 200, headers=headers)


# --- append and close -----------------------------------------------------------------------


async def append(request: Request) -> Response:
    """Append the body (a JSON array: its elements) to the stream; with ``Stream-Closed: true``
    close it after, atomically (an empty body only closes)."""
    producer = parsing.producer_of(request)
    close = parsing.closes(request)
    writer_seq = request.headers.get("stream-seq")
    body = await parsing.read_body(request)
    info = await _existing(request)
    if not body and not close:
        raise ProtocolError(400, "empty_body", "an append needs a body (an empty one only with Stream-Closed: true)")
    messages: list[StreamRow] = []
    if body and info.closed:
        if producer is None:
            raise _closed_error(info)
        # The storage tells a retry of the producer's closing request (a duplicate) from any
        # other append (refused); the body is not written either way.
        messages = [encode_message(body=body)]
    elif body:
        content_type = request.headers.get("content-type")
        if content_type is None:
            raise ProtocolError(400, "missing_content_type", "an append with a body needs a Content-Type")
        if media_type(content_type) != info.config.media_type:
            raise ProtocolError(409, "content_type_mismatch", f"the stream's content type is {info.config.content_type!r}")
        messages = parsing.messages_of(info.config, body, creating=False)
    try:
        outcome = await _streams(request).append(info, messages, producer=producer, writer_seq=writer_seq, close=close)
    except RunEnded:
        raise _closed_error(await _existing(request)) from None
    headers = {"Stream-Next-Offset": wire.format_offset(tail_position(info.config, outcome.last_id, outcome.ended))}
    if outcome.ended:
        headers["Stream-Closed"] = "true"
    if producer is None:
        return Response(status_code=204, headers=headers)
    headers["Producer-Epoch"] = str(producer.epoch)
    headers["Producer-Seq"] = str(outcome.producer_seq if outcome.producer_seq is not None else producer.seq)
    return Response(status_code=204 if outcome.duplicate or not messages else 200, headers=headers)


def _closed_error(info: StreamInfo) -> ProtocolError:
    """The protocol's answer to an append to a closed stream: 409 with its final offset."""
    return ProtocolError(409, "stream_closed", f"the stream {info.run_id!r} is closed", _stream_headers(info))


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


async def read_stream(request: Request) -> Response:
    """Read from an offset: what is there (catch-up), or wait for more (``live=long-poll``),
    or follow the stream as Server-Sent Events (``live=sse``)."""
    offset, live = parsing.read_params(request)
    info = await _existing(request)
    streams = _streams(request)
    await streams.touch(info)
    after = info.tail if offset == wire.NOW else wire.parse_offset(offset or wire.START)
    assert after is not None
    if live == "sse":
        return _sse_response(request, streams, info, after)
    if offset == wire.NOW and live is None:
        headers = {**_stream_headers(info), "Stream-Up-To-Date": "true", "Cache-Control": "no-store"}
        return Response(wire.body_of(info.config, []), headers=headers)
    cursor = request.query_params.get("cursor")
    if live == "long-poll":
        part = await _long_poll(request, streams, info, after)
        if not part.messages:
            headers = {"Stream-Next-Offset": wire.format_offset(part.next), "Stream-Up-To-Date": "true",
                       "Cache-Control": "no-store"}
            if part.closed:
                headers["Stream-Closed"] = "true"
            else:
                headers["Stream-Cursor"] = wire.response_cursor(cursor)
            return Response(status_code=204, headers=headers)
    else:
        part = await streams.read(info, after, max_bytes=CHUNK_BYTES)
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


async def _long_poll(request: Request, streams: Streams, info: StreamInfo, after: int) -> Slice:
    """The first messages after ``after`` (or the closure), waiting up to the long-poll timeout
    for them; an empty slice at the position reached when none came (or the server stops)."""
    position = after
    timeout = request.app.state.settings.long_poll_timeout
    parts = streams.follow(info, after, heartbeat=timeout, max_bytes=CHUNK_BYTES)
    async with contextlib.aclosing(until_stopped(request.app.state.stopping, parts)) as stoppable:
        async for part in stoppable:
            if part is None:
                break
            if part.messages or part.closed:
                return part
            position = part.next
    await streams.touch(info)
    return Slice([], position, True, False)


def _cache_control(request: Request) -> str:
    """Catch-up reads are immutable by offset and cacheable; privately only when credentials
    guard the streams."""
    scope = "private" if request.app.state.auth.enabled else "public"
    return f"{scope}, max-age=60, stale-while-revalidate=300"


def _sse_response(request: Request, streams: Streams, info: StreamInfo, after: int) -> Response:
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if not wire.is_text(info.config):
        headers["Stream-SSE-Data-Encoding"] = "base64"
    heartbeat = request.app.state.settings.heartbeat
    if info.config.ttl is not None:  # each heartbeat moves the TTL on: a connected reader keeps it
        heartbeat = min(heartbeat, max(info.config.ttl / 2, 0.5))
    frames = _sse_frames(request.app.state.stopping, streams, info, after, request.query_params.get("cursor"), heartbeat)
    return StreamingResponse(frames, headers=headers)


async def _sse_frames(
    stopping: asyncio.Event, streams: Streams, info: StreamInfo, after: int, cursor: str | None, heartbeat: float
) -> AsyncIterator[bytes]:
    """A data event and its control event per read, from ``after`` on, until the stream is
    closed (a last control event says so), ``SSE_LIFETIME`` has passed or the server stops
    (the client reconnects from its last control event's offset)."""
    deadline = time.monotonic() + SSE_LIFETIME
    position, first = after, True
    parts = streams.follow(info, after, heartbeat=min(heartbeat, SSE_LIFETIME), max_bytes=CHUNK_BYTES)
    try:
        async with contextlib.aclosing(until_stopped(stopping, parts)) as stoppable:
            async for part in stoppable:
                if part is None:  # idle: a control event keeps proxies from timing out
                    await streams.touch(info)
                    if time.monotonic() >= deadline:
                        return
                    yield wire.sse_control(wire.format_offset(position), cursor=wire.response_cursor(cursor),
                                           up_to_date=True, closed=False)
                    continue
                if part.messages or first or part.closed:
                    yield wire.slice_frames(info.config, part, wire.response_cursor(cursor))
                first, position = False, part.next
                if part.closed or time.monotonic() >= deadline:
                    return
    except (RunNotFound, OffsetGone):
        return  # deleted, or trimmed past the reader: the next request gets the status


STREAM = Param("run_id", "path", RUN_ID_SCHEMA, "the stream's path (a run id)")
_PROTOCOL = "Durable Streams protocol"

routes = [
    ApiRoute("/v1/stream/{run_id}", _answer_errors(create_stream), "PUT", Need.PRODUCER, Operation(
        f"{_PROTOCOL}: create a stream or a fork", {201: Reply("Created", media_type=None), 200: Reply("It exists with this configuration", media_type=None)},
        (400, 404, 409, 413, 503, 507), parameters=(STREAM,),
    )),
    ApiRoute("/v1/stream/{run_id}", _answer_errors(append), "POST", Need.PRODUCER, Operation(
        f"{_PROTOCOL}: append, or close", {204: Reply("Appended", media_type=None), 200: Reply("Appended (an idempotent producer's new request)", media_type=None)},
        (400, 403, 404, 409, 410, 413, 503, 507), parameters=(STREAM,),
    )),
    # HEAD first: starlette's GET route answers HEAD as well
    ApiRoute("/v1/stream/{run_id}", _answer_errors(head_stream), "HEAD", Need.READ_RUN, Operation(
        f"{_PROTOCOL}: the stream's metadata", {200: Reply("Its headers", media_type=None)}, (400, 404, 410, 503),
        parameters=(STREAM,),
    )),
    ApiRoute("/v1/stream/{run_id}", _answer_errors(read_stream), "GET", Need.READ_RUN, Operation(
        f"{_PROTOCOL}: read from an offset (catch-up, long-poll or SSE)",
        {200: Reply("The messages", media_type="application/octet-stream"), 204: Reply("Nothing new in time (long-poll)", media_type=None),
         304: Reply("Not modified", media_type=None)},
        (400, 404, 410, 503), parameters=(
            STREAM, Param("offset", "query", {"type": "string"}), Param("live", "query", {"enum": ["long-poll", "sse"]}),
            Param("cursor", "query", {"type": "string"}),
        ),
    )),
    ApiRoute("/v1/stream/{run_id}", _answer_errors(delete_stream), "DELETE", Need.PRODUCER, Operation(
        f"{_PROTOCOL}: delete a stream", {204: Reply("Deleted", media_type=None)}, (400, 404, 410, 503, 507),
        parameters=(STREAM,),
    )),
]
