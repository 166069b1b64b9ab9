"""The lock-wait deadline: a peer process holding the write lock makes writes fail with
DatabaseBusy (nothing written) instead of blocking them, and ``close``, forever."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventlog import DatabaseBusy, EventLog, InvalidInput, RetentionPolicy
from tests.helpers.hold_lock import LockHolder


@pytest.fixture
def hold_lock() -> Iterator[Callable[[Path], LockHolder]]:
    holders: list[LockHolder] = []

    def _hold(db: Path) -> LockHolder:
        holders.append(LockHolder(db))
        return holders[-1]

    yield _hold
    for holder in holders:
        holder.release()


async def test_busy_append_fails_typed_and_an_idempotent_retry_succeeds_once(
    open_log, db_path: Path, hold_lock, check_integrity
) -> None:
    log = await open_log(lock_timeout=0.3)
    await log.append("run", "x", 0)
    peer = hold_lock(db_path)

    with pytest.raises(DatabaseBusy) as caught:
        await asyncio.wait_for(log.append("run", "x", 1, idempotency_key="req-1"), 30)
    assert caught.value.code == "database_busy"
    # A whole group-committed batch fails the same way, every caller settled.
    batch = await asyncio.wait_for(
        asyncio.gather(*(log.append("run", "x", n) for n in range(2, 6)), return_exceptions=True), 30
    )
    assert all(isinstance(outcome, DatabaseBusy) for outcome in batch), batch

    peer.release()
    ids = await asyncio.wait_for(log.append_many("run", [("x", 1)], idempotency_key="req-1"), 30)
    assert await log.append_many("run", [("x", 1)], idempotency_key="req-1") == ids
    assert [e.data for e in await log.read("run")] == [0, 1], "nothing half-written, written once"
    assert check_integrity(db_path) == "ok"


async def test_close_is_bounded_by_the_deadline_behind_a_peer(db_path: Path, hold_lock) -> None:
    log = await EventLog.open(db_path, lock_timeout=0.3)
    await log.append("run", "x", 0)
    peer = hold_lock(db_path)
    pending = asyncio.ensure_future(log.append("run", "x", 1))
    await asyncio.sleep(0)  # submitted: close must wait for it, and it must give up
    await asyncio.wait_for(log.close(), 30)
    with pytest.raises(DatabaseBusy):
        await pending
    peer.release()
    async with EventLog.open(db_path) as reopened:
        assert [e.data for e in await reopened.read("run")] == [0]


async def test_janitor_behind_a_peer_counts_the_failure_and_recovers(open_log, db_path: Path, hold_lock) -> None:
    log = await open_log(lock_timeout=0.2, retention=RetentionPolicy(ended_ttl=0.3), retention_interval=0.05)
    await log.end("run", must_exist=False)
    peer = hold_lock(db_path)  # the run expires while the peer holds the lock: that pass fails

    async def until(done: Callable[[dict], bool]) -> None:
        while not done(await log.stats()):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(until(lambda s: s["background_failures"]["janitor"] >= 1), 30)
    assert await log.run("run") is not None
    peer.release()
    await asyncio.wait_for(until(lambda s: s["expired_runs"] == 1), 30)  # the janitor kept going
    assert await log.run("run") is None


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "30"])
async def test_lock_timeout_must_be_positive(db_path: Path, value: object) -> None:
    with pytest.raises(InvalidInput):
        EventLog.open(db_path, lock_timeout=value)  # type: ignore[arg-type]
