"""The SQLite backend: one file, one writer thread, a small pool of reader threads.

Writes go through ``GroupCommit`` to the writer thread; reads run on reader threads, each with
its own connection, so a slow reader never holds up a commit (WAL readers see a snapshot and
take no locks that block the writer).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from eventlog.models import Event, RunInfo
from eventlog.storage import transactions
from eventlog.storage.base import (
    CommitListener,
    Committed,
    Durability,
    Page,
    RetentionPolicy,
    WriteRequest,
    WriteResult,
)
from eventlog.storage.change_feed import ChangeFeed, LocalCommits
from eventlog.storage.checkpoint import FALLBACK_PAGES, Checkpointer
from eventlog.storage.connection import connect
from eventlog.storage.globs import sqlite_glob
from eventlog.storage.migrations import migrate
from eventlog.storage.writer import GroupCommit, WriterThread

T = TypeVar("T")

_RUN_COLUMNS = (
    "run_id, created_at, metadata, event_count, total_bytes, "
    "coalesce((SELECT id FROM events e WHERE e.run_id = runs.run_id ORDER BY id LIMIT 1), 0), "
    "last_id, trimmed_through, end_id, end_reason, ended_at"
)


def _any_glob(count: int) -> str:
    """``run_id GLOB ?`` for each of ``count`` patterns, OR-ed as a balanced tree: SQLite bounds
    an expression's depth (1000), which a chain of a large token's globs would pass. Plain terms
    (not a join with ``json_each``) let SQLite search the primary key for a glob's literal prefix:
    0.1 ms instead of 150 ms for a page of a 100k-run file."""
    if count == 1:
        return "run_id GLOB ?"
    half = count // 2
    return f"({_any_glob(half)} OR {_any_glob(count - half)})"


def _run_info(row: tuple[Any, ...]) -> RunInfo:
    run_id, created_at, metadata, *rest = row
    return RunInfo(run_id, created_at, json.loads(metadata), *rest)


class SQLiteStorage:
    """Implements ``eventlog.storage.base.Storage`` on one SQLite file in WAL mode."""

    def __init__(
        self,
        path: Path,
        *,
        durability: Durability = "process",
        busy_timeout: float = 5.0,
        max_page_count: int | None = None,
        readers: int = 4,
        max_batch: int = 1000,
        poll_interval: float = 1.0,
    ) -> None:
        self.path = path
        self._connect = partial(
            connect, path, durability=durability, busy_timeout=busy_timeout, max_page_count=max_page_count
        )
        self._writer = WriterThread(self._open_writer)
        self._local_commits = LocalCommits()
        self._group = GroupCommit(self._writer, self._apply_writes, self._notify, max_batch)
        self._checkpointer = Checkpointer(partial(self._connect, writer=False))
        self._listeners: list[CommitListener] = []
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="eventlog-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._poll_interval = poll_interval

    def _open_writer(self) -> sqlite3.Connection:
        conn = self._connect(writer=True)
        try:
            migrate(conn)
            conn.execute(f"PRAGMA wal_autocheckpoint = {FALLBACK_PAGES}")  # see checkpoint.py
        except BaseException:
            conn.close()
            raise
        return conn

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._writer.start()
        self._checkpointer.start()

    # --- writes ----------------------------------------------------------------------------

    async def write(self, request: WriteRequest) -> WriteResult:
        return await self._group.submit(request)

    def add_commit_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def _apply_writes(
        self, conn: sqlite3.Connection, requests: list[WriteRequest]
    ) -> tuple[list[WriteResult | BaseException], list[Committed]]:
        """On the writer thread: apply a batch, and note what it committed for the change feed
        before the loop even hears of it."""
        outcomes, committed = transactions.apply_writes(conn, requests)
        for change in committed:
            if change.events:
                self._local_commits.record(change.run_id, change.events[-1].id)
        return outcomes, committed

    def _notify(self, committed: list[Committed]) -> None:
        self._checkpointer.poke()
        for listener in self._listeners:
            listener(committed)

    async def delete(self, run_id: str) -> bool:
        return await self._writer.call(lambda c: transactions.transaction(c, lambda c: transactions.delete_run(c, run_id)))

    async def trim_run(self, run_id: str, policy: RetentionPolicy, now: float, max_rows: int) -> int:
        return await self._writer.call(
            lambda c: transactions.transaction(c, lambda c: transactions.trim_run(c, run_id, policy, now, max_rows))
        )

    async def expire_ended(self, ended_before: float, max_rows: int) -> tuple[list[str], int]:
        return await self._writer.call(
            lambda c: transactions.transaction(c, lambda c: transactions.expire_ended(c, ended_before, max_rows))
        )

    # --- reads -----------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(writer=False)
            self._reader_conns.append(conn)
        return conn

    def _snapshot(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one read transaction: every query in it sees the same snapshot."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return body(conn)
        finally:
            conn.execute("COMMIT")

    async def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._snapshot, body)

    async def read(self, run_id: str, after: int, limit: int) -> Page:
        def body(conn: sqlite3.Connection) -> Page:
            row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return Page(None, [])
            rows = conn.execute(
                "SELECT id, run_id, event, data, created_at FROM events "
                "WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
                (run_id, after, limit),
            )
            return Page(_run_info(row), [Event(*r) for r in rows])

        return await self._read(body)

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
        clauses = {None: [], "running": ["end_id IS NULL"], "ended": ["end_id IS NOT NULL"]}[status]
        params: list[Any] = []
        if run_globs is not None:
            # The grant filters before LIMIT/OFFSET, so every page is full (see storage/globs.py).
            patterns = sorted({p for p in map(sqlite_glob, run_globs) if p is not None})
            clauses.append(_any_glob(len(patterns)) if patterns else "0")
            params += patterns
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY created_at DESC, run_id LIMIT ? OFFSET ?"
        params += [limit, offset]
        return await self._read(lambda conn: [_run_info(r) for r in conn.execute(sql, params)])

    async def trim_candidates(self, policy: RetentionPolicy, now: float) -> list[str]:
        sql = (
            "SELECT run_id FROM runs WHERE event_count > :max_events OR total_bytes > :max_bytes OR "
            "(SELECT created_at FROM events e WHERE e.run_id = runs.run_id AND e.id IS NOT runs.end_id "
            " ORDER BY e.id LIMIT 1) < :oldest"
        )
        params = {
            "max_events": policy.max_events if policy.max_events is not None else 2**62,
            "max_bytes": policy.max_bytes if policy.max_bytes is not None else 2**62,
            "oldest": now - policy.max_age if policy.max_age is not None else float("-inf"),
        }
        return await self._read(lambda conn: [r[0] for r in conn.execute(sql, params)])

    async def idle_runs(self, idle_before: float) -> list[tuple[str, int]]:
        sql = (
            "SELECT runs.run_id, runs.last_id FROM runs LEFT JOIN events ON events.id = runs.last_id "
            "WHERE runs.end_id IS NULL AND coalesce(events.created_at, runs.created_at) < ?"
        )
        return await self._read(lambda conn: conn.execute(sql, (idle_before,)).fetchall())

    async def stats(self) -> dict[str, Any]:
        def body(conn: sqlite3.Connection) -> dict[str, Any]:
            runs, events, size = conn.execute(
                "SELECT count(*), coalesce(sum(event_count), 0), coalesce(sum(total_bytes), 0) FROM runs"
            ).fetchone()
            return {"runs": runs, "events": events, "bytes": size}

        return await self._read(body)

    # --- change feed -----------------------------------------------------------------------

    async def changes(self) -> AsyncIterator[list[tuple[str, int]]]:
        """Yield the runs other processes advanced (see ``change_feed``). The first (empty)
        yield comes once watching has begun."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[list[tuple[str, int]] | BaseException] = asyncio.Queue()
        feed = ChangeFeed(self.path, partial(self._connect, writer=False), self._local_commits, self._poll_interval)
        feed.start(loop, queue.put_nowait)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            feed.stop()

    async def close(self) -> None:
        await self._group.drain()  # appends already submitted commit (and return) first
        self._checkpointer.stop()
        await self._writer.stop()
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
