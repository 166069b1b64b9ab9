"""``EventLog``: the public API every transport (HTTP, CLI, bridges) goes through."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from eventlog.errors import InvalidInput, LogClosed, NotSupported
from eventlog.log import validation
from eventlog.log.notifier import Notifier
from eventlog.log.retention import Janitor, RetentionReport
from eventlog.log.subscription import Item, OnGap, flatten, subscribe_batches
from eventlog.models import END_EVENT, Event, RunInfo
from eventlog.storage.base import (
    Append,
    Committed,
    CreateRun,
    Dump,
    Durability,
    EndRun,
    ImportedRun,
    ImportRows,
    Producer,
    Resized,
    RetentionPolicy,
    Storage,
    StreamAppend,
    StreamAppended,
    StreamRow,
    WriteResult,
)
from eventlog.storage.check import FileReport, check_file
from eventlog.storage.postgres import is_postgres_url
from eventlog.storage.sqlite import SQLiteStorage
from eventlog.supervision import Supervisor

MAX_READ_LIMIT = 10_000


class EventLog:
    """A durable, resumable log of runs' events. Create it with ``await EventLog.open(path)``
    (or ``async with EventLog.open(path) as log``); one instance per process and file is the
    intended use, any number of processes may open the same file."""

    def __init__(
        self,
        storage: Storage,
        *,
        retention: RetentionPolicy = RetentionPolicy(),
        retention_interval: float = 1.0,
        tail_size: int = 1024,
        cross_process: bool = True,
        page_size: int = 500,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._storage = storage
        self._supervisor = supervisor or Supervisor()
        """Shared with the storage's threads when ``open`` built both: see ``stats``."""
        self._notifier = Notifier(
            storage, tail_size=tail_size, cross_process=cross_process, supervisor=self._supervisor
        )
        self._janitor = Janitor(
            storage,
            retention,
            interval=retention_interval,
            on_deleted=self._notifier.on_deleted,
            supervisor=self._supervisor,
        )
        self._page_size = page_size
        self._closed = False
        self.appended = 0
        storage.add_commit_listener(self._count_commits)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "process",
        retention: RetentionPolicy = RetentionPolicy(),
        retention_interval: float = 1.0,
        busy_timeout: float = 5.0,
        lock_timeout: float = 30.0,
        max_page_count: int | None = None,
        poll_interval: float = 1.0,
        tail_size: int = 1024,
        cross_process: bool = True,
        pool_size: int = 10,
        command_timeout: float | None = None,
    ) -> _Opening:
        """Open (creating and migrating when needed) the log in the SQLite file at ``path``, or
        in the PostgreSQL database of a ``postgresql://`` URL (``pip install eventlog[postgres]``).

        ``durability``: ``"process"`` (default) keeps every acknowledged append across a crash
        or ``kill -9`` of the process; ``"power"`` also across a power loss, with an fsync per
        commit. ``poll_interval`` bounds how late a wake-up from another process can be when
        file-change notification is unavailable; ``max_page_count`` caps the file's size.
        ``lock_timeout``: seconds a write waits while another process holds the write lock,
        after which it raises DatabaseBusy (nothing written; retrying is safe).

        PostgreSQL only: ``pool_size`` connections at most; ``command_timeout`` seconds a
        statement may take before the call raises DatabaseUnavailable (default: a little over
        ``lock_timeout``, which also bounds the wait for a pooled connection or a row lock).
        ``durability`` does not apply there: every commit is durable as the server is set up
        (``fsync``, ``synchronous_commit``); ``busy_timeout`` and ``max_page_count`` neither."""
        if durability not in ("process", "power"):
            raise InvalidInput(f"durability must be 'process' or 'power' (got {durability!r})")
        if not isinstance(lock_timeout, int | float) or not lock_timeout > 0:
            raise InvalidInput(f"lock_timeout must be a positive number of seconds (got {lock_timeout!r})")
        supervisor = Supervisor()
        storage: Storage
        if is_postgres_url(path):
            storage = _postgres_storage(
                str(path), pool_size=pool_size, lock_timeout=float(lock_timeout), command_timeout=command_timeout,
                poll_interval=poll_interval, supervisor=supervisor,
            )
        else:
            storage = SQLiteStorage(
                Path(path),
                durability=durability,
                busy_timeout=busy_timeout,
                lock_timeout=float(lock_timeout),
                max_page_count=max_page_count,
                poll_interval=poll_interval,
                supervisor=supervisor,
            )
        log = cls(
            storage,
            retention=retention,
            retention_interval=retention_interval,
            tail_size=tail_size,
            cross_process=cross_process,
            supervisor=supervisor,
        )
        return _Opening(log)

    @staticmethod
    def check(path: str | os.PathLike[str], *, quick: bool = False) -> FileReport:
        """Inspect the file at ``path`` without changing it (``eventlog check``): integrity,
        schema version, counts and sizes. ``report.problem`` is None for a sound file. A
        PostgreSQL URL raises NotSupported: the server checks its own storage."""
        if is_postgres_url(path):
            raise NotSupported("eventlog check inspects an SQLite file; PostgreSQL checks its own storage (pg_amcheck)")
        return check_file(Path(path), quick=quick)

    def _count_commits(self, committed: list[Committed]) -> None:
        self.appended += sum(len(change.events) for change in committed)

    async def _start(self) -> None:
        opener = getattr(self._storage, "open", None)
        if opener is not None:
            await opener()
        self._janitor.start()

    # --- writing ---------------------------------------------------------------------------

    async def create_run(
        self,
        run_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        messages: Sequence[StreamRow] = (),
        end: bool = False,
        end_reason: str | None = None,
        parent_id: str | None = None,
        expires_at: float | None = None,
    ) -> RunInfo:
        """Create a run explicitly, recording ``metadata`` (a ``thread_id``, say). Raises
        RunExists when the run is already there.

        The run can start with ``messages`` (see ``validation.encode_message``) and be ended
        at once, all in one transaction; with ``parent_id`` it is a fork of that run (which
        must exist, else RunNotFound for it, and not be deleted, else RunDeleted). With
        ``expires_at`` (unix seconds) the retention janitor deletes it then, unless
        ``extend_expiry`` moves that later."""
        self._check_open()
        validation.check_run_id(run_id)
        if parent_id is not None:
            validation.check_run_id(parent_id)
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInput("run metadata must be a JSON object")
        request = CreateRun(
            run_id, validation.encode_json(metadata or {}, "run metadata"), messages, end, end_reason, parent_id,
            expires_at,
        )
        info = await self._storage.write(request)
        assert isinstance(info, RunInfo)
        return info

    async def extend_expiry(self, run_id: str, expires_at: float) -> None:
        """Move the expiry of a run that has one later (a stream's TTL, read or written)."""
        self._check_open()
        validation.check_run_id(run_id)
        await self._storage.extend_expiry(run_id, expires_at)

    async def append_messages(
        self,
        run_id: str,
        messages: Sequence[StreamRow],
        *,
        producer: Producer | None = None,
        writer_seq: str | None = None,
        end: bool = False,
        end_reason: str | None = None,
    ) -> StreamAppended:
        """Append a stream's messages (see ``validation.encode_message``) to an existing run,
        atomically, once durable; with ``end`` the run is ended after them in the same
        transaction (no messages: only ended, which repeated is a success).

        ``producer`` makes the request idempotent the Kafka way: its retry is a duplicate that
        writes nothing, an older epoch raises ProducerFenced and a skipped sequence number
        ProducerSeqGap. ``writer_seq`` must be greater than the run's last one (else
        WriterSeqConflict). Both are recorded in the transaction of the messages, so they hold
        across crashes. Raises RunNotFound, RunDeleted, or RunEnded for an ended run."""
        self._check_open()
        validation.check_run_id(run_id)
        if not messages and not end:
            raise InvalidInput("at least one message is required")
        if producer is not None:
            validation.check_producer(producer.id, producer.epoch, producer.seq)
        if writer_seq is not None and not (isinstance(writer_seq, str) and validation.is_storable(writer_seq)):
            raise InvalidInput("a writer seq must be a string of valid Unicode text")
        outcome = await self._storage.write(StreamAppend(run_id, messages, producer, writer_seq, end, end_reason))
        assert isinstance(outcome, StreamAppended)
        return outcome

    async def append(self, run_id: str, event: str, data: Any = None, *, idempotency_key: str | None = None) -> int:
        """Append one event; returns its id once it is durable."""
        self._check_open()
        validation.check_run_id(run_id)
        ids = await self._write_events(run_id, [validation.encode_event(event, data)], idempotency_key)
        assert isinstance(ids, list)
        return ids[0]

    async def append_many(
        self, run_id: str, events: Iterable[tuple[str, Any]], *, idempotency_key: str | None = None
    ) -> list[int]:
        """Append events atomically (all or none), in order; returns their ids once durable.

        With ``idempotency_key``, a repeat of the same request returns the original ids and
        writes nothing (also after a restart); the key with different events raises
        IdempotencyConflict. Appending to an ended run raises RunEnded."""
        self._check_open()
        validation.check_run_id(run_id)
        ids = await self._write_events(run_id, validation.encode_events(list(events)), idempotency_key)
        assert isinstance(ids, list)
        return ids

    def _write_events(
        self, run_id: str, encoded: list[tuple[str, str]], idempotency_key: str | None
    ) -> Coroutine[Any, Any, WriteResult]:
        """The storage write of checked, encoded events. Not a coroutine of its own: the caller
        awaits the storage's, one coroutine less on every append's way in and out."""
        key = None if idempotency_key is None else validation.check_idempotency_key(idempotency_key)
        return self._storage.write(Append(run_id, encoded, key, validation.fingerprint(encoded) if key else ""))

    async def end(self, run_id: str, reason: str | None = "success", *, must_exist: bool = True) -> int:
        """Write the run's end marker and return its id. Ending again with the same reason
        returns the same id; with another reason it raises RunEnded. A run that does not exist
        raises RunNotFound, unless ``must_exist=False``, which creates it ended."""
        self._check_open()
        validation.check_run_id(run_id)
        if reason is not None and (not isinstance(reason, str) or not validation.is_storable(reason)):
            raise InvalidInput("the end reason must be a string (valid Unicode text) or None")
        end_id = await self._storage.write(EndRun(run_id, reason, must_exist))
        assert isinstance(end_id, int)
        return end_id

    async def delete(self, run_id: str) -> bool:
        """Remove a run and all its events; False when there was no such run. A run that
        forks still read is only marked deleted (``RunInfo.deleted_at``) until its last fork
        is deleted, which takes it along."""
        self._check_open()
        validation.check_run_id(run_id)
        deleted = await self._storage.delete(run_id)
        self._notifier.on_deleted(run_id)
        return deleted

    # --- reading ---------------------------------------------------------------------------

    async def read(self, run_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """A page of the run's events with ``id > after``, oldest first, the end marker
        included (its ``event`` is ``"end"``). An unknown run reads as empty."""
        self._check_open()
        validation.check_run_id(run_id)
        if not isinstance(after, int) or after < 0:
            raise InvalidInput("after must be a non-negative integer")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_READ_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_READ_LIMIT}")
        return (await self._storage.read(run_id, after, limit)).events

    def subscribe(
        self,
        run_id: str,
        *,
        after: int | None = None,
        heartbeat: float | None = 15.0,
        on_gap: OnGap = "continue",
        wait_for_run: bool = True,
    ) -> AsyncIterator[Item]:
        """Replay the run's events with ``id > after``, then tail new ones as they commit.

        ``after=None`` starts at the earliest retained event. Yields ``Heartbeat`` after
        ``heartbeat`` idle seconds, ``Gap`` when ``after`` lies before the retained window
        (then continues from the earliest retained event, or stops with ``on_gap="stop"``),
        and ``End`` once the run has ended and everything before the marker was yielded.
        A run that does not exist yet is waited for, unless ``wait_for_run=False``, which
        raises RunNotFound."""
        return flatten(self.stream(run_id, after=after, heartbeat=heartbeat, on_gap=on_gap, wait_for_run=wait_for_run))

    def stream(
        self,
        run_id: str,
        *,
        after: int | None = None,
        heartbeat: float | None = 15.0,
        on_gap: OnGap = "continue",
        wait_for_run: bool = True,
        live: bool = True,
    ) -> AsyncIterator[list[Item]]:
        """``subscribe``, yielding lists of the items available at once: for transports that
        write a burst of events in one send. ``live=False`` ends where ``subscribe`` would
        start waiting for new commits (the replay only; ``heartbeat`` then never applies)."""
        self._check_open()
        validation.check_run_id(run_id)
        if after is not None and (not isinstance(after, int) or after < 0):
            raise InvalidInput("after must be a non-negative integer or None")
        if on_gap not in ("continue", "stop"):
            raise InvalidInput("on_gap must be 'continue' or 'stop'")
        return subscribe_batches(
            self._storage,
            self._notifier,
            run_id,
            after=after,
            heartbeat=heartbeat,
            on_gap=on_gap,
            wait_for_run=wait_for_run,
            page_size=self._page_size,
            live=live,
        )

    async def run(self, run_id: str) -> RunInfo | None:
        self._check_open()
        validation.check_run_id(run_id)
        return await self._storage.run(run_id)

    async def runs(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        status: Literal["running", "ended"] | None = None,
        run_globs: Sequence[str] | None = None,
    ) -> list[RunInfo]:
        """Runs, newest first; ``status`` keeps only open or only ended ones, and ``run_globs``
        (``fnmatch`` globs, as reader tokens grant runs) only the runs matching one of them.
        Both filter before ``limit``/``offset``, so a page is short only at the end."""
        self._check_open()
        if not 1 <= limit <= MAX_READ_LIMIT or offset < 0:
            raise InvalidInput(f"limit must be between 1 and {MAX_READ_LIMIT}, offset non-negative")
        if status not in (None, "running", "ended"):
            raise InvalidInput("status must be 'running' or 'ended'")
        if run_globs is not None and (isinstance(run_globs, str) or not all(isinstance(g, str) for g in run_globs)):
            raise InvalidInput("run_globs must be a sequence of strings")
        return await self._storage.runs(limit=limit, offset=offset, status=status, run_globs=run_globs)

    # --- operations ------------------------------------------------------------------------

    async def apply_retention(self, now: float | None = None, *, policy: RetentionPolicy | None = None) -> RetentionReport:
        """Run one retention pass now (the janitor also runs them in the background), with
        ``policy`` instead of the log's own when given (``eventlog trim``)."""
        self._check_open()
        if policy is None:
            return await self._janitor.run_once(now)
        once = Janitor(self._storage, policy, interval=0, on_deleted=self._notifier.on_deleted, supervisor=self._supervisor)
        return await once.run_once(now)

    def dump(self, run_ids: Sequence[str] | None = None, *, page_rows: int = 1000) -> AbstractAsyncContextManager[Dump]:
        """``async with log.dump() as dump``: the runs ``run_ids`` (None: all) and every event
        they hold, as one snapshot, in ``dump.pages`` (for ``eventlog.log.archive``). An unknown
        run raises RunNotFound."""
        self._check_open()
        if run_ids is not None:
            for run_id in run_ids:
                validation.check_run_id(run_id)
        if not isinstance(page_rows, int) or not 1 <= page_rows <= MAX_READ_LIMIT:
            raise InvalidInput(f"page_rows must be between 1 and {MAX_READ_LIMIT}")
        return self._storage.dump(run_ids, page_rows)

    async def import_rows(
        self, runs: Sequence[ImportedRun], events: Sequence[Event], *, remap: bool = False, reserve_through: int = 0
    ) -> list[int]:
        """Store exported runs and events as they were (see ``ImportRows``), through the writer
        like any append; ``eventlog.log.archive`` checks them and keeps each call bounded."""
        self._check_open()
        for run_id in [run.run_id for run in runs] + [event.run_id for event in events]:
            validation.check_run_id(run_id)
        for event in events:
            validation.check_event_name(event.event, allow_reserved=event.event == END_EVENT)
        ids = await self._storage.write(ImportRows(runs, events, remap, reserve_through))
        assert isinstance(ids, list)
        return ids

    async def schema_versions(self) -> tuple[int, int]:
        """The file's schema version when this log opened it, and now (``eventlog migrate``)."""
        self._check_open()
        return await self._storage.schema_versions()

    async def checkpoint(self) -> Resized:
        """Fold the write-ahead log into the file and truncate it; its bytes before and after."""
        self._check_open()
        return await self._storage.checkpoint()

    async def vacuum(self) -> Resized:
        """Rebuild the file without free pages (it needs room for a copy); bytes before, after."""
        self._check_open()
        return await self._storage.vacuum()

    @property
    def retention(self) -> RetentionPolicy:
        return self._janitor.policy

    async def stats(self) -> dict[str, Any]:
        """Counters for monitoring: stored totals and this process' activity, including the
        failures and restarts of each background component (``background_failures`` and
        ``background_restarts``: component name -> count)."""
        stored = await self._storage.stats()
        background = self._supervisor.counts()
        return {
            "background_failures": background["failures"],
            "background_restarts": background["restarts"],
            **stored,
            "appended": self.appended,
            "wakeups": self._notifier.wakeups,
            "live_runs": self._notifier.channels,
            "trimmed": self._janitor.trimmed_total,
            "expired_runs": self._janitor.expired_runs_total,
        }

    async def health(self) -> None:
        """Return if the log can serve now; else raise what keeps it from serving
        (``DatabaseCorrupt``, ``StorageError`` for a writer that stopped, ``LogClosed``)."""
        self._check_open()
        await self._storage.health()

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosed()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._janitor.stop()
        await self._notifier.close()
        await self._storage.close()

    async def __aenter__(self) -> EventLog:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _postgres_storage(dsn: str, **options: Any) -> Storage:
    """The PostgreSQL backend, imported only when asked for: the library core needs no
    third-party package, and a missing driver is one clear error."""
    try:
        from eventlog.storage.postgres.storage import PostgresStorage
    except ModuleNotFoundError as exc:
        raise NotSupported("a postgresql:// database needs asyncpg: pip install 'eventlog[postgres]'") from exc
    return PostgresStorage(dsn, **options)


class _Opening:
    """What ``EventLog.open`` returns: await it for the log, or use it in ``async with``."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    async def _open(self) -> EventLog:
        try:
            await self._log._start()
        except BaseException:
            await self._log.close()
            raise
        return self._log

    def __await__(self) -> Generator[Any, None, EventLog]:
        return self._open().__await__()

    async def __aenter__(self) -> EventLog:
        return await self._open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._log.close()
