"""What a batch of write requests does, decided the same way by every backend.

A backend loads the state of the runs a batch touches under its write lock (SQLite: the file's
write lock; PostgreSQL: the runs' row locks), lets a ``Planner`` check each request against it
in submission order (idempotency keys, ended runs, ``if_last_id``, created runs), hands out ids
for the rows the planner collected, and lets ``settle`` turn the plans into each request's
outcome and the runs' new state. Only loading, id allocation and saving are the backend's own,
so the rules of a write cannot drift apart between backends.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from eventlog.errors import (
    EventLogError,
    IdempotencyConflict,
    InvalidData,
    InvalidInput,
    ProducerFenced,
    ProducerSeqGap,
    RunActive,
    RunDeleted,
    RunEnded,
    RunExists,
    RunNotFound,
    WriterSeqConflict,
)
from eventlog.models import END_EVENT, Event, RunInfo
from eventlog.storage.base import (
    Append,
    Committed,
    CreateRun,
    EndRun,
    Producer,
    RetentionPolicy,
    StreamAppend,
    StreamAppended,
    StreamRow,
    WriteRequest,
    WriteResult,
)


@dataclass(slots=True)
class RunState:
    """A run's row as this transaction sees it, updated as the batch is applied."""

    stored: bool
    """The row is in the database (else the transaction inserts it)."""
    created_at: float
    metadata_json: str
    event_count: int
    total_bytes: int
    last_id: int
    end_id: int | None
    end_reason: str | None
    ended_at: float | None
    previous_last_id: int
    touched: bool = False
    parent_id: str | None = None
    deleted_at: float | None = None
    expires_at: float | None = None
    """Saved with a new run only (``Storage.extend_expiry`` moves it later)."""


def new_state(
    now: float, metadata_json: str = "{}", parent_id: str | None = None, expires_at: float | None = None
) -> RunState:
    return RunState(False, now, metadata_json, 0, 0, 0, None, None, None, 0, touched=True, parent_id=parent_id,
                    expires_at=expires_at)


@dataclass(slots=True)
class ProducerState:
    """An idempotent producer's newest accepted request in a run; ``closed``: it ended the run."""

    epoch: int
    seq: int
    closed: bool = False


CREATED = object()
"""``Planner.plan``'s outcome for a run it creates: the RunInfo is built once the batch is applied."""


@dataclass(slots=True)
class Rows:
    """The rows a request adds to the batch; ``key`` is the idempotency key to record with them.

    Not frozen (though never changed): one is made per request, and a frozen dataclass's
    ``__init__`` costs three times as much."""

    span: slice
    key: str | None = None


@dataclass(slots=True)
class Unchanged:
    """A stream append that writes nothing (a producer's retry, a repeated end): its outcome
    reports the run as the batch leaves it, since rows queued before it have no ids yet."""

    producer_seq: int | None
    duplicate: bool


@dataclass(slots=True)
class StreamRows(Rows):
    """The rows of a ``StreamAppend`` (its end marker included, last, when it ends the run)."""

    producer_seq: int | None = None
    ends: bool = False


StoredKey = tuple[str, "list[int] | Rows"]
"""An idempotency key's fingerprint and the ids it produced (``Rows``: in this batch)."""


