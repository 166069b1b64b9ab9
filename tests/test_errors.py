"""Typed errors: the pinned input rules, bad limits, a closed log, a full database."""

from __future__ import annotations

import asyncio
import math

import pytest

from eventlog import (
    DatabaseFull,
    EventLog,
    EventLogError,
    InvalidData,
    InvalidEventName,
    InvalidInput,
    InvalidRunId,
    LogClosed,
)

GOOD_RUN_IDS = ["a", "A-z_0.9:x", "x" * 128, "run:2024-01-01T00.00", "...", "-", "_"]
BAD_RUN_IDS = ["", "x" * 129, "a b", "a/b", "a\nb", "é", "run#1", "a?b", "a%20b", "a,b", "\x00", "ａ"]


@pytest.mark.parametrize("run_id", GOOD_RUN_IDS)
async def test_valid_run_ids(log: EventLog, run_id: str) -> None:
    eid = await log.append(run_id, "x", 1)
    assert [e.id for e in await log.read(run_id)] == [eid]


@pytest.mark.parametrize("run_id", [*BAD_RUN_IDS, None, 12, b"abc"])
async def test_invalid_run_ids(log: EventLog, run_id) -> None:
    with pytest.raises(InvalidRunId):
        await log.append(run_id, "x", 1)
    with pytest.raises(InvalidRunId):
        await log.append_many(run_id, [("x", 1)])
    with pytest.raises(InvalidRunId):
        await log.end(run_id, must_exist=False)
    with pytest.raises(InvalidRunId):
        await log.create_run(run_id)
    with pytest.raises(InvalidRunId):
        await log.read(run_id)
    with pytest.raises(InvalidRunId):
        await log.run(run_id)
    with pytest.raises(InvalidRunId):
        await log.delete(run_id)
    with pytest.raises(InvalidRunId):
        log.subscribe(run_id)
    assert await log.runs() == []


GOOD_NAMES = ["updates", "x", "y" * 128, "messages|sub:graph|path", "ünïcödé ☃", "with space", "End", "GAP", "values/1"]
BAD_NAMES = ["", "y" * 129, "a\nb", "tab\there", "\x00", "del\x7f", "cr\r", "end", "gap", "bad\ud800"]


@pytest.mark.parametrize("name", GOOD_NAMES)
async def test_valid_event_names(log: EventLog, name: str) -> None:
    await log.append("run", name, 1)
    assert [e.event for e in await log.read("run")] == [name]


@pytest.mark.parametrize("name", [*BAD_NAMES, None, 5])
async def test_invalid_event_names(log: EventLog, name) -> None:
    with pytest.raises(InvalidEventName):
        await log.append("run", name, 1)
    with pytest.raises(InvalidEventName):
        await log.append_many("run", [("ok", 1), (name, 2)])  # all or nothing
    assert await log.run("run") is None


class Unserialisable:
    pass


def _circular() -> list:
    items: list = []
    items.append(items)
    return items


@pytest.mark.parametrize(
    "data",
    [
        object(),
        Unserialisable(),
        math.nan,
        math.inf,
        -math.inf,
        {"nested": [1, math.nan]},
        {1, 2},
        b"bytes",
        {("tuple", "key"): 1},
        _circular(),
        "lone surrogate \ud800",
        {"key\udcff": 1},
    ],
    ids=lambda d: type(d).__name__,
)
async def test_invalid_data(log: EventLog, data) -> None:
    with pytest.raises(InvalidData):
        await log.append("run", "x", data)
    with pytest.raises(InvalidData):
        await log.append_many("run", [("x", 1), ("y", data)])
    assert await log.run("run") is None


async def test_invalid_metadata(log: EventLog) -> None:
    with pytest.raises(InvalidData):
        await log.create_run("run", metadata={"bad": math.nan})
    with pytest.raises(InvalidInput):
        await log.create_run("run", metadata=["not", "a", "dict"])  # type: ignore[arg-type]
    assert await log.run("run") is None


async def test_valid_data_round_trips(log: EventLog) -> None:
    values = [None, True, False, 0, -1, 2**62, 1.5, -0.25, "", "text ☃ 😀", [], {}, [1, [2, [3]]], {"a": {"b": None}}]
    ids = await log.append_many("run", [("x", v) for v in values])
    assert [e.data for e in await log.read("run")] == values
    assert len(ids) == len(values)
    # A tuple is stored as a list, like json.dumps does.
    await log.append("run2", "x", (1, 2))
    assert (await log.read("run2"))[0].data == [1, 2]


async def test_bad_event_lists(log: EventLog) -> None:
    with pytest.raises(InvalidInput):
        await log.append_many("run", [])
    with pytest.raises(InvalidInput):
        await log.append_many("run", [("only-a-name",)])  # type: ignore[list-item]
    with pytest.raises(InvalidInput):
        await log.append_many("run", [("a", 1, 2)])  # type: ignore[list-item]
    assert await log.run("run") is None


@pytest.mark.parametrize("key", ["", "k" * 257, "new\nline", 5, "bad\ud800"])
async def test_bad_idempotency_keys(log: EventLog, key) -> None:
    with pytest.raises(InvalidInput):
        await log.append("run", "x", 1, idempotency_key=key)
    assert await log.run("run") is None


@pytest.mark.parametrize("reason", [5, ["x"], "bad\ud800"])
async def test_bad_end_reasons(log: EventLog, reason) -> None:
    await log.append("run", "x", 1)
    with pytest.raises(InvalidInput):
        await log.end("run", reason=reason)
    assert not (await log.run("run")).ended  # type: ignore[union-attr]


