"""Subscriptions: replay a run from a cursor, then tail it live, with heartbeats, gaps and end."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator
from typing import Literal

from eventlog.errors import LogClosed, RunNotFound
from eventlog.log.notifier import Notifier
from eventlog.models import END_EVENT, HEARTBEAT, End, Event, Gap, Heartbeat
from eventlog.storage.base import Storage

Item = Event | Heartbeat | Gap | End
OnGap = Literal["continue", "stop"]


async def subscribe_batches(
    storage: Storage,
    notifier: Notifier,
    run_id: str,
    *,
    after: int | None,
    heartbeat: float | None,
    on_gap: OnGap,
    wait_for_run: bool,
    page_size: int,
    live: bool = True,
) -> AsyncIterator[list[Item]]:
    """See ``EventLog.subscribe``; yields the items in lists of what is available at once, so
    a transport can write a burst of events in one go. ``live=False`` stops where the live
    tail would begin (nothing more committed right now) instead of waiting there: a transport
    that serves its live-edge readers from one shared subscription replays with it.

    The file is the source of truth: after every wake-up the subscriber reads from its cursor,
    from the channel's tail of committed events when that reaches back far enough, from
    storage otherwise."""
    channel = notifier.attach(run_id)
    try:
        await notifier.watching()
        cursor = after
        idle = False
        while True:
            if notifier.closed:
                raise LogClosed()
            if notifier.fault is not None:
                raise copy.copy(notifier.fault)  # each subscriber its own traceback
            version = channel.version  # noted before reading: see the notifier's docstring
            # After an idle heartbeat, read the file rather than trust the tail: a safety net
            # that bounds the cost of any missed wake-up to one heartbeat.
            events = channel.events_after(cursor) if cursor is not None and not idle else None
            idle = False
            end = channel.end
            if events is None:
                page = await storage.read(run_id, after=cursor or 0, limit=page_size)
                run = page.run
                if run is None:
                    if not wait_for_run:
                        raise RunNotFound(run_id)
                    if not live:
                        return
                    idle = not await channel.wait(version, heartbeat)
                    if idle:
                        yield [HEARTBEAT]
                    continue
                if cursor is not None and cursor < run.trimmed_through:
                    yield [Gap(requested=cursor, earliest=run.first_id, latest=run.last_id)]
                    if on_gap == "stop":
                        return
                    cursor = run.trimmed_through
                    continue
                # A cursor beyond the run's newest event tails live from there.
                cursor = min(cursor or 0, run.last_id)
                events = page.events
                end = End(run.end_id, run.end_reason) if run.end_id is not None else None
                # Seed the tail from this page only if nothing happened while it was read: a
                # wake-up meanwhile (another process' commit, say) may announce rows that the
                # page's snapshot predates, and a tail seeded from it would hide them for good.
                if len(events) < page_size and channel.version == version:
                    channel.seed(run)
            if events:
                batch: list[Item] = []
                for event in events:
                    if event.event == END_EVENT:
                        batch.append(End(event.id, event.data.get("reason")))
                        yield batch
                        return
                    batch.append(event)
                cursor = events[-1].id
                yield batch
                continue
            if end is not None and cursor >= end.id:
                yield [end]
                return
            if not live:
                return
            idle = not await channel.wait(version, heartbeat)
            if idle:
                yield [HEARTBEAT]
    finally:
        notifier.detach(channel)


async def flatten(batches: AsyncIterator[list[Item]]) -> AsyncIterator[Item]:
    """One item at a time; closing this closes the subscription at once (no waiting for GC)."""
    async with contextlib.aclosing(batches):  # type: ignore[type-var]
        async for batch in batches:
            for item in batch:
                yield item
