"""Opening SQLite connections with the PRAGMAs eventlog relies on."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from eventlog.errors import DatabaseCorrupt, EventLogError, NotAnEventLog, NotWritable
from eventlog.storage.base import Durability
from eventlog.storage.migrations import check_identity, has_eventlog_header

_SYNCHRONOUS: dict[Durability, str] = {
    # WAL + NORMAL: a commit is in the WAL before COMMIT returns; the process may die at any
    # moment afterwards and the transaction survives. Only a power loss can roll back the last
    # transactions, because the WAL is fsynced at checkpoints rather than at every commit.
    "process": "NORMAL",
    # WAL + FULL: the WAL is fsynced at every commit, so an acknowledged append also survives
    # power loss, at the cost of one fsync per (group) commit.
    "power": "FULL",
}


def connect(
    path: Path,
    *,
    durability: Durability,
    writer: bool,
    busy_timeout: float,
    max_page_count: int | None = None,
) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit ``BEGIN``s) and set it up.

    Raises NotAnEventLog for a file that is not an SQLite database at all, DatabaseCorrupt for
    an eventlog file that SQLite finds damaged (truncated, say)."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=512)
    except sqlite3.Error as exc:  # e.g. a new file in a read-only directory
        raise _refusal(path, exc, writer) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header: fails on garbage
        if writer:
            check_identity(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise NotAnEventLog(f"cannot switch {path} to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[durability]}")
        if max_page_count is not None:
            conn.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
        if not writer:
            conn.execute("PRAGMA query_only = 1")
    except sqlite3.DatabaseError as exc:
        conn.close()
        if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode in _TRANSIENT:
            raise  # lock contention: the caller waits (or says DatabaseBusy)
        raise _refusal(path, exc, writer) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _refusal(path: Path, exc: sqlite3.Error, writer: bool) -> EventLogError:
    """The typed error for a file SQLite would not open or set up."""
    if writer and _code(exc) in _UNWRITABLE:
        return NotWritable(
            f"cannot write {path} or the files beside it ({exc}): the filesystem or directory is "
            "read-only, or this user lacks the permission"
        )
    if is_damaged_eventlog(path, exc):
        return DatabaseCorrupt(f"the eventlog database {path} is corrupt ({exc}): run `eventlog check {path}`")
    return NotAnEventLog(f"{path} is not a usable eventlog database: {exc}")


_TRANSIENT = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def is_busy(exc: sqlite3.Error) -> bool:
    """True for lock contention with another connection: worth retrying, never worth surfacing."""
    return getattr(exc, "sqlite_errorcode", None) in _TRANSIENT or "locked" in str(exc)


_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_UNWRITABLE = {sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM}


def _code(exc: sqlite3.Error) -> int:
    """The primary result code of an SQLite error (extended codes carry it in the low byte)."""
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def is_corruption(exc: sqlite3.Error) -> bool:
    """True when SQLite found the file damaged (a malformed page, or a header that is no longer
    a database's): retrying cannot help, and writing more would spread the damage."""
    return _code(exc) in _CORRUPT


def is_damaged_eventlog(path: Path, exc: sqlite3.Error) -> bool:
    """True when SQLite could not read ``path`` because it is damaged, though its header still
    says eventlog (a truncated copy, say): a corrupt log, not some other program's file."""
    return is_corruption(exc) and has_eventlog_header(path)


def file_size(path: Path) -> int:
    """Bytes of the file at ``path``; 0 when there is none (a WAL that was never created)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


WAL_SIZE_LIMIT = 4 * 1024 * 1024
"""``journal_size_limit``: when SQLite restarts the WAL after a complete checkpoint, it shrinks a
file that grew past this back to it, so one burst does not keep its disk space for good."""


def truncate_wal(conn: sqlite3.Connection, patience: float = 0.25) -> bool:
    """Copy the whole WAL into the database and truncate the WAL file to zero bytes, giving its
    space back to the filesystem. It waits for readers (of any process) and for a concurrent
    checkpoint (the checkpointer's passive one) at most ``patience`` seconds, not the busy
    timeout: it runs on the writer thread, and at close. False when they, or a full disk,
    prevented it, which is harmless: the WAL stays valid, and it is tried again later."""
    previous = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout = {int(patience * 1000)}")
    deadline = time.monotonic() + patience
    try:
        while True:
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error:  # e.g. SQLITE_FULL: the database file could not grow to take the pages
                return False
            if not busy:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)  # a concurrent checkpoint answers busy at once, without waiting
    finally:
        conn.execute(f"PRAGMA busy_timeout = {previous}")
