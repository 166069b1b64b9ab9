"""The SQLite backend: one file, one writer thread, a small pool of reader threads.

Writes go through ``GroupCommit`` to the writer thread; reads run on reader threads, each with
its own connection, so a slow reader never holds up a commit (WAL readers see a snapshot and
take no locks that block the writer).

Background threads (writer, checkpointer, change feeds) follow ``eventlog.supervision``: their
failures are reported to the ``Supervisor`` given here (the log's), and ``close`` waits for every
one of them to end, so a closed storage leaves no thread and no descriptor behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from eventlog.errors import (
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseFull,
    EventLogError,
    LogClosed,
    RunNotFound,
    StorageError,
)
from eventlog.models import Event, RunInfo
from eventlog.storage import transactions
from eventlog.storage.base import (
    CommitListener,
    Committed,
    Dump,
    Durability,
    FaultListener,
    Page,
    Resized,
    RetentionPolicy,
    WriteRequest,
    WriteResult,
)
from eventlog.storage.change_feed import ChangeFeed, LocalCommits
from eventlog.storage.checkpoint import FALLBACK_PAGES, Checkpointer
from eventlog.storage.connection import WAL_SIZE_LIMIT, connect, file_size, is_busy, truncate_wal
from eventlog.storage.globs import sqlite_glob
from eventlog.storage.migrations import migrate
from eventlog.storage.planner import delete_up_the_chain
from eventlog.storage.read_ahead import Pages, ReadAhead
from eventlog.storage.run_cache import RunCache, sequence
from eventlog.storage.writer import GroupCommit, WriterThread
from eventlog.supervision import Supervisor, call_soon_threadsafe

T = TypeVar("T")

DELETE_BATCH = 500
"""Rows per transaction when a run is deleted (see ``delete``); fewer on a disk too full for it."""

logger = logging.getLogger(__name__)

WAL_ROOM = FALLBACK_PAGES * 4096
"""Free bytes on the filesystem below which, once a write met a full disk, the WAL is truncated
after every write: the WAL's bound with 4 KiB pages (see checkpoint.py)."""

