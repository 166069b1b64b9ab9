"""Resume latency: the first page after a cursor in the middle of a run, against the size of the log.

    .venv/bin/python benchmarks/resume.py                       # 10^4 .. 10^6 rows
    .venv/bin/python benchmarks/resume.py --sizes 1000 10000    # what `report.py --quick` runs

One file grows through the sizes (rows spread round robin over up to 100 runs, written with one
SQL statement per step straight into eventlog's schema, the ``runs`` table recomputed from them,
since appending 10^6 rows through the API would only measure appends). At each size, ``--samples``
times: a random run, a random cursor in the middle half of its ids, and ``EventLog.read(run,
after=cursor, limit=100)`` (the page a reconnecting client gets first), timed from call to return;
next to it the same query on a bare sqlite3 connection (the floor: the index range scan itself).
The target is flat: the largest size within 2x of the smallest.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from append import TEXT, percentile, raw_connection  # noqa: E402

from eventlog import EventLog  # noqa: E402

PAGE = 100
QUERY = "SELECT id, run_id, event, data, created_at FROM events WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?"


@dataclass(frozen=True)
class ResumeResult:
    rows: int
    p50: float
    p99: float
    raw_p50: float
    raw_p99: float
    samples: int


def grow(conn: sqlite3.Connection, start: int, stop: int, runs: int) -> None:
    """Rows ``start+1 .. stop`` (run ``run-<i mod runs>``), then the runs table recomputed."""
    conn.execute("BEGIN")
    conn.execute(
        "WITH RECURSIVE c(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
        "INSERT INTO events (run_id, event, data, created_at) "
        "SELECT 'run-' || (i % ?), 'updates', json_object('step', i, 'node', 'agent', 'text', ?), ? FROM c",
        (start + 1, stop, runs, TEXT, time.time()),
    )
    conn.execute(
        "INSERT OR REPLACE INTO runs (run_id, created_at, event_count, total_bytes, last_id) "
        "SELECT run_id, min(created_at), count(*), sum(length(CAST(data AS BLOB))), max(id) FROM events GROUP BY run_id"
    )
    conn.execute("COMMIT")


def cursors(conn: sqlite3.Connection, runs: int, samples: int, seed: int) -> list[tuple[str, int]]:
    """(run, cursor) pairs: a random id from the middle half of a random run."""
    rnd = random.Random(seed)
    bounds = {run_id: (low, high) for run_id, low, high in conn.execute(
        "SELECT run_id, min(id), max(id) FROM events GROUP BY run_id")}
    picks = []
    for _ in range(samples):
        run_id = f"run-{rnd.randrange(runs)}"
        low, high = bounds[run_id]
        quarter = (high - low) // 4
        picks.append((run_id, rnd.randint(low + quarter, high - quarter)))
    return picks


async def time_reads(path: Path, picks: list[tuple[str, int]]) -> list[float]:
    async with EventLog.open(path) as log:
        await log.read(*picks[0], limit=PAGE)  # the connection and its caches warm
        times = []
        for run_id, cursor in picks:
            t0 = time.perf_counter()
            page = await log.read(run_id, after=cursor, limit=PAGE)
            times.append(time.perf_counter() - t0)
            if len(page) != PAGE or page[0].id <= cursor:
                raise RuntimeError(f"expected a full page after {cursor} in {run_id}, got {len(page)} events")
    return times


def time_raw(conn: sqlite3.Connection, picks: list[tuple[str, int]]) -> list[float]:
    times = []
    for run_id, cursor in picks:
        t0 = time.perf_counter()
        conn.execute(QUERY, (run_id, cursor, PAGE)).fetchall()
        times.append(time.perf_counter() - t0)
    return times


async def measure(sizes: list[int], runs: int | None = None, samples: int = 300) -> list[ResumeResult]:
    """One ResumeResult per size (ascending), all on one file grown from size to size. ``runs``
    defaults to as many as leave every run at least 4 pages at the smallest size, so that every
    read, at every size, returns a full page (up to 100 runs)."""
    runs = runs or max(1, min(100, min(sizes) // (4 * PAGE)))
    results = []
    with tempfile.TemporaryDirectory(prefix="eventlog-bench-resume-") as tmp:
        path = Path(tmp) / "resume.db"
        conn = raw_connection(path)
        try:
            rows = 0
            for size in sorted(sizes):
                grow(conn, rows, size, runs)
                rows = size
                picks = cursors(conn, runs, samples, seed=size)
                times = await time_reads(path, picks)
                raw = time_raw(conn, picks)
                results.append(ResumeResult(
                    rows=size, p50=percentile(times, 50), p99=percentile(times, 99),
                    raw_p50=percentile(raw, 50), raw_p99=percentile(raw, 99), samples=len(times),
                ))
        finally:
            conn.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="log sizes in rows")
    parser.add_argument("--runs", type=int, default=None, help="runs the rows are spread over (default: see measure)")
    parser.add_argument("--samples", type=int, default=300, help="reads per size")
    args = parser.parse_args()
    for r in asyncio.run(measure(args.sizes, args.runs, args.samples)):
        print(f"{r.rows:>10,} rows: EventLog.read p50 {r.p50 * 1e6:7.0f} us  p99 {r.p99 * 1e6:7.0f} us   "
              f"bare sqlite3 p50 {r.raw_p50 * 1e6:6.0f} us  p99 {r.raw_p99 * 1e6:6.0f} us  (n={r.samples})")


if __name__ == "__main__":
    main()
