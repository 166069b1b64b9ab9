"""A durable stream bridge for DeerFlow-style agent gateways (LangGraph Platform API).

Gateways pass each run's events from the run worker to SSE consumers through a *stream bridge*:
``publish`` / ``publish_end`` on the producer side, ``subscribe`` (replay after ``Last-Event-ID``,
then live tail, heartbeats, end, gap) on the consumer side, ``cleanup`` once a run is over.
``SQLiteStreamBridge`` implements that contract on an eventlog file, so that:

- events survive a restart of the gateway: a client that reconnects after the restart resumes
  from its ``Last-Event-ID``;
- several worker processes can share one file: a subscriber in one process is woken by a publish
  in another (``supports_cross_process = True``);
- publishing never waits for consumers, and slow consumers cost no memory: they read the file at
  their own pace.

Switching a gateway is one line::

    from eventlog.compat.deerflow import make_stream_bridge

    async with make_stream_bridge("data/stream-bridge.db") as bridge:
        app.state.stream_bridge = bridge

The items are the gateway's own: when ``deerflow.runtime.stream_bridge`` is importable,
``StreamEvent``, ``StreamGap``, ``HEARTBEAT_SENTINEL`` and ``END_SENTINEL`` below *are* the
gateway's objects (so ``item is END_SENTINEL`` holds in gateway code), and the bridge subclasses
the gateway's ``StreamBridge``; otherwise equivalent classes of this module are used.

Choices worth knowing (the contract leaves them open):

- **Acknowledgement.** By default ``publish`` returns once the event is committed, like every
  eventlog append: an acknowledged event survives a crash of the process (``kill -9``).
  Concurrent publishes of many runs share one transaction (group commit). ``durable_publish=False``
  trades that for throughput (write-behind, see benchmarks/bridge.py): ``publish`` returns once
  the event is queued for the log's next group commit, and the event is committed milliseconds
  later (subscribers only ever see committed events); ``publish_end``, ``cleanup``, ``flush()``
  and ``close()`` still return only once everything published before them is committed, so a
  crash can lose the events published in its last milliseconds, never anything before a
  ``publish_end`` or ``flush`` that returned. Either way ``publish`` waits for the disk at most
  (when ``max_pending`` events are not committed yet), never for consumers. A bad run id or event
  name raises at once. A queued event that cannot be stored (a full disk) is never a silent loss:
  the failure is logged, and the run's next ``publish``, its ``publish_end`` (which still ends
  the run, so that its subscribers stop) and every ``flush()`` raise ``PublishFailed``: the
  producer learns that the run may miss events published since its last ``flush`` or
  ``publish_end`` that returned (``cleanup`` of the run forgets the failure). A queued event's data is encoded when it is handed to the log
  (normally on the next turn of the event loop), so do not mutate it after publishing (the
  in-memory bridge, which keeps the object itself, has the same rule).
- **Event ids** are the log's integer ids as strings: increasing within a run, unique in the file,
  stable across restarts. They are not ``"<ms>-<seq>"``; a cursor in any other form (one from the
  old in-memory bridge such as ``"1712345678901-5"``, ``"abc"``, ``"0"``), or a number that is not
  an event of this run, replays from the earliest retained event. A cursor that *was* an event of
  this run but has been trimmed away yields a ``StreamGap`` and the subscription stops.
- **Reserved names.** eventlog keeps the event names ``end`` and ``gap`` for its own stream frames,
  but gateways do publish a data frame named ``end`` (``{"status": ...}``) just before
  ``publish_end``. The bridge therefore stores such names escaped (``"~end"``, ``"~gap"``; a name
  that already starts with ``~`` gets one more) and unescapes them on the way out: subscribers get
  back exactly the name that was published, while other eventlog readers of the same file (its
  HTTP endpoint) never mistake the frame for the stream's own end.
- **Data** must be JSON. Like the Redis bridge, values JSON cannot hold are stored through
  ``default=str`` (NaN/Infinity as ``null``, lone surrogates as ``?``, a structure that cannot
  be encoded at all as its ``str``) with a warning, rather than failing the publish or the run.
- **Publishing to an ended run** is dropped with a warning (the in-memory bridge also stores it
  where no live subscriber can see it): a worker racing a cancellation must not crash on it.
- **Retention**: each run keeps its newest ``max_events_per_run`` events; the end marker is not
  counted, so ending a run never evicts any of its history. The background janitor trims every
  ``retention_interval`` seconds, so a busy run may briefly hold more. A live subscriber that
  falls behind the retained window *and* the run's shared in-memory live tail gets a
  ``StreamGap`` and stops; while it is within the live tail it still receives every event.
  Give every bridge (every worker process) on one file the same retention settings: each one's
  janitor applies its own policy to every run, so the smallest window wins.
- **Cleanup**: ``cleanup(run_id, delay=...)`` deletes the run after ``delay`` seconds. A delayed
  cleanup is an ``asyncio.sleep`` in the caller's task and is lost if the process stops first, so
  ended runs are also deleted by the janitor ``ended_ttl`` seconds after their end (default one day,
  like the Redis bridge's key TTL; ``None`` keeps them).
- **close()** commits what was published (waiting up to ``close_timeout``), then closes the log.
  Open subscriptions stop at once, without END, so a shutting-down gateway never hangs on them;
  clients reconnect elsewhere with their cursor.
- **Run ids** follow eventlog's rule (1-128 of ``A-Z a-z 0-9 . _ : -``; UUIDs fit); another id
  raises ``InvalidRunId`` from ``publish`` and ``subscribe``, and reads as absent in
  ``stream_exists``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from eventlog import (
    End,
    Event,
    EventLog,
    Gap,
    Heartbeat,
    InvalidData,
    InvalidRunId,
    LogClosed,
    RetentionPolicy,
    RunEnded,
    StorageError,
)
from eventlog.log import validation
from eventlog.log.validation import RESERVED_EVENT_NAMES
from eventlog.models import END_EVENT
from eventlog.storage.postgres import is_postgres_url

logger = logging.getLogger(__name__)

__all__ = [
    "END_SENTINEL",
    "HEARTBEAT_SENTINEL",
    "PublishFailed",
    "SQLiteStreamBridge",
    "StreamEvent",
    "StreamGap",
    "make_stream_bridge",
]

# --- the items: the gateway's own classes when it is installed ------------------------------

try:
    from deerflow.runtime import stream_bridge as _gateway  # type: ignore[import-not-found]
except ImportError:
    _gateway = None
try:
    from deerflow.runtime.stream_bridge import base as _gateway_base  # type: ignore[import-not-found]
except ImportError:
    _gateway_base = None


def _from_gateway(name: str) -> Any:
    for module in (_gateway, _gateway_base):
        value = getattr(module, name, None) if module is not None else None
        if value is not None:
            return value
    return None


@dataclass(frozen=True, slots=True)
class StreamEvent:  # type: ignore[no-redef]
    """One event of a run: ``id`` (monotonic, as a string), SSE ``event`` name, JSON ``data``."""

    id: str
    event: str
    data: Any


@dataclass(frozen=True, slots=True)
class StreamGap:  # type: ignore[no-redef]
    """The subscriber's cursor lies before the retained window: reload durable state.

    ``requested_event_id`` is the reconnect cursor, or the last event a live subscriber got; the
    bounds are the oldest and newest events still retained (None when there are none)."""

    requested_event_id: str | None
    earliest_available_event_id: str | None
    latest_available_event_id: str | None


HEARTBEAT_SENTINEL: Any = StreamEvent(id="", event="__heartbeat__", data=None)
END_SENTINEL: Any = StreamEvent(id="", event="__end__", data=None)

if all(_from_gateway(name) is not None for name in ("StreamEvent", "HEARTBEAT_SENTINEL", "END_SENTINEL")):
    StreamEvent = _from_gateway("StreamEvent")  # type: ignore[misc]
    StreamGap = _from_gateway("StreamGap") or StreamGap  # type: ignore[misc]
    HEARTBEAT_SENTINEL = _from_gateway("HEARTBEAT_SENTINEL")
    END_SENTINEL = _from_gateway("END_SENTINEL")

_Base: type = _from_gateway("StreamBridge") or object


class PublishFailed(StorageError):
    """Events published to a run with ``durable_publish=False`` could not be stored: their
    write failed after ``publish`` had returned. The run may miss events published since its
    last ``flush()`` or ``publish_end`` that returned; ``__cause__`` is the storage's error."""

    code = "publish_failed"

    def __init__(self, run_id: str, lost: int, cause: BaseException) -> None:
        super().__init__(f"{lost} event(s) published to run {run_id} could not be stored: {cause}")
        self.run_id = run_id
        self.__cause__ = cause


