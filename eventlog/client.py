"""A Python client for eventlog's HTTP API: ``Client`` (blocking, on ``httpx.Client``) and
``AsyncClient`` (asyncio, on ``httpx.AsyncClient``). It needs httpx and httpx-sse, both in the
``server`` extra (``pip install 'eventlog[server]'``).

Both classes are thin I/O loops around one core, ``Core``, that does everything that is not I/O:
building requests, turning error answers back into the typed exceptions of ``eventlog.errors``,
deciding whether and how long to wait before a retry, and turning Server-Sent Events into typed
items without duplicates. So the two cannot drift apart.

What the core takes care of, so that callers do not hand-roll it:

- every call retries on connection errors and on 503 answers (honouring ``Retry-After``) until
  ``retry_deadline`` seconds have passed since the first failure, then raises
  ``ServerUnreachable`` (or the server's last error); ``append_many`` sends one automatic
  ``Idempotency-Key`` per call, the same on each retry, so a retry never writes twice;
- ``follow`` yields events, gaps and the end only: httpx-sse turns the ``retry:`` hint and each
  heartbeat comment into an empty message carrying the last id, which a naive consumer counts as
  a duplicate. It reconnects with ``Last-Event-ID`` after a dropped connection or a server restart,
  and yields each id once, in increasing order.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any, Literal

import httpx
from httpx_sse import EventSource, ServerSentEvent

from eventlog import errors
from eventlog.errors import DatabaseCorrupt, EventLogError, InvalidData, InvalidInput, RunNotFound
from eventlog.log.validation import check_run_id
from eventlog.models import End, Event, Gap, RunInfo

__all__ = ["AsyncClient", "AuthRefused", "Client", "FollowItem", "ServerError", "ServerUnreachable", "StreamedEvent"]

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 2.0
"""Seconds between retries: doubling from the first to the most, unless the server says
``Retry-After``."""


class ServerError(EventLogError):
    """An error answer whose ``code`` names no class of ``eventlog.errors`` (a bad body, a wrong
    route...). ``code``, ``status`` and ``message`` are the server's."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.code = code
        self.status = status
        self.message = message


class AuthRefused(ServerError):
    """401 (missing or bad credentials) or 403 (credentials used outside their scope)."""


class ServerUnreachable(EventLogError):
    """No answer from the server (refused, dropped or timed-out connections) until the retry
    deadline passed."""

    code = "server_unreachable"

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(f"cannot reach the eventlog server at {url}: {cause}")
        self.url = url


@dataclass(frozen=True, slots=True)
class StreamedEvent:
    """An event as ``follow`` delivers it: ``Event`` without ``created_at``, which SSE frames do
    not carry. ``data_json`` is the compact JSON as stored."""

    id: int
    run_id: str
    event: str
    data_json: str

    @property
    def data(self) -> Any:
        return json.loads(self.data_json)


FollowItem = StreamedEvent | Gap | End

_ERRORS: dict[str, type[EventLogError]] = {
    cls.code: cls for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, EventLogError) and cls is not EventLogError
}


def typed_error(code: str, status: int, message: str, run_id: str | None) -> EventLogError:
    """The exception an error answer stands for: the ``eventlog.errors`` class of its ``code``,
    so callers catch the same classes as with a local ``EventLog``, else a ``ServerError``.

    The classes' constructors format their message from fields (a run's end reason...) that the
    server sent already formatted, so the instance is built around the server's message: the
    constructor's attributes are set to ``run_id`` (from the request) and None for the others."""
    cls = _ERRORS.get(code)
    if cls is None:
        return (AuthRefused if status in (401, 403) else ServerError)(code, status, message)
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    for param in inspect.signature(cls.__init__).parameters.values():
        if param.kind is param.POSITIONAL_OR_KEYWORD and param.name != "self":
            setattr(error, param.name, run_id if param.name == "run_id" else None)
    return error


