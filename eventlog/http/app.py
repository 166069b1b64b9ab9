"""The app factory: ``create_app(settings)`` builds the Starlette app on one EventLog.

``uvicorn eventlog.http.app:create_app --factory`` (or ``server:app``) reads its settings from
``EVENTLOG_*`` variables, which is how every worker of ``eventlog serve --workers N`` gets the
same ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from eventlog import EventLog
from eventlog.http import langgraph, metrics, openapi, routes, ui
from eventlog.http.auth import Authenticator, install_log_redaction, load_key
from eventlog.http.broadcast import Broadcasts
from eventlog.http.durable import routes as durable_streams
from eventlog.http.errors import EXCEPTION_HANDLERS
from eventlog.http.security import SecurityHeaders
from eventlog.http.settings import Settings
from eventlog.http.shutdown import on_exit_signal
from eventlog.http.sse import StreamCounter
from eventlog.http.stream import SERVER_SEND
from eventlog.log.streams import Streams

CORS_REQUEST_HEADERS = [
    "Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "If-None-Match",
    # the Durable Streams protocol's
    "Stream-Seq", "Stream-TTL", "Stream-Expires-At", "Stream-Closed", "Producer-Id", "Producer-Epoch",
    "Producer-Seq", "Stream-Forked-From", "Stream-Fork-Offset", "Stream-Fork-Sub-Offset",
]
CORS_RESPONSE_HEADERS = [
    "Location", "ETag",
    "Stream-Next-Offset", "Stream-Cursor", "Stream-Up-To-Date", "Stream-Closed", "Stream-TTL", "Stream-Expires-At",
    "Stream-SSE-Data-Encoding", "Producer-Epoch", "Producer-Seq", "Producer-Expected-Seq", "Producer-Received-Seq",
]


class App(Starlette):
    """The Starlette app, handing each request the server's own ``send`` in its scope too, for
    the SSE streams' body chunks (``stream.SERVER_SEND`` says why)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND] = send
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with EventLog.open(
            settings.db,
            durability=settings.durability,
            retention=settings.retention,
            retention_interval=settings.retention_interval,
            poll_interval=settings.poll_interval,
            lock_timeout=settings.lock_timeout,
            pool_size=settings.pool_size,
            command_timeout=settings.command_timeout,
        ) as log:
            app.state.log = log
            app.state.durable_streams = Streams(log)
            app.state.broadcasts = Broadcasts(log, settings.heartbeat)
            app.state.stopping = stopping = asyncio.Event()

            def stop() -> None:
                stopping.set()
                app.state.broadcasts.close()

            with on_exit_signal(stop):
                yield
            stop()

    middleware = [Middleware(SecurityHeaders)]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
                allow_headers=CORS_REQUEST_HEADERS,
                expose_headers=CORS_RESPONSE_HEADERS,
            )
        )
    app = App(
        routes=[*routes.routes, *langgraph.routes, *durable_streams.routes, *metrics.routes, *openapi.routes, *ui.routes],
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.auth = authenticator(settings)
    install_log_redaction()
    app.state.streams = StreamCounter()
    return app


def authenticator(settings: Settings) -> Authenticator:
    if settings.jwt_public_key is not None:
        jwt_key: str | None = load_key(settings.jwt_public_key)
        algorithms = tuple(a for a in settings.jwt_algorithms if a != "HS256") or ("RS256", "ES256")
    else:
        jwt_key, algorithms = settings.jwt_secret, ("HS256",)
    return Authenticator(api_keys=tuple(settings.api_key), jwt_key=jwt_key, jwt_algorithms=algorithms)
