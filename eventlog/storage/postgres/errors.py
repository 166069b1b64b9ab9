"""asyncpg failures as eventlog's typed errors, so that callers (and HTTP clients, as a 503 with
a JSON body) learn what happened without knowing the driver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from eventlog.errors import DatabaseBusy, DatabaseFull, DatabaseUnavailable, EventLogError, StorageError

UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, no route
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,  # e.g. a connection closed under a pending call
    asyncpg.InternalClientError,  # a connection that broke mid-operation, met again (its reset)
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)
"""Failures that say the server is not there (now): the call may succeed once it is back."""

RETRYABLE: tuple[type[BaseException], ...] = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
"""Failures of a transaction that a plain retry of the same transaction resolves."""


def is_database_failure(exc: BaseException) -> bool:
    """True for what ``typed`` turns into a storage error (not eventlog's own errors)."""
    return isinstance(exc, (asyncpg.PostgresError, TimeoutError, asyncio.TimeoutError, *UNREACHABLE))


def typed(exc: BaseException, timeout: float) -> EventLogError:
    """The typed error of a database failure; ``timeout`` is the command timeout, for the message."""
    if isinstance(exc, EventLogError):
        return exc
    if isinstance(exc, asyncpg.DiskFullError):
        error: EventLogError = DatabaseFull(f"PostgreSQL is out of disk space, nothing was written: {exc}")
    elif isinstance(exc, (asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError)):
        error = DatabaseBusy(f"a lock in PostgreSQL was held past the deadline; nothing was written, retry later: {exc}")
    elif isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        error = DatabaseUnavailable(f"PostgreSQL did not answer within {timeout:g}s; nothing was acknowledged, retry later")
    elif isinstance(exc, UNREACHABLE):
        error = DatabaseUnavailable(f"PostgreSQL is unavailable ({type(exc).__name__}: {exc}); retry later")
    else:
        error = StorageError(f"storage error: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


@contextmanager
def typed_failures(timeout: float) -> Iterator[None]:
    """Raise the database failures of the block as ``typed`` errors (others as they are)."""
    try:
        yield
    except Exception as exc:
        if is_database_failure(exc):
            raise typed(exc, timeout) from exc
        raise
