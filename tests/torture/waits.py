"""Waiting on a condition in a scenario: polled, bounded by a deadline that only guards against
a hang (the machines are shared and slow; no scenario asserts how long anything took)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], deadline: float = 60.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), deadline)
