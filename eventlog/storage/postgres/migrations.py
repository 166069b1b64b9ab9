"""PostgreSQL schema migrations: ``migrations/postgresql/NNNN_name.sql``, applied in order.

The files are read as SQLite's are (``eventlog.storage.migrations.load_migrations``), from the
``postgresql`` folder of the same package. The table ``eventlog_schema`` records each version
applied. Each migration runs in a transaction of its own holding an advisory lock, so servers
starting together against a new database migrate it once, and a failure leaves the previous
version intact.
"""

from __future__ import annotations

import time

import asyncpg

from eventlog.errors import NotAnEventLog, SchemaTooNew
from eventlog.storage.migrations import MIGRATIONS, Migration, load_migrations

MIGRATION_LOCK = 0x45564C47  # "EVLG", the SQLite files' application id: one lock key per database

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS eventlog_schema "
    "(version integer PRIMARY KEY, name text NOT NULL, applied_at double precision NOT NULL)"
)


def postgres_migrations() -> list[Migration]:
    return load_migrations(MIGRATIONS / "postgresql")


async def current_version(conn: asyncpg.Connection, latest: int) -> int:
    """The database's schema version (0 for an empty one). Tables named like ours without the
    version table belong to another program: NotAnEventLog, before anything is written.

    The tables are looked up in ``pg_class`` itself (a snapshot of this statement), not with
    ``to_regclass``: that asks the session's catalog cache, which a table another session
    created while this one waited for the advisory lock may not have reached yet."""
    present = set(await conn.fetchval(
        "SELECT coalesce(array_agg(relname::text), '{}') FROM pg_catalog.pg_class "
        "WHERE relnamespace = current_schema()::regnamespace AND relname IN ('eventlog_schema', 'runs', 'events')"
    ))
    if "eventlog_schema" not in present:
        if present:
            raise NotAnEventLog("the PostgreSQL database holds tables `runs`/`events` of another program")
        return 0
    version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM eventlog_schema")
    if version > latest:
        raise SchemaTooNew(
            f"the PostgreSQL database has schema version {version}, this eventlog knows up to {latest}: "
            "upgrade eventlog to open it"
        )
    return version


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> tuple[int, int]:
    """Bring the schema up to date; returns the version found and the version now."""
    migrations = postgres_migrations() if migrations is None else migrations
    latest = migrations[-1].version if migrations else 0
    found = await current_version(conn, latest)
    for migration in migrations[found:]:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            # Checked again under the lock: another server may have migrated meanwhile.
            if await current_version(conn, latest) < migration.version:
                await conn.execute(_VERSION_TABLE)
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO eventlog_schema (version, name, applied_at) VALUES ($1, $2, $3)",
                    migration.version, migration.name, time.time(),
                )
    return found, await current_version(conn, latest)
