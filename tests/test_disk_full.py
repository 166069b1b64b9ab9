"""A small disk: after DatabaseFull, and on close, the WAL is checkpointed and truncated, so
space freed on the filesystem is usable at once and no multi-MB WAL stays behind.

Runs on a real 4 MiB tmpfs (the tests run as root in CI). Where mounting is impossible it falls
back to ``max_page_count``, which fills the database file but not the filesystem, and says so."""

from __future__ import annotations

import warnings
from pathlib import Path


from eventlog import DatabaseFull, EventLog
from tests.conftest import integrity_check
from tests.disk import PAGE, small_disk

PAYLOAD = "x" * 2048  # 2 KB events: one to a 4 KiB page (two do not fit)
LEAVE = 3 << 20  # free bytes the ballast leaves: the log fills these, then the ballast (~1 MiB) goes


def wal_bytes(db: Path) -> int:
    wal = Path(f"{db}-wal")
    return wal.stat().st_size if wal.exists() else 0


async def append_until_full(log: EventLog, prefix: str, acked: dict[str, list[int]], limit: int = 100_000) -> int:
    for n in range(limit):
        run_id = f"{prefix}-{n % 4}"
        try:
            acked.setdefault(run_id, []).append(await log.append(run_id, "x", {"n": n, "p": PAYLOAD}))
        except DatabaseFull:
            return n
    raise AssertionError(f"{limit} appends and the disk is not full")


async def test_freed_space_is_usable_at_once_and_close_leaves_no_big_wal(tmp_path: Path) -> None:
    acked: dict[str, list[int]] = {}
    with small_disk(tmp_path / "small") as disk:
        if not disk.mounted:
            warnings.warn(f"no tmpfs: fell back to max_page_count={disk.page_cap}")
        db = disk.root / "eventlog.db"
        log = await EventLog.open(db, **disk.log_options)
        freed = disk.take(leave=LEAVE)
        before = await append_until_full(log, "before", acked)
        wal_after_full = wal_bytes(db)
        if disk.give_back():  # the fallback's raised cap is read at open
            await log.close()
            log = await EventLog.open(db, **disk.log_options)
        acked["after-first"] = [await log.append("after-first", "x", {"p": PAYLOAD})]
        wal_after_freeing = wal_bytes(db)  # the first write after freeing gave the WAL's space back
        after = 1 + await append_until_full(log, "after", acked)
        await log.close()
        wal_after_close = wal_bytes(db)

        print(
            f"{'tmpfs 4 MiB' if disk.mounted else f'max_page_count {disk.page_cap}'}, 2 KB events: "
            f"{before} appends until DatabaseFull, WAL then {wal_after_full:,} bytes; "
            f"after freeing {freed:,} bytes {after} more appends (WAL after the first: {wal_after_freeing:,} bytes); "
            f"WAL after close {wal_after_close:,} bytes"
        )
        assert before > 10
        # Most of the freed MiB takes events again at once (on tmpfs the truncated WAL's space too);
        # without the truncation the WAL kept the space and 37 more appends fit (150 KB of pages).
        assert after * PAGE >= 0.8 * freed
        assert wal_after_close <= 64 * 1024

        async with EventLog.open(db) as reopened:  # every acknowledged event is there, in order
            for run_id, ids in acked.items():
                assert [e.id for e in await reopened.read(run_id, limit=10_000)] == ids
        assert integrity_check(db) == "ok"


async def test_deleting_a_big_run_on_a_nearly_full_disk_makes_room(tmp_path: Path) -> None:
    """Deleting runs is how an operator makes room: it must not itself need the room. In one
    transaction, deleting a run writes every page it held to the WAL: a 1.6 MB run on a disk with
    300 KB free could not be deleted at all; in short transactions it can, and its space takes
    new events at once."""
    with small_disk(tmp_path / "small") as disk:
        db = disk.root / "eventlog.db"
        async with EventLog.open(db, **disk.log_options) as log:
            for _ in range(8):
                await log.append_many("big", [("x", {"p": PAYLOAD})] * 50)
        assert wal_bytes(db) == 0
        log = await EventLog.open(db, **disk.log_options)  # the run is in the file, the WAL empty
        try:
            disk.take(leave=300 * 1024)
            assert await log.delete("big") is True
            assert await log.read("big") == []
            after = await append_until_full(log, "after", {})
            print(f"a run of 400 events deleted with 300 KB free; then {after} appends fit")
            assert after >= 300  # most of the run's 400 pages hold new events
        finally:
            await log.close()
        assert integrity_check(db) == "ok"
