"""Disk full and recovery, on a real 4 MB filesystem: appends of 2 KB events run until the disk
is full, which must be a typed ``DatabaseFull`` (HTTP 507 with a JSON body through a server),
never a hang or a half-written batch; once space is freed, the refused append, repeated with its
idempotency key, is written once and appends resume. No acknowledged event is lost and the file
passes ``PRAGMA integrity_check``. (That freed space is usable at once, the WAL truncated, is
tests/test_disk_full.py's on branch faults; here, the rounds of ``make torture`` fail on a log
that keeps the disk it was given back.)"""

from __future__ import annotations

from pathlib import Path

import httpx

from eventlog import DatabaseFull, EventLog
from tests.conftest import integrity_check
from tests.http.server import ServerProcess
from tests.disk import SmallDisk, small_disk
from tests.torture.figures import Figures
from tests.torture.producer import error_kind, post_acknowledged

PAD = "x" * 2000
LEAVE = 512 * 1024  # free bytes the ballast leaves for the log to fill
RESUME = 10  # appends that must succeed after the space came back
MAX_APPENDS = 10_000  # a disk that never fills is a failure, not an endless loop


def event(n: int) -> dict:
    return {"n": n, "pad": PAD}


async def verify_run(log: EventLog, run: str, acked: dict[int, list[int]], figures: Figures) -> None:
    """The run holds exactly the acknowledged events, in the order they were made."""
    stored = await log.read(run, limit=10_000)
    figures.tally([eid for ids in acked.values() for eid in ids], [e.id for e in stored])
    assert [e.data["n"] for e in stored] == sorted(acked)
    assert [e.id for e in stored] == [eid for _, ids in sorted(acked.items()) for eid in ids]


async def fill(log: EventLog, run: str, acked: dict[int, list[int]], figures: Figures) -> int:
    """Append until the disk is full, noting each acknowledged id in ``acked`` (by event
    number); returns how many appends fit."""
    start = len(acked)
    for n in range(start, start + MAX_APPENDS):
        figures.operations += 1
        try:
            acked[n] = [await log.append(run, "updates", event(n), idempotency_key=f"n{n}")]
        except DatabaseFull:
            figures.error("DatabaseFull")
            return n - start
    raise AssertionError("the disk never filled")


async def library_round(disk: SmallDisk, db: Path, run: str, close_while_full: bool, figures: Figures) -> None:
    """Fill, refuse, free, resume, on a fresh file (deleting a big run to make room would need
    as much free space again for the WAL)."""
    acked: dict[int, list[int]] = {}
    log = await EventLog.open(db, **disk.log_options)
    try:
        disk.take(leave=LEAVE)
        n = await fill(log, run, acked, figures)
        figures.faults += 1
        if close_while_full:
            await log.close()  # on a full disk: must not hang or lose anything
        if disk.give_back() or close_while_full:  # the fallback's page cap is read at open
            await log.close()  # (a no-op when already closed)
            log = await EventLog.open(db, **disk.log_options)
        for n in range(n, n + RESUME):
            figures.operations += 1
            acked[n] = [await log.append(run, "updates", event(n), idempotency_key=f"n{n}")]
        figures.acknowledged += len(acked)
        await verify_run(log, run, acked, figures)
    finally:
        await log.close()
    assert integrity_check(db) == "ok"
    figures.check()


async def http_round(disk: SmallDisk, db: Path, log_path: Path, figures: Figures) -> None:
    """The same through a server: 507 with ``database_full`` in JSON, then exactly once."""
    run, acked, n = "over-http", {}, 0
    server = ServerProcess(db, log_path=log_path).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            disk.take(leave=LEAVE)
            while True:
                assert n < MAX_APPENDS, "the disk never filled"
                figures.operations += 1
                body = {"event": "updates", "data": event(n)}
                response = await http.post(f"/runs/{run}/events", json=body, headers={"Idempotency-Key": f"n{n}"})
                if not response.is_success:
                    figures.error(error_kind(response))
                    assert response.status_code == 507 and response.json()["error"]["code"] == "database_full", response.text
                    break
                acked[n] = response.json()["ids"]
                n += 1
            figures.faults += 1
            disk.give_back()
            for n in range(n, n + RESUME):
                answer = await post_acknowledged(http, f"/runs/{run}/events", {"event": "updates", "data": event(n)}, f"n{n}", figures)
                acked[n] = answer["ids"]
    finally:
        server.kill()
    figures.acknowledged += len(acked)
    async with EventLog.open(db, **disk.log_options) as log:
        await verify_run(log, run, acked, figures)


async def test_disk_full_and_recovery(tmp_path: Path, scale: int, figures: Figures) -> None:
    """``2 x scale`` rounds through the library (every other one closing the log while the disk
    is full), then one through a server (on tmpfs)."""
    with small_disk(tmp_path / "disk") as disk:
        figures.note("tmpfs of 4 MB" if disk.mounted else f"mount failed: fell back to max_page_count={disk.page_cap}")
        for r in range(2 * scale):
            db = disk.root / f"round-{r}.db"
            await library_round(disk, db, f"round-{r}", r % 2 == 1, figures)
            for path in disk.root.glob(f"{db.name}*"):
                path.unlink()  # the next round has the whole disk
        if disk.mounted:
            db = disk.root / "http.db"
            await http_round(disk, db, tmp_path / "server.log", figures)
            assert integrity_check(db) == "ok"
        else:
            figures.note("no HTTP round: the server takes no page cap")
    figures.check()
