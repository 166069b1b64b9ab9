"""Streams on the log: what the Durable Streams protocol asks of a stream, in terms of runs.

A stream is a run. Its messages are the run's events (``validation.encode_message``: a JSON
value, or the exact bytes of a byte stream's message), closing it writes the run's end marker,
and its configuration (content type, TTL or expiry, fork parent and point) is the run's
``metadata["stream"]``. Positions are event ids: position ``n`` stands after every message
with an id up to ``n``, so a reader resumes with ``id > n`` exactly as an SSE client does with
``Last-Event-ID``. The transport turns positions into the protocol's opaque offsets.

A fork reads its parent's messages up to its fork point, then its own (ids handed out later
are greater, see ``eventlog.storage.base``); its parent is kept, marked deleted, while forks
read it (``EventLog.delete``).

TTL and expiry are the run's ``expires_at``, which the retention janitor deletes it at, and
are checked here too when a stream is looked up (an expired stream is deleted then). A TTL's
window restarts at every read or write: this process knows the new expiry at once and stores
it whenever it moves on by ``EXTEND_SLACK`` seconds or more, so every process (and a restart)
sees the window within that much.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from eventlog.errors import InvalidInput, RunDeleted, RunExists, RunNotFound
from eventlog.log.eventlog import EventLog
from eventlog.log.subscription import Item
from eventlog.log.validation import encode_message
from eventlog.models import END_EVENT, HEARTBEAT, End, Event, RunInfo
from eventlog.storage.base import Producer, StreamAppended, StreamRow

STREAM_KEY = "stream"
"""The key of a stream's configuration in its run's metadata."""
CLOSED = "closed"
"""The end reason of a closed stream."""
PAGE = 1000
"""Events read from storage at a time."""
EXTEND_SLACK = 1.0
"""Seconds a TTL's expiry moves on before it is stored again: at most one write per second per
stream that is read or written, however busy."""


class StreamConflict(Exception):
    """A request that contradicts the stream as it is (another configuration, another content
    type): the protocol's 409."""


class OffsetGone(Exception):
    """The position lies before the messages retention kept: the protocol's 410."""


@dataclass(frozen=True, slots=True)
class Fork:
    parent: str
    offset: int | None = None
    """The fork offset asked for (None: the parent's tail at the time)."""
    sub_offset: int = 0
    point: int = 0
    """The parent's messages with ids up to this one are the fork's: worked out from the
    others when the fork is created (``Streams.fork_config``)."""


@dataclass(frozen=True, slots=True)
class StreamConfig:
    content_type: str
    ttl: int | None = None
    """Seconds of a sliding window: the stream expires that long after its last read or write."""
    expires_at: str | None = None
    """An RFC 3339 time, as given, after which the stream is gone."""
    fork: Fork | None = None

    @property
    def media_type(self) -> str:
        """The content type without parameters, lower-cased: what two content types compare by."""
        return media_type(self.content_type)

    @property
    def is_json(self) -> bool:
        return self.media_type == "application/json"

    def expiry(self) -> float | None:
        return None if self.expires_at is None else parse_time(self.expires_at)

    def to_metadata(self) -> dict[str, Any]:
        config: dict[str, Any] = {"content_type": self.content_type, "ttl": self.ttl, "expires_at": self.expires_at}
        if self.fork is not None:
            fork = self.fork
            config["fork"] = {"parent": fork.parent, "point": fork.point, "offset": fork.offset, "sub_offset": fork.sub_offset}
        return {STREAM_KEY: config}

    @classmethod
    def of(cls, run: RunInfo) -> StreamConfig | None:
        """The configuration of a run that is a stream (None for any other run)."""
        config = run.metadata.get(STREAM_KEY)
        if not isinstance(config, dict):
            return None
        fork = config.get("fork")
        return cls(
            config["content_type"], config.get("ttl"), config.get("expires_at"),
            Fork(**fork) if isinstance(fork, dict) else None,
        )


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def parse_time(text: str) -> float:
    """An RFC 3339 time as unix seconds (a time without an offset is taken as UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class StreamInfo:
    run: RunInfo
    config: StreamConfig

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def closed(self) -> bool:
        return self.run.end_id is not None

    @property
    def deleted(self) -> bool:
        return self.run.deleted_at is not None

    @property
    def tail(self) -> int:
        return tail_position(self.config, self.run.last_id, self.run.end_id is not None)


def tail_position(config: StreamConfig, last_id: int, ended: bool) -> int:
    """The position after a stream's last message, given its run's newest id. Closing moves it
    past no message: a closed stream's tail is the position just before its end marker."""
    if ended:
        return last_id - 1
    return max(last_id, config.fork.point if config.fork else 0)