class Planner:
    """Checks a batch's requests against the runs' states; nothing is written here.

    ``states`` and ``keys`` hold what the backend loaded beforehand; a backend that loads
    lazily overrides ``state`` and ``stored_key``."""

    def __init__(
        self, now: float, states: dict[str, RunState | None] | None = None,
        keys: dict[tuple[str, str], StoredKey] | None = None,
    ) -> None:
        self.now = now
        self.states: dict[str, RunState | None] = states if states is not None else {}
        self.rows: list[tuple[str, str, str, float, bytes | None]] = []
        self.keys: dict[tuple[str, str], StoredKey] = keys if keys is not None else {}
        self.new_keys: list[tuple[str, str, str, list[int]]] = []
        self.end_rows: dict[str, Rows] = {}
        """The end markers this batch writes, by run: a repeated end in the batch returns the same."""
        self.producers: dict[tuple[str, str], ProducerState | None] = {}
        self.new_producers: set[tuple[str, str]] = set()
        """The producers whose state this batch changed, to save."""
        self.writer_seqs: dict[str, str | None] = {}
        self.new_writer_seqs: set[str] = set()

    def state(self, run_id: str) -> RunState | None:
        return self.states.get(run_id)

    def stored_key(self, run_id: str, key: str) -> StoredKey | None:
        return self.keys.get((run_id, key))

    def stored_producer(self, run_id: str, producer_id: str) -> ProducerState | None:
        """The producer's state in the run; a backend loads it here (into ``producers``)."""
        return self.producers.get((run_id, producer_id))

    def stored_writer_seq(self, run_id: str) -> str | None:
        """The run's newest writer sequence; a backend loads it here (into ``writer_seqs``)."""
        return self.writer_seqs.get(run_id)

    def add_rows(self, state: RunState, run_id: str, events: Sequence[tuple[str, str]]) -> slice:
        """Queue rows for the insert and count them in the run's state."""
        rows, now = self.rows, self.now
        start = len(rows)
        for name, data_json in events:
            rows.append((run_id, name, data_json, now, None))
            if name != END_EVENT:
                state.event_count += 1
                # UTF-8 bytes; isascii is O(1), so the common case encodes nothing
                state.total_bytes += len(data_json) if data_json.isascii() else len(data_json.encode())
        state.touched = True
        return slice(start, len(rows))

    def add_stream_rows(self, state: RunState, run_id: str, events: Sequence[StreamRow]) -> slice:
        """``add_rows`` for a stream's messages, whose size is their bytes' when they have any."""
        rows, now = self.rows, self.now
        start = len(rows)
        for name, data_json, body in events:
            rows.append((run_id, name, data_json, now, body))
            state.event_count += 1
            state.total_bytes += len(body) if body is not None else len(data_json.encode())
        state.touched = True
        return slice(start, len(rows))

    def add_end(self, state: RunState, run_id: str, reason: str | None) -> slice:
        """Queue the run's end marker and end it in ``state``."""
        state.end_id = -1  # placeholder: the marker's id is known after the insert
        state.end_reason = reason
        state.ended_at = self.now
        marker = json.dumps({"reason": reason}, separators=(",", ":"))
        span = self.add_rows(state, run_id, [(END_EVENT, marker)])
        self.end_rows[run_id] = Rows(span)
        return span

    def plan(self, request: WriteRequest) -> object:
        """Check one request against the state; returns its rows' slice, a final result, or an
        error instance (``CREATED`` for a run created). Nothing is written yet."""
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
                    return Rows(ids.span) if isinstance(ids, Rows) else ids
            if state is None:
                state = self.states[run_id] = new_state(self.now)
            if state.deleted_at is not None:
                return RunDeleted(run_id)
            if state.end_id is not None:
                return RunEnded(run_id, state.end_reason, state.end_id)
            rows = Rows(self.add_rows(state, run_id, request.events), key)
            if key is not None:
                self.keys[(run_id, key)] = (request.fingerprint, rows)
            return rows
        if isinstance(request, StreamAppend):
            return self.plan_stream_append(request, state)
        if isinstance(request, CreateRun):
            if state is not None:
                return RunExists(run_id)
            if request.parent_id is not None:
                parent = self.state(request.parent_id)
                if parent is None:
                    return RunNotFound(request.parent_id)
                if parent.deleted_at is not None:
                    return RunDeleted(request.parent_id)
            state = self.states[run_id] = new_state(self.now, request.metadata_json, request.parent_id, request.expires_at)
            if request.events or request.end:
                self.add_stream_rows(state, run_id, request.events)
                if request.end:
                    self.add_end(state, run_id, request.end_reason)
            return CREATED
        if state is None:
            if request.must_exist:
                return RunNotFound(run_id)
            state = self.states[run_id] = new_state(self.now)
        if state.deleted_at is not None:
            return RunDeleted(run_id)
        if state.end_id is not None:
            if state.end_reason == request.reason:
                return self.end_rows.get(run_id, state.end_id)
            return RunEnded(run_id, state.end_reason, state.end_id)
        if request.if_last_id is not None and state.last_id != request.if_last_id:
            return RunActive(run_id)
        return self.end_rows.setdefault(run_id, Rows(self.add_end(state, run_id, request.reason)))

    def plan_stream_append(self, request: StreamAppend, state: RunState | None) -> object:
        """The checks of a stream append in the order the protocol gives them: a deleted or
        ended run first (an ended run takes a producer's retry of the request that ended it,
        and a repeated end alone), then the producer's epoch and sequence, then the writer
        sequence."""
        run_id, producer = request.run_id, request.producer
        if state is None:
            return RunNotFound(run_id)
        if state.deleted_at is not None:
            return RunDeleted(run_id)
        if state.end_id is not None:
            if producer is not None:
                stored = self.stored_producer(run_id, producer.id)
                if stored is not None and stored.closed and (stored.epoch, stored.seq) == (producer.epoch, producer.seq):
                    return Unchanged(producer.seq, duplicate=True)
            if request.end and not request.events:
                return Unchanged(None, duplicate=False)
            return RunEnded(run_id, state.end_reason, state.end_id)
        producer_seq = None
        if producer is not None:
            checked = self.check_producer(run_id, producer)
            if checked is not None:
                return Unchanged(checked, duplicate=True) if isinstance(checked, int) else checked
            producer_seq = producer.seq
        if request.writer_seq is not None:
            last = self.stored_writer_seq(run_id)
            if last is not None and request.writer_seq <= last:  # code points: the order of UTF-8 bytes
                return WriterSeqConflict(run_id, request.writer_seq, last)
            self.writer_seqs[run_id] = request.writer_seq
            self.new_writer_seqs.add(run_id)
        if producer is not None:
            self.producers[(run_id, producer.id)] = ProducerState(producer.epoch, producer.seq, request.end)
            self.new_producers.add((run_id, producer.id))
        span = self.add_stream_rows(state, run_id, request.events)
        if request.end:
            span = slice(span.start, self.add_end(state, run_id, request.end_reason).stop)
        return StreamRows(span, producer_seq=producer_seq, ends=request.end)

    def check_producer(self, run_id: str, producer: Producer) -> EventLogError | int | None:
        """None to accept the request; the producer's last seq for a retry of an accepted one
        (a duplicate); else why it is refused."""
        stored = self.stored_producer(run_id, producer.id)
        if stored is None or producer.epoch > stored.epoch:
            if producer.seq == 0:
                return None
            if stored is None:
                return ProducerSeqGap(run_id, producer.id, 0, producer.seq)
            return InvalidInput(f"producer {producer.id!r} starts epoch {producer.epoch} at seq {producer.seq}, not 0")
        if producer.epoch < stored.epoch:
            return ProducerFenced(run_id, producer.id, stored.epoch)
        if producer.seq <= stored.seq:
            return stored.seq
        if producer.seq > stored.seq + 1:
            return ProducerSeqGap(run_id, producer.id, stored.seq + 1, producer.seq)
        return None


    def settle(
        self, requests: list[WriteRequest], plans: list[object], ids: Sequence[int]
    ) -> tuple[list[WriteResult | BaseException], dict[str, list[Event]]]:
        """Each request's outcome once ``ids`` (one per collected row, increasing) are handed
        out, with the runs' states brought up to date and the new keys queued in ``new_keys``;
        returns the outcomes and the new events by run. A created run's outcome is its
        RunInfo, built from the final state."""
        outcomes: list[WriteResult | BaseException] = []
        created: list[int] = []
        streams: list[int] = []
        for request, plan in zip(requests, plans):
            if isinstance(plan, Rows):
                row_ids = list(ids[plan.span])
                if isinstance(plan, StreamRows):
                    streams.append(len(outcomes))  # its StreamAppended replaces it below
                outcomes.append(row_ids[0] if isinstance(request, EndRun) else row_ids)
                if plan.key is not None:
                    self.new_keys.append((request.run_id, plan.key, request.fingerprint, row_ids))  # type: ignore[union-attr]
            else:
                if plan is CREATED:
                    created.append(len(outcomes))  # its RunInfo replaces it below
                elif isinstance(plan, Unchanged):
                    streams.append(len(outcomes))
                outcomes.append(plan)  # type: ignore[arg-type]

        states = self.states
        by_run: dict[str, list[Event]] = {}
        for event_id, (run_id, name, data_json, created_at, body) in zip(ids, self.rows):
            event = Event(event_id, run_id, name, data_json, created_at, body)
            run_events = by_run.get(run_id)
            if run_events is None:
                by_run[run_id] = [event]
            else:
                run_events.append(event)
        for run_id, run_events in by_run.items():
            states[run_id].last_id = run_events[-1].id  # type: ignore[union-attr]
        for run_id, marker in self.end_rows.items():
            states[run_id].end_id = ids[marker.span.start]  # type: ignore[union-attr]
        if self.end_rows:  # a request refused because the run ended in this batch learns the end's id
            for index, outcome in enumerate(outcomes):
                if isinstance(outcome, RunEnded) and outcome.end_id == -1:
                    ended = states[outcome.run_id]
                    assert ended is not None and ended.end_id is not None
                    outcomes[index] = RunEnded(outcome.run_id, outcome.reason, ended.end_id)
        for index in created:
            run_id = requests[index].run_id
            own = by_run.get(run_id)
            outcomes[index] = run_info(run_id, states[run_id], own[0].id if own else 0)  # type: ignore[arg-type]
        for index in streams:
            state = states[requests[index].run_id]
            assert state is not None
            outcomes[index] = _stream_outcome(plans[index], outcomes[index], state)  # type: ignore[arg-type]
        return outcomes, by_run

    def touched(self) -> dict[str, RunState]:
        """The runs this batch changed (or created), to save."""
        return {run_id: state for run_id, state in self.states.items() if state is not None and state.touched}


