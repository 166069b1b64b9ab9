"""The LangGraph Platform join surface, so LangGraph SDK clients can consume eventlog runs.

``client.runs.join_stream(thread_id, run_id, last_event_id=...)`` GETs the stream path below. Its
``Location`` header points back at the same stream (query included), which makes the SDK
reconnect by itself with the last id it saw; when a stream closes without ``end`` the SDK asks
the run path for the status and reconnects while it is ``running``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from eventlog import Event, RunInfo, RunNotFound
from eventlog.http.auth import Need
from eventlog.http.openapi import ApiRoute, Operation, Param, Reply
from eventlog.http.params import CURSOR_PARAMS, gap_policy, resume_cursor
from eventlog.http.routes import READ_ERRORS, RUN_ID, STREAM_REPLY, path_run
from eventlog.http.schemas import ThreadRunStatus, reply
from eventlog.http.stream import stream_response

_ERROR_REASONS = {"error", "failed", "failure", "timeout"}
_INTERRUPTED_REASONS = {"interrupted", "interrupt", "cancelled", "canceled", "abandoned"}


def status_of(info: RunInfo) -> Literal["running", "success", "error", "interrupted"]:
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
    return reply(ThreadRunStatus(run_id=info.run_id, thread_id=request.path_params["thread_id"], status=status_of(info)))


async def join_stream(request: Request) -> Response:
    info = await _thread_run(request)
    after, on_gap = resume_cursor(request), gap_policy(request)
    # cancel_on_disconnect is accepted and ignored: eventlog does not own the producer.
    keep = mode_filter(request.query_params.getlist("stream_mode"))
    location = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return stream_response(request, info, after=after, on_gap=on_gap, keep=keep, headers={"Location": location})


THREAD_ID = Param("thread_id", "path", {"type": "string", "minLength": 1})

routes = [
    ApiRoute("/threads/{thread_id}/runs/{run_id}", get_thread_run, "GET", Need.READ_RUN, Operation(
        "LangGraph run status", {200: Reply("The status", ThreadRunStatus)}, READ_ERRORS,
        parameters=(THREAD_ID, RUN_ID),
    )),
    ApiRoute("/threads/{thread_id}/runs/{run_id}/stream", join_stream, "GET", Need.READ_RUN, Operation(
        "LangGraph join_stream (SSE)", {200: STREAM_REPLY}, (400, *READ_ERRORS), parameters=(
            THREAD_ID, RUN_ID, *CURSOR_PARAMS,
            Param("stream_mode", "query", {"type": "array", "items": {"type": "string"}}, "keep events of these modes"),
            Param("cancel_on_disconnect", "query", {"type": "boolean"}, "accepted and ignored"),
        ),
    )),
]
