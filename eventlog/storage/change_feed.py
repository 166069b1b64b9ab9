"""The cross-process change feed of the SQLite backend, on a thread of its own.

The thread waits on the file watch (or the slow fallback timer), then looks: ``data_version``
on its own connection says whether another connection committed since the last look, and
``runs_by_last_id`` which runs advanced. While the file keeps changing, looks are paced
(``PACE``): a stream of commits from another process costs the follower a fixed number of
wake-ups per second, each taking every commit made since the previous one. Ids grow in commit
order across every process writing the file, so "last_id above the highest seen" misses
nothing.

For the runs this process has read lately the feed also reads the new events, and sends the
pages with the hint (``read_ahead``): the follower's catch-up read then needs no reader thread.

This process' own commits also write the WAL, and they are already announced on the loop by the
writer. A run whose newest id is one this process' writer just committed needs no second word
(ids are never reused, so equality proves it), so those are dropped here, on this thread: a busy
producer costs the event loop nothing extra, and only other processes' commits reach it.

Lifecycle (``eventlog.supervision.Worker``): the feed's thread owns its connection and the file
watch and closes both as it ends; ``stop`` only interrupts it. A failure is not logged here: it
is delivered to the consumer (the notifier's follower), which reports it once and starts a new
feed after a back-off.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from eventlog.storage.file_watch import FileWatch
from eventlog.storage.read_ahead import FOLLOWED, Pages, ReadAhead
from eventlog.supervision import Supervisor, Worker, call_soon_threadsafe

Changes = list[tuple[str, int]]

SETTLE = 0.001
"""Seconds to wait after the first file change of a quiet spell before looking. The change is
most often this process' own commit, which the writer and the event loop are handling at that
very moment: looking at once would contend with them for the GIL and delay the local wake-up it
cannot help."""

PACE = 0.004
"""Seconds between looks while the file keeps changing. After a look that saw a change (or
followed a write), the feed sleeps this long without waking for each write, then takes every
write made meanwhile in one look: a busy file costs one wake-up, one look (and the pages read
ahead) and one message to the event loop per ``PACE`` however many commits it gets, at the price
of at most ``PACE`` of latency. That look is also the first recheck: SQLite writes a commit's frames to the WAL (the
watch sees that) before it publishes them in the shared-memory index (no watch sees that), so a
look made in between misses the commit."""

RECHECKS = (0.02, 0.2)
"""Further rechecks (seconds after the previous look) once the file has gone quiet, for a commit
whose publication was delayed longer than ``PACE``; the poll interval bounds anything later."""

_LOOK = (
    "SELECT NULL, data_version FROM pragma_data_version() "
    "UNION ALL SELECT run_id, last_id FROM runs WHERE last_id > ?"
)
"""One look, one statement (so one read transaction, the costly part): the connection's
``data_version`` (it changes when another connection commits) in the row whose run_id is NULL,
and the runs that advanced."""


class LocalCommits:
    """The newest id this process committed to each recently written run (bounded)."""

    def __init__(self, size: int = 4096) -> None:
        self._last: OrderedDict[str, int] = OrderedDict()
        self._size = size

    def record(self, run_id: str, last_id: int) -> None:
        """Called on the writer thread right after a commit."""
        self._last[run_id] = last_id
        self._last.move_to_end(run_id)
        if len(self._last) > self._size:
            self._last.popitem(last=False)

    def explains(self, run_id: str, last_id: int) -> bool:
        return self._last.get(run_id) == last_id


class ChangeFeed(Worker):
    def __init__(
        self,
        path: Path,
        connect: Callable[[], sqlite3.Connection],
        local: LocalCommits,
        poll_interval: float,
        supervisor: Supervisor,
        read_ahead: ReadAhead | None = None,
    ) -> None:
        super().__init__("follower", supervisor, "eventlog-changes")
        self._watch = FileWatch(path)
        self._connect = connect
        self._local = local
        self._poll_interval = poll_interval
        self._read_ahead = read_ahead
        self._followed: dict[str, int] = {}
        """The newest id seen of each followed run: the cursor its next page is read after."""

    def start(
        self, loop: asyncio.AbstractEventLoop, deliver: Callable[[tuple[Changes, Pages] | BaseException], None]
    ) -> None:
        """Begin watching; ``deliver`` gets, on ``loop``: ``([], {})`` once watching has begun,
        then the changes of other processes (an empty list when something changed but no run
        advanced, e.g. a run was created) with the pages read ahead for the followed runs among
        them (see ``read_ahead``), or the exception that ended the feed."""
        self._loop, self._deliver = loop, deliver
        self._watch.start()
        super().start()

    def _wake(self) -> None:
        self._watch.interrupt()

    def _failed(self, exc: BaseException) -> None:
        self._send(exc)

    def _settle(self, error: BaseException | None) -> None:
        self._watch.close()  # the thread waits no more: nothing can use the descriptors now

    def _send(self, item: tuple[Changes, Pages] | BaseException) -> None:
        if not self.stopping:
            call_soon_threadsafe(self._loop, self._deliver, item)

    def run(self) -> None:
        conn = self._connect()
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            seen = conn.execute("SELECT coalesce(max(last_id), 0) FROM runs").fetchone()[0]
            self._send(([], {}))  # watching from here on: every later commit will be reported
            busy = False  # the last look saw a change or followed a write: pace the next one
            rechecks: list[float] = []
            while not self.stopping:
                if busy:
                    self._watch.pause(PACE)
                    wrote = self._watch.drain()
                elif self._watch.wait(rechecks[0] if rechecks else self._poll_interval):
                    self._watch.pause(SETTLE)
                    wrote = self._watch.drain()
                    if not wrote:  # another file in the directory: the recheck is still due
                        continue
                else:  # a recheck, or the fallback poll
                    wrote = False
                    if rechecks:
                        rechecks.pop(0)
                if self.stopping:
                    break
                changed = conn.execute(_LOOK, (seen,)).fetchall()
                now = next(last_id for run_id, last_id in changed if run_id is None)
                changed = [row for row in changed if row[0] is not None]
                busy = wrote or now != version
                if busy:
                    rechecks = list(RECHECKS)
                if now == version:
                    continue
                version = now
                if changed:
                    seen = max(last_id for _, last_id in changed)
                foreign = [(run_id, last_id) for run_id, last_id in changed if not self._local.explains(run_id, last_id)]
                if foreign or not changed:
                    self._send((foreign, self._read_pages(conn, changed, foreign)))
        finally:
            conn.close()

    def _read_pages(self, conn: sqlite3.Connection, changed: Changes, foreign: Changes) -> Pages:
        """Read ahead the new events of the followed runs other processes advanced, from the
        newest id of each seen before (a run followed since this look gets its first page at
        the next one); track every followed run's newest id, local commits' included."""
        read_ahead = self._read_ahead
        if read_ahead is None:
            return {}
        if len(self._followed) > 2 * FOLLOWED:  # forget runs no longer followed
            self._followed = {run_id: last for run_id, last in self._followed.items() if read_ahead.follows(run_id)}
        pages: Pages = {}
        news = dict(foreign)
        for run_id, last_id in changed:
            if not read_ahead.follows(run_id):
                self._followed.pop(run_id, None)
                continue
            after = self._followed.get(run_id)
            self._followed[run_id] = last_id
            if run_id in news and after is not None:
                page = read_ahead.read(conn, run_id, after)
                pages[run_id] = (after, page)
                if page.run is not None:
                    self._followed[run_id] = max(last_id, page.run.last_id)
        return pages