# --- helpers ---------------------------------------------------------------------------------

_ESCAPE = "~"
_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,17}")  # a positive id that fits an SQLite integer


def _stored_name(event: str) -> str:
    """The name under which a gateway's event is stored (see "Reserved names" above)."""
    if type(event) is str and (event in RESERVED_EVENT_NAMES or event.startswith(_ESCAPE)):
        return _ESCAPE + event
    return event


def _published_name(stored: str) -> str:
    return stored[1:] if stored.startswith(_ESCAPE) else stored


def _parse_cursor(last_event_id: object) -> int | None:
    if isinstance(last_event_id, int) and not isinstance(last_event_id, bool):
        last_event_id = str(last_event_id)
    if isinstance(last_event_id, str) and _CANONICAL_ID.fullmatch(last_event_id):
        return int(last_event_id)
    return None


def _jsonable(data: Any) -> Any:
    """``data`` made JSON-safe the way the Redis bridge does it: ``default=str``; also NaN or
    infinities (which JSON has not) as ``null``, and lone surrogates (which UTF-8 has not) as
    ``?``."""
    text = json.dumps(data, default=str, ensure_ascii=False)
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return json.loads(text, parse_constant=lambda _: None)


# --- the bridge ------------------------------------------------------------------------------


class SQLiteStreamBridge(_Base):  # type: ignore[misc,valid-type]
    """A persistent, multi-process stream bridge on one eventlog SQLite file.

    The constructor does no I/O; the file is opened (created, migrated) on first use, or by
    ``await bridge.open()``, ``async with bridge``, or ``make_stream_bridge``. Use the bridge on
    one event loop; open one bridge per process and file (any number of processes may share it).

    ``max_events_per_run``: events retained per run (the in-memory bridge's ``queue_maxsize``).
    ``durable_publish``: True (default) returns from each publish only once its event is
    committed; False acknowledges a publish once it is queued for the next group commit
    (committed milliseconds later; see "Acknowledgement" in the module docstring). ``max_pending``: events accepted
    but not yet committed beyond which ``publish`` waits for the disk (never for consumers).
    ``ended_ttl``: seconds after its end at which a run is deleted even without ``cleanup``.
    ``durability``: ``"process"`` survives a crash of the process, ``"power"`` a power loss too.
    ``retention_interval``: seconds between retention passes. ``poll_interval``: the fallback
    bound on cross-process wake-up delay where file-change notification is unavailable.
    ``close_timeout``: how long ``close`` waits for pending events to be committed.
    """

    supports_cross_process = True

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        *,
        max_events_per_run: int = 256,
        durable_publish: bool = True,
        max_pending: int = 10_000,
        ended_ttl: float | None = 86400.0,
        durability: Literal["process", "power"] = "process",
        retention_interval: float = 1.0,
        poll_interval: float = 1.0,
        close_timeout: float = 10.0,
    ) -> None:
        if not isinstance(max_events_per_run, int) or max_events_per_run < 1:
            raise ValueError("max_events_per_run must be a positive integer")
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError("max_pending must be a positive integer")
        if ended_ttl is not None and ended_ttl <= 0:
            raise ValueError("ended_ttl must be positive or None")
        if retention_interval <= 0 or poll_interval <= 0:
            raise ValueError("retention_interval and poll_interval must be positive")
        self.db_path = db_path if is_postgres_url(db_path) else Path(db_path)
        self.max_events_per_run = max_events_per_run
        self.durable_publish = durable_publish
        self.ended_ttl = ended_ttl
        self._max_pending = max_pending
        self._durability = durability
        self._retention_interval = retention_interval
        self._poll_interval = poll_interval
        self._close_timeout = close_timeout
        self._log: EventLog | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False
        # Write-behind state (durable_publish=False): events not handed to the log yet, by
        # run; each run's latest write task; the flusher task that hands the buffer over.
        # Writes are submitted in publish order and the log commits in submission order, so a
        # run's latest write completing means all its earlier ones have committed.
        self._buffer: dict[str, list[tuple[str, Any]]] = {}
        self._writes: dict[str, asyncio.Task[None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._pending = 0  # published, not committed yet (buffered or being written)
        self._room: asyncio.Event | None = None
        self._names: dict[str, str] = {}  # published event name -> stored name, validated
        # Write-behind failures not yet forgotten (by cleanup), by run: (events lost, error).
        self._failures: dict[str, tuple[int, BaseException]] = {}
        # Calls that write directly (durable publishes, ends), which close() lets finish.
        self._inflight = 0
        self._drained: asyncio.Event | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> SQLiteStreamBridge:
        """Open the file now (otherwise the first call does). Returns the bridge."""
        await self._ready()
        return self

    async def _ready(self) -> EventLog:
        log = self._log
        if log is not None:
            return log  # once closed, its calls raise LogClosed
        if self._closed:
            raise LogClosed()
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._log is None:
                if self._closed:
                    raise LogClosed()
                self._log = await EventLog.open(
                    self.db_path,
                    durability=self._durability,
                    retention=RetentionPolicy(
                        max_events=self.max_events_per_run,  # the end marker is not counted
                        ended_ttl=self.ended_ttl,
                    ),
                    retention_interval=self._retention_interval,
                    poll_interval=self._poll_interval,
                    # The shared live tail of a run with subscribers: bounded like the retained window.
                    tail_size=min(self.max_events_per_run, 1024),
                )
        return self._log

    async def flush(self) -> None:
        """Return once every event published so far is committed (durable). Raises
        ``PublishFailed`` instead while a run has events that could not be stored (see
        "Acknowledgement"), until that run is cleaned up."""
        await self._write_all()
        for run_id in self._failures:
            self._raise_failure(run_id)

    async def _write_all(self) -> None:
        """Wait until every event published so far has been written (or failed to be)."""
        for run_id in list(self._buffer):
            self._submit(run_id)
        writes = list(self._writes.values())
        if writes:
            await asyncio.wait(writes)

    async def close(self) -> None:
        """Commit what was published (waiting up to ``close_timeout``), then close the file.
        Later calls raise LogClosed; open subscriptions stop at once, without END."""
        if self._closed:
            return
        self._closed = True
        try:
            async with asyncio.timeout(self._close_timeout):
                await self._write_all()  # a failed write was logged when it failed
                if self._inflight:
                    self._drained = asyncio.Event()
                    await self._drained.wait()
        except TimeoutError:
            logger.error("stream bridge: closing with %d event(s) not committed", self._pending)
        if self._room is not None:
            self._room.set()  # publishers waiting for room: the bridge is closing
        if self._opening is not None:
            async with self._opening:  # an open in progress finishes first
                pass
        if self._log is not None:
            await self._log.close()

    async def __aenter__(self) -> SQLiteStreamBridge:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _done(self) -> None:
        self._inflight -= 1
        if not self._inflight and self._drained is not None:
            self._drained.set()

    # --- producer side ---------------------------------------------------------------------

    async def publish(self, run_id: str, event: str, data: Any) -> None:
        """Append one event to the run (created on first publish); never waits for consumers.

        With ``durable_publish=True`` (default) it returns once the event is committed, with
        ``False`` once it is queued for the next group commit. A bad run id or event name
        raises at once; data JSON cannot hold is stored through ``str``, never raises."""
        log = self._log or await self._ready()
        if self._closed:
            raise LogClosed()
        if self.durable_publish:
            await self._publish_now(log, run_id, _stored_name(event), data)
            return
        if run_id in self._failures:
            self._raise_failure(run_id)
        name = self._names.get(event) if type(event) is str else None
        if name is None:
            name = validation.check_event_name(_stored_name(event))
            if len(self._names) < 1024:
                self._names[event] = name
        events = self._buffer.get(run_id)
        if events is None:
            validation.check_run_id(run_id)
            self._buffer[run_id] = [(name, data)]
        else:
            events.append((name, data))
        self._pending += 1
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        if self._pending >= self._max_pending:
            await self._wait_for_room()

    async def _publish_now(self, log: EventLog, run_id: str, name: str, data: Any) -> None:
        self._inflight += 1
        try:
            try:
                await log.append(run_id, name, data)
            except InvalidData:
                await log.append(run_id, name, _json_safe(run_id, name, data))
        except RunEnded:
            logger.warning("stream bridge: run %s has ended; event %r dropped", run_id, _published_name(name))
        finally:
            self._done()

    async def _flush_loop(self) -> None:
        """Hand the buffer to the log, one append per run, a round at a time: a round is
        handed over while the previous one commits, and waits for that commit before the next
        round goes. So every transaction carries at most about one append per run, holding all
        the events the run published meanwhile (few, large appends keep the writer fast), and
        the next round is encoded while the writer commits the current one."""
        previous: list[asyncio.Task[None]] = []
        try:
            while self._buffer:
                buffer, self._buffer = self._buffer, {}
                current = [self._start_write(run_id, events) for run_id, events in buffer.items()]
                if previous:
                    await asyncio.wait(previous)
                previous = current
                await asyncio.sleep(0)  # the round submits; publishers add to the buffer
        finally:
            self._flusher = None

    def _submit(self, run_id: str) -> None:
        """Hand the run's buffered events to the log now, ahead of the flusher."""
        events = self._buffer.pop(run_id, None)
        if events:
            self._start_write(run_id, events)

    def _start_write(self, run_id: str, events: list[tuple[str, Any]]) -> asyncio.Task[None]:
        # Tasks start in creation order and submit before their first suspension, so the log
        # receives each run's events in publish order.
        write = asyncio.get_running_loop().create_task(self._write(run_id, events))
        self._writes[run_id] = write
        write.add_done_callback(partial(self._written, run_id))
        return write

    def _written(self, run_id: str, write: asyncio.Task[None]) -> None:
        if self._writes.get(run_id) is write:
            del self._writes[run_id]

    async def _write(self, run_id: str, events: list[tuple[str, Any]]) -> None:
        log = self._log
        assert log is not None
        try:
            try:
                await log.append_many(run_id, events)
            except InvalidData:  # raised before anything was submitted: order is kept
                await log.append_many(run_id, [(name, _json_safe(run_id, name, data)) for name, data in events])
        except RunEnded:
            logger.warning("stream bridge: run %s has ended; %d event(s) published after it dropped", run_id, len(events))
        except Exception as exc:
            logger.exception("stream bridge: %d event(s) of run %s could not be stored", len(events), run_id)
            lost, first = self._failures.get(run_id, (0, exc))
            self._failures[run_id] = (lost + len(events), first)
        finally:
            self._pending -= len(events)
            if self._room is not None and self._pending < self._max_pending:
                self._room.set()

    def _raise_failure(self, run_id: str) -> None:
        lost, error = self._failures[run_id]
        raise PublishFailed(run_id, lost, error)

    async def _wait_for_room(self) -> None:
        """Backpressure from the disk (never from consumers): too many events not committed yet."""
        if self._room is None:
            self._room = asyncio.Event()
        while self._pending >= self._max_pending and not self._closed:
            self._room.clear()
            await self._room.wait()

    async def _settle(self, run_id: str) -> None:
        """Wait until every event published to the run so far is committed."""
        self._submit(run_id)
        write = self._writes.get(run_id)
        if write is not None:
            await asyncio.wait([write])  # a cancelled caller does not cancel the write

    async def publish_end(self, run_id: str) -> None:
        """Mark the run finished, after every event published before; keeps its history.
        Returns once the end is committed. A run never published to is created ended, so its
        subscribers get END at once. Ending twice is harmless."""
        log = self._log or await self._ready()
        self._inflight += 1
        try:
            await self._settle(run_id)
            await log.end(run_id, None, must_exist=False)
        except RunEnded:
            pass  # ended already (by another producer, with a reason)
        finally:
            self._done()
        if run_id in self._failures:
            self._raise_failure(run_id)

    # --- consumer side ---------------------------------------------------------------------

    async def subscribe(
        self,
        run_id: str,
        *,
        last_event_id: str | None = None,
        heartbeat_interval: float = 15.0,
    ) -> AsyncIterator[Any]:
        """Replay the run's retained events after ``last_event_id``, then tail new ones.

        Yields ``StreamEvent``s; ``HEARTBEAT_SENTINEL`` after ``heartbeat_interval`` idle
        seconds; ``END_SENTINEL`` (then stops) once the run has ended and everything before was
        yielded; a ``StreamGap`` (then stops) when the cursor, or this subscriber falling
        behind, lies before the retained window. A run not published yet is waited for."""
        if not heartbeat_interval > 0:
            raise ValueError("heartbeat_interval must be positive")
        log = self._log or await self._ready()
        after = await self._resolve_cursor(log, run_id, last_event_id)
        items = log.subscribe(run_id, after=after, heartbeat=heartbeat_interval, on_gap="stop")
        try:
            async for item in items:
                kind = type(item)
                if kind is Event:
                    yield StreamEvent(id=str(item.id), event=_published_name(item.event), data=item.data)
                elif kind is Heartbeat:
                    yield HEARTBEAT_SENTINEL
                elif kind is End:
                    yield END_SENTINEL
                    return
                elif kind is Gap:
                    logger.warning(
                        "stream bridge: subscriber of run %s at %s is behind the retained window",
                        run_id, item.requested,
                    )
                    yield await self._stream_gap(log, run_id, item)
                    return
        except Exception:
            if self._closed:
                return  # close() woke it up (LogClosed): just stop, without END
            raise
        finally:
            with contextlib.suppress(Exception):
                await items.aclose()  # type: ignore[attr-defined]

    async def _resolve_cursor(self, log: EventLog, run_id: str, last_event_id: object) -> int | None:
        """The ``after`` to subscribe with: the cursor when it is (or was) an event of this run,
        None (replay from the earliest retained event) for anything else."""
        if last_event_id is None:
            return None
        cursor = _parse_cursor(last_event_id)
        run = await log.run(run_id) if cursor is not None else None
        if cursor is not None and run is not None:
            if cursor <= run.trimmed_through:
                return cursor  # trimmed away: the subscription reports the gap
            if cursor <= run.last_id:
                found = await log.read(run_id, after=cursor - 1, limit=1)
                if found and found[0].id == cursor:
                    return cursor
        logger.info(
            "stream bridge: Last-Event-ID %r is not an event of run %s; replaying from the earliest",
            last_event_id, run_id,
        )
        return None

    async def _stream_gap(self, log: EventLog, run_id: str, gap: Gap) -> Any:
        earliest, latest = gap.earliest, gap.latest
        run = await log.run(run_id)
        if run is not None and run.end_id is not None and run.end_id in (earliest, latest):
            # The bounds are meant to be events; the end marker is not one: look them up.
            earliest = latest = 0
            after = 0
            while True:
                page = await log.read(run_id, after=after, limit=1000)
                for event in page:
                    if event.event != END_EVENT:
                        earliest = earliest or event.id
                        latest = event.id
                if len(page) < 1000:
                    break
                after = page[-1].id
        return StreamGap(
            requested_event_id=str(gap.requested),
            earliest_available_event_id=str(earliest) if earliest else None,
            latest_available_event_id=str(latest) if latest else None,
        )

    # --- housekeeping ----------------------------------------------------------------------

    async def stream_exists(self, run_id: str) -> bool:
        """Whether the run is there: published to (or ended) and not cleaned up."""
        if run_id in self._buffer or run_id in self._writes:
            return True
        log = self._log or await self._ready()
        try:
            return await log.run(run_id) is not None
        except InvalidRunId:
            return False

    async def cleanup(self, run_id: str, *, delay: float = 0) -> None:
        """After ``delay`` seconds, delete the run and its events. A no-op once closed."""
        if delay > 0:
            await asyncio.sleep(delay)
        if self._closed:
            return
        log = self._log or await self._ready()
        await self._settle(run_id)
        self._failures.pop(run_id, None)
        with contextlib.suppress(InvalidRunId, LogClosed):
            await log.delete(run_id)

    async def apply_retention(self) -> None:
        """Trim every run to ``max_events_per_run`` now (the janitor also does it periodically)."""
        log = self._log or await self._ready()
        await self._write_all()
        await log.apply_retention()


def _warn_not_json(run_id: str, name: str, data: Any) -> None:
    logger.warning(
        "stream bridge: event %r of run %s is not plain JSON (%s); stored via default=str",
        _published_name(name), run_id, type(data).__name__,
    )


def _json_safe(run_id: str, name: str, data: Any) -> Any:
    try:
        validation.encode_json(data)
        return data
    except InvalidData:
        pass
    _warn_not_json(run_id, name, data)
    try:
        return _jsonable(data)
    except (TypeError, ValueError, RecursionError):  # a circular structure, say
        return _jsonable(str(data))


@contextlib.asynccontextmanager
async def make_stream_bridge(db_path: str | os.PathLike[str], **options: Any) -> AsyncIterator[SQLiteStreamBridge]:
    """The gateway factory shape: ``async with make_stream_bridge(path) as bridge: ...``.
    Opens the file on entry and closes it (after committing what was published) on exit;
    ``options`` go to ``SQLiteStreamBridge``."""
    bridge = SQLiteStreamBridge(db_path, **options)
    try:
        await bridge.open()
        yield bridge
    finally:
        await bridge.close()
