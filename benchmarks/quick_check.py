"""What would ``PRAGMA quick_check`` at open cost? Measured on a ~1 GB eventlog file.

Builds the file in /tmp with eventlog's own schema (``migrate``) and plain ``sqlite3``
``executemany`` (runs of events with a ~1 KB JSON payload), then times, on the same file:

- ``EventLog.open`` + ``close`` alone (what a server start costs today);
- the same plus ``PRAGMA quick_check`` on a connection of its own (what a check at open adds);
- ``PRAGMA integrity_check`` (what ``eventlog check`` runs), once.

Each is timed warm (the file in the page cache, as right after it was written) and cold (the
file's pages dropped from the cache with ``posix_fadvise(DONTNEED)``, which evicts this file only,
not the shared machine's cache): a server restarting after a reboot or a crash sees the cold one.

    .venv/bin/python benchmarks/quick_check.py [--gigabytes 1.0] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from eventlog import EventLog
from eventlog.storage.migrations import migrate

PAYLOAD = "x" * 1000
EVENTS_PER_RUN = 10_000
BATCH = 20_000


def build(path: Path, target_bytes: int) -> int:
    """Fill ``path`` with runs of events until the file holds ``target_bytes``; returns events."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")  # building the fixture, not measuring durability
    migrate(conn)
    data = json.dumps({"step": 0, "payload": PAYLOAD}, separators=(",", ":"))
    now = time.time()
    written, run = 0, 0
    while path.stat().st_size + _wal_bytes(path) < target_bytes:
        run_id = f"run-{run:05d}"
        conn.execute("BEGIN")
        for start in range(0, EVENTS_PER_RUN, BATCH):
            rows = [(run_id, "updates", data, now) for _ in range(min(BATCH, EVENTS_PER_RUN - start))]
            conn.executemany("INSERT INTO events (run_id, event, data, created_at) VALUES (?, ?, ?, ?)", rows)
        last_id = conn.execute("SELECT max(id) FROM events").fetchone()[0]
        conn.execute(
            "INSERT INTO runs (run_id, created_at, event_count, total_bytes, last_id) VALUES (?, ?, ?, ?, ?)",
            (run_id, now, EVENTS_PER_RUN, EVENTS_PER_RUN * len(data), last_id),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        written += EVENTS_PER_RUN
        run += 1
    conn.close()
    return written


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def drop_cache(path: Path) -> None:
    """Evict this file's pages from the page cache (clean pages only: it was fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


async def open_close(path: Path) -> None:
    log = await EventLog.open(path)
    await log.close()


def pragma_check(path: Path, pragma: str) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {pragma}").fetchone()[0]
    finally:
        conn.close()


def timed(path: Path, *, check: str | None, cold: bool) -> float:
    if cold:
        drop_cache(path)
    start = time.perf_counter()
    asyncio.run(open_close(path))
    if check is not None:
        result = pragma_check(path, check)
        assert result == "ok", result
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the file (its path is printed)")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="eventlog-quick-check-", dir="/tmp"))
    path = directory / "big.db"
    try:
        start = time.perf_counter()
        events = build(path, int(args.gigabytes * 2**30))
        size = path.stat().st_size
        print(f"built {path}: {size / 2**30:.2f} GiB, {events:,} events in {time.perf_counter() - start:.0f}s")
        asyncio.run(open_close(path))  # first open: anything the opener does once is done

        rows = []
        for label, check in (("open + close", None), ("open + close + quick_check", "quick_check")):
            for cold in (False, True):
                if not cold:
                    timed(path, check=check, cold=False)  # warms the cache a cold round emptied
                times = [timed(path, check=check, cold=cold) for _ in range(args.rounds)]
                rows.append((label, "cold" if cold else "warm", statistics.median(times), min(times), max(times)))
        for cold in (False, True):
            if not cold:
                timed(path, check="quick_check", cold=False)
            seconds = timed(path, check="integrity_check", cold=cold)
            rows.append(("open + close + integrity_check", "cold" if cold else "warm", seconds, seconds, seconds))

        print(f"\n{'what':<34} {'cache':<6} {'median s':>9} {'min s':>8} {'max s':>8}")
        for label, cache, median, low, high in rows:
            print(f"{label:<34} {cache:<6} {median:>9.3f} {low:>8.3f} {high:>8.3f}")
        medians = {(label, cache): median for label, cache, median, _, _ in rows}
        for cache in ("warm", "cold"):
            added = medians[("open + close + quick_check", cache)] - medians[("open + close", cache)]
            print(f"quick_check adds {added:.2f}s to an open ({cache}), {size / 2**20 / added:.0f} MiB/s")
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            for leftover in directory.iterdir():
                leftover.unlink()
            directory.rmdir()


if __name__ == "__main__":
    main()
