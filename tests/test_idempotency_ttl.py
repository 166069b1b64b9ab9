"""Idempotency keys expire after ``RetentionPolicy.idempotency_ttl`` (default 24 h): the janitor
forgets older ones in bounded transactions; a retry after that appends anew."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from eventlog import RetentionPolicy
from tests.peer import peer_query

pytestmark = pytest.mark.backends

TTL = 3600.0


async def age_keys(database: Path | str, keys: list[str], seconds: float) -> None:
    """Make keys older, through a connection of another "process" (a peer writing the log)."""
    marks = ", ".join("?" * len(keys))
    await peer_query(database, f"UPDATE idempotency_keys SET created_at = created_at - ? WHERE key IN ({marks})", seconds, *keys)


def later() -> float:
    """A clock half a TTL ahead, for the pass under test. Keys are aged by less than a TTL
    (``AGED``), so the log's own background janitor, on the real clock, never expires them
    first; only the pass at ``later()`` sees them past their TTL. (Aging them past the TTL raced
    with the janitor's first pass, which also expires keys, and failed in CI.)"""
    return time.time() + TTL / 2


AGED = 0.75 * TTL


def test_the_default_ttl_is_a_day() -> None:
    assert RetentionPolicy().idempotency_ttl == 86400


async def test_an_expired_key_is_forgotten_and_its_retry_appends_anew(database: Path | str, open_log) -> None:
    log = await open_log(retention=RetentionPolicy(idempotency_ttl=TTL))
    old = await log.append_many("run", [("x", 1)], idempotency_key="old")
    fresh = await log.append_many("run", [("x", 2)], idempotency_key="fresh")
    await age_keys(database, ["old"], AGED)

    report = await log.apply_retention(later())
    assert report.expired_idempotency_keys == 1
    assert await log.append_many("run", [("x", 2)], idempotency_key="fresh") == fresh  # kept: same ids
    again = await log.append_many("run", [("x", 1)], idempotency_key="old")  # forgotten: new ids
    assert again != old and again[0] > fresh[0]
    assert [e.data for e in await log.read("run")] == [1, 2, 1]
    # The retry stored the key anew: a second retry is again idempotent.
    assert await log.append_many("run", [("x", 1)], idempotency_key="old") == again
    assert (await log.apply_retention()).expired_idempotency_keys == 0


async def test_expiry_goes_in_bounded_batches(database: Path | str, open_log) -> None:
    log = await open_log(retention=RetentionPolicy(idempotency_ttl=TTL))
    keys = [f"k{i}" for i in range(1234)]  # more than two of the janitor's 500-row batches
    await asyncio.gather(*(log.append("run", "x", i, idempotency_key=k) for i, k in enumerate(keys)))
    await log.append("run", "x", "kept", idempotency_key="young")
    await age_keys(database, keys, AGED)
    assert (await log.apply_retention(later())).expired_idempotency_keys == len(keys)
    assert await peer_query(database, "SELECT key FROM idempotency_keys") == [("young",)]


@pytest.mark.sqlite_only  # the query plan is SQLite's (PostgreSQL's migration has the same index)
async def test_expiry_uses_the_index_by_age(db_path: Path) -> None:
    from eventlog import EventLog

    async with EventLog.open(db_path):
        pass
    conn = sqlite3.connect(db_path)
    try:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT run_id, key FROM idempotency_keys WHERE created_at < 1 ORDER BY created_at LIMIT 5"
        ).fetchall()
        assert any("idempotency_keys_by_age" in row[-1] for row in plan), plan
    finally:
        conn.close()


async def test_no_ttl_keeps_keys(database: Path | str, open_log) -> None:
    log = await open_log(retention=RetentionPolicy(idempotency_ttl=None))
    ids = await log.append("run", "x", 1, idempotency_key="k")
    await age_keys(database, ["k"], 10 * 86400)
    assert (await log.apply_retention()).expired_idempotency_keys == 0
    assert await log.append("run", "x", 1, idempotency_key="k") == ids


async def test_the_background_janitor_expires_keys(database: Path | str, open_log) -> None:
    # The janitor looks for expired keys every 1% of their TTL (at most every minute).
    log = await open_log(retention=RetentionPolicy(idempotency_ttl=10.0), retention_interval=0.05)
    first = await log.append("run", "x", 1, idempotency_key="k")
    await age_keys(database, ["k"], 20.0)
    deadline = asyncio.get_running_loop().time() + 30
    while (ids := await log.append("run", "x", 1, idempotency_key="k")) == first:
        assert asyncio.get_running_loop().time() < deadline, "the janitor did not expire the key"
        await asyncio.sleep(0.05)
    assert ids != first


def test_the_server_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from eventlog.http.settings import Settings

    assert Settings().retention.idempotency_ttl == 86400
    monkeypatch.setenv("EVENTLOG_IDEMPOTENCY_TTL", "90")
    settings = Settings()
    assert settings.retention.idempotency_ttl == 90
    assert settings.to_env()["EVENTLOG_IDEMPOTENCY_TTL"] == "90.0"  # handed to every worker
