"""Damaged files for the fault tests: a real log, closed, then some of its pages overwritten.

Garbage comes from a seeded generator, so every run of the suite damages the same bytes."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from eventlog import EventLog

RUNS = [f"run-{i}" for i in range(10)]
EVENTS_PER_RUN = 300
PAYLOAD = "p" * 1000


async def build_log(path: Path) -> None:
    """Ten runs written one after the other (so each fills its own stretch of pages), ~3 MB."""
    async with EventLog.open(path) as log:
        for run_id in RUNS:
            for start in range(0, EVENTS_PER_RUN, 100):
                await log.append_many(run_id, [("x", {"i": i, "p": PAYLOAD}) for i in range(start, start + 100)])
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


def page_size(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:18], "big")


def overwrite_pages(path: Path, pages: list[int], seed: int = 8) -> None:
    """Overwrite the given pages (1-based; page 1, the header, is refused) with garbage."""
    assert 1 not in pages
    size = page_size(path)
    garbage = random.Random(seed)
    with open(path, "r+b") as file:
        for page in pages:
            file.seek((page - 1) * size)
            file.write(garbage.randbytes(size))


def corrupt_middle(path: Path) -> list[int]:
    """Overwrite the middle fifth of the file's pages; returns their numbers."""
    count = path.stat().st_size // page_size(path)
    pages = list(range(count * 2 // 5, count * 3 // 5))
    overwrite_pages(path, pages)
    return pages


def pages_of(path: Path, name: str) -> list[int]:
    """The pages of a table or index, from SQLite's ``dbstat`` (read before damaging them)."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT pageno FROM dbstat WHERE name = ?", (name,))]
    finally:
        conn.close()


def corrupt_run(path: Path, run_id: str) -> list[int]:
    """Overwrite some of the table pages that hold ``run_id``'s events (the runs of ``build_log``
    lie one after the other in id order, so in the table's leaves in tree order), leaving every
    other run readable."""
    conn = sqlite3.connect(path)
    try:
        leaves = [row[0] for row in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY path"
        )]
    finally:
        conn.close()
    index, per_run = RUNS.index(run_id), len(leaves) / len(RUNS)
    pages = leaves[int((index + 0.3) * per_run) : int((index + 0.7) * per_run)]
    overwrite_pages(path, pages)
    return pages
