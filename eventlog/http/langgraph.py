"""The LangGraph Platform join surface, so LangGraph SDK clients can consume eventlog runs.

``client.runs.join_stream(thread_id, run_id, last_event_id=...)`` GETs the stream path below. Its
``Location`` header points back at the same stream (query included), which makes the SDK
reconnect by itself with the last id it saw; when a stream closes without ``end`` the SDK asks
the run path for the status and reconnects while it is ``running``.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from eventlog import Event, RunInfo, RunNotFound
from eventlog.http.auth import Need, guard
from eventlog.http.routes import path_run
from eventlog.http.sse import gap_policy, resume_cursor, stream_response

_ERROR_REASONS = {"error", "failed", "failure", "timeout"}
_INTERRUPTED_REASONS = {"interrupted", "interrupt", "cancelled", "canceled", "abandoned"}


def status_of(info: RunInfo) -> str:
    """LangGraph's run status: ``running`` while open; after the end, from its reason."""
    if not info.ended:
        return "running"
    reason = (info.end_reason or "success").lower()
    if reason in _ERROR_REASONS:
        return "error"
    if reason in _INTERRUPTED_REASONS:
        return "interrupted"
    return "success"


async def _thread_run(request: Request) -> RunInfo:
    """The run, if its ``metadata.thread_id`` is the thread in the path; 404 otherwise."""
    info = await path_run(request)
    if str(info.metadata.get("thread_id")) != request.path_params["thread_id"]:
        raise RunNotFound(info.run_id)
    return info


def mode_filter(modes: list[str]) -> Callable[[Event], bool]:
    """``stream_mode`` keeps events of those modes; ``updates`` also keeps ``updates|sub|graph``.
    Empty values mean no filter: the LangGraph SDK sends ``stream_mode=`` when it has none."""
    modes = [mode for mode in modes if mode]
    if not modes:
        return lambda event: True
    wanted = tuple(modes)
    prefixes = tuple(f"{mode}|" for mode in modes)
    return lambda event: event.event in wanted or event.event.startswith(prefixes)


async def get_thread_run(request: Request) -> Response:
    info = await _thread_run(request)
    return JSONResponse({"run_id": info.run_id, "thread_id": request.path_params["thread_id"], "status": status_of(info)})


async def join_stream(request: Request) -> Response:
    info = await _thread_run(request)
    after, on_gap = resume_cursor(request), gap_policy(request)
    # cancel_on_disconnect is accepted and ignored: eventlog does not own the producer.
    keep = mode_filter(request.query_params.getlist("stream_mode"))
    location = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    settings = request.app.state.settings
    return stream_response(
        request.app.state.log, info.run_id, after=after, heartbeat=settings.heartbeat,
        retry_ms=settings.retry_ms, on_gap=on_gap, counter=request.app.state.streams,
        keep=keep, headers={"Location": location},
    )


routes = [
    Route("/threads/{thread_id}/runs/{run_id}", guard(get_thread_run, Need.READ_RUN), methods=["GET"]),
    Route("/threads/{thread_id}/runs/{run_id}/stream", guard(join_stream, Need.READ_RUN), methods=["GET"]),
]