async def test_bad_limits(log: EventLog) -> None:
    await log.append("run", "x", 1)
    for kwargs in ({"limit": 0}, {"limit": -1}, {"limit": 10_001}, {"after": -1}, {"limit": "10"}, {"after": 1.5}):
        with pytest.raises(InvalidInput):
            await log.read("run", **kwargs)
    assert len(await log.read("run", limit=10_000)) == 1
    for kwargs in ({"limit": 0}, {"limit": 10_001}, {"offset": -1}, {"status": "bogus"}):
        with pytest.raises(InvalidInput):
            await log.runs(**kwargs)
    for kwargs in ({"after": -5}, {"after": "3"}, {"on_gap": "explode"}):
        with pytest.raises(InvalidInput):
            log.subscribe("run", **kwargs)


async def test_bad_open_options(db_path) -> None:
    with pytest.raises(InvalidInput):
        EventLog.open(db_path, durability="sometimes")  # type: ignore[arg-type]


async def test_errors_are_typed_and_have_codes() -> None:
    for cls in (InvalidRunId, InvalidEventName, InvalidData):
        assert issubclass(cls, InvalidInput) and issubclass(cls, ValueError)
    for cls in (InvalidInput, DatabaseFull, LogClosed):
        assert issubclass(cls, EventLogError)
    codes = {cls.code for cls in (InvalidRunId, InvalidEventName, InvalidData, DatabaseFull, LogClosed)}
    assert len(codes) == 5


async def test_calls_after_close_raise_log_closed(db_path) -> None:
    log = await EventLog.open(db_path)
    await log.append("run", "x", 1)
    await log.close()
    await log.close()  # idempotent
    for call in (
        lambda: log.append("run", "x", 2),
        lambda: log.append_many("run", [("x", 2)]),
        lambda: log.end("run"),
        lambda: log.create_run("other"),
        lambda: log.read("run"),
        lambda: log.run("run"),
        lambda: log.runs(),
        lambda: log.delete("run"),
        lambda: log.apply_retention(),
    ):
        with pytest.raises(LogClosed):
            await call()
    with pytest.raises(LogClosed):
        log.subscribe("run")


# --- a full database ---------------------------------------------------------------------------


async def test_database_full_then_space_again(open_log, db_path, check_integrity) -> None:
    log = await open_log(max_page_count=48)
    payload = "p" * 1500
    acked: dict[str, list[int]] = {}
    with pytest.raises(DatabaseFull):
        for i in range(10_000):
            run = f"run-{i % 4}"
            acked.setdefault(run, []).append(await log.append(run, "x", {"i": i, "p": payload}))
    assert sum(map(len, acked.values())) > 10

    # Everything acknowledged is still there, intact; nothing half-written appeared.
    for run, ids in acked.items():
        stored = await log.read(run, limit=10_000)
        assert [e.id for e in stored] == ids
        assert all(e.data["p"] == payload for e in stored)
    # The full log still reads, and refuses more without a trace.
    with pytest.raises(DatabaseFull):
        await log.append_many("run-0", [("x", "q" * 5000)] * 20)
    assert [e.id for e in await log.read("run-0", limit=10_000)] == acked["run-0"]

    # Space comes back: deleting a run frees pages for new appends.
    assert await log.delete("run-1")
    eid = await log.append("run-0", "x", {"after": "delete"})
    assert (await log.read("run-0", limit=10_000))[-1].id == eid
    await log.close()
    assert check_integrity(db_path) == "ok"

    # Or the limit goes: reopened without it, the log takes far more than before.
    log = await open_log()
    for run in ("run-0", "run-2", "run-3"):
        assert [e.id for e in await log.read(run, limit=10_000)][: len(acked[run])] == acked[run]
    more = await log.append_many("run-9", [("x", payload)] * 200)
    assert len(more) == 200
    await log.close()
    assert check_integrity(db_path) == "ok"


async def test_database_full_with_concurrent_appends(open_log, db_path, check_integrity) -> None:
    log = await open_log(max_page_count=40)
    payload = "c" * 800

    async def producer(n: int) -> tuple[list[int], int]:
        ok, full = [], 0
        for i in range(400):
            try:
                ok.append(await log.append(f"p-{n}", "x", {"n": n, "i": i, "p": payload}))
            except DatabaseFull:
                full += 1
                if full > 5:
                    break
        return ok, full

    results = await asyncio.wait_for(asyncio.gather(*(producer(n) for n in range(8))), 60)
    assert any(full for _, full in results)
    for n, (ok, _) in enumerate(results):
        stored = await log.read(f"p-{n}", limit=10_000)
        assert [e.id for e in stored] == ok
        # Sequence numbers are in order with no duplicates: failures left no partial rows.
        assert [e.data["i"] for e in stored] == sorted({e.data["i"] for e in stored})
    await log.close()
    assert check_integrity(db_path) == "ok"


async def test_an_event_must_be_a_pair_not_a_two_character_string(log) -> None:
    from eventlog import InvalidInput

    with pytest.raises(InvalidInput):
        await log.append_many("run-pairs", ["xy"])
    assert await log.run("run-pairs") is None


async def test_a_read_only_location_is_not_writable_for_a_new_or_an_existing_file(tmp_path) -> None:
    from eventlog import NotWritable
    from tests.disk import small_disk

    with small_disk(tmp_path / "ro") as disk:
        assert disk.mounted, "needs a tmpfs to remount read-only (root can write anywhere else)"
        async with EventLog.open(disk.root / "existing.db") as log:
            await log.append("run", "x", 1)
        disk.make_read_only()
        for name in ("existing.db", "new.db"):
            with pytest.raises(NotWritable, match=name):
                await EventLog.open(disk.root / name)
        assert not (disk.root / "new.db").exists()
