"""``PostgresStorage``: the ``Storage`` protocol on a PostgreSQL database, through an asyncpg pool.

Writes are group-committed as SQLite's are (``eventlog.storage.writer.GroupCommit``): while one
transaction is in flight, concurrent requests collect and share the next one. Its "writer" here
is ``PoolWriter``, which runs each batch on a connection of the pool instead of a thread. Several
processes (several machines) may write the same database; ids stay commit-ordered per run (see
``transactions``), and ``changes`` LISTENs for the others' commits (see ``listen``).

Every database failure comes out typed (``errors.typed``): DatabaseUnavailable while the server
is unreachable, restarting or silent past the command timeout; DatabaseBusy when every pooled
connection stayed taken for the whole lock timeout, or a row lock was held past it. Outages are
transient: the pool reconnects on the next call, so there is no permanent fault state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

import asyncpg

from eventlog.errors import DatabaseBusy, LogClosed, NotSupported, RunNotFound
from eventlog.models import Event, RunInfo
from eventlog.storage.base import (
    CommitListener,
    Committed,
    Dump,
    FaultListener,
    Page,
    Resized,
    RetentionPolicy,
    WriteRequest,
    WriteResult,
)
from eventlog.storage.change_feed import LocalCommits
from eventlog.storage.globs import postgres_regex
from eventlog.storage.planner import delete_up_the_chain
from eventlog.storage.postgres import transactions
from eventlog.storage.postgres.errors import RETRYABLE, UNREACHABLE, typed, typed_failures
from eventlog.storage.postgres.listen import listen
from eventlog.storage.postgres.migrations import migrate
from eventlog.storage.writer import GroupCommit
from eventlog.supervision import Supervisor

T = TypeVar("T")

DELETE_BATCH = 500
"""Rows per transaction when a run is deleted: readers meanwhile see it trimmed."""

DEADLOCK_RETRIES = 3
"""Attempts of a batch that PostgreSQL aborted to resolve a deadlock or serialization failure."""

_RUN_COLUMNS = (
    "run_id, created_at, metadata, event_count, total_bytes, "
    "coalesce((SELECT id FROM events e WHERE e.run_id = runs.run_id ORDER BY id LIMIT 1), 0), "
    "last_id, trimmed_through, end_id, end_reason, ended_at, parent_id, deleted_at, expires_at"
)
_RUN_WIDTH = 14
"""The values of ``_RUN_COLUMNS``: the fields of a RunInfo."""
_EVENT_COLUMNS = "id, run_id, event, data, created_at, body"
_READ = (
    f"SELECT {_RUN_COLUMNS}, page.ids, page.names, page.data, page.times, page.bodies FROM runs LEFT JOIN LATERAL ("
    "  SELECT array_agg(id ORDER BY id) AS ids, array_agg(event ORDER BY id) AS names,"
    "         array_agg(data ORDER BY id) AS data, array_agg(created_at ORDER BY id) AS times,"
    "         array_agg(body ORDER BY id) AS bodies"
    "  FROM (SELECT id, event, data, created_at, body FROM events WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3) AS e"
    ") AS page ON true WHERE runs.run_id = $1"
)
"""A page of a run: its row and its events after a cursor, in one statement (one snapshot)."""


def _run_info(row: asyncpg.Record) -> RunInfo:
    run_id, created_at, metadata, *rest = row
    return RunInfo(run_id, created_at, json.loads(metadata), *rest)


def _events(rows: list[asyncpg.Record]) -> list[Event]:
    return [Event(*row) for row in rows]


class PoolWriter:
    """What ``GroupCommit`` asks of a writer (``post``, ``supervisor``), on a connection pool:
    each posted job is a coroutine function of a connection, run in a task of its own."""

    def __init__(self, connection: Callable[[], contextlib.AbstractAsyncContextManager[asyncpg.Connection]], timeout: float, supervisor: Supervisor) -> None:
        self._connection = connection
        self._timeout = timeout
        self.supervisor = supervisor
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def post(self, job: Callable[[asyncpg.Connection], Awaitable[T]], on_done: Callable[[T | None, BaseException | None], None]) -> None:
        if self.closed:
            raise LogClosed()
        task = asyncio.get_running_loop().create_task(self._run(job, on_done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Callable[[asyncpg.Connection], Awaitable[T]], on_done: Callable[[T | None, BaseException | None], None]) -> None:
        try:
            with typed_failures(self._timeout):
                async with self._connection() as conn:
                    result = await job(conn)
        except Exception as exc:
            on_done(None, exc)
        else:
            on_done(result, None)


class PostgresStorage:
    """Implements ``eventlog.storage.base.Storage`` on the PostgreSQL database at ``dsn``.

    ``lock_timeout``: seconds a call waits for a pooled connection, or for a row lock held by
    another transaction, before it raises DatabaseBusy (nothing written). ``command_timeout``:
    seconds a statement may take before the call raises DatabaseUnavailable (a stalled network
    or server); by default a little over ``lock_timeout``, so a lock wait is reported as such."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        lock_timeout: float = 30.0,
        command_timeout: float | None = None,
        connect_timeout: float = 5.0,
        poll_interval: float = 1.0,
        max_batch: int = 1000,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.dsn = dsn
        self._pool_size = pool_size
        self._lock_timeout = lock_timeout
        self._command_timeout = command_timeout if command_timeout is not None else lock_timeout + 5.0
        self._connect_timeout = connect_timeout
        self._poll_interval = poll_interval
        self._supervisor = supervisor or Supervisor()
        self._pool: asyncpg.Pool | None = None
        self._slots = asyncio.Semaphore(pool_size)
        """Taken before a pooled connection: waiting for one is bounded by ``lock_timeout``
        and reported as DatabaseBusy, apart from failures to connect."""
        self._writer = PoolWriter(self._connection, self._command_timeout, self._supervisor)
        self._group = GroupCommit(self._writer, self._apply_batch, self._notify, max_batch)  # type: ignore[arg-type]
        self._local_commits = LocalCommits()
        self._listeners: list[CommitListener] = []
        self._versions = (0, 0)
        self._closed = False

    def _server_settings(self) -> dict[str, str]:
        return {"lock_timeout": f"{int(self._lock_timeout * 1000)}", "application_name": "eventlog"}

    async def open(self) -> None:
        """Create the pool and bring the schema up to date (once, whichever server is first)."""
        with typed_failures(self._command_timeout):
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self._pool_size, timeout=self._connect_timeout,
                command_timeout=self._command_timeout, server_settings=self._server_settings(),
            )
            async with self._connection() as conn:
                self._versions = await migrate(conn)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise LogClosed()
        try:
            await asyncio.wait_for(self._slots.acquire(), self._lock_timeout)
        except TimeoutError:
            raise DatabaseBusy(
                f"all {self._pool_size} connections to PostgreSQL stayed busy for {self._lock_timeout:g}s; "
                "nothing was written, retry later"
            ) from None
        try:
            async with self._pool.acquire() as conn:
                yield conn
        finally:
            self._slots.release()

    async def _call(self, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``body`` on a pooled connection, its database failures typed."""
        if self._closed:
            raise LogClosed()
        with typed_failures(self._command_timeout):
            async with self._connection() as conn:
                return await body(conn)

    async def _transact(self, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``body`` in a write transaction of its own (not grouped)."""

        async def transaction(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await body(conn)

        return await self._call(transaction)

    # --- writes ----------------------------------------------------------------------------

    async def write(self, request: WriteRequest) -> WriteResult:
        if self._closed:
            raise LogClosed()
        return await self._group.submit(request)

    def add_commit_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def add_fault_listener(self, listener: FaultListener) -> None:
        """Nothing makes a PostgreSQL log unusable for good (outages end; each call reports
        its own), so the listener is never called."""

    async def _apply_batch(self, conn: asyncpg.Connection, requests: list[WriteRequest]) -> transactions.Outcomes:
        """One transaction for the batch. When it fails for a reason of its own (not the
        server's absence, which fails every request alike), each request is retried alone so
        that the failure is reported to the request it belongs to."""
        try:
            outcomes, committed = await self._commit(conn, requests)
        except Exception as exc:
            if len(requests) == 1 or not isinstance(exc, asyncpg.PostgresError) or isinstance(exc, UNREACHABLE):
                raise
            outcomes, committed = [], []
            for request in requests:
                try:
                    (outcome,), notices = await self._commit(conn, [request])
                except asyncpg.PostgresError as alone:
                    outcome, notices = typed(alone, self._command_timeout), []
                outcomes.append(outcome)
                committed += notices
        for change in committed:
            if change.events:
                self._local_commits.record(change.run_id, change.events[-1].id)
        return outcomes, committed

    async def _commit(self, conn: asyncpg.Connection, requests: list[WriteRequest]) -> transactions.Outcomes:
        for attempt in range(DEADLOCK_RETRIES):
            try:
                async with conn.transaction():
                    return await transactions.apply_writes(conn, requests, time.time())
            except RETRYABLE:
                if attempt == DEADLOCK_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _notify(self, committed: list[Committed]) -> None:
        """Every listener hears of every commit, even when one before it raises."""
        for listener in self._listeners:
            self._supervisor.guard("commit_listener", listener, committed)

    async def delete(self, run_id: str) -> bool:
        """In transactions of at most ``DELETE_BATCH`` rows, oldest first, the run itself with
        the last one; a run with forks is only marked deleted, and a parent kept only for its
        forks goes with the last of them (as SQLite's ``delete``)."""
        info = await self.run(run_id)
        if info is None:
            return False
        return await delete_up_the_chain(
            info, self._delete_in_parts,
            lambda parent: self._transact(lambda c: transactions.unneeded_parent(c, parent)),
        )

    async def _delete_in_parts(self, run_id: str, through: int) -> bool:
        now = time.time()
        while True:
            deleted = await self._transact(
                lambda c: transactions.delete_run_in_part(c, run_id, through, DELETE_BATCH, now)
            )
            if deleted is not None:
                return deleted

    async def trim_run(self, run_id: str, policy: RetentionPolicy, now: float, max_rows: int) -> int:
        return await self._transact(lambda c: transactions.trim_run(c, run_id, policy, now, max_rows))

    async def expire_ended(self, ended_before: float, max_rows: int) -> tuple[list[str], int]:
        return await self._transact(lambda c: transactions.expire_ended(c, ended_before, max_rows))

    async def extend_expiry(self, run_id: str, expires_at: float) -> None:
        await self._call(lambda conn: conn.execute(
            "UPDATE runs SET expires_at = $1 WHERE run_id = $2 AND expires_at < $1", expires_at, run_id
        ))

    async def expired_runs(self, now: float, limit: int) -> list[str]:
        rows = await self._call(lambda conn: conn.fetch(
            "SELECT run_id FROM runs WHERE expires_at <= $1 AND deleted_at IS NULL ORDER BY expires_at LIMIT $2",
            now, limit,
        ))
        return [row[0] for row in rows]

    async def expire_idempotency_keys(self, created_before: float, max_rows: int) -> int:
        return await self._transact(lambda c: transactions.expire_idempotency_keys(c, created_before, max_rows))

    # --- reads -----------------------------------------------------------------------------

    async def read(self, run_id: str, after: int, limit: int) -> Page:
        """One statement, so one snapshot (and one round trip): the run's row with its events
        after ``after`` as arrays."""
        row = await self._call(lambda conn: conn.fetchrow(_READ, run_id, after, max(limit, 0)))
        if row is None:
            return Page(None, [])
        ids, names, data, times, bodies = (column or [] for column in row[_RUN_WIDTH:])
        events = [Event(i, run_id, n, d, t, b) for i, n, d, t, b in zip(ids, names, data, times, bodies)]
        return Page(_run_info(row[:_RUN_WIDTH]), events)

    async def run(self, run_id: str) -> RunInfo | None:
        return (await self.read(run_id, after=0, limit=0)).run

    async def runs(
        self,
        *,
        limit: int,
        offset: int,
        status: Literal["running", "ended"] | None = None,
        run_globs: Sequence[str] | None = None,
    ) -> list[RunInfo]:
        # a run kept only for its forks is deleted to whoever lists runs
        clauses = ["deleted_at IS NULL", *{None: [], "running": ["end_id IS NULL"], "ended": ["end_id IS NOT NULL"]}[status]]
        params: list[Any] = [limit, offset]
        if run_globs is not None:
            # The grant filters before LIMIT/OFFSET, so every page is full (see storage/globs.py).
            params.append(sorted({p for p in map(postgres_regex, run_globs) if p is not None}))
            clauses.append(f"run_id ~ ANY(${len(params)}::text[])")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY created_at DESC, run_id LIMIT $1 OFFSET $2"
        return await self._call(lambda conn: self._infos(conn, sql, params))

    @staticmethod
    async def _infos(conn: asyncpg.Connection, sql: str, params: list[Any]) -> list[RunInfo]:
        return [_run_info(row) for row in await conn.fetch(sql, *params)]

    async def trim_candidates(self, policy: RetentionPolicy, now: float) -> list[str]:
        sql = (
            "SELECT run_id FROM runs WHERE event_count > $1 OR total_bytes > $2 OR "
            "(SELECT created_at FROM events e WHERE e.run_id = runs.run_id AND e.id IS DISTINCT FROM runs.end_id "
            " ORDER BY e.id LIMIT 1) < $3"
        )
        params = (
            policy.max_events if policy.max_events is not None else 2**62,
            policy.max_bytes if policy.max_bytes is not None else 2**62,
            now - policy.max_age if policy.max_age is not None else float("-inf"),
        )
        return await self._call(lambda conn: self._column(conn, sql, params))

    @staticmethod
    async def _column(conn: asyncpg.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
        return [row[0] for row in await conn.fetch(sql, *params)]

    async def idle_runs(self, idle_before: float) -> list[tuple[str, int]]:
        sql = (
            "SELECT runs.run_id, runs.last_id FROM runs LEFT JOIN events ON events.id = runs.last_id "
            "WHERE runs.end_id IS NULL AND runs.deleted_at IS NULL AND coalesce(events.created_at, runs.created_at) < $1"
        )

        async def body(conn: asyncpg.Connection) -> list[tuple[str, int]]:
            return [(row[0], row[1]) for row in await conn.fetch(sql, idle_before)]

        return await self._call(body)

    async def stats(self) -> dict[str, Any]:
        async def body(conn: asyncpg.Connection) -> dict[str, Any]:
            runs, events, size = await conn.fetchrow(
                "SELECT count(*), coalesce(sum(event_count), 0), coalesce(sum(total_bytes), 0) FROM runs"
            )
            return {"runs": runs, "events": int(events), "bytes": int(size)}

        return await self._call(body)

    async def health(self) -> None:
        await self._call(lambda conn: conn.fetchval("SELECT 1"))

    # --- export, maintenance -------------------------------------------------------------

    async def schema_versions(self) -> tuple[int, int]:
        return self._versions

    @contextlib.asynccontextmanager
    async def dump(self, run_ids: Sequence[str] | None, page_rows: int) -> AsyncIterator[Dump]:
        """One read-only repeatable-read transaction on one pooled connection for the whole
        block: the pages are one snapshot however long the consumer takes."""
        if self._closed:
            raise LogClosed()
        async with contextlib.AsyncExitStack() as stack:
            with typed_failures(self._command_timeout):
                conn = await stack.enter_async_context(self._connection())
                await stack.enter_async_context(conn.transaction(isolation="repeatable_read", readonly=True))
                dump = await self._begin_dump(conn, run_ids, page_rows)
            try:
                yield dump
            finally:
                await dump.pages.aclose()  # type: ignore[attr-defined]

    async def _begin_dump(self, conn: asyncpg.Connection, run_ids: Sequence[str] | None, page_rows: int) -> Dump:
        wanted, params = ("", []) if run_ids is None else ("WHERE run_id = ANY($1::text[])", [list(run_ids)])
        order = await self._column(conn, f"SELECT run_id FROM runs {wanted} ORDER BY created_at, run_id", params)
        missing = sorted(set(run_ids or ()) - set(order))
        if missing:
            raise RunNotFound(missing[0])
        rows = await conn.fetchval(
            f"SELECT coalesce(sum(event_count + (end_id IS NOT NULL)::int), 0) FROM runs {wanted}", *params
        )
        last_id = await conn.fetchval(transactions.sequence_sql())
        version = self._versions[1]
        return Dump(version, last_id, len(order), int(rows), self._pages(conn, order, page_rows))

    async def _pages(self, conn: asyncpg.Connection, order: list[str], page_rows: int) -> AsyncIterator[list[RunInfo | Event]]:
        """Each run's row, then its events in id order, ``page_rows`` items at a time."""
        items: list[RunInfo | Event] = []
        with typed_failures(self._command_timeout):
            for run_id in order:
                items.append(_run_info(await conn.fetchrow(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = $1", run_id)))
                after = 0
                while True:
                    room = page_rows - len(items)
                    if room <= 0:
                        yield items
                        items = []
                        continue
                    rows = await conn.fetch(
                        f"SELECT {_EVENT_COLUMNS} FROM events WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                        run_id, after, room,
                    )
                    items += _events(rows)
                    if len(rows) < room:
                        break
                    after = rows[-1]["id"]
            if items:
                yield items

    async def checkpoint(self) -> Resized:
        raise NotSupported("checkpoint is SQLite file maintenance; PostgreSQL checkpoints on its own")

    async def vacuum(self) -> Resized:
        raise NotSupported("vacuum is SQLite file maintenance; on PostgreSQL autovacuum (or VACUUM) does it")

    # --- change feed -----------------------------------------------------------------------

    async def changes(self) -> AsyncIterator[list[tuple[str, int]]]:
        """LISTEN on a connection of its own (see ``listen``); its failures come out typed."""
        if self._closed:
            raise LogClosed()

        async def connect() -> asyncpg.Connection:
            return await asyncpg.connect(
                self.dsn, timeout=self._connect_timeout, command_timeout=self._command_timeout,
                server_settings=self._server_settings(),
            )

        with typed_failures(self._command_timeout):
            async with contextlib.aclosing(listen(connect, self._local_commits, self._poll_interval, self._command_timeout)) as feed:
                async for changed in feed:
                    yield changed

    async def close(self) -> None:
        """Commit what was submitted, then close the pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._group.drain()
        self._writer.closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self._connect_timeout)
            except (TimeoutError, *UNREACHABLE):
                pool.terminate()
