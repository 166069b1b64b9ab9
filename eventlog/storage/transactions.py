"""The SQL of eventlog's writes, as plain functions of a connection run on the writer thread.

Every function here runs inside one ``BEGIN IMMEDIATE`` transaction opened by ``transaction``;
they read the state they need under the write lock, so their view is authoritative even when
other processes write to the same file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import TypeVar

from eventlog.errors import (
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseFull,
    EventLogError,
    IdempotencyConflict,
    InvalidData,
    InvalidInput,
    RunActive,
    RunEnded,
    RunExists,
    RunNotFound,
    StorageError,
)
from eventlog.models import END_EVENT, Event, RunInfo
from eventlog.storage.base import (
    Append,
    Committed,
    CreateRun,
    EndRun,
    ImportRows,
    RetentionPolicy,
    WriteRequest,
    WriteResult,
)
from eventlog.storage.connection import is_busy, is_corruption
from eventlog.storage.run_cache import RunCache, RunState, load_state, new_state, sequence

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


_CREATED = object()
"""``_Batch.plan``'s outcome for a run it creates: the RunInfo is built once the batch is applied."""


@dataclass(slots=True)
class _Rows:
    """The rows a request adds to the batch; ``key`` is the idempotency key to record with them.

    Not frozen (though never changed): one is made per request, and a frozen dataclass's
    ``__init__`` costs three times as much."""

    span: slice
    key: str | None = None


class _Batch:
    """Applies a list of write requests in the current transaction."""

    def __init__(self, conn: sqlite3.Connection, now: float, cache: RunCache) -> None:
        self.conn = conn
        self.now = now
        self.cache = cache
        self.states: dict[str, RunState | None] = {}
        self.rows: list[tuple[str, str, str, float]] = []
        self.keys: dict[tuple[str, str], tuple[str, list[int] | _Rows]] = {}
        self.new_keys: list[tuple[str, str, str, list[int]]] = []
        self.end_rows: dict[str, _Rows] = {}
        """The end markers this batch writes, by run: a repeated end in the batch returns the same."""

    def state(self, run_id: str) -> RunState | None:
        if run_id not in self.states:
            self.states[run_id] = self.cache.state(self.conn, run_id)
        return self.states[run_id]

    def stored_key(self, run_id: str, key: str) -> tuple[str, list[int] | _Rows] | None:
        if (run_id, key) not in self.keys:
            row = self.conn.execute(
                "SELECT fingerprint, ids FROM idempotency_keys WHERE run_id = ? AND key = ?",
                (run_id, key),
            ).fetchone()
            if row is None:
                return None
            self.keys[(run_id, key)] = (row[0], json.loads(row[1]))
        return self.keys[(run_id, key)]

    def add_rows(self, state: RunState, run_id: str, events: Sequence[tuple[str, str]]) -> slice:
        """Queue rows for the insert and count them in the run's state."""
        rows, now = self.rows, self.now
        start = len(rows)
        for name, data_json in events:
            rows.append((run_id, name, data_json, now))
            if name != END_EVENT:
                state.event_count += 1
                # UTF-8 bytes; isascii is O(1), so the common case encodes nothing
                state.total_bytes += len(data_json) if data_json.isascii() else len(data_json.encode())
        state.touched = True
        return slice(start, len(rows))

    def plan(self, request: WriteRequest) -> object:
        """Check one request against the state; returns its rows' slice, a final result, or an
        error instance (``_CREATED`` for a run created). Nothing is written yet."""
        run_id = request.run_id
        state = self.state(run_id)
        if isinstance(request, Append):  # first: by far the most common
            key = request.idempotency_key
            if key is not None:
                stored = self.stored_key(run_id, key)
                if stored is not None:
                    fingerprint, ids = stored
                    if fingerprint != request.fingerprint:
                        return IdempotencyConflict(run_id, key)
                    return _Rows(ids.span) if isinstance(ids, _Rows) else ids
            if state is None:
                state = self.states[run_id] = new_state(self.now)
            if state.end_id is not None:
                return RunEnded(run_id, state.end_reason, state.end_id)
            rows = _Rows(self.add_rows(state, run_id, request.events), key)
            if key is not None:
                self.keys[(run_id, key)] = (request.fingerprint, rows)
            return rows
        if isinstance(request, CreateRun):
            if state is not None:
                return RunExists(run_id)
            self.states[run_id] = new_state(self.now, request.metadata_json)
            return _CREATED
        if state is None:
            if request.must_exist:
                return RunNotFound(run_id)
            state = self.states[run_id] = new_state(self.now)
        if state.end_id is not None:
            if state.end_reason == request.reason:
                return self.end_rows.get(run_id, state.end_id)
            return RunEnded(run_id, state.end_reason, state.end_id)
        if request.if_last_id is not None and state.last_id != request.if_last_id:
            return RunActive(run_id)
        state.end_id = -1  # placeholder: the marker's id is known after the insert
        state.end_reason = request.reason
        state.ended_at = self.now
        marker = json.dumps({"reason": request.reason}, separators=(",", ":"))
        rows = self.end_rows[run_id] = _Rows(self.add_rows(state, run_id, [(END_EVENT, marker)]))
        return rows

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