_RUN_COLUMNS = (
    "run_id, created_at, metadata, event_count, total_bytes, "
    "coalesce((SELECT id FROM events e WHERE e.run_id = runs.run_id ORDER BY id LIMIT 1), 0), "
    "last_id, trimmed_through, end_id, end_reason, ended_at, parent_id, deleted_at, expires_at"
)
_EVENTS_AFTER = (
    "SELECT id, run_id, event, data, created_at, body FROM events WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?"
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


def read_page(conn: sqlite3.Connection, run_id: str, after: int, limit: int) -> Page:
    """The run and its events after ``after`` (at most ``limit``), in the caller's transaction."""
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return Page(None, [])
    rows = conn.execute(_EVENTS_AFTER, (run_id, after, limit))
    return Page(_run_info(row), [Event(*r) for r in rows])


def _run_info(row: tuple[Any, ...]) -> RunInfo:
    run_id, created_at, metadata, *rest = row
    return RunInfo(run_id, created_at, json.loads(metadata), *rest)


class SQLiteStorage:
    """Implements ``eventlog.storage.base.Storage`` on one SQLite file in WAL mode.

    SQLite failures come out typed (``transactions.storage_error``). The first sign of a damaged
    file (SQLITE_CORRUPT / SQLITE_NOTADB, met by a reader, the writer or the change feed) puts
    the storage in a corrupt state for good: it is logged once, nothing more is written to the
    file, and every call raises DatabaseCorrupt, since answers read from a damaged file cannot
    be trusted either. The file itself is left as it was found, for ``eventlog check``."""

    def __init__(
        self,
        path: Path,
        *,
        durability: Durability = "process",
        busy_timeout: float = 5.0,
        lock_timeout: float = transactions.LOCK_TIMEOUT,
        max_page_count: int | None = None,
        readers: int = 4,
        max_batch: int = 1000,
        poll_interval: float = 1.0,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.path = path
        self._connect = partial(
            connect, path, durability=durability, busy_timeout=busy_timeout, max_page_count=max_page_count
        )
        self._writer_busy_timeout = min(busy_timeout, lock_timeout)  # see transactions.transaction
        self._lock_timeout = lock_timeout
        self._supervisor = supervisor or Supervisor()
        self._writer = WriterThread(self._open_writer, self._supervisor)
        self._local_commits = LocalCommits()
        self._read_ahead = ReadAhead(read_page)
        self._group = GroupCommit(self._writer, self._apply_writes, self._notify, max_batch)
        self._checkpointer = Checkpointer(partial(self._connect, writer=False), self._supervisor)
        self._feeds: set[ChangeFeed] = set()
        self._closed = False
        self._listeners: list[CommitListener] = []
        self._fault_listeners: list[FaultListener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop of ``open``, where fault listeners are called."""
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="eventlog-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._poll_interval = poll_interval
        self._started = False
        self._corrupt: str | None = None
        """The message of the damage found, once the file is known to be corrupt."""
        self._corrupt_lock = threading.Lock()
        self._versions = (0, 0)
        """The schema version found at open, and the one after migrating."""
        self._run_cache = RunCache()
        """Writer thread only: the runs and ids its last commits left (see run_cache.py)."""
        self._disk_tight = False
        """Writer thread only: a write met a full disk, and the filesystem has not had room for
        a whole WAL since; while it lasts the WAL is truncated around every write."""

    def _open_writer(self) -> sqlite3.Connection:
        """The writer's connection, the schema brought up to date. Setting up a new file (WAL
        mode, migrations) needs the write lock: a peer holding it past the lock deadline makes
        the open fail with DatabaseBusy, as an append would."""
        try:
            conn = self._connect(writer=True, busy_timeout=self._writer_busy_timeout)
            try:
                found = conn.execute("PRAGMA user_version").fetchone()[0]
                self._versions = (found, migrate(conn))
                conn.execute(f"PRAGMA wal_autocheckpoint = {FALLBACK_PAGES}")  # see checkpoint.py
                conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            except BaseException:
                conn.close()
                raise
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            raise DatabaseBusy(
                f"another connection held the write lock of {self.path} for over "
                f"{self._writer_busy_timeout:g}s while it was being set up; nothing was written, retry later"
            ) from exc
        return conn

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._writer.start()
        self._started = True
        self._checkpointer.start()

    # --- faults ----------------------------------------------------------------------------

    def _check_intact(self) -> None:
        if self._corrupt is not None:
            raise DatabaseCorrupt(self._corrupt)

    def _typed(self, exc: sqlite3.Error) -> EventLogError:
        """The typed error of an SQLite failure on any thread, noting a damaged file."""
        error = transactions.storage_error(exc)
        if isinstance(error, DatabaseCorrupt):
            self._corrupted(error)
        return error

    def _corrupted(self, error: DatabaseCorrupt) -> None:
        with self._corrupt_lock:
            if self._corrupt is not None:
                return
            self._corrupt = str(error)
        if self._loop is not None:
            for listener in self._fault_listeners:
                call_soon_threadsafe(self._loop, listener, DatabaseCorrupt(self._corrupt))
        logger.error(
            "the eventlog database %s is corrupt (%s): writing to it has stopped and every call is "
            "refused; run `eventlog check %s`, then restore the file from a backup or recover it",
            self.path, error.__cause__ or error, self.path,
        )

    def _guarded(self, body: Callable[[], T]) -> T:
        """Run ``body`` (on any thread) unless the file is known to be damaged, its SQLite
        failure raised as the typed error (which notes a damaged file)."""
        self._check_intact()
        try:
            return body()
        except sqlite3.Error as exc:
            raise self._typed(exc) from exc

    def _before_write(self, conn: sqlite3.Connection) -> None:
        """On the writer thread: refuse to write to a damaged file; on a tight disk, give the
        WAL's space back first (space may have been freed since the last write failed)."""
        self._check_intact()
        if self._disk_tight:
            self._reclaim_wal(conn)

    def _after_write(self, conn: sqlite3.Connection, outcomes: list[object]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, DatabaseCorrupt):
                self._corrupted(outcome)
        if self._disk_tight or any(isinstance(outcome, DatabaseFull) for outcome in outcomes):
            self._reclaim_wal(conn)

    def _reclaim_wal(self, conn: sqlite3.Connection) -> None:
        """Checkpoint and truncate the WAL. On a full disk the WAL holds most of the space: a
        commit writes every page it touched (about 28 KB for a 2 KB event) and the WAL restarts
        only after a complete checkpoint with no reader in the way, so under load it grows to
        its bound, or until the disk is full. Truncated, it keeps only what the database file
        needs. This needs room for the database file to take the WAL's pages, so on a full disk
        it may only succeed once space is freed: until the filesystem has room for a whole WAL
        again, it is done around every write, at the price of a checkpoint per commit."""
        truncated = truncate_wal(conn)
        free = os.statvfs(self.path.parent)
        self._disk_tight = not truncated or free.f_bavail * free.f_frsize < WAL_ROOM

    # --- writes ----------------------------------------------------------------------------

    def write(self, request: WriteRequest) -> Coroutine[Any, Any, WriteResult]:
        """The group commit's own coroutine, not one wrapping it: one coroutine less per append."""
        self._check_intact()
        return self._group.submit(request)

    def add_commit_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def add_fault_listener(self, listener: FaultListener) -> None:
        self._fault_listeners.append(listener)

    def _apply_writes(
        self, conn: sqlite3.Connection, requests: list[WriteRequest]
    ) -> tuple[list[WriteResult | BaseException], list[Committed]]:
        """On the writer thread: apply a batch, and note what it committed for the change feed
        before the loop even hears of it."""
        try:
            self._before_write(conn)
        except DatabaseCorrupt as exc:
            return [DatabaseCorrupt(str(exc)) for _ in requests], []
        outcomes, committed = transactions.apply_writes(conn, requests, self._lock_timeout, self._run_cache)
        self._after_write(conn, outcomes)
        for change in committed:
            if change.events:
                self._local_commits.record(change.run_id, change.events[-1].id)
        return outcomes, committed

    def _notify(self, committed: list[Committed]) -> None:
        """Every listener hears of every commit, even when one before it raises."""
        self._checkpointer.poke()
        for listener in self._listeners:
            self._supervisor.guard("commit_listener", listener, committed)

    async def _transact(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in a write transaction of its own on the writer thread (not grouped)."""

        def job(conn: sqlite3.Connection) -> T:
            self._before_write(conn)
            try:
                return transactions.transaction(conn, body, self._lock_timeout)
            except sqlite3.Error as exc:
                error = self._typed(exc)
                self._after_write(conn, [error])
                raise error from exc

        self._check_intact()
        return await self._writer.call(job)

    async def delete(self, run_id: str) -> bool:
        """In transactions of at most ``DELETE_BATCH`` rows, oldest first (readers meanwhile see
        the run trimmed), the run itself with the last one: on a nearly full disk, where
        deleting runs is how space is made, each needs WAL room for one batch, not the run
        (and the WAL is truncated between them, see ``_reclaim_wal``). A run with forks is only
        marked deleted (see ``delete_run_in_part``); a parent kept only for its forks goes with
        the last of them, and so on up."""
        info = await self.run(run_id)
        if info is None:
            return False
        return await delete_up_the_chain(
            info, self._delete_in_parts,
            lambda parent: self._transact(lambda c: transactions.unneeded_parent(c, parent)),
        )

    async def _delete_in_parts(self, run_id: str, through: int) -> bool:
        batch, now = DELETE_BATCH, time.time()
        while True:
            try:
                deleted = await self._transact(
                    lambda c: transactions.delete_run_in_part(c, run_id, through, batch, now)
                )
            except DatabaseFull:
                if batch == 1:
                    raise
                batch = max(1, batch // 8)  # the WAL has less room than a batch needs
                continue
            if deleted is not None:
                return deleted

    async def trim_run(self, run_id: str, policy: RetentionPolicy, now: float, max_rows: int) -> int:
        return await self._transact(lambda c: transactions.trim_run(c, run_id, policy, now, max_rows))

    async def expire_ended(self, ended_before: float, max_rows: int) -> tuple[list[str], int]:
        return await self._transact(lambda c: transactions.expire_ended(c, ended_before, max_rows))

    async def extend_expiry(self, run_id: str, expires_at: float) -> None:
        await self._transact(lambda c: c.execute(
            "UPDATE runs SET expires_at = ? WHERE run_id = ? AND expires_at < ?", (expires_at, run_id, expires_at)
        ))

    async def expired_runs(self, now: float, limit: int) -> list[str]:
        rows = await self._read(lambda conn: conn.execute(
            "SELECT run_id FROM runs WHERE expires_at <= ? AND deleted_at IS NULL ORDER BY expires_at LIMIT ?",
            (now, limit),
        ).fetchall())
        return [row[0] for row in rows]

    async def expire_idempotency_keys(self, created_before: float, max_rows: int) -> int:
        """A cheap indexed look on a reader first: a log with nothing to expire takes no write
        lock for it (the janitor asks every pass)."""
        due = await self._read(
            lambda conn: conn.execute(
                "SELECT 1 FROM idempotency_keys WHERE created_at < ? LIMIT 1", (created_before,)
            ).fetchone()
        )
        if due is None:
            return 0
        return await self._transact(lambda c: transactions.expire_idempotency_keys(c, created_before, max_rows))

    # --- reads -----------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(writer=False)
            self._reader_conns.append(conn)
        return conn

    def _snapshot(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one read transaction: every query in it sees the same snapshot."""

        def read() -> T:
            conn = self._reader()
            conn.execute("BEGIN")
            try:
                return body(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

        return self._guarded(read)

    async def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._snapshot, body)

    async def read(self, run_id: str, after: int, limit: int) -> Page:
        self._read_ahead.follow(run_id)
        page = self._read_ahead.take(run_id, after, limit)
        if page is not None:  # the change feed just read it (see read_ahead)
            return page
        return await self._read(lambda conn: read_page(conn, run_id, after, limit))

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
            "WHERE runs.end_id IS NULL AND runs.deleted_at IS NULL AND coalesce(events.created_at, runs.created_at) < ?"
        )
        return await self._read(lambda conn: conn.execute(sql, (idle_before,)).fetchall())

    async def stats(self) -> dict[str, Any]:
        def body(conn: sqlite3.Connection) -> dict[str, Any]:
            runs, events, size = conn.execute(
                "SELECT count(*), coalesce(sum(event_count), 0), coalesce(sum(total_bytes), 0) FROM runs"
            ).fetchone()
            return {"runs": runs, "events": events, "bytes": size}

        return await self._read(body)

    async def health(self) -> None:
        self._check_intact()
        if self._writer.ended and not self._closed:
            raise StorageError(f"the writer thread of {self.path} has stopped: appends fail until the process restarts")
        await self._read(lambda conn: conn.execute("SELECT 1 FROM runs LIMIT 1").fetchall())

    # --- export, maintenance -------------------------------------------------------------

    async def schema_versions(self) -> tuple[int, int]:
        return self._versions

    @contextlib.asynccontextmanager
    async def dump(self, run_ids: Sequence[str] | None, page_rows: int) -> AsyncIterator[Dump]:
        """One read transaction on a connection and thread of its own for the whole block: the
        pages are one snapshot however long the consumer takes (a concurrent writer goes on;
        the WAL only grows meanwhile, as the snapshot keeps its pages from being checkpointed)."""
        self._check_intact()
        loop = asyncio.get_running_loop()
        thread = ThreadPoolExecutor(1, thread_name_prefix="eventlog-dump")
        conn: sqlite3.Connection | None = None

        async def call(body: Callable[[], T]) -> T:
            return await loop.run_in_executor(thread, self._guarded, body)

        def begin() -> Dump:
            nonlocal conn
            conn = self._connect(writer=False)
            conn.execute("BEGIN")
            wanted = "" if run_ids is None else "WHERE run_id IN (SELECT value FROM json_each(:ids))"
            ids = {"ids": json.dumps(list(run_ids or ()))}
            order = [row[0] for row in conn.execute(f"SELECT run_id FROM runs {wanted} ORDER BY created_at, run_id", ids)]
            missing = sorted(set(run_ids or ()) - set(order))
            if missing:
                raise RunNotFound(missing[0])
            rows = conn.execute(f"SELECT coalesce(sum(event_count + (end_id IS NOT NULL)), 0) FROM runs {wanted}", ids)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            return Dump(version, sequence(conn), len(order), rows.fetchone()[0], pages(order))

        def page(order: list[str], cursor: list[int]) -> list[RunInfo | Event]:
            """The next items from ``cursor`` ([run index, last event id read]), moved on."""
            assert conn is not None
            items: list[RunInfo | Event] = []
            while len(items) < page_rows and cursor[0] < len(order):
                run_id = order[cursor[0]]
                if cursor[1] == 0:
                    items.append(_run_info(conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()))
                    cursor[1] = -1
                events = [Event(*r) for r in conn.execute(
                    _EVENTS_AFTER, (run_id, max(cursor[1], 0), page_rows - len(items))
                )]
                items += events
                if len(items) < page_rows:
                    cursor[:] = [cursor[0] + 1, 0]
                elif events:
                    cursor[1] = events[-1].id
            return items

        async def pages(order: list[str]) -> AsyncIterator[list[RunInfo | Event]]:
            cursor = [0, 0]
            while items := await call(lambda: page(order, cursor)):
                yield items

        try:
            dump = await call(begin)
            try:
                yield dump
            finally:
                await dump.pages.aclose()  # type: ignore[attr-defined]
        finally:
            if conn is not None:
                await call(conn.close)
            thread.shutdown(wait=True)

    async def _maintain(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` on the writer thread outside any transaction (checkpoint, VACUUM)."""

        self._check_intact()
        return await self._writer.call(lambda conn: self._guarded(lambda: body(conn)))

    def _truncate_wal(self, conn: sqlite3.Connection) -> None:
        if not truncate_wal(conn, patience=self._lock_timeout):
            raise DatabaseBusy(
                f"the WAL of {self.path} could not be checkpointed completely within {self._lock_timeout:g}s: "
                "another process is reading it, or the disk is full; nothing was lost, retry later"
            )

    async def checkpoint(self) -> Resized:
        wal = Path(f"{self.path}-wal")

        def body(conn: sqlite3.Connection) -> Resized:
            before = file_size(wal)
            self._truncate_wal(conn)
            return Resized(before, file_size(wal))

        return await self._maintain(body)

    async def vacuum(self) -> Resized:
        """VACUUM writes the rebuilt file through the WAL: the checkpoint after it is what
        shrinks the file (and gives the WAL's space back)."""

        def body(conn: sqlite3.Connection) -> Resized:
            before = file_size(self.path)
            conn.execute("VACUUM")
            self._truncate_wal(conn)
            return Resized(before, file_size(self.path))

        return await self._maintain(body)

    # --- change feed -----------------------------------------------------------------------

    async def changes(self) -> AsyncIterator[list[tuple[str, int]]]:
        """Yield the runs other processes advanced (see ``change_feed``), offering the pages
        the feed read ahead to the reads made while the consumer handles them (``read_ahead``).
        The first (empty) yield comes once watching has begun. The feed's failure is raised here; its thread
        has ended (or is ending) by then, and ``close`` waits for it."""
        if self._closed:
            raise LogClosed()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[list[tuple[str, int]], Pages] | BaseException] = asyncio.Queue()
        feed = ChangeFeed(
            self.path,
            partial(self._connect, writer=False),
            self._local_commits,
            self._poll_interval,
            self._supervisor,
            self._read_ahead,
        )
        self._feeds.add(feed)
        feed.start(loop, queue.put_nowait)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, sqlite3.Error):
                    raise self._typed(item) from item
                if isinstance(item, BaseException):
                    raise item
                changed, pages = item
                self._read_ahead.offer(pages)
                yield changed
        finally:
            feed.stop()
            await feed.join()
            self._feeds.discard(feed)

    async def close(self) -> None:
        """Commit what was submitted, then stop every thread and wait for each to end.
        Idempotent. A peer holding the write lock delays it by at most the lock deadline."""
        if self._closed:
            return
        self._closed = True
        await self._group.drain()  # appends already submitted commit (and return) first
        self._checkpointer.stop()
        if self._started and self._corrupt is None:  # a damaged file is left as it was found
            # The last connection to close would checkpoint and delete the WAL, but another
            # process may still have the file open, and on a full disk that checkpoint fails:
            # give the WAL's space back now, through the writer, while it can still write.
            with contextlib.suppress(LogClosed):  # a writer that died has nothing to give back
                await self._writer.call(truncate_wal)
        for worker in (self._checkpointer, *self._feeds, self._writer):
            worker.stop()
        for worker in (self._checkpointer, *self._feeds, self._writer):
            await worker.join()
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
