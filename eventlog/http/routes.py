"""The run endpoints: create, append, end, read, list, delete, stream."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventlog import EventLog, RunInfo, RunNotFound
from eventlog.http.auth import Need, access, guard
from eventlog.http.errors import ApiError, read_body
from eventlog.http.schemas import AppendBody, CreateRunBody, EndBody, event_json, run_json
from eventlog.http.settings import Settings
from eventlog.http.sse import gap_policy, resume_cursor, stream_response


def _log(request: Request) -> EventLog:
    return request.app.state.log


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, f"invalid_{name}", f"{name} must be an integer from {low} to {high} (got {raw[:64]!r})")
    return int(raw)


async def create_run(request: Request) -> Response:
    body = await read_body(request, CreateRunBody, _settings(request).max_body_bytes)
    info = await _log(request).create_run(body.run_id, body.metadata)
    return JSONResponse(run_json(info), 201)


async def list_runs(request: Request) -> Response:
    status = request.query_params.get("status")
    if status not in (None, "running", "ended"):
        raise ApiError(400, "invalid_status", "status must be 'running' or 'ended'")
    limit = int_param(request, "limit", 100, 1, 1000)
    offset = int_param(request, "offset", 0, 0, 2**62)
    runs = await _log(request).runs(limit=limit, offset=offset, status=status)  # type: ignore[arg-type]
    caller = access(request)  # a reader token lists only the runs it may read
    return JSONResponse({"runs": [run_json(info) for info in runs if caller.can_read(info.run_id)]})


async def path_run(request: Request) -> RunInfo:
    """The run named in the path; RunNotFound (a 404) when there is none."""
    run_id = request.path_params["run_id"]
    info = await _log(request).run(run_id)
    if info is None:
        raise RunNotFound(run_id)
    return info


async def get_run(request: Request) -> Response:
    return JSONResponse(run_json(await path_run(request)))


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
    key = request.headers.get("idempotency-key")
    ids = await _log(request).append_many(request.path_params["run_id"], pairs, idempotency_key=key)
    return JSONResponse({"ids": ids}, 201)


async def end_run(request: Request) -> Response:
    """201 with the end marker's id; 200 when the run had already ended with this reason."""
    body = await read_body(request, EndBody, _settings(request).max_body_bytes, optional=True)
    before = await path_run(request)
    end_id = await _log(request).end(before.run_id, body.reason)
    repeated = before.end_id == end_id
    return JSONResponse({"id": end_id, "reason": body.reason}, 200 if repeated else 201)


async def read_events(request: Request) -> Response:
    after = int_param(request, "after", 0, 0, 2**63 - 1)
    limit = int_param(request, "limit", 100, 1, 1000)
    info = await path_run(request)
    events = await _log(request).read(info.run_id, after=after, limit=limit)
    return JSONResponse({"events": [event_json(e) for e in events], "next_after": events[-1].id if events else after})


async def stream_run(request: Request) -> Response:
    settings = _settings(request)
    after, on_gap = resume_cursor(request), gap_policy(request)
    info = await path_run(request)
    return stream_response(
        _log(request), info.run_id, after=after, heartbeat=settings.heartbeat, retry_ms=settings.retry_ms,
        on_gap=on_gap, counter=request.app.state.streams,
    )


routes = [
    Route("/runs", guard(create_run, Need.PRODUCER), methods=["POST"]),
    Route("/runs", guard(list_runs, Need.ANY), methods=["GET"]),
    Route("/runs/{run_id}", guard(get_run, Need.READ_RUN), methods=["GET"]),
    Route("/runs/{run_id}", guard(delete_run, Need.PRODUCER), methods=["DELETE"]),
    Route("/runs/{run_id}/events", guard(append_events, Need.PRODUCER), methods=["POST"]),
    Route("/runs/{run_id}/events", guard(read_events, Need.READ_RUN), methods=["GET"]),
    Route("/runs/{run_id}/end", guard(end_run, Need.PRODUCER), methods=["POST"]),
    Route("/runs/{run_id}/stream", guard(stream_run, Need.READ_RUN), methods=["GET"]),
]
