"""The baseline: an in-memory, bounded-log stream bridge written from the gateways' contract.

This is the bridge agent gateways ship by default (see ../../../shared/README.md, "The bridge
contract such gateways use"), rebuilt here so benchmarks/bridge.py can measure eventlog's
``SQLiteStreamBridge`` against it in the same process and run:

- one bounded log per run (a ``deque`` of ``queue_maxsize`` events, default 256): publishing
  appends and silently drops the oldest event once full; it never waits for consumers;
- event ids ``"<ms timestamp>-<per-run seq>"``, where ``seq`` is the event's absolute offset in
  the run, so a cursor is located by arithmetic;
- one ``asyncio.Condition`` per run wakes its subscribers;
- ``subscribe`` replays after ``last_event_id`` then tails; heartbeat when idle; END once ended and
  caught up; a gap item then stop when the cursor (or a slow subscriber) fell out of the buffer;
  a malformed or unknown cursor replays from the earliest retained event;
- ``cleanup(run_id, delay=...)`` drops the run after ``delay`` seconds.

It shares the item classes and sentinels with ``eventlog.compat.deerflow`` so both bridges hand
the benchmark the same objects. Nothing survives the process; ``supports_cross_process`` is False.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from eventlog.compat.deerflow import END_SENTINEL, HEARTBEAT_SENTINEL, StreamEvent, StreamGap

_ID = re.compile(r"(\d+)-(\d+)")


class _Run:
    __slots__ = ("events", "condition", "next_seq", "ended")

    def __init__(self, maxsize: int) -> None:
        self.events: deque[Any] = deque(maxlen=maxsize)
        self.condition = asyncio.Condition()
        self.next_seq = 0  # seq of the next event; the oldest retained is next_seq - len(events)
        self.ended = False

    @property
    def first_seq(self) -> int:
        return self.next_seq - len(self.events)

    def gap(self, requested: str | None) -> Any:
        return StreamGap(
            requested_event_id=requested,
            earliest_available_event_id=self.events[0].id if self.events else None,
            latest_available_event_id=self.events[-1].id if self.events else None,
        )


class MemoryStreamBridge:
    supports_cross_process = False

    def __init__(self, *, queue_maxsize: int = 256) -> None:
        if queue_maxsize < 1:
            raise ValueError("queue_maxsize must be positive")
        self._maxsize = queue_maxsize
        self._runs: dict[str, _Run] = {}

    def _run(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _Run(self._maxsize)
        return run

    async def publish(self, run_id: str, event: str, data: Any) -> None:
        run = self._run(run_id)
        seq = run.next_seq
        run.next_seq = seq + 1
        run.events.append(StreamEvent(id=f"{int(time.time() * 1000)}-{seq}", event=event, data=data))
        async with run.condition:
            run.condition.notify_all()

    async def publish_end(self, run_id: str) -> None:
        run = self._run(run_id)
        run.ended = True
        async with run.condition:
            run.condition.notify_all()

    def _start(self, run: _Run, last_event_id: str | None) -> int | Any:
        """The seq to deliver first, or a gap item."""
        if last_event_id is None:
            return run.first_seq
        match = _ID.fullmatch(last_event_id) if isinstance(last_event_id, str) else None
        if match is not None:
            seq = int(match.group(2))
            if run.events and seq < run.first_seq:
                return run.gap(last_event_id)  # trimmed (or unverifiable): reload durable state
            index = seq - run.first_seq
            if 0 <= index < len(run.events) and run.events[index].id == last_event_id:
                return seq + 1
        return run.first_seq  # malformed or unknown: replay from the earliest retained

    async def subscribe(
        self,
        run_id: str,
        *,
        last_event_id: str | None = None,
        heartbeat_interval: float = 15.0,
    ) -> AsyncIterator[Any]:
        run = self._run(run_id)
        start = self._start(run, last_event_id)
        if not isinstance(start, int):
            yield start
            return
        next_seq, cursor = start, last_event_id
        while True:
            if next_seq < run.first_seq:
                yield run.gap(cursor)  # this subscriber fell behind the buffer
                return
            if next_seq < run.next_seq:
                item = run.events[next_seq - run.first_seq]
                next_seq += 1
                cursor = item.id
                yield item
                continue
            if run.ended:
                yield END_SENTINEL
                return
            idle = False
            async with run.condition:
                if next_seq >= run.next_seq and not run.ended:  # nothing arrived since the check
                    try:
                        await asyncio.wait_for(run.condition.wait(), timeout=heartbeat_interval)
                    except TimeoutError:
                        idle = True
            if idle:  # yielded outside the lock: a consumer never holds up publishers
                yield HEARTBEAT_SENTINEL

    async def stream_exists(self, run_id: str) -> bool:
        return run_id in self._runs

    async def cleanup(self, run_id: str, *, delay: float = 0) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        self._runs.pop(run_id, None)

    async def close(self) -> None:
        self._runs.clear()
