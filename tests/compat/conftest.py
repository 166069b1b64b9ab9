"""Fixtures of the stream-bridge conformance suite: real files in ``tmp_path``, nothing mocked.

- ``bridge_path``: the database file (or, in a ``backends`` module, PostgreSQL database) the
  bridges of a test share.
- ``make_bridge``: ``await make_bridge(**options)`` opens a ``SQLiteStreamBridge`` on
  ``bridge_path`` (small retention by default); closed at teardown.
  Every test using it runs twice: publishes acknowledged once committed (the default) and once
  queued for the next group commit (``durable_publish=False``); the contract holds in both.
- ``bridge``: one such bridge with the defaults.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from eventlog.compat.deerflow import SQLiteStreamBridge

MAX_EVENTS = 8
"""``max_events_per_run`` of the suite's bridges: small, so trimming is easy to provoke."""


@pytest.fixture
def bridge_path(database: Path | str) -> Path | str:
    return database


@pytest.fixture(params=["queued-ack", "durable-ack"])
def durable_publish(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "durable-ack")


@pytest.fixture
async def make_bridge(
    bridge_path: Path, durable_publish: bool
) -> AsyncIterator[Callable[..., Awaitable[SQLiteStreamBridge]]]:
    opened: list[SQLiteStreamBridge] = []

    async def _make(**options: Any) -> SQLiteStreamBridge:
        options.setdefault("max_events_per_run", MAX_EVENTS)
        options.setdefault("durable_publish", durable_publish)
        bridge = SQLiteStreamBridge(options.pop("path", bridge_path), **options)
        opened.append(bridge)
        return await bridge.open()

    try:
        yield _make
    finally:
        for bridge in reversed(opened):
            await bridge.close()


@pytest.fixture
async def bridge(make_bridge: Callable[..., Awaitable[SQLiteStreamBridge]]) -> SQLiteStreamBridge:
    return await make_bridge()
