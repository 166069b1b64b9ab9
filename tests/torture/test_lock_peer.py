"""A peer holding the write lock for longer than the deadline (``EventLog.open(lock_timeout=)``,
``EVENTLOG_LOCK_TIMEOUT``): a real peer process holds ``BEGIN IMMEDIATE`` on the file while
producers append with idempotency keys. Every append fails with ``DatabaseBusy`` (HTTP 503
``database_busy`` with ``Retry-After``) once the deadline passes, instead of waiting forever;
nothing is half-written; after the peer lets go, each retry with the same key is written
exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx

from eventlog import DatabaseBusy, EventLog
from tests.helpers.hold_lock import LockHolder
from tests.http.server import ServerProcess
from tests.torture.figures import Figures
from tests.torture.producer import error_kind, post_acknowledged
from tests.torture.waits import wait_until

LOCK_TIMEOUT = 0.5  # seconds; the peer holds the lock until every producer was refused
PRODUCERS = 6
DEADLINE = 60.0


@contextlib.contextmanager
def lock_held(db: Path) -> Iterator[Callable[[], None]]:
    """A peer process holding the file's write lock; the block gets its ``release()``."""
    peer = LockHolder(db)
    try:
        yield peer.release
    finally:
        peer.release()


async def through_a_held_lock(hold: Callable, produce: Callable[[int], Awaitable[list[int]]],
                              refusals: Callable[[], int], figures: Figures) -> dict[int, list[int]]:
    """Producers append while the peer holds the lock, which it lets go once every producer was
    refused; returns each producer's acknowledged ids."""
    acked: dict[int, list[int]] = {}

    async def one(p: int) -> None:
        acked[p] = await produce(p)

    with hold() as release:
        before = refusals()
        producers = [asyncio.create_task(one(p)) for p in range(PRODUCERS)]
        await wait_until(lambda: refusals() - before >= PRODUCERS, DEADLINE)
        assert not acked, "an append got through while the peer held the lock"
        await asyncio.to_thread(release)
        figures.faults += 1
        await asyncio.wait_for(asyncio.gather(*producers), DEADLINE)
    return acked


def batch(p: int) -> list[tuple[str, dict]]:
    return [("updates", {"p": p, "k": k}) for k in range(3)]


def verify(stored: list[tuple[int, dict]], acked: dict[int, list[int]], figures: Figures) -> None:
    """Each producer's batch is in the file once, whole (nothing half-written), under its ids."""
    figures.acknowledged += sum(len(ids) for ids in acked.values())
    figures.tally([eid for ids in acked.values() for eid in ids], [eid for eid, _ in stored])
    by_id = dict(stored)
    for p, ids in acked.items():
        assert [by_id.get(eid) for eid in ids] == [data for _, data in batch(p)]
    assert len(stored) == 3 * len(acked)


async def test_lock_held_past_the_deadline(tmp_path: Path, scale: int, figures: Figures) -> None:
    """``scale`` holds through the library, then ``scale`` through a server."""
    db = tmp_path / "busy.db"
    hold = functools.partial(lock_held, db)

    async with EventLog.open(db, lock_timeout=LOCK_TIMEOUT) as log:
        for r in range(scale):
            run = f"library-{r}"

            async def append(p: int) -> list[int]:
                while True:
                    figures.operations += 1
                    try:
                        return await log.append_many(run, batch(p), idempotency_key=f"p{p}")
                    except DatabaseBusy as exc:
                        figures.error(exc.code)
                        await asyncio.sleep(0.05)

            acked = await through_a_held_lock(hold, append, lambda: figures.errors["database_busy"], figures)
            verify([(e.id, e.data) for e in await log.read(run)], acked, figures)
            for p, ids in acked.items():  # the same keys again, the lock free: same ids, nothing new
                assert await log.append_many(run, batch(p), idempotency_key=f"p{p}") == ids
            assert len(await log.read(run)) == 3 * PRODUCERS

    server = ServerProcess(db, env={"EVENTLOG_LOCK_TIMEOUT": str(LOCK_TIMEOUT)}).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for r in range(scale):
                url = f"/runs/http-{r}/events"
                with hold():
                    figures.operations += 1
                    refusal = await http.post(url, json={"event": "updates", "data": {"p": -1, "k": 0}})
                    figures.error(error_kind(refusal))
                    assert refusal.status_code == 503 and refusal.json()["error"]["code"] == "database_busy", refusal.text
                    assert refusal.headers["retry-after"].isdigit(), refusal.headers

                async def post(p: int) -> list[int]:
                    body = {"events": [{"event": e, "data": d} for e, d in batch(p)]}
                    return (await post_acknowledged(http, url, body, f"p{p}", figures, deadline=DEADLINE))["ids"]

                acked = await through_a_held_lock(hold, post, lambda: figures.errors["HTTP 503 database_busy"], figures)
                events = (await http.get(url)).json()["events"]
                verify([(e["id"], e["data"]) for e in events], acked, figures)
    finally:
        server.kill()
    figures.check()
