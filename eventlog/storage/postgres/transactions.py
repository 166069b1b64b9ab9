"""The SQL of eventlog's writes on PostgreSQL, as coroutines of a connection inside a transaction.

Requests are checked by the same planner as SQLite's (``eventlog.storage.transactions._Batch``),
on run states and idempotency keys loaded up front, so both backends give every request the
same outcome; only loading, id assignment and saving are PostgreSQL's own.

Why ids are commit-ordered within a run (readers resume with ``id > N`` and must never skip a row
that commits late): a transaction takes its ids from the sequence ``event_ids`` only after it
has locked the row of every run it writes (``_lock_runs``), and holds those locks until it
commits. A second transaction writing the same run therefore takes its ids after the first has
committed (or rolled back), and the sequence only grows (``CACHE 1``, see the migration), so
the second's ids are larger and become visible later: per run, id order is commit order. Across
runs no order is promised, and none is needed (cursors are per run). The ids stay unique per
log, since one sequence hands out all of them; a rolled-back transaction leaves a hole, which a
reader passes without noticing (holes are not gaps: ``trimmed_through`` alone reports those).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from itertools import groupby

import asyncpg

from eventlog.errors import EventLogError, InvalidInput, RunExists, RunNotFound
from eventlog.models import Event
from eventlog.storage.base import (
    Committed,
    CreateRun,
    ImportRows,
    RetentionPolicy,
    StreamAppend,
    WriteRequest,
    WriteResult,
)
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

CHANNEL = "eventlog"
"""The NOTIFY channel: each commit announces ``[[run_id, newest id], ...]`` of the runs it
advanced (see ``listen``)."""

MAX_PAYLOAD = 7900
"""Bytes per NOTIFY payload (PostgreSQL's limit is 8000)."""

_STATE_COLUMNS = (
    "created_at, metadata, event_count, total_bytes, last_id, end_id, end_reason, ended_at, parent_id, deleted_at"
)

EVENT_BYTES = "coalesce(octet_length(body), octet_length(data))"
"""An event's size as ``runs.total_bytes`` counts it: its bytes, else its data's UTF-8 bytes."""

Outcomes = tuple[list[WriteResult | BaseException], list[Committed]]


class _Refused(Exception):
    """Rolls back the savepoint of a request refused after it wrote (an import)."""

    def __init__(self, error: EventLogError) -> None:
        self.error = error


async def _lock_runs(conn: asyncpg.Connection, run_ids: Iterable[str], now: float) -> dict[str, RunState | None]:
    """Lock the rows of ``run_ids``, in sorted order (the same in every transaction, so two
    batches never deadlock on each other), and return their states; None for a run that did
    not exist. Such a run gets a placeholder row here, which holds the lock on the new run's
    key; ``_save`` fills it in, or removes it when the run was not written after all."""
    rows = await conn.fetch(
        f"INSERT INTO runs (run_id, created_at) SELECT r, $2 FROM unnest($1::text[]) AS r ORDER BY r "
        f"ON CONFLICT (run_id) DO UPDATE SET run_id = excluded.run_id "
        f"RETURNING run_id, (xmax = 0) AS inserted, {_STATE_COLUMNS}",
        sorted(set(run_ids)), now,
    )
    states: dict[str, RunState | None] = {}
    for row in rows:
        if row["inserted"]:
            states[row["run_id"]] = None
        else:
            values = list(row.values())[2:10]
            states[row["run_id"]] = RunState(
                True, *values, previous_last_id=row["last_id"], parent_id=row["parent_id"], deleted_at=row["deleted_at"]
            )
    return states


def _runs_to_lock(requests: list[WriteRequest]) -> list[str]:
    """The runs a group writes, and the parents its forks are created from: a parent's row
    stays locked until the fork's row is committed, so a deletion of the parent (which locks it
    too) either comes first, and the fork is refused, or sees the fork."""
    runs = [request.run_id for request in requests]
    runs += [r.parent_id for r in requests if isinstance(r, CreateRun) and r.parent_id is not None]
    return runs


async def _take_ids(conn: asyncpg.Connection, count: int) -> list[int]:
    """``count`` new ids, increasing. Called with the rows of their runs locked (see above)."""
    if not count:
        return []
    return sorted(await conn.fetchval("SELECT array_agg(nextval('event_ids')) FROM generate_series(1, $1)", count))


async def _stored_keys(conn: asyncpg.Connection, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], StoredKey]:
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT k.run_id, k.key, k.fingerprint, k.ids FROM idempotency_keys k "
        "JOIN unnest($1::text[], $2::text[]) AS w(run_id, key) ON k.run_id = w.run_id AND k.key = w.key",
        [r for r, _ in wanted], [k for _, k in wanted],
    )
    return {(row["run_id"], row["key"]): (row["fingerprint"], json.loads(row["ids"])) for row in rows}


