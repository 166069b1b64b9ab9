"""A local log file for one command: refused in one line when no log can be there, opened
without background retention, so a command changes only what it says it changes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from eventlog.cli.app import fail

if TYPE_CHECKING:
    from eventlog import EventLog

T = TypeVar("T")


def check_path(db: Path, *, create: bool) -> None:
    """Refuse a path no log can be at (one line): a directory, a missing file unless the command
    creates it, or one to create where nothing can be written (SQLite would say only "unable to
    open database file")."""
    from eventlog import NotWritable

    if db.is_dir():
        fail(f"{db} is a directory, not an eventlog file")
    if db.exists():
        return
    if not create:
        fail(f"{db}: no such file")
    folder = next(parent for parent in db.absolute().parents if parent.exists())
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NotWritable(f"cannot create {db}: {folder} is read-only, or this user lacks the permission")


@asynccontextmanager
async def open_file(db: Path | str, *, create: bool = False) -> AsyncIterator[EventLog]:
    """The log at ``db`` (a path, or a PostgreSQL URL) for one command: refused in one line when
    it cannot be one, and opened without background retention (no idempotency keys expire
    behind the command's back)."""
    from eventlog import EventLog, RetentionPolicy
    from eventlog.storage.postgres import is_postgres_url

    if not is_postgres_url(db):
        db = Path(db)
        check_path(db, create=create)
    # A fault the library logs (a corrupt page met) is also raised: its one line says it all.
    quiet = logging.NullHandler()
    logging.getLogger("eventlog").addHandler(quiet)
    try:
        async with EventLog.open(db, retention=RetentionPolicy(idempotency_ttl=None)) as log:
            yield log
    finally:
        logging.getLogger("eventlog").removeHandler(quiet)


def on_file(db: Path | str, use: Callable[[EventLog], Awaitable[T]]) -> T:
    """Run ``use`` on the existing log at ``db`` (see ``open_file``) and return what it returns:
    the whole of a command that does one thing to a file."""

    async def run() -> T:
        async with open_file(db) as log:
            return await use(log)

    return asyncio.run(run())
