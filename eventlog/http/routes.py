"""The run endpoints: create, append, end, read, list, delete, stream."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from eventlog import EventLog, RunInfo, RunNotFound
from eventlog.http.auth import Need, access
from eventlog.http.errors import ApiError, read_body
from eventlog.http.openapi import ApiRoute, Operation, Param, Reply
from eventlog.http.params import CURSOR_MAX, CURSOR_PARAMS, gap_policy, header, query_int, resume_cursor
from eventlog.http.schemas import (
    RUN_ID_SCHEMA,
    AppendBody,
    AppendedIds,
    CreateRunBody,
    EndBody,
    Ended,
    EventsPage,
    Run,
    RunList,
    StoredEvent,
    StreamEvent,
    reply,
)
from eventlog.http.settings import Settings
from eventlog.http.stream import Stream, stream_response

RUN_ID = Param("run_id", "path", RUN_ID_SCHEMA)
LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
STREAM_REPLY = Reply(
    "Server-Sent Events: a retry hint, the run's events, heartbeat comments, a gap frame when the "
    "cursor lies before the retained events, and an end frame once the run has ended (the schema is "
    "that of each event)",
    StreamEvent, media_type="text/event-stream",
)
READ_ERRORS = (404, 422, 503)
"""What reading a run named in the path can answer besides success (422: an invalid run id)."""
WRITE_ERRORS = (400, 404, 409, 413, 422, 503, 507)


def _log(request: Request) -> EventLog:
    return request.app.state.log


def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def create_run(request: Request) -> Response:
    body = await read_body(request, CreateRunBody, _settings(request).max_body_bytes)
    info = await _log(request).create_run(body.run_id, body.metadata)
    return reply(Run.of(info), 201)


async def list_runs(request: Request) -> Response:
    """A reader token lists only the runs it may read; the log filters before paging."""
    status = request.query_params.get("status")
    if status not in (None, "running", "ended"):
        raise ApiError(400, "invalid_status", "status must be 'running' or 'ended'")
    limit = query_int(request, "limit", 100, 1, 1000)
    offset = query_int(request, "offset", 0, 0, 2**62)
    caller = access(request)
    globs = None if caller.producer else caller.run_globs
    runs = await _log(request).runs(limit=limit, offset=offset, status=status, run_globs=globs)  # type: ignore[arg-type]
    return reply(RunList(runs=[Run.of(info) for info in runs]))


async def path_run(request: Request) -> RunInfo:
    """The run named in the path; RunNotFound (a 404) when there is none, or when it was
    deleted and is only kept for its forks (Durable Streams forks read it)."""
    run_id = request.path_params["run_id"]
    info = await _log(request).run(run_id)
    if info is None or info.deleted_at is not None:
        raise RunNotFound(run_id)
    return info


async def get_run(request: Request) -> Response:
    return reply(Run.of(await path_run(request)))


async def delete_run(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    if not await _log(request).delete(run_id):
        raise RunNotFound(run_id)
    return Response(status_code=204)


async def append_events(request: Request) -> Response:
    """Append one event or a batch; 201 once committed. ``Idempotency-Key`` makes retries safe."""
    settings = _settings(request)
    body = await read_body(request, AppendBody, settings.max_body_bytes)
    pairs = body.pairs()
    if len(pairs) > settings.max_batch_events:
        raise ApiError(413, "batch_too_large", f"at most {settings.max_batch_events} events per request (got {len(pairs)})")
    key = header(request, "idempotency-key", strict=True)
    ids = await _log(request).append_many(request.path_params["run_id"], pairs, idempotency_key=key)
    return reply(AppendedIds(ids=ids), 201)


async def end_run(request: Request) -> Response:
    """201 with the end marker's id; 200 when the run had already ended with this reason."""
    body = await read_body(request, EndBody, _settings(request).max_body_bytes, optional=True)
    before = await path_run(request)
    end_id = await _log(request).end(before.run_id, body.reason)
    repeated = before.end_id == end_id
    return reply(Ended(id=end_id, reason=body.reason), 200 if repeated else 201)


async def read_events(request: Request) -> Response:
    after = query_int(request, "after", 0, 0, CURSOR_MAX)
    limit = query_int(request, "limit", 100, 1, 1000)
    info = await path_run(request)
    events = await _log(request).read(info.run_id, after=after, limit=limit)
    page = EventsPage(events=[StoredEvent.of(e) for e in events], next_after=events[-1].id if events else after)
    return reply(page)


async def stream_run(request: Request) -> Stream | Response:
    after, on_gap = resume_cursor(request), gap_policy(request)
    return stream_response(request, await path_run(request), after=after, on_gap=on_gap)


routes = [
    ApiRoute("/runs", create_run, "POST", Need.PRODUCER, Operation(
        "Create a run", {201: Reply("The new run", Run)}, (400, 409, 413, 422, 503, 507), body=CreateRunBody,
    )),
    ApiRoute("/runs", list_runs, "GET", Need.ANY, Operation(
        "List runs, newest first (a reader token lists the runs it grants)", {200: Reply("A page of runs", RunList)},
        (400, 503), parameters=(
            LIMIT,
            Param("offset", "query", {"type": "integer", "minimum": 0, "maximum": 2**62, "default": 0}),
            Param("status", "query", {"enum": ["running", "ended"]}),
        ),
    )),
    ApiRoute("/runs/{run_id}", get_run, "GET", Need.READ_RUN, Operation(
        "A run", {200: Reply("The run", Run)}, READ_ERRORS, parameters=(RUN_ID,),
    )),
    ApiRoute("/runs/{run_id}", delete_run, "DELETE", Need.PRODUCER, Operation(
        "Delete a run and its events", {204: Reply("Deleted", media_type=None)}, (404, 422, 503, 507),
        parameters=(RUN_ID,),
    )),
    ApiRoute("/runs/{run_id}/events", append_events, "POST", Need.PRODUCER, Operation(
        "Append one event or a batch (durable once answered)", {201: Reply("The events' ids", AppendedIds)},
        WRITE_ERRORS, body=AppendBody, parameters=(
            RUN_ID,
            Param("Idempotency-Key", "header", {"type": "string", "minLength": 1, "maxLength": 256},
                  "a retry with the same key and events appends nothing and answers the same ids"),
        ),
    )),
    ApiRoute("/runs/{run_id}/events", read_events, "GET", Need.READ_RUN, Operation(
        "A page of events after a cursor", {200: Reply("The events", EventsPage)}, (400, *READ_ERRORS),
        parameters=(RUN_ID, Param("after", "query", {"type": "integer", "minimum": 0, "maximum": CURSOR_MAX, "default": 0}), LIMIT),
    )),
    ApiRoute("/runs/{run_id}/end", end_run, "POST", Need.PRODUCER, Operation(
        "End a run", {201: Reply("Ended", Ended), 200: Reply("It had already ended with this reason", Ended)},
        WRITE_ERRORS, parameters=(RUN_ID,), body=EndBody, body_required=False,
    )),
    ApiRoute("/runs/{run_id}/stream", stream_run, "GET", Need.READ_RUN, Operation(
        "Stream a run (SSE), resuming after a cursor", {200: STREAM_REPLY}, (400, *READ_ERRORS),
        parameters=(RUN_ID, *CURSOR_PARAMS),
    )),
]
