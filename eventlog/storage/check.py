"""Inspect an eventlog file without changing it: what ``eventlog check PATH`` reports.

The file is opened read-only (SQLite URI ``mode=ro``): nothing is migrated, checkpointed or
switched to WAL mode, so a damaged file stays exactly as it was found, for recovery. (To read a
WAL-mode file SQLite may create its empty ``-wal`` and ``-shm`` side files; the database file
itself is never written.)
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from eventlog.errors import NotAnEventLog
from eventlog.storage.connection import file_size, is_corruption, is_damaged_eventlog
from eventlog.storage.migrations import check_identity, load_migrations


@dataclass(frozen=True, slots=True)
class FileReport:
    path: Path
    problem: str | None
    """One line saying what is wrong (missing, corrupt, not an eventlog, newer schema), or None
    for a sound eventlog file."""
    file_bytes: int | None = None
    wal_bytes: int | None = None
    integrity: str | None = None
    schema_version: int | None = None
    latest_version: int | None = None
    runs: int | None = None
    events: int | None = None
    """Stored event rows, end markers included."""


def check_file(path: Path, *, quick: bool = False) -> FileReport:
    """Run ``PRAGMA integrity_check`` (``quick_check`` with ``quick``) and read the schema
    version and counts of the file at ``path``."""
    if not path.is_file():
        return FileReport(path, "missing: there is no file at this path")
    sizes = {"file_bytes": file_size(path), "wal_bytes": file_size(Path(f"{path}-wal"))}
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return FileReport(path, f"unreadable: {exc}", **sizes)
    try:
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # reads the header
            check_identity(conn)
        except (sqlite3.DatabaseError, NotAnEventLog) as exc:
            if isinstance(exc, sqlite3.DatabaseError) and is_damaged_eventlog(path, exc):
                return FileReport(path, f"corrupt: {exc}", integrity=str(exc), **sizes)
            return FileReport(path, f"not an eventlog: {exc}", **sizes)
        latest = load_migrations()[-1].version
        facts = {**sizes, "schema_version": version, "latest_version": latest}
        if version == 0:
            return FileReport(path, "not an eventlog: an empty database (opening it would create a log)", **facts)
        if version > latest:
            return FileReport(path, f"newer schema: version {version}, this eventlog knows up to {latest}", **facts)
        try:
            rows = [row[0] for row in conn.execute(f"PRAGMA {'quick_check' if quick else 'integrity_check'}")]
            if rows != ["ok"]:
                found = [line for row in rows for line in row.splitlines() if line and not line.startswith("***")]
                more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
                return FileReport(path, f"corrupt: {found[0]}{more}", integrity=found[0], **facts)
            runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            problem = "corrupt" if is_corruption(exc) else "unreadable"
            return FileReport(path, f"{problem}: {exc}", integrity=str(exc), **facts)
        return FileReport(path, None, integrity="ok", runs=runs, events=events, **facts)
    finally:
        conn.close()
