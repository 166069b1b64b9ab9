"""eventlog: an embedded, crash-safe event log for streaming job progress over Server-Sent Events."""

__version__ = "0.1.0"

from eventlog.errors import (
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseFull,
    DatabaseUnavailable,
    EventLogError,
    IdempotencyConflict,
    InvalidData,
    InvalidEventName,
    InvalidInput,
    InvalidRunId,
    LogClosed,
    NotAnEventLog,
    NotSupported,
    NotWritable,
    RunActive,
    RunEnded,
    RunExists,
    RunNotFound,
    SchemaTooNew,
    StorageError,
)
from eventlog.log.eventlog import EventLog
from eventlog.log.retention import RetentionReport
from eventlog.models import HEARTBEAT, End, Event, Gap, Heartbeat, RunInfo
from eventlog.storage.base import RetentionPolicy

__all__ = [
    "HEARTBEAT",
    "DatabaseBusy",
    "DatabaseCorrupt",
    "DatabaseFull",
    "DatabaseUnavailable",
    "End",
    "Event",
    "EventLog",
    "EventLogError",
    "Gap",
    "Heartbeat",
    "IdempotencyConflict",
    "InvalidData",
    "InvalidEventName",
    "InvalidInput",
    "InvalidRunId",
    "LogClosed",
    "NotAnEventLog",
    "NotSupported",
    "NotWritable",
    "RetentionPolicy",
    "RetentionReport",
    "RunActive",
    "RunEnded",
    "RunExists",
    "RunInfo",
    "RunNotFound",
    "SchemaTooNew",
    "StorageError",
]