_INSERT_EVENT = "INSERT INTO events (run_id, event, data, created_at) VALUES (?, ?, ?, ?)"


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

    outcomes: list[WriteResult | BaseException] = []
    created: list[int] = []
    for request, plan in zip(requests, plans):
        if isinstance(plan, _Rows):
            row_ids = list(ids[plan.span])
            outcomes.append(row_ids[0] if isinstance(request, EndRun) else row_ids)
            if plan.key is not None:
                batch.new_keys.append((request.run_id, plan.key, request.fingerprint, row_ids))  # type: ignore[union-attr]
        else:
            if plan is _CREATED:
                created.append(len(outcomes))  # its RunInfo replaces it below
            outcomes.append(plan)  # type: ignore[arg-type]

    states = batch.states
    by_run: dict[str, list[Event]] = {}
    for event_id, (run_id, name, data_json, created_at) in zip(ids, batch.rows):
        event = Event(event_id, run_id, name, data_json, created_at)
        run_events = by_run.get(run_id)
        if run_events is None:
            by_run[run_id] = [event]
        else:
            run_events.append(event)
    for run_id, run_events in by_run.items():
        states[run_id].last_id = run_events[-1].id  # type: ignore[union-attr]
    for run_id, marker in batch.end_rows.items():
        states[run_id].end_id = first_id + marker.span.start  # type: ignore[union-attr]
    if batch.end_rows:  # a request refused because the run ended in this batch learns the end's id
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, RunEnded) and outcome.end_id == -1:
                ended = states[outcome.run_id]
                assert ended is not None and ended.end_id is not None
                outcomes[index] = RunEnded(outcome.run_id, outcome.reason, ended.end_id)

    touched = {run_id: state for run_id, state in states.items() if state is not None and state.touched}
    _save_runs(conn, touched)
    _execute(
        conn,
        "INSERT INTO idempotency_keys (run_id, key, fingerprint, ids, created_at) VALUES (?, ?, ?, ?, ?)",
        [(r, k, f, json.dumps(i), batch.now) for r, k, f, i in batch.new_keys],
    )
    cache.keep(conn, states, ids[-1] if ids else None)
    for index in created:
        run_id = requests[index].run_id
        outcomes[index] = _info(run_id, states[run_id])  # type: ignore[arg-type]

    return outcomes, _notices(touched, by_run)


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
                        (trimmed or {}).get(run_id, 0), s.end_id, s.end_reason, s.ended_at))
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
        "end_id, end_reason, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        new,
    )
    _execute(conn, "UPDATE runs SET event_count = ?, total_bytes = ?, last_id = ? WHERE run_id = ?", running)
    _execute(
        conn,
        "UPDATE runs SET event_count = ?, total_bytes = ?, last_id = ?, end_id = ?, end_reason = ?, ended_at = ? "
        "WHERE run_id = ?",
        ended,
    )


def _notices(states: dict[str, RunState], events: dict[str, list[Event]]) -> list[Committed]:
    """What a transaction committed, per run it touched (``events``: its new rows by run), for
    the notifier."""
    return [Committed(run_id, s.previous_last_id, tuple(events.get(run_id, ()))) for run_id, s in states.items()]


def _info(run_id: str, state: RunState) -> RunInfo:
    return RunInfo(
        run_id, state.created_at, json.loads(state.metadata_json), state.event_count, state.total_bytes,
        0, state.last_id, 0, state.end_id, state.end_reason, state.ended_at,
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
        if state.end_id is not None:
            return RunEnded(event.run_id, state.end_reason, state.end_id), []
        if request.remap:
            newest += 1
        event_id = newest if request.remap else event.id
        floor = max(state.last_id, trimmed[event.run_id])
        if event_id <= floor:
            return InvalidInput(f"event id {event_id} of run {event.run_id!r} is not above its previous id {floor}"), []
        if event.event == END_EVENT:
            marker = json.loads(event.data_json)
            if not isinstance(marker, dict) or not isinstance(marker.get("reason", 0), str | None):
                return InvalidData(f"the end marker {event.id} of run {event.run_id!r} has no text reason"), []
            state.end_id, state.end_reason, state.ended_at = event_id, marker["reason"], event.created_at
        else:
            state.event_count += 1
            state.total_bytes += len(event.data_json.encode())
        state.last_id, state.touched = event_id, True
        rows.append(Event(event_id, event.run_id, event.event, event.data_json, event.created_at))
    ids = [row.id for row in rows]
    if not request.remap and ids:
        taken = conn.execute(
            "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?)) LIMIT 1", (json.dumps(ids),)
        ).fetchone()
        if taken is not None:
            return InvalidInput(f"event id {taken[0]} is already stored"), []
    conn.executemany(
        "INSERT INTO events (id, run_id, event, data, created_at) VALUES (?, ?, ?, ?, ?)",
        [(e.id, e.run_id, e.event, e.data_json, e.created_at) for e in rows],
    )
    reserve = newest if request.remap else request.reserve_through
    if reserve > sequence(conn):
        if conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'", (reserve,)).rowcount == 0:
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (reserve,))
    _save_runs(conn, states, trimmed)
    by_run: dict[str, list[Event]] = {}
    for row in rows:
        by_run.setdefault(row.run_id, []).append(row)
    return ids, _notices(states, by_run)


