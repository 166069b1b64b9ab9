"""The SSE response of one stream: it replays on its own, then joins its run's broadcast.

An ASGI response of its own rather than sse-starlette's, which starts a task group of several
tasks per stream and sends every chunk through them. Here the request's own task sends the
headers and the ``retry:`` hint and then only listens for the client to go away. A catch-up
task replays from the cursor (from the file, at the client's pace) and ends when the stream
joins its run's broadcast at the live edge (``broadcast.py``), which writes the live chunks,
heartbeats included. So a stream at the live edge holds no task of its own, and a client that
leaves mid-replay stops its replay at once. The response ends with the run's end, an error
frame, or the server's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from eventlog import End, Event, EventLog, Gap, LogClosed, RunInfo, StorageError
from eventlog.http.broadcast import Broadcasts, Live, RunBroadcast
from eventlog.http.sse import StreamCounter, encode_batch, error_frame, retry_frame
from eventlog.log.subscription import Item

logger = logging.getLogger("eventlog.http")

HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SERVER_SEND = "eventlog.server_send"
"""Scope key of the ASGI server's own ``send`` (``app.App`` puts it there). A stream writes its
body chunks with it: Starlette's middleware and route wrap ``send`` once per layer, three
coroutines deep, only to note that a response has started, and a broadcast to a thousand
streams would pay those layers a thousand times per chunk. The start of the response still
goes through them, so they know it has started."""


def stream_response(
    request: Request,
    info: RunInfo,
    *,
    after: int | None,
    on_gap: Literal["continue", "stop"],
    keep: Callable[[Event], bool] | None = None,
    headers: dict[str, str] | None = None,
) -> Stream | Response:
    """The stream of the run ``info`` from ``after``. A cursor beyond the run's newest event
    tails live from there. A HEAD request gets the stream's headers only: the server sends no
    body for HEAD, and a stream started for it would never end on its own."""
    if request.method == "HEAD":
        return Response(headers={**HEADERS, **(headers or {})})
    state = request.app.state
    return Stream(
        state.log, state.broadcasts, info.run_id, after=None if after is None else min(after, info.last_id),
        retry_ms=state.settings.retry_ms, on_gap=on_gap, counter=state.streams, keep=keep, headers=headers,
    )


def _body(chunk: bytes, *, final: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": chunk, "more_body": not final}


class Stream:
    """One client's SSE stream of a run, from ``after`` (None: the earliest retained event).
    ``keep`` filters the events sent (None: all)."""

    def __init__(
        self,
        log: EventLog,
        broadcasts: Broadcasts,
        run_id: str,
        *,
        after: int | None,
        retry_ms: int,
        on_gap: Literal["continue", "stop"],
        counter: StreamCounter,
        keep: Callable[[Event], bool] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.cursor = after
        self._log = log
        self._broadcasts = broadcasts
        self._retry_ms = retry_ms
        self._on_gap = on_gap
        self._counter = counter
        self._keep = keep
        self._headers = [(k.lower().encode(), v.encode()) for k, v in {**HEADERS, **(headers or {})}.items()]
        self._send: Send | None = None
        self._broadcast: RunBroadcast | None = None
        self._catching_up: asyncio.Task[None] | None = None
        """Replays from the file until the stream can join the broadcast (none at the live edge)."""
        self.done = False
        """The response is complete (or the client has gone): nothing more is written."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._counter.active += 1
        self._counter.total += 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self._headers})
            self._send = scope.get(SERVER_SEND, send)
            await self._send(_body(retry_frame(self._retry_ms)))
            self._start_catching_up()
            # uvicorn answers a pending receive with http.disconnect also once the response is
            # complete, so this returns when the client goes away or the stream has ended.
            while not self.done and (await receive())["type"] != "http.disconnect":
                pass
        finally:
            self.done = True
            self._leave()
            if self._catching_up is not None:
                self._catching_up.cancel()
            self._counter.active -= 1

    def _start_catching_up(self, send: Coroutine[Any, Any, None] | None = None, waiting: object = None) -> None:
        """Replay in a task of this stream, after finishing ``send`` if given (a send that
        suspended having yielded ``waiting``, see ``_write``)."""
        self._leave()
        self._catching_up = asyncio.get_running_loop().create_task(self._catch_up(send, waiting))

    async def _catch_up(self, send: Coroutine[Any, Any, None] | None, waiting: object) -> None:
        try:
            if send is not None:
                await finish_suspended(send, waiting)
            await self._replay()
        except Exception:  # the client gets no more frames: end the response, it reconnects
            logger.exception("a stream of run %s failed", self.run_id)
            with contextlib.suppress(Exception):
                self.close()
        finally:
            if self._catching_up is asyncio.current_task():
                self._catching_up = None

    async def _replay(self) -> None:
        """Send what was committed after the cursor, at the client's pace, until the stream can
        join the run's broadcast, or it ends."""
        while not self.done:
            batches = self._log.stream(self.run_id, after=self.cursor, heartbeat=None, on_gap=self._on_gap, live=False)
            try:
                async with contextlib.aclosing(batches):  # type: ignore[type-var]
                    async for items in batches:
                        chunk, final = self._take(items)
                        if final:
                            await self._finish(chunk)
                            return
                        if chunk:
                            await self._send(_body(chunk))  # type: ignore[misc]
                        if self._broadcasts.closed:  # shutting down: the join below ends the stream
                            break
            except StorageError as exc:  # e.g. the file turned out corrupt: say so, do not cut the stream
                await self._finish(error_frame(exc))
                return
            except LogClosed:
                await self._finish(b"")
                return
            # At the live edge. Between the last read and now another commit may have reached
            # the broadcast already: then one more round of catching up.
            self._broadcast = self._broadcasts.join(self)
            if self._broadcast is not None:
                return

    def _take(self, items: list[Item]) -> tuple[bytes, bool]:
        """The chunk of ``items`` for this client (events it was sent already left out) and
        whether it ends the stream; moves the cursor."""
        kept = []
        final = False
        for item in items:
            if type(item) is Event:
                if self.cursor is not None and item.id <= self.cursor:
                    continue
                self.cursor = item.id
            elif type(item) is Gap:
                # Resume just before the earliest retained event (or after the newest, if none is).
                self.cursor = item.earliest - 1 if item.earliest else item.latest
                final = self._on_gap == "stop"
            elif type(item) is End:
                final = True
            kept.append(item)
        return encode_batch(kept, self._keep), final

    def deliver(self, live: Live) -> None:
        """From the broadcast: the shared chunk as it is, unless this stream filters events,
        has sent some of them already (it joined as the broadcast read them), or stops at gaps."""
        if live.items and (self._keep is not None or live.gap or (live.first and live.first <= (self.cursor or 0))):
            chunk, final = self._take(live.items)
        else:
            chunk, final = live.chunk, live.final
            if live.last:
                self.cursor = live.last
        if chunk or final:
            self._write(chunk, final)

    def close(self) -> None:
        if not self.done:
            self._write(b"", True)

    def _write(self, chunk: bytes, final: bool) -> None:
        """Send without waiting. uvicorn's send returns at once unless the connection's write
        buffer is full; then the stream leaves the broadcast, and its catch-up task finishes
        that send and replays from the file."""
        if final:
            self.done = True
            self._leave()
        coroutine = self._send(_body(chunk, final=final))  # type: ignore[misc]
        try:
            waiting = coroutine.send(None)
        except StopIteration:
            return
        self._start_catching_up(coroutine, waiting)  # after a final chunk there is nothing to replay

    async def _finish(self, chunk: bytes) -> None:
        self.done = True
        self._leave()
        await self._send(_body(chunk, final=True))  # type: ignore[misc]

    def _leave(self) -> None:
        if self._broadcast is not None:
            self._broadcast.leave(self)
            self._broadcast = None


async def finish_suspended(coroutine: Coroutine[Any, Any, None], waiting: object) -> None:
    """Run ``coroutine`` to its end in the calling task, from where it suspended having yielded
    ``waiting`` (an asyncio future, or None for a bare yield): the steps an asyncio task takes.
    The broadcast starts each send in its own task, where nearly every send completes at once;
    the rare one that has to wait is handed over here instead of holding the broadcast up."""
    while True:
        error: BaseException | None = None
        try:
            if waiting is None:
                await asyncio.sleep(0)
            else:  # what a task does with the future its coroutine yielded: wait for it
                waiting._asyncio_future_blocking = False  # type: ignore[attr-defined]
                await waiting  # type: ignore[misc]
        except BaseException as exc:  # this task's cancellation included: the coroutine gets it
            error = exc
        try:
            waiting = coroutine.send(None) if error is None else coroutine.throw(error)
        except StopIteration:
            return
