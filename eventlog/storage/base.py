"""The narrow interface between the log layer and a storage backend.

The log layer validates input, encodes JSON and runs subscriptions; a backend only stores and
fetches. Nothing here assumes SQLite: ids are opaque increasing integers *per run*
(and an id handed out after a commit is greater than every id that commit wrote: a fork's own
events follow its parent's events before the fork point, whatever run they are in), and change
detection across processes is the backend's own business (SQLite watches its WAL file;
PostgreSQL LISTENs, see ``eventlog.storage.postgres``). Keep it that way so backends stay
swappable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from eventlog.models import Event, RunInfo

Durability = Literal["process", "power"]


@dataclass(frozen=True, slots=True)
class Append:
    """Append events (name, compact JSON) to a run, creating the run when it is new."""

    run_id: str
    events: Sequence[tuple[str, str]]
    idempotency_key: str | None = None
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class EndRun:
    """Write the end marker. Repeating it with the same reason returns the first marker's id."""

    run_id: str
    reason: str | None
    must_exist: bool = True
    if_last_id: int | None = None
    """End only if the run's newest id is still this one, else raise RunActive (the janitor
    ends idle runs without racing a producer that just woke up)."""


@dataclass(frozen=True, slots=True)
class CreateRun:
    """Create a run, with its first events and its end marker when given, in one transaction: a
    crash leaves either all of it or nothing (a retry cannot find the run without its events).
    With ``parent_id`` the run is a fork of that run, which must exist and not be deleted."""

    run_id: str
    metadata_json: str
    events: Sequence[StreamRow] = ()
    end: bool = False
    end_reason: str | None = None
    parent_id: str | None = None
    expires_at: float | None = None


StreamRow = tuple[str, str, "bytes | None"]
"""An event of a stream: its name, its compact JSON data, and the exact bytes of a byte stream's
message (then the data is ``null``) or None."""


@dataclass(frozen=True, slots=True)
class Producer:
    """An idempotent producer's claim on a request: the producer's id, the epoch of its session
    and the request's sequence number within that epoch."""

    id: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Append a stream's messages (none: only end the run), checked and recorded in the same
    transaction as the rows: the producer's epoch and sequence (a retry is a duplicate and
    writes nothing; a stale epoch is fenced; a gap is refused) and the writer sequence
    ``writer_seq``, which must be greater than the run's last. ``end`` ends the run after the
    messages, atomically, with ``end_reason``. Returns a ``StreamAppended``."""

    run_id: str
    events: Sequence[StreamRow]
    producer: Producer | None = None
    writer_seq: str | None = None
    end: bool = False
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class StreamAppended:
    ids: list[int]
    """The new events' ids, the end marker not included (empty for a duplicate)."""
    last_id: int
    """The run's newest id afterwards, end marker included."""
    ended: bool
    """The run is ended now (by this request or before it)."""
    duplicate: bool = False
    """The producer had sent this request already: nothing was written."""
    producer_seq: int | None = None
    """The producer's highest accepted sequence number in its epoch."""


@dataclass(frozen=True, slots=True)
class ImportedRun:
    """A run as exported: its events follow in this or later ``ImportRows`` requests."""

    run_id: str
    created_at: float
    metadata_json: str
    trimmed_through: int
    parent_id: str | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class ImportRows:
    """Store exported runs and events as they were: ids, timestamps and end markers (events
    named ``"end"``, whose data is ``{"reason": ...}``) included, in one bounded transaction.

    Each run of ``runs`` must be new (else RunExists); each event's run must exist, be open and
    hold only older ids (ids increase within a run, and none may be stored already). With
    ``remap`` the events get new ids instead, in order, and a trimmed run's ``trimmed_through``
    becomes a new id of its own, handed out before its events (so readers still get a gap). ``reserve_through`` (without ``remap``): ids up
    to it are never handed out afterwards, as in the exported log. Returns the events' ids."""

    runs: Sequence[ImportedRun]
    events: Sequence[Event]
    remap: bool = False
    reserve_through: int = 0


WriteRequest = Append | EndRun | CreateRun | StreamAppend | ImportRows
WriteResult = list[int] | int | RunInfo | StreamAppended


@dataclass(frozen=True, slots=True)
class Committed:
    """What one commit added to one run, handed to the notifier after the commit.

    ``previous_last_id`` is the run's newest id before this commit (0 for none): a live tail that
    already ends there can extend itself with ``events`` without asking the backend."""

    run_id: str
    previous_last_id: int
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Page:
    """Events after a cursor, read in one snapshot together with the run they belong to."""

    run: RunInfo | None
    events: list[Event]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    max_events: int | None = None
    max_bytes: int | None = None
    max_age: float | None = None
    """Seconds; events older than this are trimmed (the end marker never is)."""
    ended_ttl: float | None = None
    """Seconds after its end at which a whole run is deleted."""
    abandon_after: float | None = None
    """Seconds without a new event after which an open run is ended with reason
    ``"abandoned"``: a producer that crashed leaves no reader waiting forever."""
    idempotency_ttl: float | None = 86400.0
    """Seconds an idempotency key is kept: a retry within it returns the original ids, a retry
    after it appends anew. None keeps keys for as long as their run."""

    @property
    def trims_runs(self) -> bool:
        return any(v is not None for v in (self.max_events, self.max_bytes, self.max_age))


