"""What the in-memory bridge cannot do: survive a restart (clean, or ``kill -9`` of the producer
after ``publish_end``), and serve several worker processes.

Plus the gateway integration point: with the gateway's own package importable, the bridge yields
the gateway's very item classes and sentinels. Each child is a real ``python`` process.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from eventlog.compat.deerflow import END_SENTINEL, HEARTBEAT_SENTINEL, SQLiteStreamBridge, make_stream_bridge

from .test_deerflow_bridge import drain, events, publish_n, take

pytestmark = pytest.mark.backends

CHILD_TIMEOUT = 60.0
"""Generous: a loaded CI machine may take seconds to start an interpreter."""

PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from eventlog.compat.deerflow import SQLiteStreamBridge

    async def main(path, run_id, count):
        bridge = SQLiteStreamBridge(path)
        try:
            for i in range(count):
                await bridge.publish(run_id, "updates", {"from": "child", "i": i})
            await bridge.publish_end(run_id)
        finally:
            await bridge.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def run_child(*args: str, env: dict[str, str] | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("the child process did not finish")
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_restart_survival_resumes_from_the_cursor(make_bridge: Any) -> None:
    before = await make_bridge()
    await publish_n(before, "run-1", 5)
    sub = before.subscribe("run-1")
    seen = events(await take(sub, 3))
    await sub.aclose()
    await before.close()  # the gateway goes down mid-run

    after = await make_bridge()  # ...and comes back on the same file
    assert await after.stream_exists("run-1")
    await publish_n(after, "run-1", 2, start=5)
    await after.publish_end("run-1")

    items = await drain(after.subscribe("run-1", last_event_id=seen[-1].id))

    assert items[-1] is END_SENTINEL
    assert [e.data["i"] for e in items[:-1]] == [3, 4, 5, 6]
    assert int(items[0].id) > int(seen[-1].id)


async def test_a_publish_in_another_process_wakes_a_subscriber(
    bridge: SQLiteStreamBridge, bridge_path: Path | str
) -> None:
    sub = bridge.subscribe("shared-run", heartbeat_interval=0.2)
    assert await take(sub, 1) == [HEARTBEAT_SENTINEL]  # subscribed and waiting, run not there yet

    child = asyncio.create_task(run_child("-c", PUBLISHER, str(bridge_path), "shared-run", "3"))
    items = [item for item in await drain(sub, timeout=CHILD_TIMEOUT) if item is not HEARTBEAT_SENTINEL]
    await child

    assert items[-1] is END_SENTINEL
    assert [e.data for e in items[:-1]] == [{"from": "child", "i": i} for i in range(3)]


KILLED_PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from eventlog.compat.deerflow import SQLiteStreamBridge

    async def main(path):
        bridge = SQLiteStreamBridge(path, durable_publish=False)  # write-behind: publish_end must still commit all before it
        for i in range(200):
            await bridge.publish("run-1", "messages", {"i": i})
        await bridge.publish_end("run-1")
        print("ended", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_kill_9_after_publish_end_loses_nothing_of_the_run(bridge_path: Path | str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_PUBLISHER, str(bridge_path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(CHILD_TIMEOUT):
            assert await proc.stdout.readline() == b"ended\n"
    finally:
        proc.kill()  # SIGKILL: no close(), no flush
        await proc.wait()

    async with make_stream_bridge(bridge_path) as bridge:
        items = await drain(bridge.subscribe("run-1"))
    assert items[-1] is END_SENTINEL
    assert [e.data["i"] for e in items[:-1]] == list(range(200))


GATEWAY_BASE = textwrap.dedent(
    '''
    """Stand-in for the gateway's deerflow.runtime.stream_bridge.base: the contract's types."""
    import abc
    from dataclasses import dataclass
    from typing import Any

    @dataclass(frozen=True)
    class StreamEvent:
        id: str
        event: str
        data: Any

    @dataclass(frozen=True)
    class StreamGap:
        requested_event_id: str | None
        earliest_available_event_id: str | None
        latest_available_event_id: str | None

    HEARTBEAT_SENTINEL = StreamEvent(id="", event="__heartbeat__", data=None)
    END_SENTINEL = StreamEvent(id="", event="__end__", data=None)

    class StreamBridge(abc.ABC):
        supports_cross_process: bool = False

        @abc.abstractmethod
        async def publish(self, run_id, event, data): ...

        @abc.abstractmethod
        async def publish_end(self, run_id): ...

        @abc.abstractmethod
        def subscribe(self, run_id, *, last_event_id=None, heartbeat_interval=15.0): ...

        @abc.abstractmethod
        async def cleanup(self, run_id, *, delay=0): ...

        async def close(self): ...
    '''
)

GATEWAY_CHECK = textwrap.dedent(
    """
    import asyncio, sys
    from deerflow.runtime.stream_bridge import base
    from eventlog.compat import deerflow as compat

    assert compat.StreamEvent is base.StreamEvent and compat.StreamGap is base.StreamGap
    assert compat.HEARTBEAT_SENTINEL is base.HEARTBEAT_SENTINEL
    assert compat.END_SENTINEL is base.END_SENTINEL

    async def main(path):
        async with compat.make_stream_bridge(path, max_events_per_run=2) as bridge:
            assert isinstance(bridge, base.StreamBridge) and bridge.supports_cross_process
            for i in range(4):
                await bridge.publish("run-1", "values", {"i": i})
            await bridge.apply_retention()
            sub = bridge.subscribe("run-1", heartbeat_interval=0.05)
            first, second, idle = [await anext(sub) for _ in range(3)]
            assert type(first) is base.StreamEvent and first.data == {"i": 2}, first
            assert idle is base.HEARTBEAT_SENTINEL, idle
            await sub.aclose()
            [gap] = [item async for item in bridge.subscribe("run-1", last_event_id="1")]
            assert type(gap) is base.StreamGap, gap
            await bridge.publish_end("run-1")
            items = [item async for item in bridge.subscribe("run-1", last_event_id=second.id)]
            assert items == [base.END_SENTINEL] and items[0] is base.END_SENTINEL, items
        print("gateway classes ok")

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_items_are_the_gateways_own_objects_when_it_is_installed(tmp_path: Path) -> None:
    package = tmp_path / "gateway" / "deerflow" / "runtime" / "stream_bridge"
    package.mkdir(parents=True)
    for directory in (package.parent.parent, package.parent):
        (directory / "__init__.py").write_text("")
    (package / "__init__.py").write_text(
        "from .base import END_SENTINEL, HEARTBEAT_SENTINEL, StreamBridge, StreamEvent, StreamGap\n"
    )
    (package / "base.py").write_text(GATEWAY_BASE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "gateway"), os.environ.get("PYTHONPATH", "")])}

    out = await run_child("-c", GATEWAY_CHECK, str(tmp_path / "gw.db"), env=env)

    assert "gateway classes ok" in out
    assert type(END_SENTINEL).__module__ == "eventlog.compat.deerflow"  # here: our own classes
