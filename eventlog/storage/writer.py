"""The single writer: one thread owns the write connection, and appends are group-committed.

Model: aiosqlite's ``core.py`` (callers put callables on a queue and await futures resolved back
on the event loop), plus batching. While one transaction is in flight, new requests collect on the
loop; when it commits, everything collected goes to the thread as the next transaction. A lone
producer is never made to wait for company: its request goes out on the next loop iteration.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Request = TypeVar("Request")
Result = TypeVar("Result")
Notice = TypeVar("Notice")

_STOP = object()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class WriterThread:
    """Runs callables against one connection, one at a time, on a dedicated thread."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str = "eventlog-writer"):
        self._connect = connect
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        self._thread.start()
        await self.call(lambda conn: None)  # surfaces connect() errors to the opener

    def submit(self, job: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.post(job, partial(_settle, future))
        return future

    def post(
        self, job: Callable[[sqlite3.Connection], T], on_done: Callable[[T | None, BaseException | None], None]
    ) -> None:
        """Run ``job``, then call ``on_done(result, error)`` on the caller's event loop: one hop
        back to the loop, where a future plus a done-callback would take two iterations."""
        self._jobs.put((job, on_done, asyncio.get_running_loop()))

    async def call(self, job: Callable[[sqlite3.Connection], T]) -> T:
        return await self.submit(job)

    async def stop(self) -> None:
        """Finish the queued jobs, close the connection and end the thread. The thread reports
        its own end, so no executor thread is needed to wait for it."""
        if self._thread.is_alive():
            stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.post(_STOP, partial(_settle, stopped))  # type: ignore[arg-type]
            await stopped

    def _serve(self) -> None:
        try:
            self._conn = self._connect()
        except BaseException as exc:  # reported to every job, starting with start()'s
            self._drain_with(exc)
            return
        try:
            while (item := self._jobs.get())[0] is not _STOP:
                job, on_done, loop = item
                try:
                    result, error = job(self._conn), None
                except BaseException as exc:
                    result, error = None, exc
                loop.call_soon_threadsafe(on_done, result, error)
        finally:
            self._conn.close()
        _, on_done, loop = item
        loop.call_soon_threadsafe(on_done, None, None)

    def _drain_with(self, error: BaseException) -> None:
        while (item := self._jobs.get())[0] is not _STOP:
            _, on_done, loop = item
            loop.call_soon_threadsafe(on_done, None, error)
        _, on_done, loop = item
        loop.call_soon_threadsafe(on_done, None, None)


class GroupCommit(Generic[Request, Result, Notice]):
    """Coalesces concurrent requests into one call of ``apply_batch`` on the writer thread.

    ``apply_batch`` runs one transaction for a list of requests and returns one outcome per
    request (a result, or an exception instance for a request that failed on its own) and a
    notice of what was committed. ``on_commit`` gets the notice on the loop before any caller
    resumes. At most one batch is in flight, so commits, the ids they hand out and the notices
    all follow submission order."""

    def __init__(
        self,
        writer: WriterThread,
        apply_batch: Callable[
            [sqlite3.Connection, list[Request]], tuple[list[Result | BaseException], Notice]
        ],
        on_commit: Callable[[Notice], None],
        max_batch: int = 1000,
    ) -> None:
        self._writer = writer
        self._apply_batch = apply_batch
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._pending: list[tuple[Request, asyncio.Future[Result]]] = []
        self._busy = False
        self._drained: list[asyncio.Future[None]] = []

    async def submit(self, request: Request) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((request, future))
        if not self._busy:
            # Flush on the next iteration, so that producers woken by the same commit (they
            # all resume in this iteration) share the next transaction.
            self._busy = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        requests = [request for request, _ in batch]
        self._writer.post(
            lambda conn: self._apply_batch(conn, requests),
            lambda outcome, error: self._finish(batch, outcome, error),
        )

    def _finish(
        self,
        batch: list[tuple[Request, asyncio.Future[Result]]],
        outcome: tuple[list[Result | BaseException], Notice] | None,
        error: BaseException | None,
    ) -> None:
        if error is None:
            assert outcome is not None
            results, notice = outcome
            self._on_commit(notice)
        else:
            results = [error] * len(batch)
        for (_, future), result in zip(batch, results):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        if self._pending:
            self._flush()
        else:
            self._busy = False
            drained, self._drained = self._drained, []
            for waiter in drained:
                if not waiter.done():
                    waiter.set_result(None)

    async def drain(self) -> None:
        """Return once every request submitted so far has committed (or failed): closing the
        writer before that would leave their callers waiting forever."""
        if self._busy:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drained.append(waiter)
            await waiter