@dataclass(frozen=True, slots=True)
class Dump:
    """Everything stored (or the chosen runs), read in one snapshot: see ``Storage.dump``."""

    schema_version: int
    last_id: int
    """The newest id ever handed out (trimmed and deleted events included)."""
    runs: int
    rows: int
    """Events of the dumped runs, end markers included."""
    pages: AsyncIterator[list[RunInfo | Event]]
    """Each run (oldest first, by creation time then id) followed by its events in id order."""


@dataclass(frozen=True, slots=True)
class Resized:
    """Bytes a maintenance operation found and left (of the WAL, of the file)."""

    before: int
    after: int


CommitListener = Callable[[list[Committed]], None]
FaultListener = Callable[[Exception], None]


class Storage(Protocol):
    """What a backend provides. All methods are coroutines; none blocks the event loop."""

    async def write(self, request: WriteRequest) -> WriteResult:
        """Apply one request durably. Concurrent calls may share one transaction (group
        commit); each returns only once the transaction holding its rows has committed."""

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` on the event loop after each commit, in commit order."""

    def add_fault_listener(self, listener: FaultListener) -> None:
        """Call ``listener(error)`` on the event loop once, when the storage becomes unusable
        (a corrupt file): every later call raises ``error``, so waiting readers must be told."""

    async def read(self, run_id: str, after: int, limit: int) -> Page: ...

    async def run(self, run_id: str) -> RunInfo | None: ...

    async def runs(
        self,
        *,
        limit: int,
        offset: int,
        status: Literal["running", "ended"] | None,
        run_globs: Sequence[str] | None = None,
    ) -> list[RunInfo]:
        """Runs, newest first, but those marked deleted. ``run_globs`` (None: no filter) keeps the runs whose id matches
        one of them as ``fnmatch.fnmatchcase`` matches, applied before ``limit``/``offset``."""

    async def extend_expiry(self, run_id: str, expires_at: float) -> None:
        """Move the run's expiry later, to ``expires_at`` (never earlier: of two processes
        extending it at once, the later time stays)."""

    async def expired_runs(self, now: float, limit: int) -> list[str]:
        """Runs whose expiry has come, not yet marked deleted, the earliest first."""

    async def delete(self, run_id: str) -> bool:
        """Delete the run and its events, or, while forks of it exist, only mark it deleted
        (``RunInfo.deleted_at``): its forks still read its events. Deleting a run's last fork
        deletes its parent too when that was marked deleted, and so on up. False when there
        was no such run."""

    async def trim_candidates(self, policy: RetentionPolicy, now: float) -> list[str]:
        """Runs that break a per-run limit of ``policy``."""

    async def trim_run(self, run_id: str, policy: RetentionPolicy, now: float, max_rows: int) -> int:
        """Remove at most ``max_rows`` of the oldest events that break the policy, in one short
        transaction; returns how many were removed."""

    async def idle_runs(self, idle_before: float) -> list[tuple[str, int]]:
        """``(run_id, last_id)`` of open runs whose newest event (or creation, for a run
        without events) is older than ``idle_before``."""

    async def expire_ended(self, ended_before: float, max_rows: int) -> tuple[list[str], int]:
        """Delete at most ``max_rows`` rows of runs that ended before ``ended_before``; returns
        the runs removed completely and the number of rows deleted."""

    async def expire_idempotency_keys(self, created_before: float, max_rows: int) -> int:
        """Forget at most ``max_rows`` idempotency keys stored before ``created_before``, in one
        short transaction; returns how many were forgotten."""

    def changes(self) -> AsyncIterator[list[tuple[str, int]]]:
        """Yield ``(run_id, last_id)`` for runs changed by *any* process, including this one.
        Only a hint: readers re-read from their cursor after it. The first yield (empty) says
        that watching has begun: every commit after it will be reported."""

    async def stats(self) -> dict[str, Any]: ...

    async def health(self) -> None:
        """Return if the storage can serve reads and writes now; else raise the typed error
        that keeps it from doing so (a corrupt file, a writer that has stopped)."""

    def dump(self, run_ids: Sequence[str] | None, page_rows: int) -> AbstractAsyncContextManager[Dump]:
        """Read the runs ``run_ids`` (None: every run) with all their events in one snapshot,
        in pages of at most ``page_rows`` items, for as long as the block lasts; a run of
        ``run_ids`` that does not exist raises RunNotFound."""

    async def schema_versions(self) -> tuple[int, int]:
        """The schema version the file had when it was opened, and the one it has now."""

    async def checkpoint(self) -> Resized:
        """Move everything written into the main file and shrink the write-ahead log; returns
        its size in bytes before and after. A reader of another process in the way for the
        whole lock timeout makes it raise DatabaseBusy (nothing is lost; retry later)."""

    async def vacuum(self) -> Resized:
        """Rebuild the file without its free pages; returns its size in bytes before and after."""

    async def close(self) -> None: ...
