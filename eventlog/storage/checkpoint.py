"""WAL checkpoints off the commit path.

By default SQLite checkpoints inside the COMMIT that takes the WAL past ``wal_autocheckpoint``
pages (1000): that commit copies the WAL into the database file and fsyncs both, which costs
milliseconds, and an append waits for it. With one producer awaiting each append, that was 40-50%
of the writer's time (synchronous=NORMAL does not fsync at commit, only at checkpoints).

Here a thread of its own runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection after
commits (at most every ``min_interval`` seconds), concurrently with the writer: a passive
checkpoint never blocks writers or readers, and the fsyncs happen on this thread. Durability is
unchanged: a commit is as durable as before (in the WAL, which SQLite syncs before it copies
anything back), and the checkpoint itself is the same operation SQLite would have run inline.

Under a sustained load the WAL can only be reset when the writer starts a transaction right
after a complete checkpoint, which a concurrent checkpointer rarely allows; the writer keeps a
higher ``wal_autocheckpoint`` (``FALLBACK_PAGES``) as a bound on the WAL's size, and that inline
checkpoint finds most of its work done. The price: the WAL file's high-water mark is about 16 MB
instead of 4 MB (SQLite reuses the file rather than truncating it). When nothing is written, the
thread sleeps.

A failure (its connection cannot be opened, a checkpoint fails other than by lock contention) is
logged once and counted, and the checkpointer then stays down: it is an optimisation, not needed
for correctness, because the writer's own ``wal_autocheckpoint`` keeps bounding the WAL (commits
then pay for the checkpoints again); restarting a thread that fails for a lasting reason (the
file went away, a bad disk) would only repeat the failure.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

from eventlog.storage.connection import is_busy
from eventlog.supervision import Supervisor, Worker

FALLBACK_PAGES = 4000
"""The writer's own ``wal_autocheckpoint``: bounds the WAL (about 16 MB with 4 KiB pages)."""


class Checkpointer(Worker):
    def __init__(
        self, connect: Callable[[], sqlite3.Connection], supervisor: Supervisor, min_interval: float = 0.05
    ) -> None:
        super().__init__("checkpointer", supervisor, "eventlog-checkpoint")
        self._connect = connect
        self._min_interval = min_interval
        self._due = threading.Event()

    def poke(self) -> None:
        """Something was committed: checkpoint soon. Cheap enough to call after every commit."""
        if not self._due.is_set():
            self._due.set()

    def _wake(self) -> None:
        self._due.set()  # it closes its connection after the checkpoint in progress

    def run(self) -> None:
        conn = self._connect()
        try:
            while True:
                self._due.wait()
                if self.stopping:
                    return
                self._due.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc):
                        raise
                    # another process is checkpointing: the next commit pokes again
                if self._stopping.wait(self._min_interval):
                    return
        finally:
            conn.close()
