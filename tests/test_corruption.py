"""A file damaged in the middle: the first corruption error (reader, writer or change feed) puts
the log in its corrupt state for good: logged once, nothing more written, every call refused."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import pytest

from eventlog import DatabaseCorrupt, EventLog, StorageError
from tests.faults import RUNS, build_log, corrupt_middle, corrupt_run, overwrite_pages, pages_of


def fingerprint(path: Path) -> tuple[str, int]:
    """The database file's bytes and the WAL's size: unchanged means nothing was written."""
    wal = Path(f"{path}-wal")
    return hashlib.sha256(path.read_bytes()).hexdigest(), wal.stat().st_size if wal.exists() else 0


def corruption_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and "eventlog check" in r.getMessage()]


async def assert_refuses_everything(log: EventLog) -> None:
    for call in (
        lambda: log.append("run-0", "x", 1),
        lambda: log.append_many("new-run", [("x", 1)], idempotency_key="k"),
        lambda: log.end("run-0"),
        lambda: log.create_run("another"),
        lambda: log.delete("run-9"),
        lambda: log.read("run-0"),
        lambda: log.run("run-0"),
        lambda: log.runs(),
        lambda: log.stats(),
        lambda: log.apply_retention(),
    ):
        with pytest.raises(DatabaseCorrupt):
            await call()


async def test_a_corrupt_read_stops_the_log(db_path: Path, open_log, caplog) -> None:
    await build_log(db_path)
    corrupt_middle(db_path)
    caplog.set_level(logging.ERROR)
    log = await open_log()  # the header is intact: the damage is found by the first read of it

    failures = []
    for run_id in RUNS:
        try:
            await log.read(run_id, limit=1000)
        except DatabaseCorrupt as exc:
            failures.append(exc)
    assert failures, "no read met the damaged pages"
    assert all(isinstance(exc, StorageError) and exc.code == "database_corrupt" for exc in failures)

    before = fingerprint(db_path)
    await assert_refuses_everything(log)
    assert fingerprint(db_path) == before  # nothing more was written into the damaged file

    records = corruption_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]  # once, however many calls failed
    assert str(db_path) in records[0].getMessage()
    assert f"eventlog check {db_path}" in records[0].getMessage()

    await log.close()
    assert fingerprint(db_path) == before  # close leaves the damaged file as it was found


async def test_a_corrupt_write_stops_the_log(db_path: Path, open_log, caplog) -> None:
    await build_log(db_path)
    corrupt_run(db_path, "run-5")
    caplog.set_level(logging.ERROR)
    log = await open_log()
    assert len(await log.read("run-0", limit=1000)) == 300  # undamaged runs read until the damage is met

    with pytest.raises(DatabaseCorrupt):
        await log.delete("run-5")  # the writer reads the damaged pages to delete them
    before = fingerprint(db_path)
    await assert_refuses_everything(log)
    assert fingerprint(db_path) == before
    assert len(corruption_records(caplog)) == 1


async def test_concurrent_appends_after_the_damage_are_all_refused(db_path: Path, open_log) -> None:
    await build_log(db_path)
    corrupt_run(db_path, "run-5")
    log = await open_log()
    with pytest.raises(DatabaseCorrupt):
        await log.read("run-5", limit=1000)
    before = fingerprint(db_path)
    results = await asyncio.gather(*(log.append(f"p-{i}", "x", i) for i in range(50)), return_exceptions=True)
    assert all(isinstance(result, DatabaseCorrupt) for result in results)
    assert fingerprint(db_path) == before


async def test_the_change_feed_meeting_the_damage_stops_the_log(db_path: Path, open_log, caplog, collect) -> None:
    await build_log(db_path)
    overwrite_pages(db_path, pages_of(db_path, "runs_by_last_id"))  # what the feed reads, only
    caplog.set_level(logging.ERROR)
    log = await open_log()
    assert len(await log.read("run-0", limit=1000)) == 300  # the run's own pages are intact

    # Subscribing starts the cross-process change feed, whose first look reads the damaged index;
    # the subscriber waits for the feed to begin before its first read, so it meets the
    # corrupt state at once, though run-0's own pages are intact.
    with pytest.raises(DatabaseCorrupt):
        await collect(log.subscribe("run-0", heartbeat=0.05), 1000, timeout=30)
    with pytest.raises(DatabaseCorrupt):
        await log.read("run-0", limit=1)
    assert any(str(db_path) in r.getMessage() for r in corruption_records(caplog))


async def test_garbage_in_the_header_is_not_an_eventlog_at_open(db_path: Path) -> None:
    """Damage to page 1 is found by open itself (existing behaviour, kept)."""
    from eventlog import NotAnEventLog

    await build_log(db_path)
    with open(db_path, "r+b") as file:
        file.write(b"\xff" * 100)
    with pytest.raises(NotAnEventLog):
        await EventLog.open(db_path)
