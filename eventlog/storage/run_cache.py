"""What the writer remembers of the file between its transactions: run rows and the id sequence.

Without it every append transaction reads each run it touches (``SELECT ... FROM runs``) and the
id sequence before inserting: with 100 producers on 100 runs, 100 of the 300 statements of a group
commit. The writer is the only connection of this process that writes, so what it committed last
is what the file holds, unless something else wrote since. Two cheap checks, taken under the
write lock at the start of each transaction, say whether anything did:

- ``PRAGMA data_version`` changes when another connection (another process, or another
  connection of this one) committed to the file;
- ``Connection.total_changes`` changes when this connection wrote outside the appends the cache
  followed (retention, deletes, imports), or wrote and rolled back.

When either moved, the cache is dropped and the transaction reads the rows as before; so the
cache can only save reads, and what a transaction decides still rests on the file as it is under
the write lock, whoever else writes to it.

Writer thread only: no locking.
"""

from __future__ import annotations

import sqlite3

from eventlog.storage.planner import RunState

_STATE_SQL = (
    "SELECT created_at, metadata, event_count, total_bytes, last_id, end_id, end_reason, ended_at, "
    "parent_id, deleted_at FROM runs WHERE run_id = ?"
)


def load_state(conn: sqlite3.Connection, run_id: str) -> RunState | None:
    row = conn.execute(_STATE_SQL, (run_id,)).fetchone()
    if row is None:
        return None
    return RunState(True, *row[:8], previous_last_id=row[4], parent_id=row[8], deleted_at=row[9])


def sequence(conn: sqlite3.Connection) -> int:
    """The newest event id AUTOINCREMENT has handed out (0 before the first)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return row[0] if row else 0


class RunCache:
    """The runs (at most ``size``) and the id sequence as the writer's last commit left them.

    Protocol, per write transaction: ``begin`` once the write lock is held; ``state`` and
    ``sequence`` instead of reading the file; ``keep`` with what the transaction wrote, after
    its last statement; then ``committed`` after COMMIT, or ``clear`` when it failed. Anything
    else writing on the same connection needs nothing: ``total_changes`` gives it away.

    ``state`` hands out the cached object itself, which the transaction changes in place: no
    copy is needed, because a transaction that fails clears the cache, and one that commits
    leaves the object as the file now holds it."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._states: dict[str, RunState] = {}
        self._sequence: int | None = None
        self._stamp: tuple[int, int] | None = None
        """(data_version, total_changes) right after the writes this cache holds."""
        self._version = 0
        self._pending: dict[str, RunState] = {}
        self._pending_sequence: int | None = None
        self._pending_changes = -1
        self.hits = 0
        """Transactions that found the cache valid: for tests and the benchmark's notes."""

    def begin(self, conn: sqlite3.Connection) -> None:
        """Drop everything unless nothing but this cache's own commits wrote the file since."""
        self._version = conn.execute("PRAGMA data_version").fetchone()[0]
        if self._stamp == (self._version, conn.total_changes):
            self.hits += 1
        else:
            self.clear()

    def state(self, conn: sqlite3.Connection, run_id: str) -> RunState | None:
        """The run's state, from the cache (reset for a new transaction) or else the file."""
        state = self._states.get(run_id)
        if state is None:
            return load_state(conn, run_id)
        state.previous_last_id, state.touched = state.last_id, False
        return state

    def sequence(self, conn: sqlite3.Connection) -> int:
        return self._sequence if self._sequence is not None else sequence(conn)

    def keep(self, conn: sqlite3.Connection, states: dict[str, RunState | None], sequence: int | None) -> None:
        """What the transaction read and wrote, to remember once it commits: ``states`` as
        stored now (None: no such run), and the sequence when known (None: read it next time)."""
        for run_id, state in states.items():
            if state is not None:
                self._pending[run_id] = state
        if sequence is not None:
            self._pending_sequence = sequence
        self._pending_changes = conn.total_changes

    def committed(self) -> None:
        if self._pending_changes < 0:
            return  # nothing kept: the transaction wrote nothing through the cache
        states = self._states
        for run_id, state in self._pending.items():
            state.stored = True  # a new run's row is in the file now
            states[run_id] = state
        while len(states) > self._size:  # the runs cached first go first
            del states[next(iter(states))]
        if self._pending_sequence is not None:
            self._sequence = self._pending_sequence
        self._stamp = (self._version, self._pending_changes)
        self._drop_pending()

    def clear(self) -> None:
        self._states.clear()
        self._sequence = None
        self._stamp = None
        self._drop_pending()

    def _drop_pending(self) -> None:
        self._pending = {}
        self._pending_sequence = None
        self._pending_changes = -1
