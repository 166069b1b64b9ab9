"""The single writer: one thread owns the write connection, and appends are group-committed.

Model: aiosqlite's ``core.py`` (callers put callables on a queue and await futures resolved back
on the event loop), plus batching. While one transaction is in flight, new requests collect on the
loop; when it commits, its callers resume, and everything collected by the end of that loop
iteration goes to the thread as the next transaction. A lone producer is never made to wait for
company: with nothing in flight its request goes to the thread at once.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any, Generic, TypeVar

from eventlog.errors import LogClosed
from eventlog.supervision import Supervisor, Worker, call_soon_threadsafe

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


Job = tuple[Callable[[sqlite3.Connection], Any], Callable[[Any, BaseException | None], None], asyncio.AbstractEventLoop]


class WriterThread(Worker):
    """Runs callables against one connection, one at a time, on a dedicated thread.

    Lifecycle: once ``stop`` is called (or the thread has ended) ``post`` raises LogClosed; the
    jobs queued before ``stop`` still run. Whatever ends the thread, it settles every job still
    queued as it ends (with the error of ``connect`` when that failed, else LogClosed), so no
    caller waits forever. A job's own exceptions are its caller's; anything else that ends the
    thread (a ``BaseException`` escaping a job) is a failure, logged and counted. The writer is
    not restarted: it dies only on what asks a thread to stop, and the log then reports
    LogClosed rather than pretend."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        supervisor: Supervisor,
        name: str = "eventlog-writer",
    ) -> None:
        super().__init__("writer", supervisor, name)
        self._connect = connect
        self._jobs: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        self._current: Job | None = None
        self._connect_error: BaseException | None = None

    async def start(self) -> None:  # type: ignore[override]
        probe = self.submit(lambda conn: None)  # queued first: it surfaces connect() errors
        super().start()
        await probe

    def submit(self, job: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.post(job, partial(_settle, future))
        return future

    def post(
        self, job: Callable[[sqlite3.Connection], T], on_done: Callable[[T | None, BaseException | None], None]
    ) -> None:
        """Run ``job``, then call ``on_done(result, error)`` on the caller's event loop: one hop
        back to the loop, where a future plus a done-callback would take two iterations.
        Raises LogClosed once the writer is stopping or has ended."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.stopping or self._exiting:
                raise LogClosed()
            self._jobs.put((job, on_done, loop))

    async def call(self, job: Callable[[sqlite3.Connection], T]) -> T:
        return await self.submit(job)

    def _wake(self) -> None:
        self._jobs.put(_STOP)  # after every job queued so far: they finish first

    def run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # the opener's error, not a background failure
            self._connect_error = exc
            return
        try:
            while (item := self._jobs.get()) is not _STOP:
                self._current = job, on_done, loop = item  # type: ignore[misc]
                try:
                    result, error = job(conn), None
                except Exception as exc:
                    result, error = None, exc
                self._current = None
                call_soon_threadsafe(loop, on_done, result, error)
        finally:
            conn.close()

    def _settle(self, error: BaseException | None) -> None:
        """Settle the job that was running (if the thread died in it) and every queued one."""
        pending = [self._current] if self._current is not None else []
        while not self._jobs.empty():
            item = self._jobs.get()
            if item is not _STOP:
                pending.append(item)  # type: ignore[arg-type]
        for _, on_done, loop in pending:
            reason = self._connect_error or LogClosed()
            if error is not None and reason.__cause__ is None:
                reason.__cause__ = error
            call_soon_threadsafe(loop, on_done, None, reason)


class GroupCommit(Generic[Request, Result, Notice]):
    """Coalesces concurrent requests into one call of ``apply_batch`` on the writer thread.

    ``apply_batch`` runs one transaction for a list of requests and returns one outcome per
    request (a result, or an exception instance for a request that failed on its own) and a
    notice of what was committed. ``on_commit`` gets the notice on the loop before any caller
    resumes. At most one batch is in flight, so commits, the ids they hand out and the notices
    all follow submission order.

    Every future is settled whatever happens: a raising ``on_commit`` is reported (logged once,
    counted as ``commit_listener``) and the batch's callers still get their results (their rows
    are committed); a writer that is closed fails the batch with LogClosed."""

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
        self._supervisor = writer.supervisor
        self._apply_batch = apply_batch
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._pending: list[tuple[Request, asyncio.Future[Result]]] = []
        self._busy = False
        self._drained: list[asyncio.Future[None]] = []

    async def submit(self, request: Request) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if not self._busy:
            self._busy = True
            self._flush()  # nothing in flight: a lone request goes to the writer at once
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        requests = [request for request, _ in batch]
        try:
            self._writer.post(lambda conn: self._apply_batch(conn, requests), partial(self._finish, batch))
        except LogClosed as exc:
            self._finish(batch, None, exc)

    def _finish(
        self,
        batch: list[tuple[Request, asyncio.Future[Result]]],
        outcome: tuple[list[Result | BaseException], Notice] | None,
        error: BaseException | None,
    ) -> None:
        if error is None:
            assert outcome is not None
            results, notice = outcome
            self._supervisor.guard("commit_listener", self._on_commit, notice)
        else:
            results = [error] * len(batch)
        for (_, future), result in zip(batch, results):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        # The callers just settled resume in the next loop iteration, and most of them append
        # again at once: flush after them, so they share the next transaction.
        asyncio.get_running_loop().call_soon(self._flush_collected)

    def _flush_collected(self) -> None:
        if self._pending:
            self._flush()
            return
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
