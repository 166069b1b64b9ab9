"""The storage side of export and import, on real files: ``dump`` reads one snapshot in pages,
``ImportRows`` keeps or remaps ids and refuses bad rows whole, the archive parser names the bad
line, and checkpoint/vacuum report what they did (or DatabaseBusy when a reader is in the way)."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from eventlog import DatabaseBusy, EventLog, Gap, InvalidData, InvalidInput, RunEnded, RunExists, RunNotFound
from eventlog.log.archive import check_archive, export_log, import_log, read_archive
from eventlog.models import Event, RunInfo
from eventlog.storage.base import ImportedRun

OpenLog = Callable[..., Awaitable[EventLog]]

pytestmark = pytest.mark.backends


async def dumped(log: EventLog, run_ids: list[str] | None = None, page_rows: int = 1000) -> list[list[RunInfo | Event]]:
    async with log.dump(run_ids, page_rows=page_rows) as dump:
        return [page async for page in dump.pages]


async def test_dump_pages_every_run_then_its_events_in_one_snapshot(log: EventLog) -> None:
    await log.append_many("b", [("x", i) for i in range(4)])
    await log.append_many("a", [("x", i) for i in range(3)])
    await log.end("b")
    async with log.dump(page_rows=3) as dump:
        assert (dump.runs, dump.rows, dump.last_id, dump.schema_version) == (2, 8, 8, (await log.schema_versions())[1])
        await log.append("a", "late", 1)  # after the snapshot began: not in it
        await log.append_many("c", [("x", 1)])
        pages = [page async for page in dump.pages]
    assert all(1 <= len(page) <= 3 for page in pages)
    items = [item for page in pages for item in page]
    shape = [item.run_id if isinstance(item, RunInfo) else item.id for item in items]
    assert shape == ["b", 1, 2, 3, 4, 8, "a", 5, 6, 7]  # oldest run first; the end marker is id 8
    assert (await dumped(log, ["a"], page_rows=1))[0][0].run_id == "a"  # type: ignore[union-attr]
    with pytest.raises(RunNotFound):
        await dumped(log, ["a", "missing"])


async def test_import_keeps_ids_timestamps_and_ends(open_log: OpenLog, another_database) -> None:  # type: ignore[no-untyped-def]
    log = await open_log(another_database("new.db"))
    run = ImportedRun("r", 100.5, '{"k":"v"}', trimmed_through=3)
    events = [Event(4, "r", "x", '{"a":1}', 101.0), Event(9, "r", "end", '{"reason":"done"}', 102.25)]
    assert await log.import_rows([run], events, reserve_through=20) == [4, 9]
    info = await log.run("r")
    assert info is not None
    assert (info.created_at, info.metadata, info.first_id, info.last_id, info.trimmed_through) == (100.5, {"k": "v"}, 4, 9, 3)
    assert (info.event_count, info.total_bytes, info.end_id, info.end_reason, info.ended_at) == (1, 7, 9, "done", 102.25)
    assert await log.read("r") == events
    assert await log.append("next", "x", 1) == 21  # ids up to reserve_through are never handed out


async def test_import_refuses_bad_rows_and_writes_nothing(log: EventLog) -> None:
    await log.append_many("open", [("x", 1), ("x", 2)])  # ids 1, 2
    await log.end("closed", must_exist=False)  # id 3
    cases: list[tuple[type[Exception], list[ImportedRun], list[Event]]] = [
        (RunExists, [ImportedRun("open", 0.0, "{}", 0)], []),
        (RunNotFound, [], [Event(10, "nowhere", "x", "1", 0.0)]),
        (RunEnded, [], [Event(10, "closed", "x", "1", 0.0)]),
        (InvalidInput, [], [Event(2, "open", "x", "1", 0.0)]),  # not above the run's last id
        (InvalidInput, [ImportedRun("new", 0.0, "{}", 0)], [Event(3, "new", "x", "1", 0.0)]),  # id 3 is taken
        (InvalidInput, [ImportedRun("new", 0.0, "{}", 5)], [Event(5, "new", "x", "1", 0.0)]),  # trimmed away
        (InvalidData, [], [Event(10, "open", "end", '{"why":"no reason"}', 0.0)]),
        (InvalidInput, [], [Event(10, "open", "gap", "1", 0.0)]),  # a name of the stream's own frames
        (InvalidInput, [ImportedRun("bad id!", 0.0, "{}", 0)], []),
    ]
    for error, runs, events in cases:
        with pytest.raises(error):
            await log.import_rows(runs, events)
    assert [r.run_id for r in await log.runs()] == ["closed", "open"]
    assert (await log.stats())["events"] == 2


async def test_import_with_remap_hands_out_new_ids(log: EventLog) -> None:
    await log.append_many("here", [("x", i) for i in range(5)])
    run = ImportedRun("there", 1.0, "{}", trimmed_through=40)
    ids = await log.import_rows([run], [Event(41, "there", "x", "1", 2.0), Event(50, "there", "end", '{"reason":null}', 3.0)], remap=True)
    assert ids == [7, 8]  # id 6 stands for the trimmed events: a reader from the start gets a gap
    info = await log.run("there")
    assert info is not None and (info.trimmed_through, info.first_id, info.end_id, info.end_reason) == (6, 7, 8, None)
    assert await log.append("here", "x", 9) == 9


async def test_a_remapped_trimmed_run_still_has_a_gap_in_an_empty_log(log: EventLog) -> None:
    run = ImportedRun("there", 1.0, "{}", trimmed_through=40)
    assert await log.import_rows([run], [], remap=True) == []
    assert (await log.run("there")).trimmed_through == 1  # type: ignore[union-attr]
    assert await log.append("there", "x", 1) == 2
    items = [item async for item in log.subscribe("there", after=0, heartbeat=None, on_gap="stop")]
    assert items == [Gap(requested=0, earliest=2, latest=2)]


async def test_an_archive_round_trip_in_process(open_log: OpenLog, another_database) -> None:  # type: ignore[no-untyped-def]
    source = await open_log(another_database("a.db"))
    await source.create_run("m", {"thread_id": "t"})
    await source.append_many("m", [("x", {"s": "é"}) for _ in range(2500)])  # several batches
    out = io.BytesIO()
    assert await export_log(source, out) == (1, 2500)
    checked = check_archive(lambda: io.BytesIO(out.getvalue()))
    assert checked.run_ids == ["m"]
    target = await open_log(another_database("b.db"))
    assert await import_log(target, checked) == (1, 2500)
    again = io.BytesIO()
    await export_log(target, again)
    assert again.getvalue() == out.getvalue()
    with pytest.raises(InvalidInput, match="already holds runs"):
        await import_log(target, checked)


HEADER = b'{"format":"eventlog-export","version":1,"schema_version":3,"last_id":9}\n'
RUN = b'{"run_id":"r","created_at":1.0,"metadata":{},"trimmed_through":0}\n'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty input"),
        (b'{"format":"other"}\n', "line 1: not an eventlog export"),
        (HEADER.replace(b'"version":1', b'"version":2'), "line 1: export format version 2"),
        (HEADER + b'{"id":1,"event":"x","data":1,"created_at":0}\n', "line 2: an event before any run line"),
        (HEADER + RUN + b"{oops\n", "line 3: not JSON"),
        (HEADER + RUN + b'{"id":1,"event":"x","data":1}\n', "line 3: expected an object with exactly"),
        (HEADER + RUN + b'{"id":2,"event":"x","data":1,"created_at":0}\n{"id":2,"event":"x","data":1,"created_at":0}\n', "line 4: event id 2"),
        (HEADER + RUN + b'{"id":1,"event":"end","data":{"reason":1},"created_at":0}\n', "line 3: an end marker"),
        (HEADER + RUN + b'{"id":1,"event":"end","data":{"reason":null},"created_at":0}\n{"id":2,"event":"x","data":1,"created_at":0}\n', "line 4: an event of run 'r' after its end"),
        (HEADER + RUN + RUN, "line 3: run 'r' appears twice"),
        (HEADER + RUN.replace(b'"r"', b'"bad id!"'), "run id must be"),
        (HEADER + RUN + b'{"id":1,"event":"gap","data":1,"created_at":0}\n', "reserved"),
        (HEADER + RUN + b'{"id":1,"event":"x","data":1,"created_at":"now"}\n', "line 3: created_at must be a number"),
    ],
)
def test_the_parser_names_the_bad_line(body: bytes, message: str) -> None:
    with pytest.raises((InvalidData, InvalidInput), match=message):
        list(read_archive(io.BytesIO(body)))


@pytest.mark.sqlite_only  # SQLite file maintenance (PostgreSQL's: tests/test_postgres.py)
async def test_checkpoint_and_vacuum(log: EventLog, db_path: Path) -> None:
    await log.append_many("r", [("x", "p" * 1000) for _ in range(300)])
    wal = await log.checkpoint()
    assert wal.before > 0 and wal.after == 0 == Path(f"{db_path}-wal").stat().st_size
    await log.delete("r")
    size = await log.vacuum()
    assert size.after < size.before // 4 and size.after == db_path.stat().st_size


@pytest.mark.sqlite_only
async def test_a_checkpoint_a_reader_keeps_from_completing_is_busy(open_log: OpenLog, db_path: Path) -> None:
    log = await open_log(db_path, lock_timeout=0.2)
    await log.append("r", "x", 1)
    reader = sqlite3.connect(db_path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()  # holds its snapshot
        await log.append("r", "x", 2)  # a frame the reader's snapshot keeps in the WAL
        with pytest.raises(DatabaseBusy, match="could not be checkpointed completely"):
            await log.checkpoint()
    finally:
        reader.close()
    assert (await log.checkpoint()).after == 0
