"""The SQL of eventlog's writes, as plain functions of a connection run on the writer thread.

Every function here runs inside one ``BEGIN IMMEDIATE`` transaction opened by ``transaction``;
they read the state they need under the write lock, so their view is authoritative even when
other processes write to the same file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from itertools import groupby
from typing import TypeVar

from eventlog.errors import (
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseFull,
    EventLogError,
    InvalidInput,
    RunExists,
    RunNotFound,
    StorageError,
)
from eventlog.models import Event
from eventlog.storage.base import (
    Committed,
    ImportRows,
    RetentionPolicy,
    WriteRequest,
    WriteResult,
)
from eventlog.storage.connection import is_busy, is_corruption
from eventlog.storage.planner import (
    Planner,
    ProducerState,
    RunState,
    StoredKey,
    import_event,
    new_state,
    notices,
    oldest_to_trim,
)
from eventlog.storage.run_cache import RunCache, load_state, sequence

T = TypeVar("T")


LOCK_TIMEOUT = 30.0
"""Seconds a write waits for another connection's write lock before it fails with DatabaseBusy."""


def transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T], lock_timeout: float) -> T:
    """Run ``body`` in a write transaction, retrying lock contention with other processes for up
    to ``lock_timeout`` seconds: callers see a slow append, never "database is locked". Past
    that, DatabaseBusy: the lock was never taken, so nothing was written, and a peer that holds
    the lock forever cannot block appends (nor ``close``, which waits for them) forever.

    Each attempt also waits inside SQLite for up to the connection's ``busy_timeout``, which the
    writer's connection keeps at most ``lock_timeout``: the wait ends within twice the deadline."""
    deadline = time.monotonic() + lock_timeout
    delay = 0.001
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseBusy(
                    f"another connection held the database's write lock for over {lock_timeout:g}s; "
                    "nothing was written, retry later"
                ) from exc
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)
            continue
        try:
            result = body(conn)
            conn.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def storage_error(exc: sqlite3.Error) -> EventLogError:
    """The typed error for an SQLite failure: a full disk, a damaged file, or else a storage
    error the caller did not cause (never mistaken for bad input)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        error: EventLogError = DatabaseFull(f"the database is full, nothing was written: {exc}")
    elif is_corruption(exc):
        error = DatabaseCorrupt(f"the database file is corrupt ({exc}): run `eventlog check` on it")
    else:
        error = StorageError(f"storage error: {exc}")
    error.__cause__ = exc
    return error


class _Batch(Planner):
    """The planner on the writer's connection: run states come from the run cache (or the
    file), idempotency keys from the file, as the requests ask for them."""

    def __init__(self, conn: sqlite3.Connection, now: float, cache: RunCache) -> None:
        super().__init__(now)
        self.conn = conn
        self.cache = cache

    def state(self, run_id: str) -> RunState | None:
        if run_id not in self.states:
            self.states[run_id] = self.cache.state(self.conn, run_id)
        return self.states[run_id]

    def stored_key(self, run_id: str, key: str) -> StoredKey | None:
        if (run_id, key) not in self.keys:
            row = self.conn.execute(
                "SELECT fingerprint, ids FROM idempotency_keys WHERE run_id = ? AND key = ?",
                (run_id, key),
            ).fetchone()
            if row is None:
                return None
            self.keys[(run_id, key)] = (row[0], json.loads(row[1]))
        return self.keys[(run_id, key)]

    def stored_producer(self, run_id: str, producer_id: str) -> ProducerState | None:
        if (run_id, producer_id) not in self.producers:
            row = self.conn.execute(
                "SELECT epoch, seq, closed FROM producers WHERE run_id = ? AND producer_id = ?", (run_id, producer_id)
            ).fetchone()
            self.producers[(run_id, producer_id)] = None if row is None else ProducerState(row[0], row[1], bool(row[2]))
        return self.producers[(run_id, producer_id)]

    def stored_writer_seq(self, run_id: str) -> str | None:
        if run_id not in self.writer_seqs:
            row = self.conn.execute("SELECT seq FROM writer_seqs WHERE run_id = ?", (run_id,)).fetchone()
            self.writer_seqs[run_id] = None if row is None else row[0]
        return self.writer_seqs[run_id]

    def insert_rows(self) -> int:
        """Insert the collected rows; returns the id of the first one."""
        rows = self.rows
        if not rows:
            return 0
        before = self.cache.sequence(self.conn)
        # AUTOINCREMENT hands out max(sequence, max(id)) + 1 for each row, and we hold the write
        # lock: the rows got consecutive ids starting right after the previous sequence value.
        # A lone row's id comes with its insert; executemany reports none, so after several
        # the sequence is read back.
        if len(rows) == 1:
            after = self.conn.execute(_INSERT_EVENT, rows[0]).lastrowid
        else:
            self.conn.executemany(_INSERT_EVENT, rows)
            after = sequence(self.conn)
        if after - before != len(rows):
            raise RuntimeError(f"unexpected id allocation: {before}..{after} for {len(rows)} rows")
        return before + 1


_INSERT_EVENT = "INSERT INTO events (run_id, event, data, created_at, body) VALUES (?, ?, ?, ?, ?)"


def _execute(conn: sqlite3.Connection, sql: str, rows: list[tuple[object, ...]]) -> None:
    """``executemany``, or ``execute`` for one row: a third of the cost of a one-row
    ``executemany`` (a lone producer's every commit)."""
    if len(rows) == 1:
        conn.execute(sql, rows[0])
    elif rows:
        conn.executemany(sql, rows)


def apply_writes(
    conn: sqlite3.Connection, requests: list[WriteRequest], lock_timeout: float, cache: RunCache
) -> tuple[list[WriteResult | BaseException], list[Committed]]:
    """Apply a batch in one transaction. When the transaction itself fails (a full disk, say),
    each request is retried alone so that the failure is reported to the request it belongs to.
    DatabaseBusy is the outcome of each request it kept out (none of their rows was written),
    never of one that committed before it."""
    try:
        return _transact(conn, requests, lock_timeout, cache)
    except DatabaseBusy as exc:
        return [exc] * len(requests), []
    except sqlite3.Error as exc:
        if len(requests) == 1:
            return [storage_error(exc)], []
    outcomes: list[WriteResult | BaseException] = []
    committed: list[Committed] = []
    for request in requests:
        try:
            (outcome,), notices = _transact(conn, [request], lock_timeout, cache)
        except DatabaseBusy as exc:
            outcome, notices = exc, []
        except sqlite3.Error as exc:
            outcome, notices = storage_error(exc), []
        outcomes.append(outcome)
        committed.extend(notices)
    return outcomes, committed


def _transact(
    conn: sqlite3.Connection, requests: list[WriteRequest], lock_timeout: float, cache: RunCache
) -> tuple[list[WriteResult | BaseException], list[Committed]]:
    """One transaction for ``requests``, following the cache's protocol (see RunCache)."""

    def body(c: sqlite3.Connection) -> tuple[list[WriteResult | BaseException], list[Committed]]:
        cache.begin(c)
        return _apply_in_order(c, requests, cache)

    try:
        result = transaction(conn, body, lock_timeout)
    except BaseException:
        cache.clear()
        raise
    cache.committed()
    return result


def _apply_in_order(
    conn: sqlite3.Connection, requests: list[WriteRequest], cache: RunCache
) -> tuple[list[WriteResult | BaseException], list[Committed]]:
    """Apply a batch in submission order: each import on its own (it brings its own ids), the
    requests between imports together."""
    if ImportRows not in set(map(type, requests)):  # the common case, checked at C speed
        return _apply(conn, requests, cache)
    outcomes: list[WriteResult | BaseException] = []
    committed: list[Committed] = []
    for importing, group in groupby(requests, key=lambda request: isinstance(request, ImportRows)):
        if importing:
            for request in group:
                cache.clear()  # an import writes runs and ids the cache does not follow
                outcome, notices = import_rows(conn, request)  # type: ignore[arg-type]
                outcomes.append(outcome)
                committed += notices
        else:
            group_outcomes, notices = _apply(conn, list(group), cache)
            outcomes += group_outcomes
            committed += notices
    return outcomes, committed


def _apply(
    conn: sqlite3.Connection, requests: list[WriteRequest], cache: RunCache
) -> tuple[list[WriteResult | BaseException], list[Committed]]:
    batch = _Batch(conn, time.time(), cache)
    plans = [batch.plan(request) for request in requests]
    first_id = batch.insert_rows()
    ids = range(first_id, first_id + len(batch.rows))
    outcomes, by_run = batch.settle(requests, plans, ids)
    touched = batch.touched()
    _save_runs(conn, touched)
    _execute(
        conn,
        "INSERT INTO idempotency_keys (run_id, key, fingerprint, ids, created_at) VALUES (?, ?, ?, ?, ?)",
        [(r, k, f, json.dumps(i), batch.now) for r, k, f, i in batch.new_keys],
    )
    if batch.new_producers or batch.new_writer_seqs:
        _save_writers(conn, batch)
    cache.keep(conn, batch.states, ids[-1] if ids else None)
    return outcomes, notices(touched, by_run)


def _save_writers(conn: sqlite3.Connection, batch: Planner) -> None:
    """Record the producers' and writer sequences' new state, in the transaction of the rows
    they accepted."""
    producers = []
    for run_id, producer_id in batch.new_producers:
        state = batch.producers[(run_id, producer_id)]
        assert state is not None
        producers.append((run_id, producer_id, state.epoch, state.seq, int(state.closed), batch.now))
    _execute(
        conn,
        "INSERT OR REPLACE INTO producers (run_id, producer_id, epoch, seq, closed, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        producers,
    )
    _execute(
        conn,
        "INSERT OR REPLACE INTO writer_seqs (run_id, seq) VALUES (?, ?)",
        [(run_id, batch.writer_seqs[run_id]) for run_id in batch.new_writer_seqs],
    )


def _save_runs(conn: sqlite3.Connection, states: dict[str, RunState], trimmed: dict[str, int] | None = None) -> None:
    """Write the runs' rows as ``states`` hold them: an INSERT for a new run, with
    ``trimmed_through`` from ``trimmed`` (an import's; else 0), and an UPDATE of what appends
    change for a stored one (retention alone moves its ``trimmed_through``). Not one upsert:
    it binds every column and tries the insert first, a third more CPU per row."""
    new: list[tuple[object, ...]] = []
    running: list[tuple[object, ...]] = []
    ended: list[tuple[object, ...]] = []
    for run_id, s in states.items():  # one pass: a batch of 100 producers touches 100 runs
        if not s.stored:
            new.append((run_id, s.created_at, s.metadata_json, s.event_count, s.total_bytes, s.last_id,
                        (trimmed or {}).get(run_id, 0), s.end_id, s.end_reason, s.ended_at, s.parent_id))
        elif s.end_id is None:
            running.append((s.event_count, s.total_bytes, s.last_id, run_id))
        else:
            # A stored run that is ended now ended in this batch (an ended run takes no more
            # rows): only those rows need the end columns, which cost the others an eighth
            # more CPU per row.
            ended.append((s.event_count, s.total_bytes, s.last_id, s.end_id, s.end_reason, s.ended_at, run_id))
    _execute(
        conn,
        "INSERT INTO runs (run_id, created_at, metadata, event_count, total_bytes, last_id, trimmed_through, "
        "end_id, end_reason, ended_at, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        new,
    )
    _execute(conn, "UPDATE runs SET event_count = ?, total_bytes = ?, last_id = ? WHERE run_id = ?", running)
    _execute(
        conn,
        "UPDATE runs SET event_count = ?, total_bytes = ?, last_id = ?, end_id = ?, end_reason = ?, ended_at = ? "
        "WHERE run_id = ?",
        ended,
    )


# --- import ------------------------------------------------------------------------------------


def import_rows(conn: sqlite3.Connection, request: ImportRows) -> tuple[list[int] | EventLogError, list[Committed]]:
    """Apply one ``ImportRows``: every check first, so a refused request writes nothing."""
    states: dict[str, RunState] = {}
    trimmed: dict[str, int] = {}
    newest = sequence(conn)
    for run in request.runs:
        if run.run_id in states or load_state(conn, run.run_id) is not None:
            return RunExists(run.run_id), []
        states[run.run_id] = new_state(run.created_at, run.metadata_json)
        if request.remap and run.trimmed_through:
            newest += 1  # an id of its own stands for the trimmed events, so readers get a gap
            trimmed[run.run_id] = newest
        else:
            trimmed[run.run_id] = run.trimmed_through
    rows: list[Event] = []
    for event in request.events:
        state = states.get(event.run_id)
        if state is None:
            loaded = load_state(conn, event.run_id)
            if loaded is None:
                return RunNotFound(event.run_id), []
            state = states[event.run_id] = loaded
            trimmed[event.run_id] = conn.execute(
                "SELECT trimmed_through FROM runs WHERE run_id = ?", (event.run_id,)
            ).fetchone()[0]
        if request.remap:
            newest += 1
        row = import_event(state, event, newest if request.remap else event.id, trimmed[event.run_id])
        if isinstance(row, EventLogError):
            return row, []
        rows.append(row)
    ids = [row.id for row in rows]
    if not request.remap and ids:
        taken = conn.execute(
            "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?)) LIMIT 1", (json.dumps(ids),)
        ).fetchone()
        if taken is not None:
            return InvalidInput(f"event id {taken[0]} is already stored"), []
    conn.executemany(
        "INSERT INTO events (id, run_id, event, data, created_at, body) VALUES (?, ?, ?, ?, ?, ?)",
        [(e.id, e.run_id, e.event, e.data_json, e.created_at, e.body) for e in rows],
    )
    reserve = newest if request.remap else request.reserve_through
    if reserve > sequence(conn):
        if conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'", (reserve,)).rowcount == 0:
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (reserve,))
    _save_runs(conn, states, trimmed)
    by_run: dict[str, list[Event]] = {}
    for row in rows:
        by_run.setdefault(row.run_id, []).append(row)
    return ids, notices(states, by_run)


