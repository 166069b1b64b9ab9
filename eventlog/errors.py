"""Typed exceptions: every way an eventlog call can fail on bad input or a bad file.

Transports map these to responses (the HTTP layer turns each into a 4xx with a JSON body), so each
class carries a stable ``code`` string that clients can switch on.
"""

from __future__ import annotations


class EventLogError(Exception):
    """Base class of every error eventlog raises on purpose."""

    code = "eventlog_error"


class InvalidInput(EventLogError, ValueError):
    """An argument breaks one of the pinned rules (run id, event name, JSON data, limits)."""

    code = "invalid_input"


class InvalidRunId(InvalidInput):
    code = "invalid_run_id"


class InvalidEventName(InvalidInput):
    code = "invalid_event_name"


class InvalidData(InvalidInput):
    """Event data or run metadata that cannot be stored as JSON."""

    code = "invalid_data"


class RunNotFound(EventLogError, LookupError):
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} does not exist")
        self.run_id = run_id


class RunExists(EventLogError):
    code = "run_exists"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} already exists")
        self.run_id = run_id


class RunEnded(EventLogError):
    """An append to an ended run, or an end with a different reason than the stored one."""

    code = "run_ended"

    def __init__(self, run_id: str, reason: str | None, end_id: int) -> None:
        super().__init__(f"run {run_id!r} has ended (reason {reason!r}, end marker id {end_id})")
        self.run_id = run_id
        self.reason = reason
        self.end_id = end_id


class RunActive(EventLogError):
    """A conditional end found newer events than the caller saw: the run is not idle."""

    code = "run_active"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} received events since it was found idle")
        self.run_id = run_id


class IdempotencyConflict(EventLogError):
    """The idempotency key was already used for different events in this run."""

    code = "idempotency_conflict"

    def __init__(self, run_id: str, key: str) -> None:
        super().__init__(
            f"idempotency key {key!r} of run {run_id!r} was already used with different events"
        )
        self.run_id = run_id
        self.key = key


class RunDeleted(EventLogError):
    """The run was deleted while forks of it still read its events: it is kept for them, but
    refuses every other use."""

    code = "run_deleted"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} was deleted (it is kept while its forks read it)")
        self.run_id = run_id


class ProducerFenced(EventLogError):
    """An idempotent producer wrote with an older epoch than the run has seen from it: a newer
    session of that producer exists, so this one is a zombie."""

    code = "producer_fenced"

    def __init__(self, run_id: str, producer_id: str, epoch: int) -> None:
        super().__init__(f"producer {producer_id!r} of run {run_id!r} is at epoch {epoch}; this epoch is stale")
        self.run_id = run_id
        self.producer_id = producer_id
        self.epoch = epoch


class ProducerSeqGap(EventLogError):
    """An idempotent producer skipped sequence numbers: a request before this one is missing."""

    code = "producer_seq_gap"

    def __init__(self, run_id: str, producer_id: str, expected: int, received: int) -> None:
        super().__init__(f"producer {producer_id!r} of run {run_id!r} sent seq {received}, expected {expected}")
        self.run_id = run_id
        self.producer_id = producer_id
        self.expected = expected
        self.received = received


class WriterSeqConflict(EventLogError):
    """A writer sequence (``Stream-Seq``) not greater than the run's newest one."""

    code = "writer_seq_conflict"

    def __init__(self, run_id: str, seq: str, last: str) -> None:
        super().__init__(f"writer seq {seq!r} of run {run_id!r} is not greater than the last one, {last!r}")
        self.run_id = run_id
        self.seq = seq
        self.last = last


class DatabaseFull(EventLogError):
    """The disk (or the configured page limit) is full: nothing of this call was stored."""

    code = "database_full"


class DatabaseBusy(EventLogError):
    """Another connection (another process, most often) held the write lock for longer than
    the log's ``lock_timeout``: nothing of this call was stored, and a retry (with the same
    idempotency key) is safe."""

    code = "database_busy"


class StorageError(EventLogError):
    """The storage failed in a way the caller did not cause (an unexpected SQLite error): the
    request may succeed later, or on another replica; nothing of this call was stored."""

    code = "storage_error"


class DatabaseCorrupt(StorageError):
    """The file is damaged (SQLite found a malformed page). The log stops writing to it and
    refuses every call from then on: run ``eventlog check PATH``, then restore or recover it."""

    code = "database_corrupt"


class DatabaseUnavailable(StorageError):
    """The database server (PostgreSQL) cannot be reached, is restarting, or did not answer
    within the configured timeout. Nothing of this call was acknowledged; a retry (with the same
    idempotency key) is safe once it is back."""

    code = "database_unavailable"


class NotSupported(EventLogError):
    """The operation does not apply to this backend (``checkpoint``, ``vacuum`` and ``eventlog
    check`` are SQLite file maintenance; PostgreSQL does its own)."""

    code = "not_supported"


class NotWritable(EventLogError):
    """The file, or the directory that must hold its ``-wal`` and ``-shm`` files, cannot be
    written: a read-only filesystem or missing permissions. Nothing was changed."""

    code = "not_writable"


class NotAnEventLog(EventLogError):
    """The file at the path is corrupt, or an SQLite database of some other program."""

    code = "not_an_eventlog"


class SchemaTooNew(EventLogError):
    """The file was written by a newer eventlog whose schema this version does not know."""

    code = "schema_too_new"


class LogClosed(EventLogError):
    code = "log_closed"

    def __init__(self) -> None:
        super().__init__("the event log is closed")