def _stream_outcome(plan: StreamRows | Unchanged, row_ids: object, state: RunState) -> StreamAppended:
    ended = state.end_id is not None
    if isinstance(plan, Unchanged):
        return StreamAppended([], state.last_id, ended, plan.duplicate, plan.producer_seq)
    assert isinstance(row_ids, list)
    return StreamAppended(row_ids[:-1] if plan.ends else row_ids, state.last_id, ended, False, plan.producer_seq)


def notices(states: dict[str, RunState], events: dict[str, list[Event]]) -> list[Committed]:
    """What a transaction committed, per run it touched (``events``: its new rows by run), for
    the notifier."""
    return [Committed(run_id, s.previous_last_id, tuple(events.get(run_id, ()))) for run_id, s in states.items()]


def run_info(run_id: str, state: RunState, first_id: int = 0) -> RunInfo:
    return RunInfo(
        run_id, state.created_at, json.loads(state.metadata_json), state.event_count, state.total_bytes,
        first_id, state.last_id, 0, state.end_id, state.end_reason, state.ended_at, state.parent_id, state.deleted_at,
        state.expires_at,
    )


def import_event(state: RunState, event: Event, event_id: int, trimmed_through: int) -> Event | EventLogError:
    """One event of an import (``ImportRows``) applied to its run's state, as ``event_id``: the
    event as it is to be stored, or why the import is refused (the run ended, an id not above
    the run's previous one, an end marker without a text reason)."""
    if state.end_id is not None:
        return RunEnded(event.run_id, state.end_reason, state.end_id)
    floor = max(state.last_id, trimmed_through)
    if event_id <= floor:
        return InvalidInput(f"event id {event_id} of run {event.run_id!r} is not above its previous id {floor}")
    if event.event == END_EVENT:
        marker = json.loads(event.data_json)
        if not isinstance(marker, dict) or not isinstance(marker.get("reason", 0), str | None):
            return InvalidData(f"the end marker {event.id} of run {event.run_id!r} has no text reason")
        state.end_id, state.end_reason, state.ended_at = event_id, marker["reason"], event.created_at
    else:
        state.event_count += 1
        state.total_bytes += len(event.body) if event.body is not None else len(event.data_json.encode())
    state.last_id, state.touched = event_id, True
    return Event(event_id, event.run_id, event.event, event.data_json, event.created_at, event.body)