# --- retention ---------------------------------------------------------------------------------


def trim_run(conn: sqlite3.Connection, run_id: str, policy: RetentionPolicy, now: float, max_rows: int) -> int:
    """Delete up to ``max_rows`` of the run's oldest events that break the policy."""
    row = conn.execute("SELECT event_count, total_bytes, end_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return 0
    count, size, end_id = row
    oldest_allowed = now - policy.max_age if policy.max_age is not None else None
    last_deleted, deleted = 0, 0
    candidates = conn.execute(
        "SELECT id, created_at, length(CAST(data AS BLOB)) FROM events "
        "WHERE run_id = ? AND id IS NOT ? ORDER BY id LIMIT ?",
        (run_id, end_id, max_rows),
    )
    for event_id, created_at, nbytes in candidates:
        too_many = policy.max_events is not None and count > policy.max_events
        too_big = policy.max_bytes is not None and size > policy.max_bytes
        too_old = oldest_allowed is not None and created_at < oldest_allowed
        if not (too_many or too_big or too_old):
            break
        count, size, last_deleted, deleted = count - 1, size - nbytes, event_id, deleted + 1
    if deleted:
        conn.execute("DELETE FROM events WHERE run_id = ? AND id <= ? AND id IS NOT ?", (run_id, last_deleted, end_id))
        conn.execute(
            "UPDATE runs SET event_count = ?, total_bytes = ?, trimmed_through = max(trimmed_through, ?) WHERE run_id = ?",
            (count, size, last_deleted, run_id),
        )
    return deleted


def expire_ended(conn: sqlite3.Connection, ended_before: float, max_rows: int) -> tuple[list[str], int]:
    """Delete the oldest rows of runs that ended before ``ended_before``, at most ``max_rows``.

    Rows go oldest first, so the end marker (a run's newest row) goes last, with the run itself."""
    removed: list[str] = []
    deleted = 0
    expired = conn.execute(
        "SELECT run_id, end_id FROM runs WHERE ended_at < ? ORDER BY ended_at LIMIT 100", (ended_before,)
    ).fetchall()
    for run_id, end_id in expired:
        if deleted >= max_rows:
            break
        rows, reached = _delete_oldest(conn, run_id, end_id, max_rows - deleted)
        deleted += rows
        if reached:
            delete_run(conn, run_id)
            removed.append(run_id)
    return removed, deleted


def delete_run_in_part(conn: sqlite3.Connection, run_id: str, through: int, max_rows: int) -> bool | None:
    """One step of deleting a run in short transactions: its oldest rows up to id ``through``
    (its newest when the deletion began), at most ``max_rows``; the step that reaches
    ``through`` deletes the run with whatever was appended since. None while rows up to
    ``through`` remain, else whether there was a run to delete."""
    _, reached = _delete_oldest(conn, run_id, through, max_rows)
    return delete_run(conn, run_id) if reached else None


def _delete_oldest(conn: sqlite3.Connection, run_id: str, through: int, max_rows: int) -> tuple[int, bool]:
    """Delete the run's oldest rows, at most ``max_rows`` and none above id ``through``, keeping
    its counters and ``trimmed_through`` right (readers see it trimmed, with a Gap). Returns the
    rows deleted and whether they reached ``through``: then the caller deletes the run, so the
    counters (which do not count the end marker, the newest row) are left as they are."""
    newest, count, size = conn.execute(
        "SELECT max(id), count(*), coalesce(sum(length(CAST(data AS BLOB))), 0) FROM "
        "(SELECT id, data FROM events WHERE run_id = ? AND id <= ? ORDER BY id LIMIT ?)",
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
    conn.execute("DELETE FROM idempotency_keys WHERE run_id = ?", (run_id,))
    return conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount > 0
