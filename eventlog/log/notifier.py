"""Wakes the subscribers of a run when rows for it are committed, and shares what was committed.

Each run with subscribers in this process has a ``RunChannel``. Its ``version`` goes up at every
change; a subscriber notes the version *before* it reads, and after a read that found nothing it
waits only if the version is still the one it noted. The check and the registration happen on the
event loop with no ``await`` between them, so a commit can never slip in unseen (no lost wake-up).

The channel also keeps a short *live tail*: the newest committed events of the run, known to be
complete from ``floor`` upwards. Subscribers at the live edge take their events from it instead
of each querying the file; only readers behind the tail read from storage, at their own pace.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Callable, Iterable

from eventlog.models import END_EVENT, End, Event, RunInfo
from eventlog.storage.base import Committed, Storage
from eventlog.supervision import Supervisor, keep_running


class RunChannel:
    """Live state of one run shared by its subscribers in this process."""

    def __init__(self, run_id: str, tail_size: int) -> None:
        self.run_id = run_id
        self.version = 0
        self.subscribers = 0
        self._waiters: list[asyncio.Future[bool]] = []
        self._tail: list[Event] = []
        self._ids: list[int] = []
        """The ids of ``_tail``, for a bisect in C (no key function per step)."""
        self._tail_size = tail_size
        self.floor: int | None = None
        """The tail holds every event of the run with ``floor < id``; None: unknown yet."""
        self.end: End | None = None
        """The run's end marker, once the channel has seen it."""

    @property
    def newest(self) -> int | None:
        return self._tail[-1].id if self._tail else self.floor

    def events_after(self, cursor: int) -> list[Event] | None:
        """The run's events after ``cursor`` from the live tail; None when the tail does not
        reach back that far and the reader must go to storage."""
        if self.floor is None or cursor < self.floor:
            return None
        return self._tail[bisect.bisect_right(self._ids, cursor) :]

    def extend(self, previous_last_id: int, events: Iterable[Event]) -> None:
        """Add committed events that directly follow ``previous_last_id`` in this run."""
        events = list(events)
        newest = self.newest
        if newest is None or previous_last_id > newest:
            # Events between what we hold and these are unknown here: restart the tail.
            self._tail, self._ids, self.floor = [], [], previous_last_id
            newest = previous_last_id
        for event in events:
            if event.id > newest:
                self._tail.append(event)
                self._ids.append(event.id)
                if event.event == END_EVENT:
                    self.end = End(event.id, event.data.get("reason"))
        if len(self._tail) > 2 * self._tail_size:
            drop = len(self._tail) - self._tail_size
            self.floor = self._tail[drop - 1].id
            del self._tail[:drop]
            del self._ids[:drop]

    def seed(self, run: RunInfo) -> None:
        """Start an empty tail after the run's newest event, as read from storage, unless
        commits have started it meanwhile."""
        if self.floor is None:
            self.floor = run.last_id
            if run.end_id is not None:
                self.end = End(run.end_id, run.end_reason)

    def forget(self) -> None:
        """The run was deleted: nothing cached about it is true any more."""
        self._tail, self._ids, self.floor, self.end = [], [], None, None

    def wake(self) -> None:
        self.version += 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    async def wait(self, version: int, timeout: float | None) -> bool:
        """Wait for a change after ``version``; False when ``timeout`` passed without one.

        Every subscriber at the live edge comes here once per wake-up, so it is kept lean: a
        bare future and a loop timer (``asyncio.timeout`` costs several times more per call)."""
        if self.version != version:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            woken = await waiter
        except BaseException:  # cancelled from outside, e.g. the client went away
            waiter.cancel()
            self._discard(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not woken:
            self._discard(waiter)
        return woken

    def _discard(self, waiter: asyncio.Future[bool]) -> None:
        with contextlib.suppress(ValueError):  # a wake-up may have taken the list already
            self._waiters.remove(waiter)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class Notifier:
    """Routes commits (from this process' writer, and hints from other processes) to channels."""

    def __init__(
        self,
        storage: Storage,
        *,
        tail_size: int = 1024,
        cross_process: bool = True,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._storage = storage
        self._supervisor = supervisor or Supervisor()
        self._tail_size = tail_size
        self._channels: dict[str, RunChannel] = {}
        self._cross_process = cross_process
        self._follower: asyncio.Task[None] | None = None
        self._watching = asyncio.Event()
        self.closed = False
        """Set by ``close``: subscriptions stop (with LogClosed) at their next step."""
        self.fault: Exception | None = None
        """What made the storage unusable (a corrupt file), once it has: subscriptions stop with
        it at their next step, those idle at the live edge included, instead of a heartbeat later."""
        self.wakeups = 0
        storage.add_commit_listener(self.on_commit)
        storage.add_fault_listener(self.on_fault)

    def attach(self, run_id: str) -> RunChannel:
        channel = self._channels.get(run_id)
        if channel is None:
            channel = self._channels[run_id] = RunChannel(run_id, self._tail_size)
        channel.subscribers += 1
        if self._cross_process and self._follower is None and not self.closed:
            self._follower = asyncio.get_running_loop().create_task(self._follow_other_processes())
        return channel

    async def watching(self) -> None:
        """Return once commits of other processes will be noticed. A subscriber waits for this
        before its first read, so a commit landing between that read and the start of the
        change feed cannot go unannounced."""
        if self._follower is not None and not self._follower.done():
            await self._watching.wait()

    def detach(self, channel: RunChannel) -> None:
        channel.subscribers -= 1
        if channel.subscribers == 0 and self._channels.get(channel.run_id) is channel:
            del self._channels[channel.run_id]

    @property
    def channels(self) -> int:
        return len(self._channels)

    def on_commit(self, committed: list[Committed]) -> None:
        """Called on the loop after each local commit, in commit order."""
        for change in committed:
            channel = self._channels.get(change.run_id)
            if channel is not None:
                channel.extend(change.previous_last_id, change.events)
                self._wake(channel)

    def on_fault(self, error: Exception) -> None:
        """The storage has become unusable (and said so): stop following it, stop everyone."""
        self.fault = error
        if self._follower is not None:
            self._follower.cancel()
        self._wake_all()

    def on_deleted(self, run_id: str) -> None:
        channel = self._channels.get(run_id)
        if channel is not None:
            channel.forget()
            self._wake(channel)

    def _wake(self, channel: RunChannel) -> None:
        self.wakeups += channel.subscribers
        channel.wake()

    async def _follow_other_processes(self) -> None:
        """Turn the storage's change feed into wake-ups, for the life of the notifier.

        Needed for correctness (without it, another process' commits reach subscribers only at
        their next heartbeat), so a failure of the feed, or of this loop, is reported once per
        streak and the follower starts a new feed after a back-off."""
        await keep_running(self._supervisor, "follower", self._follow)

    async def _follow(self, healthy: Callable[[], None]) -> None:
        """One change feed, until it fails. For a run whose tail is known, fetch the new events
        once here, so that its many subscribers need not each query the file."""
        restarted = self._watching.is_set()  # a feed ran before: commits since it died are unannounced
        first = True
        try:
            async with contextlib.aclosing(self._storage.changes()) as changes:
                async for changed in changes:
                    if first:  # watching from here on
                        first = False
                        self._watching.set()
                        healthy()
                        if restarted:  # look at every run: any may have advanced unseen
                            changed = [(channel.run_id, 0) for channel in self._channels.values()]
                    await self._deliver(changed)
        finally:
            self._watching.set()  # nobody may wait for a feed that has stopped

    async def _deliver(self, changed: list[tuple[str, int]]) -> None:
        """Catch up and wake the channels of the runs other processes advanced (``last_id`` 0:
        they may have), and every channel still waiting for its run to appear."""
        for run_id, last_id in changed:
            channel = self._channels.get(run_id)
            if channel is None or (last_id and channel.newest is not None and channel.newest >= last_id):
                continue
            await self._catch_up(channel)
            self._wake(channel)
        for channel in list(self._channels.values()):
            if channel.floor is None:  # e.g. waiting for a run to be created
                self._wake(channel)

    async def _catch_up(self, channel: RunChannel) -> None:
        """Read what other processes committed after the tail, until the tail is complete."""
        while (newest := channel.newest) is not None:
            page = await self._storage.read(channel.run_id, after=newest, limit=self._tail_size)
            if page.run is None:
                channel.forget()
                return
            channel.extend(newest, page.events)
            if len(page.events) < self._tail_size:
                return

    async def close(self) -> None:
        """Stop the change feed and wake every subscriber, so that none waits on a closed log.
        Idempotent: a second call waits for the same follower to end."""
        self.closed = True
        follower = self._follower
        if follower is not None:
            follower.cancel()
            await asyncio.wait([follower])
            self._follower = None
        self._wake_all()

    def _wake_all(self) -> None:
        for channel in list(self._channels.values()):
            channel.wake()
