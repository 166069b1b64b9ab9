"""What is the PostgreSQL backend's own: its migrations, the SQLite-only operations refused with
a typed error, the command line on a URL, export from SQLite into PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from eventlog import EventLog, NotAnEventLog, NotSupported, SchemaTooNew
from eventlog.storage.postgres.migrations import postgres_migrations

pytestmark = pytest.mark.postgres


def eventlog(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eventlog", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_the_migrations_are_numbered_and_each_is_one_script() -> None:
    migrations = postgres_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert all(m.name.endswith(".sql") for m in migrations)


async def test_servers_opening_a_new_database_at_once_migrate_it_once(postgres_cluster) -> None:  # type: ignore[no-untyped-def]
    url = postgres_cluster.new_database()
    logs = await asyncio.gather(*(EventLog.open(url) for _ in range(4)))
    try:
        latest = postgres_migrations()[-1].version
        assert {await log.schema_versions() for log in logs} <= {(0, latest), (latest, latest)}
        conn = await asyncpg.connect(url)
        try:
            assert [r["version"] for r in await conn.fetch("SELECT version FROM eventlog_schema")] == list(range(1, latest + 1))
        finally:
            await conn.close()
    finally:
        await asyncio.gather(*(log.close() for log in logs))


async def test_another_programs_tables_and_a_newer_schema_are_refused(postgres_cluster) -> None:  # type: ignore[no-untyped-def]
    foreign, newer = postgres_cluster.new_database(), postgres_cluster.new_database()
    postgres_cluster.psql("CREATE TABLE runs (id int)", database=foreign.rsplit("/", 1)[1])
    with pytest.raises(NotAnEventLog):
        await EventLog.open(foreign)
    async with EventLog.open(newer):
        pass
    postgres_cluster.psql("INSERT INTO eventlog_schema VALUES (999, '0999_future.sql', 0)", database=newer.rsplit("/", 1)[1])
    with pytest.raises(SchemaTooNew, match="999"):
        await EventLog.open(newer)


async def test_sqlite_file_maintenance_is_not_supported(postgres_cluster) -> None:  # type: ignore[no-untyped-def]
    url = postgres_cluster.new_database()
    async with EventLog.open(url) as log:
        with pytest.raises(NotSupported, match="checkpoint"):
            await log.checkpoint()
        with pytest.raises(NotSupported, match="vacuum"):
            await log.vacuum()
    with pytest.raises(NotSupported, match="pg_amcheck"):
        EventLog.check(url)


def test_the_command_line_on_a_url(postgres_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """File commands take a URL: export from SQLite, import into PostgreSQL, export again gives
    the same events; checkpoint and check say in one line that they do not apply."""
    url = postgres_cluster.new_database()
    sqlite_file = tmp_path / "source.db"
    assert eventlog("append", "--db", sqlite_file, "job", "updates", '{"n": 1}').returncode == 0
    assert eventlog("append", "--db", sqlite_file, "job", "updates", '{"n": 2}').returncode == 0
    exported = eventlog("export", "--db", sqlite_file)
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "dump.jsonl").write_text(exported.stdout)
    imported = eventlog("import", tmp_path / "dump.jsonl", "--db", url)
    assert imported.returncode == 0 and "imported 1 runs, 2 events" in imported.stdout, imported.stderr
    again = eventlog("export", "--db", url)
    assert again.stdout.splitlines()[1:] == exported.stdout.splitlines()[1:]  # the header names each schema
    assert eventlog("migrate", "--db", url).stdout.strip().endswith("already up to date")
    assert eventlog("append", "--db", url, "job", "updates", '{"n": 3}').returncode == 0
    tailed = eventlog("tail", "--db", url, "job", "--no-follow", "--json")
    assert [json.loads(line)["data"] for line in tailed.stdout.splitlines()] == [{"n": 1}, {"n": 2}, {"n": 3}], tailed.stderr
    for command in (["checkpoint", "--db", url], ["vacuum", "--db", url], ["check", url]):
        refused = eventlog(*command)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "PostgreSQL" in refused.stderr, refused.stderr
