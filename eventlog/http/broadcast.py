"""The live edge of SSE: one task per run writes each new chunk to every stream that has caught up.

A thousand clients at the live edge of a run would otherwise be a thousand tasks woken at every
commit, each reading the same tail, encoding the same frames and sending them. Here one
``RunBroadcast`` per run holds a single subscription (``EventLog.stream``), encodes each
wake-up's items once (a ``Live``) and hands them to its members in turn; a member writes the
shared bytes to its connection without a task switch (``stream.py``). A member that cannot take
a chunk at once (a slow client, its socket buffer full) leaves and catches up from the file at
its own pace, then joins again: slow readers cost no memory and hold nobody up.

The broadcast starts when the first stream of a run reaches the live edge and stops when the
last one leaves, so an idle process holds none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from eventlog import End, Event, EventLog, Gap, LogClosed, StorageError
from eventlog.http.sse import encode_batch, error_frame
from eventlog.log.subscription import Item

logger = logging.getLogger("eventlog.http")


@dataclass(frozen=True, slots=True)
class Live:
    """One wake-up's items for the members of a broadcast, encoded once."""

    items: list[Item]
    chunk: bytes
    first: int
    """Id of the first event (0: none)."""
    last: int
    """Id of the last event (0: none)."""
    final: bool
    """The stream ends with this chunk (the run's end, or the storage failed)."""
    gap: bool

    @classmethod
    def of(cls, items: list[Item]) -> Live:
        """A batch of ``EventLog.stream``: consecutive events, then at most the end; a gap or a
        heartbeat comes alone."""
        head, tail = items[0], items[-1]
        final = type(tail) is End
        newest = items[-2] if final and len(items) > 1 else tail
        return cls(
            items,
            encode_batch(items),
            first=head.id if type(head) is Event else 0,
            last=newest.id if type(newest) is Event else 0,
            final=final,
            gap=type(head) is Gap,
        )

    @classmethod
    def failure(cls, error: StorageError) -> Live:
        return cls([], error_frame(error), first=0, last=0, final=True, gap=False)


class Member(Protocol):
    """A stream at the live edge of a run."""

    @property
    def run_id(self) -> str: ...

    @property
    def cursor(self) -> int | None:
        """The id of the last event the client was sent (None: none yet)."""

    def deliver(self, live: Live) -> None:
        """Write ``live`` to the client without waiting; a member that would have to wait
        leaves the broadcast (``RunBroadcast.leave``) first."""

    def close(self) -> None:
        """End the stream now (the client reconnects, with its last event id)."""


class RunBroadcast:
    """The members of one run and the task that feeds them."""

    def __init__(self, log: EventLog, run_id: str, after: int | None, heartbeat: float,
                 forget: Callable[[RunBroadcast], None]) -> None:
        self.run_id = run_id
        self.cursor = after or 0
        """The newest event id handed to the members; a stream joins once it has sent as much."""
        self.members: dict[Member, None] = {}
        """In joining order (a dict as an ordered set)."""
        self._forget = forget
        self._task = asyncio.get_running_loop().create_task(self._run(log, after, heartbeat))

    def add(self, member: Member) -> None:
        self.members[member] = None

    def leave(self, member: Member) -> None:
        self.members.pop(member, None)
        if not self.members:
            self.stop()

    def stop(self) -> None:
        """Stop feeding (no member is left, or the server shuts down)."""
        self._forget(self)
        self._task.cancel()

    async def _run(self, log: EventLog, after: int | None, heartbeat: float) -> None:
        try:
            batches = log.stream(self.run_id, after=after, heartbeat=heartbeat, on_gap="continue")
            async with contextlib.aclosing(batches):  # type: ignore[type-var]
                async for items in batches:
                    live = Live.of(items)
                    if live.last:
                        self.cursor = live.last
                    self._deliver(live)
                    if live.final:
                        return
        except StorageError as exc:  # e.g. the file turned out corrupt: say so, do not cut the streams
            self._deliver(Live.failure(exc))
        except LogClosed:
            pass
        except Exception:
            logger.exception("the broadcast of run %s failed; its streams are closed", self.run_id)
        finally:
            self._forget(self)
            for member in list(self.members):
                member.close()

    def _deliver(self, live: Live) -> None:
        for member in list(self.members):
            try:
                member.deliver(live)
            except Exception:  # one broken stream must not stop the others
                logger.exception("a stream of run %s failed; it is closed", self.run_id)
                self.members.pop(member, None)
                with contextlib.suppress(Exception):
                    member.close()
        if live.final:
            self.members.clear()


class Broadcasts:
    """The broadcasts of this process, one per run with streams at its live edge."""

    def __init__(self, log: EventLog, heartbeat: float) -> None:
        self._log = log
        self._heartbeat = heartbeat
        self._runs: dict[str, RunBroadcast] = {}
        self.closed = False
        """Set when the server begins to shut down: every stream ends, so clients reconnect
        to a server that stays up."""

    def join(self, member: Member) -> RunBroadcast | None:
        """Add a stream that has sent everything up to the live edge, and return the broadcast
        it joined. None when the run's broadcast is further on than the stream (it must catch
        up first), or when the server is shutting down (the stream is closed)."""
        if self.closed:
            member.close()
            return None
        broadcast = self._runs.get(member.run_id)
        if broadcast is None:
            broadcast = self._runs[member.run_id] = RunBroadcast(
                self._log, member.run_id, member.cursor, self._heartbeat, self._forget
            )
        elif (member.cursor or 0) < broadcast.cursor:
            return None
        broadcast.add(member)
        return broadcast

    def close(self) -> None:
        """End every stream at the live edge and refuse new ones (streams still replaying end
        when they reach it)."""
        self.closed = True
        for broadcast in list(self._runs.values()):
            broadcast.stop()
            for member in list(broadcast.members):
                member.close()

    @property
    def runs(self) -> int:
        return len(self._runs)

    def _forget(self, broadcast: RunBroadcast) -> None:
        if self._runs.get(broadcast.run_id) is broadcast:
            del self._runs[broadcast.run_id]
