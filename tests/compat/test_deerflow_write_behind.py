"""Write-behind publishing (``durable_publish=False``) on a disk that fills up: the failed write
is never a silent loss, and nothing acknowledged durably (by a ``flush`` or ``publish_end`` that
returned) is lost. A real 4 MiB tmpfs is filled with ballast; nothing is mocked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventlog import DatabaseFull, EventLog
from eventlog.compat.deerflow import END_SENTINEL, PublishFailed, make_stream_bridge
from tests.disk import small_disk

BIG = "x" * 2000
"""A payload large enough that a few thousand queued events overflow the small disk."""


async def test_a_failed_write_is_raised_to_the_producer_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with small_disk(tmp_path / "small") as disk:
        assert disk.mounted, "the test needs to mount a tmpfs (run as root)"
        path = disk.root / "bridge.db"
        async with make_stream_bridge(path, durable_publish=False, max_events_per_run=100_000) as bridge:
            for i in range(20):
                await bridge.publish("acked", "x", {"i": i})
            await bridge.flush()  # durably acknowledged from here on
            disk.take(leave=256 * 1024)

            with pytest.raises(PublishFailed) as raised:
                for i in range(100_000):  # max_pending (10,000) fills one write the disk cannot take
                    await bridge.publish("run", "x", {"i": i, "p": BIG})
            assert raised.value.run_id == "run"
            assert isinstance(raised.value.__cause__, DatabaseFull)
            with pytest.raises(PublishFailed):
                await bridge.flush()
            await bridge.publish("other", "x", {"fine": True})  # other runs go on

            disk.give_back()
            with pytest.raises(PublishFailed):
                await bridge.publish("run", "x", {"i": -1})
            with pytest.raises(PublishFailed):
                await bridge.publish_end("run")  # ...which still ends it: subscribers stop
            await bridge.cleanup("run")  # forgets the failure
            await bridge.flush()

        async with EventLog.open(path) as log:
            assert [e.data["i"] for e in await log.read("acked")] == list(range(20))
            assert [e.data for e in await log.read("other")] == [{"fine": True}]
            assert await log.run("run") is None


async def test_publish_end_of_a_failed_run_ends_it_for_its_subscribers(tmp_path: Path) -> None:
    with small_disk(tmp_path / "small") as disk:
        assert disk.mounted, "the test needs to mount a tmpfs (run as root)"
        async with make_stream_bridge(disk.root / "bridge.db", durable_publish=False) as bridge:
            await bridge.publish("run", "x", {"i": 0})
            await bridge.flush()
            ended = asyncio.ensure_future(_last_item(bridge.subscribe("run", heartbeat_interval=60)))
            disk.take(leave=256 * 1024)
            with pytest.raises(PublishFailed):
                for i in range(100_000):
                    await bridge.publish("run", "x", {"i": i, "p": BIG})
            disk.give_back()
            with pytest.raises(PublishFailed):
                await bridge.publish_end("run")
            assert await asyncio.wait_for(ended, 30) is END_SENTINEL


async def _last_item(subscription: AsyncIterator[Any]) -> Any:
    last = None
    async for item in subscription:
        last = item
    return last
