"""Opening files: migration upgrades, a newer schema, garbage, another program's database."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from eventlog import EventLog, NotAnEventLog, SchemaTooNew
from eventlog.storage.migrations import APPLICATION_ID, load_migrations, migrate


def latest_version() -> int:
    return load_migrations()[-1].version


def pragma(path: Path, name: str):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def test_migration_files_are_numbered_and_split() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert len(migrations) >= 2
    for migration in migrations:
        assert migration.statements(), migration.name
        for statement in migration.statements():
            assert sqlite3.complete_statement(statement), statement


async def test_new_file_gets_the_latest_schema(db_path: Path) -> None:
    async with EventLog.open(db_path) as log:
        await log.append("run", "x", 1)
    assert pragma(db_path, "user_version") == latest_version()
    assert pragma(db_path, "application_id") == APPLICATION_ID
    assert pragma(db_path, "journal_mode") == "wal"
    assert pragma(db_path, "integrity_check") == "ok"


async def test_missing_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "log.db"
    async with EventLog.open(path) as log:
        await log.append("run", "x", 1)
    assert path.is_file()


async def test_upgrade_from_the_first_migration(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    assert migrate(conn, load_migrations()[:1]) == 1
    now = time.time()
    conn.execute(
        "INSERT INTO events (run_id, event, data, created_at) VALUES (?, ?, ?, ?)",
        ("old-run", "updates", json.dumps({"v": 1}), now),
    )
    conn.execute(
        "INSERT INTO runs (run_id, created_at, metadata, event_count, total_bytes, last_id) VALUES (?, ?, ?, ?, ?, ?)",
        ("old-run", now, json.dumps({"thread_id": "t"}), 1, len('{"v":1}'), 1),
    )
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "idempotency_keys" not in tables  # really only the first migration
    conn.close()

    async with EventLog.open(db_path) as log:
        assert pragma(db_path, "user_version") == latest_version()
        (event,) = await log.read("old-run")
        assert (event.id, event.event, event.data) == (1, "updates", {"v": 1})
        info = await log.run("old-run")
        assert info is not None and info.metadata == {"thread_id": "t"} and info.last_id == 1
        # Everything works on the upgraded file, idempotency keys (migration 2) included.
        ids = await log.append_many("old-run", [("values", 2)], idempotency_key="k")
        assert ids[0] > 1
        assert await log.append_many("old-run", [("values", 2)], idempotency_key="k") == ids
        end_id = await log.end("old-run")
        assert [e.id for e in await log.read("old-run")] == [1, *ids, end_id]
    assert pragma(db_path, "integrity_check") == "ok"


async def test_reopening_does_not_migrate_again(db_path: Path) -> None:
    async with EventLog.open(db_path) as log:
        await log.append("run", "x", 1)
    schema = pragma(db_path, "schema_version")
    async with EventLog.open(db_path) as log:
        assert len(await log.read("run")) == 1
    assert pragma(db_path, "schema_version") == schema


async def test_schema_too_new(db_path: Path) -> None:
    async with EventLog.open(db_path) as log:
        eid = await log.append("run", "x", 1)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew):
        await EventLog.open(db_path)
    # The file was left as it was.
    assert pragma(db_path, "user_version") == latest_version() + 1
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT id FROM events").fetchall() == [(eid,)]
    conn.close()


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a database, just some text\n" * 200,
        os.urandom(8192),
        b"SQLite format 3\x00" + b"\xff" * 4080,  # the right magic, a broken header
    ],
    ids=["text", "random", "bad-header"],
)
async def test_garbage_file(db_path: Path, content: bytes) -> None:
    db_path.write_bytes(content)
    with pytest.raises(NotAnEventLog):
        await EventLog.open(db_path)
    assert db_path.read_bytes() == content  # untouched


async def test_another_programs_database(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO accounts (name) VALUES ('alice')")
    conn.commit()
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(NotAnEventLog):
        await EventLog.open(db_path)
    # Not converted to WAL, not migrated, not touched at all.
    assert db_path.read_bytes() == before
    assert pragma(db_path, "journal_mode") == "delete"
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT name FROM accounts").fetchall() == [("alice",)]
    conn.close()


async def test_another_programs_database_with_an_application_id(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA application_id = 1234")
    conn.close()
    with pytest.raises(NotAnEventLog):
        await EventLog.open(db_path)
    assert pragma(db_path, "application_id") == 1234


async def test_an_empty_sqlite_database_becomes_an_eventlog(db_path: Path) -> None:
    sqlite3.connect(db_path).close()  # an empty file
    async with EventLog.open(db_path) as log:
        await log.append("run", "x", 1)
    assert pragma(db_path, "user_version") == latest_version()


async def test_failed_open_leaves_no_threads_behind(db_path: Path) -> None:
    import threading

    db_path.write_bytes(b"garbage" * 1000)
    with pytest.raises(NotAnEventLog):
        await EventLog.open(db_path)  # the loop's default executor may start a thread once
    before = threading.active_count()
    for _ in range(5):
        with pytest.raises(NotAnEventLog):
            await EventLog.open(db_path)
    time.sleep(0.1)
    assert threading.active_count() <= before