def answer_error(response: httpx.Response, run_id: str | None) -> EventLogError:
    """The typed error of a non-2xx answer (its body read already)."""
    try:
        detail = response.json()["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:200] or response.reason_phrase
    return typed_error(code, response.status_code, message, run_id)


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` seconds of an answer (the HTTP-date form is not sent by eventlog)."""
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None


def base_url(url: str) -> str:
    """``url`` without a trailing slash, once checked to be ``http(s)://host[:port][/path]``."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host or parsed.query or parsed.fragment:
        raise InvalidInput(f"the server URL must look like http://host:port (got {url!r})")
    return str(parsed).rstrip("/")


class Retry:
    """Whether and how long to wait before trying again: back-off doubling from
    ``FIRST_BACKOFF`` to ``MAX_BACKOFF`` (or the server's ``Retry-After``) until ``deadline``
    seconds after the first failure; a success (``reset``) starts over."""

    def __init__(self, url: str, deadline: float) -> None:
        self._url = url
        self._deadline = deadline
        self._give_up_at: float | None = None
        self._attempts = 0

    def reset(self) -> None:
        self._give_up_at = None
        self._attempts = 0

    def after_drop(self, exc: Exception | None) -> float:
        """The wait after a transport error (None: a stream closed before its end)."""
        cause = "the connection closed" if exc is None else f"{type(exc).__name__}: {exc}".rstrip(": ")
        return self._wait(None, ServerUnreachable(self._url, cause))

    def after_answer(self, response: httpx.Response, error: EventLogError) -> float:
        """The wait after an error answer; raises ``error`` unless it is a 503 worth retrying
        (nothing was done; a corrupt file will not heal by waiting)."""
        if response.status_code != 503 or isinstance(error, DatabaseCorrupt):
            raise error
        return self._wait(retry_after(response), error)

    def _wait(self, hint: float | None, failure: EventLogError) -> float:
        now = time.monotonic()
        if self._give_up_at is None:
            self._give_up_at = now + self._deadline
        if now >= self._give_up_at:
            raise failure
        backoff = min(MAX_BACKOFF, FIRST_BACKOFF * 2**self._attempts)
        self._attempts += 1
        return min(backoff if hint is None else hint, self._give_up_at - now)


@dataclass(frozen=True)
class Call:
    """One request and what its success answer means."""

    request: httpx.Request
    run_id: str | None
    parse: Callable[[httpx.Response], Any]


class Follow:
    """The state of one ``follow``: the cursor to resume after, and the items it has yielded."""

    def __init__(self, core: Core, run_id: str, after: int | None) -> None:
        self._core = core
        self.run_id = run_id
        self.cursor = after
        self.retry = Retry(core.url, core.retry_deadline)
        self.done = False

    def request(self) -> httpx.Request:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self.cursor is not None:
            headers["Last-Event-ID"] = str(self.cursor)
        return self._core.request("GET", f"/runs/{self.run_id}/stream", headers=headers, stream=True)

    def refused(self, response: httpx.Response) -> float:
        """The wait after a non-200 answer (its body read); raises its typed error unless it is
        worth retrying."""
        return self.retry.after_answer(response, answer_error(response, self.run_id))

    def item(self, sse: ServerSentEvent) -> FollowItem | None:
        """The typed item of one message, or None for what is no item or was yielded already."""
        if not sse.data:  # the retry: hint, heartbeats
            return None
        if sse.event == "gap":
            return self._gap(json.loads(sse.data))
        if sse.event == "error":  # the server's storage failed mid-stream
            detail = json.loads(sse.data)
            raise typed_error(detail["code"], 503, detail["message"], self.run_id)
        event_id = int(sse.id)
        if self.cursor is not None and event_id <= self.cursor:
            return None
        self.cursor = event_id
        if sse.event == "end":
            self.done = True
            return End(event_id, json.loads(sse.data)["reason"])
        return StreamedEvent(event_id, self.run_id, sse.event, sse.data)

    def _gap(self, detail: dict[str, Any]) -> Gap | None:
        """A gap, once: the cursor moves to just before the earliest retained event, so a
        reconnect before the next event does not report the same gap again."""
        gap = Gap(detail["requested_event_id"], detail["earliest_available_event_id"], detail["latest_available_event_id"])
        if gap.earliest and self.cursor is not None and self.cursor >= gap.earliest - 1:
            return None
        if gap.earliest:
            self.cursor = gap.earliest - 1
        return gap


class Core:
    """Everything of a client that is not I/O (see the module docstring)."""

    def __init__(self, url: str, *, token: str | None, timeout: float, stream_timeout: float,
                 retry_deadline: float) -> None:
        self.url = base_url(url)
        self.retry_deadline = retry_deadline
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = httpx.Timeout(timeout).as_dict()
        self._stream_timeout = httpx.Timeout(timeout, read=stream_timeout).as_dict()

    def request(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None, stream: bool = False) -> httpx.Request:
        """A request with its timeouts set (a request built without them would wait forever)."""
        content = None
        all_headers = {**self._headers, **(headers or {})}
        if body is not None:
            try:
                content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
            except (TypeError, ValueError) as exc:
                raise InvalidData(f"event data must be JSON: {exc}") from None
            all_headers["Content-Type"] = "application/json"
        return httpx.Request(method, self.url + path, content=content, headers=all_headers, params=params,
                             extensions={"timeout": self._stream_timeout if stream else self._timeout})

    def retry(self) -> Retry:
        return Retry(self.url, self.retry_deadline)

    def check(self, response: httpx.Response, run_id: str | None) -> httpx.Response:
        if response.is_success:
            return response
        raise answer_error(response, run_id)

    def append_many(self, run_id: str, events: Iterable[tuple[str, Any]]) -> Call:
        check_run_id(run_id)
        body = {"events": [{"event": name, "data": data} for name, data in events]}
        request = self.request("POST", f"/runs/{run_id}/events", body=body,
                               headers={"Idempotency-Key": uuid.uuid4().hex})
        return Call(request, run_id, lambda r: list(self.check(r, run_id).json()["ids"]))

    def end(self, run_id: str, reason: str | None) -> Call:
        check_run_id(run_id)
        request = self.request("POST", f"/runs/{run_id}/end", body={"reason": reason})
        return Call(request, run_id, lambda r: int(self.check(r, run_id).json()["id"]))

    def run(self, run_id: str) -> Call:
        check_run_id(run_id)

        def parse(response: httpx.Response) -> RunInfo | None:
            try:
                return run_info(self.check(response, run_id).json())
            except RunNotFound:
                return None

        return Call(self.request("GET", f"/runs/{run_id}"), run_id, parse)

    def runs(self, status: Literal["running", "ended"] | None, limit: int, offset: int) -> Call:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        request = self.request("GET", "/runs", params=params)
        return Call(request, None, lambda r: [run_info(run) for run in self.check(r, None).json()["runs"]])

    def read(self, run_id: str, after: int, limit: int) -> Call:
        check_run_id(run_id)
        request = self.request("GET", f"/runs/{run_id}/events", params={"after": after, "limit": limit})

        def parse(response: httpx.Response) -> list[Event]:
            page = self.check(response, run_id).json()["events"]
            return [Event(e["id"], run_id, e["event"], _compact(e["data"]), e["created_at"]) for e in page]

        return Call(request, run_id, parse)

    def delete(self, run_id: str) -> Call:
        check_run_id(run_id)

        def parse(response: httpx.Response) -> bool:
            try:
                self.check(response, run_id)
            except RunNotFound:
                return False
            return True

        return Call(self.request("DELETE", f"/runs/{run_id}"), run_id, parse)

    def follow(self, run_id: str, after: int | None) -> Follow:
        check_run_id(run_id)
        if after is not None and (not isinstance(after, int) or after < 0):
            raise InvalidInput("after must be a non-negative integer or None")
        return Follow(self, run_id, after)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def run_info(body: dict[str, Any]) -> RunInfo:
    return RunInfo(**{f.name: body[f.name] for f in fields(RunInfo)})


class _Options:
    """What both clients are built from: the options (checked by ``Core``) and an httpx client
    of their kind, from ``_new_http``."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0,
                 stream_timeout: float = 60.0, retry_deadline: float = 30.0) -> None:
        self._core = Core(url, token=token, timeout=timeout, stream_timeout=stream_timeout,
                           retry_deadline=retry_deadline)
        self._http = self._new_http()

    def _new_http(self) -> Any:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return self._core.url


class Client(_Options):
    """A blocking client: ``with Client("http://127.0.0.1:8000", token=KEY) as client: ...``.

    ``timeout``: seconds for each request; ``stream_timeout``: seconds a stream may stay silent
    (the server sends heartbeats) before it counts as dropped and is reconnected;
    ``retry_deadline``: seconds of retrying after a failure before giving up."""

    _http: httpx.Client

    def _new_http(self) -> httpx.Client:
        return httpx.Client()

    def append(self, run_id: str, event: str, data: Any = None) -> int:
        """Append one event (creating the run if needed); its id once durable."""
        return self.append_many(run_id, [(event, data)])[0]

    def append_many(self, run_id: str, events: Iterable[tuple[str, Any]]) -> list[int]:
        """Append events atomically, in order; their ids once durable. Retries reuse the
        call's idempotency key, so the events are written once."""
        return self._send(self._core.append_many(run_id, events))

    def end(self, run_id: str, reason: str | None = "success") -> int:
        """End the run; the end marker's id (the same id again for the same reason)."""
        return self._send(self._core.end(run_id, reason))

    def run(self, run_id: str) -> RunInfo | None:
        """The run's summary, None when there is no such run."""
        return self._send(self._core.run(run_id))

    def runs(self, status: Literal["running", "ended"] | None = None, limit: int = 100, offset: int = 0) -> list[RunInfo]:
        """Runs, newest first (a reader token lists the runs it grants)."""
        return self._send(self._core.runs(status, limit, offset))

    def read(self, run_id: str, after: int = 0, limit: int = 100) -> list[Event]:
        """A page of the run's events after ``after``, the end marker included."""
        return self._send(self._core.read(run_id, after, limit))

    def delete(self, run_id: str) -> bool:
        """Delete the run and its events; False when there was no such run (also when a retry
        follows an attempt that deleted it but whose answer was lost)."""
        return self._send(self._core.delete(run_id))

    def follow(self, run_id: str, after: int | None = None) -> Iterator[FollowItem]:
        """The run's events after ``after`` (None: from the first retained), then live ones, a
        ``Gap`` where events were trimmed, and finally the ``End``. Reconnects after drops."""
        follow = self._core.follow(run_id, after)
        while True:
            try:
                response = self._http.send(follow.request(), stream=True)
                try:
                    if response.status_code == 200:
                        follow.retry.reset()
                        for sse in EventSource(response).iter_sse():
                            item = follow.item(sse)
                            if item is not None:
                                yield item
                            if follow.done:
                                return
                        delay = follow.retry.after_drop(None)
                    else:
                        response.read()
                        delay = follow.refused(response)
                finally:
                    response.close()
            except httpx.TransportError as exc:
                delay = follow.retry.after_drop(exc)
            time.sleep(delay)

    def _send(self, call: Call) -> Any:
        retry = self._core.retry()
        while True:
            try:
                response = self._http.send(call.request)
            except httpx.TransportError as exc:
                delay = retry.after_drop(exc)
            else:
                if response.status_code != 503:
                    return call.parse(response)
                delay = retry.after_answer(response, answer_error(response, call.run_id))
            time.sleep(delay)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncClient(_Options):
    """The asyncio twin of ``Client``: the same methods and options, awaited
    (``async with AsyncClient(url) as client``; ``async for item in client.follow(run)``)."""

    _http: httpx.AsyncClient

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient()

    async def append(self, run_id: str, event: str, data: Any = None) -> int:
        return (await self.append_many(run_id, [(event, data)]))[0]

    async def append_many(self, run_id: str, events: Iterable[tuple[str, Any]]) -> list[int]:
        return await self._send(self._core.append_many(run_id, events))

    async def end(self, run_id: str, reason: str | None = "success") -> int:
        return await self._send(self._core.end(run_id, reason))

    async def run(self, run_id: str) -> RunInfo | None:
        return await self._send(self._core.run(run_id))

    async def runs(self, status: Literal["running", "ended"] | None = None, limit: int = 100, offset: int = 0) -> list[RunInfo]:
        return await self._send(self._core.runs(status, limit, offset))

    async def read(self, run_id: str, after: int = 0, limit: int = 100) -> list[Event]:
        return await self._send(self._core.read(run_id, after, limit))

    async def delete(self, run_id: str) -> bool:
        return await self._send(self._core.delete(run_id))

    async def follow(self, run_id: str, after: int | None = None) -> AsyncIterator[FollowItem]:
        follow = self._core.follow(run_id, after)
        while True:
            try:
                response = await self._http.send(follow.request(), stream=True)
                try:
                    if response.status_code == 200:
                        follow.retry.reset()
                        async for sse in EventSource(response).aiter_sse():
                            item = follow.item(sse)
                            if item is not None:
                                yield item
                            if follow.done:
                                return
                        delay = follow.retry.after_drop(None)
                    else:
                        await response.aread()
                        delay = follow.refused(response)
                finally:
                    await response.aclose()
            except httpx.TransportError as exc:
                delay = follow.retry.after_drop(exc)
            await asyncio.sleep(delay)

    async def _send(self, call: Call) -> Any:
        retry = self._core.retry()
        while True:
            try:
                response = await self._http.send(call.request)
            except httpx.TransportError as exc:
                delay = retry.after_drop(exc)
            else:
                if response.status_code != 503:
                    return call.parse(response)
                delay = retry.after_answer(response, answer_error(response, call.run_id))
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