def oldest_to_trim(
    candidates: Iterable[tuple[int, float, int]], count: int, size: int, policy: RetentionPolicy, now: float
) -> tuple[int, int, int, int]:
    """How far retention trims a run holding ``count`` events of ``size`` bytes, given its
    oldest events as ``(id, created_at, bytes)`` in id order: the last id to delete, how many,
    and the run's count and size afterwards (0 and 0 for the first two: nothing to trim)."""
    oldest_allowed = now - policy.max_age if policy.max_age is not None else None
    last_deleted, deleted = 0, 0
    for event_id, created_at, nbytes in candidates:
        too_many = policy.max_events is not None and count > policy.max_events
        too_big = policy.max_bytes is not None and size > policy.max_bytes
        too_old = oldest_allowed is not None and created_at < oldest_allowed
        if not (too_many or too_big or too_old):
            break
        count, size, last_deleted, deleted = count - 1, size - nbytes, event_id, deleted + 1
    return last_deleted, deleted, count, size


async def delete_up_the_chain(
    run: RunInfo,
    delete_in_parts: Callable[[str, int], Awaitable[bool]],
    unneeded_parent: Callable[[str], Awaitable[tuple[int, str | None] | None]],
) -> bool:
    """``Storage.delete`` of ``run``, by the backend's ``delete_in_parts(run_id, through)``
    (which only marks a run with forks deleted), then of each parent up the fork chain that
    ``unneeded_parent`` finds marked deleted and without forks left (its newest id and its own
    parent): a parent kept only for its forks goes with the last of them."""
    deleted = await delete_in_parts(run.run_id, run.last_id)
    parent = run.parent_id
    while parent is not None:
        unneeded = await unneeded_parent(parent)
        if unneeded is None:
            break
        last_id, grandparent = unneeded
        await delete_in_parts(parent, last_id)
        parent = grandparent
    return deleted
