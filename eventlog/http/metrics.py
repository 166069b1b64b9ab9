"""``/metrics`` in the Prometheus text format, and ``/healthz``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from eventlog import EventLog, EventLogError
from eventlog.http.auth import Need
from eventlog.http.openapi import ApiRoute, Operation, Reply
from eventlog.http.schemas import ErrorDetail, Health, reply

_METRICS = [
    ("eventlog_appended_events_total", "counter", "Events appended through this process.", "appended"),
    ("eventlog_wakeups_total", "counter", "Subscriber wake-ups delivered by this process.", "wakeups"),
    ("eventlog_trimmed_events_total", "counter", "Events removed by retention in this process.", "trimmed"),
    ("eventlog_expired_runs_total", "counter", "Ended runs removed by retention in this process.", "expired_runs"),
    ("eventlog_live_runs", "gauge", "Runs with subscribers in this process.", "live_runs"),
    ("eventlog_runs", "gauge", "Runs stored in the file.", "runs"),
    ("eventlog_events", "gauge", "Events stored in the file.", "events"),
    ("eventlog_bytes", "gauge", "Bytes of event data stored in the file.", "bytes"),
]

_BACKGROUND = [
    ("eventlog_background_failures_total", "Failures of background components in this process.", "background_failures"),
    ("eventlog_background_restarts_total", "Restarts of background components in this process.", "background_restarts"),
]


async def metrics(request: Request) -> Response:
    log: EventLog = request.app.state.log
    stats = await log.stats()
    streams = request.app.state.streams
    stats["active_streams"], stats["streams_total"] = streams.active, streams.total
    rows = _METRICS + [
        ("eventlog_active_streams", "gauge", "Open SSE streams in this process.", "active_streams"),
        ("eventlog_streams_total", "counter", "SSE streams opened by this process.", "streams_total"),
    ]
    lines = []
    for name, kind, help_text, key in rows:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {stats[key]}"]
    for name, help_text, key in _BACKGROUND:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        lines += [f'{name}{{component="{component}"}} {n}' for component, n in stats[key].items()]
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


async def healthz(request: Request) -> Response:
    log: EventLog = request.app.state.log
    try:
        await log.health()
    except EventLogError as exc:
        return reply(Health(status="unhealthy", error=ErrorDetail(code=exc.code, message=str(exc))), 503)
    return reply(Health(status="ok"), exclude_none=True)


routes = [
    ApiRoute("/metrics", metrics, "GET", Need.PRODUCER, Operation(
        "Prometheus metrics", {200: Reply("The text exposition format", media_type="text/plain")}, (503,),
    )),
    ApiRoute("/healthz", healthz, "GET", Need.OPEN, Operation(
        "Health: the file is readable and the writer is running", {200: Reply("Healthy", Health), 503: Reply("Unhealthy: why, in error", Health)},
    )),
]
