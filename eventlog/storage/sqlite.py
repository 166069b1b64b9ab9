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
from collections.abc import AsyncIterator, Callable
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
from eventlog.storage.checkpoint import FALLBACK_PAGES, Checkpointer
from eventlog.storage.connection import connect
from eventlog.storage.file_watch import FileWatch
from eventlog.storage.migrations import migrate
from eventlog.storage.writer import GroupCommit, WriterThread

T = TypeVar("T")

_RUN_COLUMNS = (
    "run_id, created_at, metadata, event_count, total_bytes, "
    "coalesce((SELECT id FROM events e WHERE e.run_id = runs.run_id ORDER BY id LIMIT 1), 0), "
    "last_id, trimmed_through, end_id, end_reason, ended_at"
)


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
        self._group = GroupCommit(self._writer, transactions.apply_writes, self._notify, max_batch)
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
        self, *, limit: int, offset: int, status: Literal["running", "ended"] | None = None
    ) -> list[RunInfo]:
        where = {None: "", "running": "WHERE end_id IS NULL", "ended": "WHERE end_id IS NOT NULL"}[status]
        sql = f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY created_at DESC, run_id LIMIT ? OFFSET ?"
        return await self._read(lambda conn: [_run_info(r) for r in conn.execute(sql, (limit, offset))])

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

    async def stats(self) -> dict[str, Any]:
        def body(conn: sqlite3.Connection) -> dict[str, Any]:
            runs, events, size = conn.execute(
                "SELECT count(*), coalesce(sum(event_count), 0), coalesce(sum(total_bytes), 0) FROM runs"
            ).fetchone()
            return {"runs": runs, "events": events, "bytes": size}

        return await self._read(body)

    # --- change feed -----------------------------------------------------------------------

    async def changes(self) -> AsyncIterator[list[tuple[str, int]]]:
        """Yield the runs whose newest id advanced since the last look, whoever wrote them.
        The first (empty) yield comes once watching has begun.

        Looks when the file watch fires (or the slow fallback timer does); ``PRAGMA
        data_version`` on a connection of its own tells cheaply whether anything was committed
        by another connection since, and ``runs_by_last_id`` finds what. Ids grow in commit order
        across every process writing the file, so "last_id above the highest seen" misses nothing.
        """
        watch = FileWatch(self.path)
        watch.start()
        feed = ThreadPoolExecutor(1, thread_name_prefix="eventlog-changes")
        conn = await asyncio.get_running_loop().run_in_executor(feed, partial(self._connect, writer=False))
        seen = {"version": None, "last_id": None}

        def look() -> list[tuple[str, int]] | None:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version == seen["version"]:
                return None
            seen["version"] = version
            if seen["last_id"] is None:
                seen["last_id"] = conn.execute("SELECT coalesce(max(last_id), 0) FROM runs").fetchone()[0]
                return None
            changed = conn.execute(
                "SELECT run_id, last_id FROM runs WHERE last_id > ? ORDER BY last_id", (seen["last_id"],)
            ).fetchall()
            if changed:
                seen["last_id"] = changed[-1][1]
            return changed

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(feed, look)
            yield []  # watching from here on: every later commit will be reported
            rechecks: list[float] = []
            while True:
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives
                # together with a file change, and close() would then wait a whole poll_interval.
                try:
                    async with asyncio.timeout(rechecks.pop(0) if rechecks else self._poll_interval):
                        await watch.changed.wait()
                except TimeoutError:
                    pass
                if watch.changed.is_set():
                    watch.changed.clear()
                    # SQLite writes a commit's frames to the WAL (the watch sees that) before it
                    # publishes them in the shared-memory index (no watch sees that): a look made
                    # in between misses the commit. Look again shortly after the last change.
                    rechecks = [0.002, 0.02, 0.2]
                changed = await loop.run_in_executor(feed, look)
                if changed is not None:
                    yield changed
        finally:
            watch.close()
            feed.submit(conn.close)
            feed.shutdown(wait=False)

    async def close(self) -> None:
        await self._group.drain()  # appends already submitted commit (and return) first
        self._checkpointer.stop()
        await self._writer.stop()
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