# --- retention ---------------------------------------------------------------------------------


_EXPIRED = (
    "SELECT run_id, coalesce(end_id, last_id) FROM runs WHERE (ended_at < ? OR deleted_at IS NOT NULL) "
    "AND NOT EXISTS (SELECT 1 FROM runs fork WHERE fork.parent_id = runs.run_id) "
    "ORDER BY coalesce(ended_at, deleted_at) LIMIT 100"
)
"""The runs retention removes whole, with the newest id of each, up to 100 at a time: those that
ended before the time given, and those marked deleted whose forks are gone now (by retention, or
a deletion that stopped half-way), but none that a fork still reads."""

EVENT_BYTES = "coalesce(length(body), length(CAST(data AS BLOB)))"
"""An event's size as ``runs.total_bytes`` counts it: its bytes, else its data's UTF-8 bytes."""


def trim_run(conn: sqlite3.Connection, run_id: str, policy: RetentionPolicy, now: float, max_rows: int) -> int:
    """Delete up to ``max_rows`` of the run's oldest events that break the policy."""
    row = conn.execute("SELECT event_count, total_bytes, end_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return 0
    count, size, end_id = row
    candidates = conn.execute(
        f"SELECT id, created_at, {EVENT_BYTES} FROM events "
        "WHERE run_id = ? AND id IS NOT ? ORDER BY id LIMIT ?",
        (run_id, end_id, max_rows),
    )
    last_deleted, deleted, count, size = oldest_to_trim(candidates, count, size, policy, now)
    if deleted:
        conn.execute("DELETE FROM events WHERE run_id = ? AND id <= ? AND id IS NOT ?", (run_id, last_deleted, end_id))
        conn.execute(
            "UPDATE runs SET event_count = ?, total_bytes = ?, trimmed_through = max(trimmed_through, ?) WHERE run_id = ?",
            (count, size, last_deleted, run_id),
        )
    return deleted


def expire_ended(conn: sqlite3.Connection, ended_before: float, max_rows: int) -> tuple[list[str], int]:
    """Delete the oldest rows of runs that ended before ``ended_before``, at most ``max_rows``.

    Rows go oldest first, so the end marker (a run's newest row) goes last, with the run itself.
    A run with forks is kept (they read it) until they are gone; one marked deleted goes then
    (see ``EXPIRED``)."""
    removed: list[str] = []
    deleted = 0
    expired = conn.execute(_EXPIRED, (ended_before,)).fetchall()
    for run_id, through in expired:
        if deleted >= max_rows:
            break
        rows, reached = _delete_oldest(conn, run_id, through, max_rows - deleted)
        deleted += rows
        if reached:
            delete_run(conn, run_id)
            removed.append(run_id)
    return removed, deleted


def delete_run_in_part(
    conn: sqlite3.Connection, run_id: str, through: int, max_rows: int, now: float
) -> bool | None:
    """One step of deleting a run in short transactions: its oldest rows up to id ``through``
    (its newest when the deletion began), at most ``max_rows``; the step that reaches
    ``through`` deletes the run with whatever was appended since. None while rows up to
    ``through`` remain, else whether there was a run to delete.

    A run with forks is only marked deleted, ``now``, and keeps its rows. Every step checks, in
    its own transaction: a fork created between two steps (its parent not deleted yet) is seen
    by the next, so no fork outlives its parent (it reads a gap for the rows deleted before)."""
    if mark_deleted_if_forked(conn, run_id, now):
        return True
    _, reached = _delete_oldest(conn, run_id, through, max_rows)
    return delete_run(conn, run_id) if reached else None


def _delete_oldest(conn: sqlite3.Connection, run_id: str, through: int, max_rows: int) -> tuple[int, bool]:
    """Delete the run's oldest rows, at most ``max_rows`` and none above id ``through``, keeping
    its counters and ``trimmed_through`` right (readers see it trimmed, with a Gap). Returns the
    rows deleted and whether they reached ``through``: then the caller deletes the run, so the
    counters (which do not count the end marker, the newest row) are left as they are."""
    newest, count, size = conn.execute(
        f"SELECT max(id), count(*), coalesce(sum({EVENT_BYTES}), 0) FROM "
        "(SELECT id, data, body FROM events WHERE run_id = ? AND id <= ? ORDER BY id LIMIT ?)",
        (run_id, through, max_rows),
    ).fetchone()
    if newest is None:
        return 0, True
    conn.execute("DELETE FROM events WHERE run_id = ? AND id <= ?", (run_id, newest))
    if newest >= through:
        return count, True
    conn.execute(
        "UPDATE runs SET event_count = event_count - ?, total_bytes = total_bytes - ?, "
        "trimmed_through = max(trimmed_through, ?) WHERE run_id = ?",
        (count, size, newest, run_id),
    )
    return count, False


def expire_idempotency_keys(conn: sqlite3.Connection, created_before: float, max_rows: int) -> int:
    """Delete at most ``max_rows`` of the oldest idempotency keys stored before ``created_before``."""
    return conn.execute(
        "DELETE FROM idempotency_keys WHERE (run_id, key) IN "
        "(SELECT run_id, key FROM idempotency_keys WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        (created_before, max_rows),
    ).rowcount


def delete_run(conn: sqlite3.Connection, run_id: str) -> bool:
    conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
    for table in ("idempotency_keys", "producers", "writer_seqs"):
        conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    return conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount > 0


def mark_deleted_if_forked(conn: sqlite3.Connection, run_id: str, now: float) -> bool:
    """Mark the run deleted if forks of it exist (they still read its events); whether it was."""
    return conn.execute(
        "UPDATE runs SET deleted_at = coalesce(deleted_at, ?) WHERE run_id = ? "
        "AND EXISTS (SELECT 1 FROM runs fork WHERE fork.parent_id = ?)",
        (now, run_id, run_id),
    ).rowcount > 0


def unneeded_parent(conn: sqlite3.Connection, parent_id: str) -> tuple[int, str | None] | None:
    """The newest id and the parent of run ``parent_id`` if it is marked deleted and no fork of
    it is left: then it goes too (and may leave its own parent unneeded)."""
    return conn.execute(
        "SELECT last_id, parent_id FROM runs WHERE run_id = ? AND deleted_at IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM runs fork WHERE fork.parent_id = ?)",
        (parent_id, parent_id),
    ).fetchone()
