"""Schema migrations: ``migrations/NNNN_name.sql`` applied in order, tracked by ``user_version``.

The files live in the repository's top-level ``migrations/`` and are installed as the package
``eventlog.migrations`` (see pyproject.toml), so an editable install and a wheel read the same
files through ``importlib.resources``.

Each file runs in its own ``BEGIN IMMEDIATE`` transaction, so a crash mid-migration leaves the
previous version intact, and several processes opening the same new file at once migrate it once.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from importlib.resources.abc import Traversable

from eventlog.errors import NotAnEventLog, SchemaTooNew

MIGRATIONS: Traversable = files("eventlog.migrations")
APPLICATION_ID = 0x45564C47  # "EVLG": marks a file as an eventlog database
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """Split the script into statements; ``executescript`` would commit our transaction."""
        statements, current = [], ""
        for line in self.sql.splitlines(keepends=True):
            current += line
            if sqlite3.complete_statement(current):
                statements.append(current.strip())
                current = ""
        if current.strip() and not current.strip().startswith("--"):
            statements.append(current.strip())
        return [s for s in statements if s]


def load_migrations(directory: Traversable = MIGRATIONS) -> list[Migration]:
    migrations = []
    for path in sorted(directory.iterdir(), key=lambda entry: entry.name):
        match = _NAME.match(path.name)
        if match:
            migrations.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations in {directory} are not numbered 0001, 0002, ...: {versions}")
    return migrations


def _file_of(conn: sqlite3.Connection) -> str:
    """The path of the connection's database, for messages that must say which file it is."""
    return next(row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main")


_IDENTITY_SQL = (
    "SELECT (SELECT application_id FROM pragma_application_id()), "
    "(SELECT user_version FROM pragma_user_version()), "
    "(SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%')"
)
"""A file's identity in one statement, so one snapshot: read one at a time, the three could
straddle another process' first migration committing (no id and no version yet, then its
tables), and a new log being created next door would look like another program's file."""


def _identity(conn: sqlite3.Connection) -> int:
    """The schema version of an eventlog file (0: a new, empty one); NotAnEventLog else."""
    application_id, version, tables = conn.execute(_IDENTITY_SQL).fetchone()
    if application_id != APPLICATION_ID and (application_id != 0 or version != 0 or tables):
        raise NotAnEventLog(f"{_file_of(conn)} is an SQLite database of another program")
    return version


def has_eventlog_header(path: Path) -> bool:
    """True when the file's first page still says "an eventlog's SQLite database" (SQLite's
    magic string and our application id), read as raw bytes: a file SQLite cannot open any more
    is then a damaged log, not some other program's file."""
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError:
        return False
    return header.startswith(b"SQLite format 3\0") and int.from_bytes(header[68:72], "big") == APPLICATION_ID


def check_identity(conn: sqlite3.Connection) -> None:
    """Raise NotAnEventLog for another program's database, before anything (not even the switch
    to WAL mode, which is stored in the file) is written to it."""
    _identity(conn)


def _current_version(conn: sqlite3.Connection, latest: int) -> int:
    version = _identity(conn)
    if version > latest:
        raise SchemaTooNew(
            f"{_file_of(conn)} has schema version {version}, this eventlog knows up to {latest}: "
            "upgrade eventlog to open it"
        )
    return version


def migrate(conn: sqlite3.Connection, migrations: list[Migration] | None = None) -> int:
    """Bring the schema up to date; returns the resulting version. ``conn`` is in autocommit mode."""
    migrations = load_migrations() if migrations is None else migrations
    latest = migrations[-1].version if migrations else 0
    if _current_version(conn, latest) == latest:
        return latest
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Checked again under the write lock: another process may have migrated meanwhile.
            if _current_version(conn, latest) < migration.version:
                for statement in migration.statements():
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {migration.version}")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return _current_version(conn, latest)