@dataclass(frozen=True, slots=True)
class Slice:
    """Messages after a position, read in order across the fork chain."""

    messages: list[Event]
    next: int
    """The position after them (the tail when there were none)."""
    up_to_date: bool
    """Nothing followed them when they were read (a size limit did not cut the read short)."""
    closed: bool
    """The stream is closed and ``next`` is its tail: no message will ever follow."""


def message_size(event: Event) -> int:
    return len(event.body) if event.body is not None else len(event.data_json)


class Streams:
    """The streams of one log (see the module's docstring)."""

    def __init__(self, log: EventLog, clock: Callable[[], float] = time.time) -> None:
        self._log = log
        self._clock = clock
        self._expiries: dict[str, float] = {}
        """TTL streams' expiries as this process moved them on (the stored one may be up to
        ``EXTEND_SLACK`` behind)."""
        self._stored: dict[str, float] = {}

    # --- lifecycle -------------------------------------------------------------------------

    async def info(self, run_id: str) -> StreamInfo | None:
        """The stream, None when there is none (a run that is not a stream included); an
        expired stream is deleted here and then is gone, or deleted-but-kept for its forks."""
        return await self._current(await self._log.run(run_id))

    async def _current(self, run: RunInfo | None) -> StreamInfo | None:
        """``info`` of a run just read."""
        config = None if run is None else StreamConfig.of(run)
        if run is None or config is None:
            return None
        info = StreamInfo(run, config)
        if info.deleted or not self._expired(info):
            return info
        await self.delete(run.run_id)
        run = await self._log.run(run.run_id)
        return None if run is None else replace(info, run=run)

    def _expired(self, info: StreamInfo) -> bool:
        expiry = info.config.expiry()
        if expiry is None and info.config.ttl is not None:
            stored = info.run.expires_at if info.run.expires_at is not None else info.run.created_at + info.config.ttl
            expiry = max(stored, self._expiries.get(info.run_id, stored))
        return expiry is not None and self._clock() >= expiry

    async def touch(self, info: StreamInfo) -> None:
        """A read or write: the stream's TTL window starts again."""
        ttl = info.config.ttl
        if ttl is None or info.config.expires_at is not None:
            return
        expiry = self._clock() + ttl
        self._expiries[info.run_id] = expiry
        stored = max(info.run.expires_at or 0.0, self._stored.get(info.run_id, 0.0))
        if expiry - stored >= EXTEND_SLACK:
            await self._log.extend_expiry(info.run_id, expiry)
            self._stored[info.run_id] = expiry

    async def create(
        self, run_id: str, config: StreamConfig, messages: Sequence[StreamRow], *, closed: bool
    ) -> tuple[StreamInfo, bool]:
        """Create the stream with its first messages (closed at once with ``closed``), or find
        it with the same configuration (then ``messages`` are not appended): the stream and
        whether it was created. A fork's ``config.fork`` holds its parent and the offset asked
        for (``point`` is worked out here, see ``fork_config``). StreamConflict when a stream
        (or another run) with another configuration is there, or a deleted one kept for its
        forks."""
        run = await self._log.run(run_id)
        if run is not None and StreamConfig.of(run) is None:
            raise StreamConflict(f"{run_id!r} is a run of the log, not a stream")
        existing = await self._current(run)
        if existing is not None:
            return self._same(existing, config, closed), False
        prefix: list[StreamRow] = []
        if config.fork is not None:
            config, prefix = await self.fork_config(config)
        expires_at = config.expiry()
        if expires_at is None and config.ttl is not None:
            expires_at = self._clock() + config.ttl
        try:
            run = await self._log.create_run(
                run_id, config.to_metadata(), messages=[*prefix, *messages], end=closed,
                end_reason=CLOSED if closed else None, parent_id=config.fork.parent if config.fork else None,
                expires_at=expires_at,
            )
        except RunExists:  # created meanwhile by another request: the same rules apply
            existing = await self.info(run_id)
            if existing is None:
                raise StreamConflict(f"stream {run_id!r} was created and deleted meanwhile") from None
            return self._same(existing, config, closed), False
        return StreamInfo(run, config), True

    @staticmethod
    def _same(existing: StreamInfo, config: StreamConfig, closed: bool) -> StreamInfo:
        if existing.deleted:
            raise StreamConflict(f"stream {existing.run_id!r} was deleted and is kept while its forks read it")
        mine, asked = existing.config, config
        same_fork = (mine.fork is None) == (asked.fork is None) and (
            mine.fork is None or asked.fork is None or (
                mine.fork.parent == asked.fork.parent
                and asked.fork.offset in (None, mine.fork.offset if mine.fork.offset is not None else mine.fork.point)
                and mine.fork.sub_offset == asked.fork.sub_offset
            )
        )
        content_type_matches = asked.fork is not None and not asked.content_type or mine.media_type == asked.media_type
        if not (content_type_matches and mine.ttl == asked.ttl and mine.expires_at == asked.expires_at
                and same_fork and existing.closed == closed):
            raise StreamConflict(f"stream {existing.run_id!r} exists with another configuration")
        return existing

    async def fork_config(self, config: StreamConfig) -> tuple[StreamConfig, list[StreamRow]]:
        """A fork's configuration once its parent is checked: its content type (the parent's
        when none was given), its expiry (the parent's, when it asked for none) and its fork
        point; and the first messages it holds of its own (the part of a byte message before
        a sub-offset inside it)."""
        assert config.fork is not None
        fork = config.fork
        parent = await self.info(fork.parent)
        if parent is None:
            raise RunNotFound(fork.parent)
        if parent.deleted:
            raise RunDeleted(fork.parent)
        if config.content_type and media_type(config.content_type) != parent.config.media_type:
            raise StreamConflict(f"the content type differs from that of {fork.parent!r}, {parent.config.content_type!r}")
        offset = parent.tail if fork.offset is None else fork.offset
        if offset > parent.tail:
            raise InvalidInput(f"the fork offset lies beyond the tail of {fork.parent!r}")
        point, prefix = offset, []
        if fork.sub_offset:
            point, prefix = await self._sub_offset(parent, offset, fork.sub_offset)
        ttl, expires_at = config.ttl, config.expires_at
        if ttl is None and expires_at is None:
            ttl, expires_at = parent.config.ttl, parent.config.expires_at
        return StreamConfig(
            config.content_type or parent.config.content_type, ttl, expires_at,
            Fork(fork.parent, fork.offset, fork.sub_offset, point),
        ), prefix

    async def _sub_offset(self, parent: StreamInfo, offset: int, count: int) -> tuple[int, list[StreamRow]]:
        """Where ``count`` messages (JSON) or bytes (other types) past ``offset`` end in the
        parent: the fork point, and the bytes of a message cut there, which the fork keeps."""
        following = (await self.read(parent, offset, max_bytes=None, max_messages=count)).messages
        if parent.config.is_json:
            if len(following) < count:
                raise InvalidInput(f"the sub-offset {count} lies past the messages of {parent.run_id!r}")
            return following[count - 1].id, []
        if not following or following[0].body is None or count > len(following[0].body):
            raise InvalidInput(f"the sub-offset {count} lies past the next message of {parent.run_id!r}")
        message = following[0]
        assert message.body is not None
        if count == len(message.body):
            return message.id, []
        return offset, [encode_message(body=message.body[:count])]

    async def append(
        self, info: StreamInfo, messages: Sequence[StreamRow], *, producer: Producer | None,
        writer_seq: str | None, close: bool,
    ) -> StreamAppended:
        outcome = await self._log.append_messages(
            info.run_id, messages, producer=producer, writer_seq=writer_seq, end=close,
            end_reason=CLOSED if close else None,
        )
        await self.touch(info)
        return outcome

    async def delete(self, run_id: str) -> bool:
        self._expiries.pop(run_id, None)
        self._stored.pop(run_id, None)
        return await self._log.delete(run_id)

    # --- reading ---------------------------------------------------------------------------

    async def read(
        self, info: StreamInfo, after: int, *, max_bytes: int | None, max_messages: int = 10 * PAGE
    ) -> Slice:
        """The messages after position ``after``, across the fork chain, at most
        ``max_messages`` and (but for the first) ``max_bytes`` of them. OffsetGone when
        retention removed messages right after ``after`` (from the start, 0, a read begins at
        the first message retention kept)."""
        messages: list[Event] = []
        size = 0
        for run, cap in await self._chain(info):
            if cap is not None and after >= cap:
                continue
            cursor = after
            if after < run.trimmed_through:
                if after != 0:
                    raise OffsetGone(f"the messages after this offset of {info.run_id!r} were removed by retention")
                cursor = run.trimmed_through  # from the start: from the first message retention kept
            while True:
                page = await self._log.read(run.run_id, cursor, PAGE)
                for event in page:
                    if cap is not None and event.id > cap:
                        break
                    if event.event == END_EVENT:
                        if cap is None:
                            return Slice(messages, event.id - 1, True, True)
                        break  # a parent's end: its fork goes on
                    size += message_size(event)
                    if messages and ((max_bytes is not None and size > max_bytes) or len(messages) >= max_messages):
                        return Slice(messages, messages[-1].id, False, False)
                    messages.append(event)
                else:
                    if len(page) == PAGE:
                        cursor = page[-1].id
                        continue
                break
        next_position = messages[-1].id if messages else max(after, info.tail)
        return Slice(messages, next_position, True, False)

    async def _chain(self, info: StreamInfo) -> list[tuple[RunInfo, int | None]]:
        """The runs a read goes through, the fork chain's root first, each with the last id of
        it that the stream sees (None: all of it, for the stream's own run)."""
        chain: list[tuple[RunInfo, int | None]] = [(info.run, None)]
        fork, cap = info.config.fork, None
        while fork is not None:
            cap = fork.point if cap is None else min(cap, fork.point)
            parent = await self._log.run(fork.parent)
            if parent is None:  # kept while its forks exist: gone only in a race with their deletion
                break
            chain.append((parent, cap))
            parent_config = StreamConfig.of(parent)
            fork = parent_config.fork if parent_config else None
        chain.reverse()
        return chain

    async def follow(
        self, info: StreamInfo, after: int, *, heartbeat: float, max_bytes: int
    ) -> AsyncIterator[Slice | None]:
        """The stream from position ``after`` on, live: the slices there are (the first may
        be empty: nothing after ``after`` yet), then each commit of the stream's own run as it
        comes (a fork is not woken by its parent's appends), None after ``heartbeat`` idle
        seconds, until a closed slice. RunNotFound when the stream is deleted meanwhile."""
        while True:
            part = await self.read(info, after, max_bytes=max_bytes)
            yield part
            if part.closed:
                return
            after = part.next
            if part.up_to_date:
                break
        batches = self._log.stream(info.run_id, after=after, heartbeat=heartbeat, wait_for_run=False)
        async with contextlib.aclosing(batches):  # type: ignore[type-var]
            async for batch in batches:
                if batch[0] is HEARTBEAT:
                    yield None
                    continue
                for part in _slices(batch, after, max_bytes):
                    yield part
                    after = part.next


def _slices(batch: list[Item], after: int, max_bytes: int) -> Iterator[Slice]:
    """A subscription's batch as slices of at most ``max_bytes`` of messages each (one message
    more, if a single message is larger); the last one closed when the batch ends the run."""
    messages: list[Event] = []
    size = 0
    for item in batch:
        if isinstance(item, End):
            yield Slice(messages, item.id - 1, True, True)
            return
        if not isinstance(item, Event):
            continue
        size += message_size(item)
        if messages and size > max_bytes:
            yield Slice(messages, messages[-1].id, False, False)
            messages, size = [], message_size(item)
        messages.append(item)
    if messages:
        yield Slice(messages, messages[-1].id, True, False)