async def _load_writers(conn: asyncpg.Connection, batch: Planner, requests: list[WriteRequest]) -> None:
    """Load into ``batch`` the state of the producers and the writer sequences of the group's
    stream appends (the planner's ``stored_producer``/``stored_writer_seq`` read them there),
    with their runs' rows locked: no other transaction changes them until this one ends."""
    streams = [r for r in requests if isinstance(r, StreamAppend)]
    producers = {(r.run_id, r.producer.id) for r in streams if r.producer is not None}
    if producers:
        rows = await conn.fetch(
            "SELECT p.run_id, p.producer_id, p.epoch, p.seq, p.closed FROM producers p "
            "JOIN unnest($1::text[], $2::text[]) AS w(run_id, producer_id) "
            "ON p.run_id = w.run_id AND p.producer_id = w.producer_id",
            [r for r, _ in producers], [p for _, p in producers],
        )
        batch.producers.update({(row[0], row[1]): ProducerState(row[2], row[3], row[4]) for row in rows})
    sequenced = sorted({r.run_id for r in streams if r.writer_seq is not None})
    if sequenced:
        rows = await conn.fetch("SELECT run_id, seq FROM writer_seqs WHERE run_id = ANY($1::text[])", sequenced)
        batch.writer_seqs.update({row[0]: row[1] for row in rows})


async def apply_writes(conn: asyncpg.Connection, requests: list[WriteRequest], now: float) -> Outcomes:
    """Apply a batch in submission order, in the caller's transaction: each import on its own
    savepoint (it brings its own ids and may be refused after writing), the requests between
    imports together."""
    outcomes: list[WriteResult | BaseException] = []
    committed: list[Committed] = []
    for importing, group in groupby(requests, key=lambda request: isinstance(request, ImportRows)):
        for part in ([[r] for r in group] if importing else [list(group)]):
            if importing:
                group_outcomes, group_notices = await _import_in_savepoint(conn, part[0], now)  # type: ignore[arg-type]
            else:
                group_outcomes, group_notices = await _apply(conn, part, now)
            outcomes += group_outcomes
            committed += group_notices
    return outcomes, committed


def notify_payloads(committed: list[Committed]) -> list[str]:
    """The NOTIFY payloads announcing the runs' newest ids to every listening process (delivered
    at commit, in commit order, never for a transaction that rolls back), each under
    PostgreSQL's size limit. A run created without events is announced too (with its newest
    id, 0): a subscriber elsewhere may be waiting for it."""
    newest = {change.run_id: change.events[-1].id if change.events else change.previous_last_id for change in committed}
    payloads: list[list[list[object]]] = [[]]
    size = 2
    for run_id, last_id in newest.items():
        entry_size = len(run_id) + 24
        if payloads[-1] and size + entry_size > MAX_PAYLOAD:
            payloads.append([])
            size = 2
        payloads[-1].append([run_id, last_id])
        size += entry_size
    return [json.dumps(payload, separators=(",", ":")) for payload in payloads if payload]


async def _apply(conn: asyncpg.Connection, requests: list[WriteRequest], now: float) -> Outcomes:
    states = await _lock_runs(conn, _runs_to_lock(requests), now)
    wanted = {(r.run_id, r.idempotency_key) for r in requests if getattr(r, "idempotency_key", None) is not None}
    # The planner gets copies of the dicts: ``states`` keeps saying which runs did not exist.
    batch = Planner(now, dict(states), await _stored_keys(conn, wanted))
    await _load_writers(conn, batch, requests)
    plans = [batch.plan(request) for request in requests]
    ids = await _take_ids(conn, len(batch.rows))
    outcomes, by_run = batch.settle(requests, plans, ids)
    touched = batch.touched()
    events = [event for run_events in by_run.values() for event in run_events]
    committed = notices(touched, by_run)
    unused = [run_id for run_id, state in states.items() if state is None and run_id not in touched]
    keys = [(r, k, f, json.dumps(i)) for r, k, f, i in batch.new_keys]
    await _save(conn, touched, events, committed, unused=unused, keys=keys, writers=_writers(batch), now=now)
    return outcomes, committed


Writers = tuple[list[tuple[str, str, int, int, bool]], list[tuple[str, str]]]
"""The producers' new states (run, producer, epoch, seq, closed) and the runs' new writer
sequences (run, seq) a group accepted."""


