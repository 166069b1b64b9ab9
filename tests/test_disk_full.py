"""A small disk: after DatabaseFull, and on close, the WAL is checkpointed and truncated, so
space freed on the filesystem is usable at once and no multi-MB WAL stays behind.

Runs on a real 4 MiB tmpfs (the tests run as root in CI). Where mounting is impossible it falls
back to ``max_page_count``, which fills the database file but not the filesystem, and says so."""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventlog import DatabaseFull, EventLog
from tests.conftest import integrity_check

PAYLOAD = "x" * 2048  # 2 KB events: one to a 4 KiB page (two do not fit)
PAGE = 4096
FILLER_BYTES = 1 << 20


@dataclass
class SmallDisk:
    directory: Path
    mounted: bool
    why_not: str = ""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    directory = tmp_path / "small"
    directory.mkdir()
    if os.geteuid() != 0:
        yield SmallDisk(directory, False, "not root")
        return
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(directory)], capture_output=True, text=True)
    if mount.returncode != 0:
        yield SmallDisk(directory, False, f"mount failed: {mount.stderr.strip()}")
        return
    try:
        yield SmallDisk(directory, True)
    finally:
        subprocess.run(["umount", str(directory)], check=True)


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


async def test_freed_space_is_usable_at_once_and_close_leaves_no_big_wal(small_disk: SmallDisk) -> None:
    db = small_disk.directory / "eventlog.db"
    acked: dict[str, list[int]] = {}
    if small_disk.mounted:
        filler = small_disk.directory / "filler"
        filler.write_bytes(b"\0" * FILLER_BYTES)
        log = await EventLog.open(db)
    else:
        message = f"tmpfs unavailable ({small_disk.why_not}): fell back to max_page_count"
        print(message)
        warnings.warn(message)
        log = await EventLog.open(db, max_page_count=1024)  # 4 MiB of pages
        await log.append_many("filler", [("x", {"p": PAYLOAD})] * (FILLER_BYTES // PAGE))  # deleted below

    before = await append_until_full(log, "before", acked)
    wal_after_full = wal_bytes(db)
    if small_disk.mounted:
        filler.unlink()
    else:
        assert await log.delete("filler")
    acked["after-first"] = [await log.append("after-first", "x", {"p": PAYLOAD})]
    wal_after_freeing = wal_bytes(db)  # the first write after freeing gave the WAL's space back
    after = 1 + await append_until_full(log, "after", acked)
    await log.close()
    wal_after_close = wal_bytes(db)

    print(
        f"{'tmpfs 4 MiB' if small_disk.mounted else 'max_page_count 1024'}, 2 KB events: "
        f"{before} appends until DatabaseFull, WAL then {wal_after_full:,} bytes; "
        f"after freeing 1 MiB {after} more appends (WAL after the first: {wal_after_freeing:,} bytes); "
        f"WAL after close {wal_after_close:,} bytes"
    )
    assert before > 10
    # Most of the freed MiB takes events again at once (on tmpfs the truncated WAL's space too);
    # without the truncation the WAL kept the space and 37 more appends fit (150 KB of pages).
    assert after * PAGE >= 0.8 * FILLER_BYTES
    assert wal_after_close <= 64 * 1024

    async with EventLog.open(db) as reopened:  # every acknowledged event is there, in order
        for run_id, ids in acked.items():
            assert [e.id for e in await reopened.read(run_id, limit=10_000)] == ids
    assert integrity_check(db) == "ok"
