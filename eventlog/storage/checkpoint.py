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
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

FALLBACK_PAGES = 4000
"""The writer's own ``wal_autocheckpoint``: bounds the WAL (about 16 MB with 4 KiB pages)."""


class Checkpointer:
    def __init__(self, connect: Callable[[], sqlite3.Connection], min_interval: float = 0.05) -> None:
        self._connect = connect
        self._min_interval = min_interval
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="eventlog-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """Something was committed: checkpoint soon. Cheap enough to call after every commit."""
        if not self._due.is_set():
            self._due.set()

    def stop(self) -> None:
        """Ask the thread to end; it closes its connection after the checkpoint in progress."""
        self._stopping.set()
        self._due.set()

    def _run(self) -> None:
        try:
            conn = self._connect()
        except Exception:  # e.g. the file went away: the writer's autocheckpoint still bounds the WAL
            return
        try:
            while True:
                self._due.wait()
                if self._stopping.is_set():
                    return
                self._due.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # e.g. another process is checkpointing: the next commit pokes again
                if self._stopping.wait(self._min_interval):
                    return
        finally:
            conn.close()