def _writers(batch: Planner) -> Writers:
    producers = []
    for run_id, producer_id in sorted(batch.new_producers):
        state = batch.producers[(run_id, producer_id)]
        assert state is not None
        producers.append((run_id, producer_id, state.epoch, state.seq, state.closed))
    seqs = [(run_id, batch.writer_seqs[run_id]) for run_id in sorted(batch.new_writer_seqs)]
    return producers, seqs  # type: ignore[return-value]


_SAVE = """
WITH new_events AS (
    INSERT INTO events (id, run_id, event, data, created_at, body)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::bytea[])
), saved_runs AS (
    UPDATE runs SET created_at = s.created_at, metadata = s.metadata, event_count = s.event_count,
        total_bytes = s.total_bytes, last_id = s.last_id, end_id = s.end_id, end_reason = s.end_reason,
        ended_at = s.ended_at, trimmed_through = coalesce(s.trimmed_through, runs.trimmed_through),
        parent_id = s.parent_id
    FROM unnest($7::text[], $8::float8[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[],
                $13::bigint[], $14::text[], $15::float8[], $16::bigint[], $17::text[])
        AS s(run_id, created_at, metadata, event_count, total_bytes, last_id, end_id, end_reason, ended_at,
             trimmed_through, parent_id)
    WHERE runs.run_id = s.run_id
), unused_runs AS (
    DELETE FROM runs WHERE run_id = ANY($18::text[])
), new_keys AS (
    INSERT INTO idempotency_keys (run_id, key, fingerprint, ids, created_at)
    SELECT r, k, f, i, $23 FROM unnest($19::text[], $20::text[], $21::text[], $22::text[]) AS t(r, k, f, i)
), saved_producers AS (
    INSERT INTO producers (run_id, producer_id, epoch, seq, closed, updated_at)
    SELECT r, p, e, s, c, $23 FROM unnest($24::text[], $25::text[], $26::bigint[], $27::bigint[], $28::bool[])
        AS t(r, p, e, s, c)
    ON CONFLICT (run_id, producer_id) DO UPDATE
        SET epoch = excluded.epoch, seq = excluded.seq, closed = excluded.closed, updated_at = excluded.updated_at
), saved_writer_seqs AS (
    INSERT INTO writer_seqs (run_id, seq) SELECT * FROM unnest($29::text[], $30::text[])
    ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq
)
SELECT pg_notify('""" + CHANNEL + """', payload) FROM unnest($31::text[]) AS payload
"""
"""Everything a group of requests writes, in one statement (one round trip): each part is a
no-op for empty arrays. The parts touch different rows (the placeholders removed are runs not
written), so running them on one snapshot, as PostgreSQL does, is sound."""


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    """``rows`` as ``width`` column arrays, for ``unnest``."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]


async def _save(
    conn: asyncpg.Connection,
    states: dict[str, RunState],
    events: list[Event],
    committed: list[Committed],
    *,
    unused: Sequence[str] = (),
    trimmed: dict[str, int] | None = None,
    keys: Sequence[tuple[str, str, str, str]] = (),
    writers: Writers = ([], []),
    now: float = 0.0,
) -> None:
    """Insert ``events``, write the runs' rows as ``states`` hold them (their rows exist: see
    ``_lock_runs``), remove the placeholders of runs left ``unused``, store the idempotency
    ``keys`` (run, key, fingerprint, JSON ids) made ``now``, save the ``writers``' new state
    and announce ``committed``.
    ``trimmed_through`` is written from ``trimmed`` (an import's new runs) only: retention alone
    moves it otherwise."""
    runs = [
        (run_id, s.created_at, s.metadata_json, s.event_count, s.total_bytes, s.last_id,
         s.end_id, s.end_reason, s.ended_at, (trimmed or {}).get(run_id), s.parent_id)
        for run_id, s in states.items()
    ]
    producers, seqs = writers
    await conn.execute(
        _SAVE,
        *_columns([(e.id, e.run_id, e.event, e.data_json, e.created_at, e.body) for e in events], 6),
        *_columns(runs, 11),
        list(unused),
        *_columns(keys, 4), now,
        *_columns(producers, 5),
        *_columns(seqs, 2),
        notify_payloads(committed),
    )


# --- import ------------------------------------------------------------------------------------


async def _import_in_savepoint(conn: asyncpg.Connection, request: ImportRows, now: float) -> Outcomes:
    try:
        async with conn.transaction():
            outcome, committed = await import_rows(conn, request, now)
    except _Refused as refused:
        return [refused.error], []
    return [outcome], committed


async def import_rows(conn: asyncpg.Connection, request: ImportRows, now: float) -> tuple[list[int], list[Committed]]:
    """Apply one ``ImportRows`` (the rules are SQLite's: see ``transactions.import_rows``);
    raises ``_Refused`` for a refused request, whose savepoint then rolls back."""
    locked = await _lock_runs(conn, [run.run_id for run in request.runs] + [e.run_id for e in request.events], now)
    states: dict[str, RunState] = {}
    trimmed: dict[str, int] = {}
    fresh = iter(await _take_ids(conn, len(request.events) + sum(1 for r in request.runs if r.trimmed_through)) if request.remap else ())
    for run in request.runs:
        if run.run_id in states or locked[run.run_id] is not None:
            raise _Refused(RunExists(run.run_id))
        states[run.run_id] = new_state(run.created_at, run.metadata_json)
        # With remap, an id of its own stands for the trimmed events, so readers get a gap.
        trimmed[run.run_id] = next(fresh) if request.remap and run.trimmed_through else run.trimmed_through
    rows: list[Event] = []
    for event in request.events:
        state = states.get(event.run_id)
        if state is None:
            loaded = locked[event.run_id]
            if loaded is None:
                raise _Refused(RunNotFound(event.run_id))
            state = states[event.run_id] = loaded
            trimmed[event.run_id] = await conn.fetchval("SELECT trimmed_through FROM runs WHERE run_id = $1", event.run_id)
        row = import_event(state, event, next(fresh) if request.remap else event.id, trimmed[event.run_id])
        if isinstance(row, EventLogError):
            raise _Refused(row)
        rows.append(row)
    ids = [row.id for row in rows]
    if not request.remap and ids:
        taken = await conn.fetchval("SELECT id FROM events WHERE id = ANY($1::bigint[]) LIMIT 1", ids)
        if taken is not None:
            raise _Refused(InvalidInput(f"event id {taken} is already stored"))
    new_runs = {run.run_id for run in request.runs}
    by_run: dict[str, list[Event]] = {}
    for row in rows:
        by_run.setdefault(row.run_id, []).append(row)
    committed = notices(states, by_run)
    await _save(conn, states, rows, committed, trimmed={r: t for r, t in trimmed.items() if r in new_runs})
    if not request.remap:
        await reserve(conn, max([request.reserve_through, *ids]))
    return ids, committed


async def reserve(conn: asyncpg.Connection, through: int) -> None:
    """Never hand out ids up to ``through`` (an import's). A sequence is not transactional, and
    only ever moves forward here; the primary key of ``events`` refuses an id taken twice."""
    await conn.execute(
        "SELECT setval('event_ids', $1) WHERE $1 > (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM event_ids)",
        through,
    )


def sequence_sql() -> str:
    """The newest id handed out (0 before the first)."""
    return "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM event_ids"


# --- retention ---------------------------------------------------------------------------------


async def _lock_run(conn: asyncpg.Connection, run_id: str) -> asyncpg.Record | None:
    """Lock a stored run's row (appends to it wait, as they would for a write of theirs)."""
    return await conn.fetchrow("SELECT event_count, total_bytes, end_id FROM runs WHERE run_id = $1 FOR UPDATE", run_id)


async def trim_run(conn: asyncpg.Connection, run_id: str, policy: RetentionPolicy, now: float, max_rows: int) -> int:
    """Delete up to ``max_rows`` of the run's oldest events that break the policy."""
    row = await _lock_run(conn, run_id)
    if row is None:
        return 0
    count, size, end_id = row
    candidates = await conn.fetch(
        f"SELECT id, created_at, {EVENT_BYTES} FROM events "
        "WHERE run_id = $1 AND id IS DISTINCT FROM $2 ORDER BY id LIMIT $3",
        run_id, end_id, max_rows,
    )
    last_deleted, deleted, count, size = oldest_to_trim(candidates, count, size, policy, now)
    if deleted:
        await conn.execute(
            "DELETE FROM events WHERE run_id = $1 AND id <= $2 AND id IS DISTINCT FROM $3", run_id, last_deleted, end_id
        )
        await conn.execute(
            "UPDATE runs SET event_count = $1, total_bytes = $2, trimmed_through = greatest(trimmed_through, $3) "
            "WHERE run_id = $4",
            count, size, last_deleted, run_id,
        )
    return deleted


async def expire_ended(conn: asyncpg.Connection, ended_before: float, max_rows: int) -> tuple[list[str], int]:
    """Delete the oldest rows of runs that ended before ``ended_before``, at most ``max_rows``;
    the end marker (a run's newest row) goes last, with the run itself. Which runs: SQLite's
    ``_EXPIRED``: also those marked deleted whose forks are gone, and none a fork still reads."""
    removed: list[str] = []
    deleted = 0
    expired = await conn.fetch(
        "SELECT run_id, coalesce(end_id, last_id) FROM runs WHERE (ended_at < $1 OR deleted_at IS NOT NULL) "
        "AND NOT EXISTS (SELECT 1 FROM runs fork WHERE fork.parent_id = runs.run_id) "
        "ORDER BY coalesce(ended_at, deleted_at) LIMIT 100",
        ended_before,
    )
    for run_id, through in expired:
        if deleted >= max_rows:
            break
        rows, reached = await _delete_oldest(conn, run_id, through, max_rows - deleted)
        deleted += rows
        if reached:
            await delete_run(conn, run_id)
            removed.append(run_id)
    return removed, deleted


async def delete_run_in_part(
    conn: asyncpg.Connection, run_id: str, through: int, max_rows: int, now: float
) -> bool | None:
    """One step of deleting a run in short transactions (see SQLite's ``delete_run_in_part``):
    a run with forks is only marked deleted. The forks are looked for with the run's row locked,
    which a fork's creation locks too (``_runs_to_lock``): one created meanwhile is seen."""
    if await _lock_run(conn, run_id) is None:
        return False
    if await mark_deleted_if_forked(conn, run_id, now):
        return True
    _, reached = await _delete_oldest(conn, run_id, through, max_rows)
    return await delete_run(conn, run_id) if reached else None


async def _delete_oldest(conn: asyncpg.Connection, run_id: str, through: int, max_rows: int) -> tuple[int, bool]:
    """Delete the run's oldest rows, at most ``max_rows`` and none above ``through``, keeping its
    counters and ``trimmed_through`` right; returns the rows deleted and whether they reached
    ``through`` (the caller then deletes the run)."""
    await _lock_run(conn, run_id)
    newest, count, size = await conn.fetchrow(
        f"SELECT max(id), count(*), coalesce(sum({EVENT_BYTES}), 0) FROM "
        "(SELECT id, data, body FROM events WHERE run_id = $1 AND id <= $2 ORDER BY id LIMIT $3) AS oldest",
        run_id, through, max_rows,
    )
    if newest is None:
        return 0, True
    await conn.execute("DELETE FROM events WHERE run_id = $1 AND id <= $2", run_id, newest)
    if newest >= through:
        return count, True
    await conn.execute(
        "UPDATE runs SET event_count = event_count - $1, total_bytes = total_bytes - $2, "
        "trimmed_through = greatest(trimmed_through, $3) WHERE run_id = $4",
        count, size, newest, run_id,
    )
    return count, False


async def expire_idempotency_keys(conn: asyncpg.Connection, created_before: float, max_rows: int) -> int:
    status = await conn.execute(
        "DELETE FROM idempotency_keys WHERE (run_id, key) IN "
        "(SELECT run_id, key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        created_before, max_rows,
    )
    return int(status.split()[-1])


async def delete_run(conn: asyncpg.Connection, run_id: str) -> bool:
    await conn.execute("DELETE FROM events WHERE run_id = $1", run_id)
    for table in ("idempotency_keys", "producers", "writer_seqs"):
        await conn.execute(f"DELETE FROM {table} WHERE run_id = $1", run_id)
    return (await conn.execute("DELETE FROM runs WHERE run_id = $1", run_id)) != "DELETE 0"


async def mark_deleted_if_forked(conn: asyncpg.Connection, run_id: str, now: float) -> bool:
    """Mark the run deleted if forks of it exist (they still read its events); whether it was.
    Called with the run's row locked, so this statement's snapshot holds every fork committed."""
    status = await conn.execute(
        "UPDATE runs SET deleted_at = coalesce(deleted_at, $1) WHERE run_id = $2 "
        "AND EXISTS (SELECT 1 FROM runs fork WHERE fork.parent_id = $2)",
        now, run_id,
    )
    return status != "UPDATE 0"


async def unneeded_parent(conn: asyncpg.Connection, parent_id: str) -> tuple[int, str | None] | None:
    """The newest id and the parent of run ``parent_id`` if it is marked deleted and no fork of
    it is left: then it goes too (and may leave its own parent unneeded)."""
    row = await conn.fetchrow(
        "SELECT last_id, parent_id FROM runs WHERE run_id = $1 AND deleted_at IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM runs fork WHERE fork.parent_id = $1)",
        parent_id,
    )
    return None if row is None else (row[0], row[1])
