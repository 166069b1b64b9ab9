"""Streams on the log (eventlog/log/streams.py): expiry, forks and their chains, sub-offsets,
following a stream, and the protocol's wire formats, against a real log (both backends)."""

from __future__ import annotations

import contextlib
import itertools
import time
from datetime import UTC, datetime

import pytest

from eventlog import EventLog, InvalidInput, RetentionPolicy, RunDeleted, RunNotFound
from eventlog.http.durable import wire
from eventlog.log.streams import (
    Fork,
    OffsetGone,
    Slice,
    StreamConfig,
    StreamConflict,
    Streams,
)
from eventlog.log.validation import encode_message
from eventlog.models import Event
from eventlog.storage.base import Producer

pytestmark = pytest.mark.backends

TEXT = StreamConfig("text/plain")
JSON = StreamConfig("application/json")


class Clock:
    """Wall-clock time that a test moves on (runs record their creation in real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def chunks(*parts: bytes) -> list[tuple[str, str, bytes | None]]:
    return [encode_message(body=part) for part in parts]


async def text_of(streams: Streams, name: str, after: int = 0) -> bytes:
    info = await streams.info(name)
    assert info is not None
    part = await streams.read(info, after, max_bytes=None)
    return b"".join(m.body or b"" for m in part.messages)


async def test_a_ttl_expires_an_idle_stream_and_reads_and_writes_keep_it(log: EventLog) -> None:
    clock = Clock()
    streams = Streams(log, clock)
    info, created = await streams.create("ttl-1", StreamConfig("text/plain", ttl=10), chunks(b"a"), closed=False)
    assert created
    clock.now += 9
    await streams.touch(info)  # a read
    clock.now += 9
    assert await streams.info("ttl-1") is not None  # 18 s after creation, 9 after the read
    await streams.append(info, chunks(b"b"), producer=None, writer_seq=None, close=False)
    clock.now += 9.9
    assert await streams.info("ttl-1") is not None
    clock.now += 0.2
    assert await streams.info("ttl-1") is None
    assert await log.run("ttl-1") is None  # deleted, not only hidden


async def test_every_process_sees_the_window_a_read_moved_on(log: EventLog) -> None:
    """The expiry a read moves on is stored: another process (or this one after a restart)
    sees it, and the janitor deletes the stream at it without anyone looking it up."""
    clock = Clock()
    first = Streams(log, clock)
    info, _ = await first.create("ttl-2", StreamConfig("text/plain", ttl=10), [], closed=False)
    clock.now += 8
    await first.touch(info)  # stored: 18 s after the creation
    clock.now += 0.5
    await first.touch(info)  # moved on by less than EXTEND_SLACK: known here, not stored
    created = info.run.created_at
    assert (await log.run("ttl-2")).expires_at == pytest.approx(created + 18, abs=0.1)  # type: ignore[union-attr]
    other = Streams(log, clock)  # another worker, or the restarted server
    clock.now += 8.6  # 17.1 s after the creation, 9.1 after the first read
    assert await other.info("ttl-2") is not None
    assert not (await log.apply_retention(now=created + 17.9)).expired_runs
    report = await log.apply_retention(now=created + 18.1)
    assert report.expired_runs == ["ttl-2"] and await log.run("ttl-2") is None


async def test_expires_at_is_a_hard_deadline(log: EventLog) -> None:
    clock = Clock()
    streams = Streams(log, clock)
    deadline = datetime.fromtimestamp(clock.now + 10, UTC).isoformat()
    await streams.create("exp-1", StreamConfig("text/plain", expires_at=deadline), [], closed=False)
    clock.now += 9
    info = await streams.info("exp-1")
    assert info is not None
    await streams.touch(info)  # a hard deadline: reads do not move it
    clock.now += 1.01  # just past it (the RFC 3339 text holds microseconds)
    assert await streams.info("exp-1") is None
    with pytest.raises(InvalidInput):
        StreamConfig("text/plain", expires_at="tomorrow").expiry()


async def test_creating_again_with_the_same_configuration_finds_the_stream(log: EventLog) -> None:
    streams = Streams(log)
    first, created = await streams.create("same-1", StreamConfig("text/plain; charset=utf-8", ttl=60), chunks(b"x"), closed=False)
    again, created_again = await streams.create("same-1", StreamConfig("TEXT/PLAIN", ttl=60), chunks(b"y"), closed=False)
    assert created and not created_again and again.run_id == first.run_id
    assert await text_of(streams, "same-1") == b"x"  # the second body is not appended
    for other in (StreamConfig("text/plain", ttl=61), StreamConfig("application/json", ttl=60), StreamConfig("text/plain")):
        with pytest.raises(StreamConflict):
            await streams.create("same-1", other, [], closed=False)
    with pytest.raises(StreamConflict):  # closure is part of it
        await streams.create("same-1", StreamConfig("text/plain", ttl=60), [], closed=True)


async def test_a_fork_reads_its_parent_up_to_the_fork_point_then_its_own(log: EventLog) -> None:
    streams = Streams(log)
    source, _ = await streams.create("src-1", TEXT, chunks(b"one,", b"two,"), closed=False)
    point = source.tail
    fork, _ = await streams.create("fork-1", StreamConfig("", fork=Fork("src-1")), chunks(b"mine,"), closed=False)
    assert fork.config.content_type == "text/plain" and fork.config.fork is not None
    assert fork.config.fork.point == point
    await streams.append(source, chunks(b"three,"), producer=None, writer_seq=None, close=False)
    assert await text_of(streams, "fork-1") == b"one,two,mine,"
    assert await text_of(streams, "src-1") == b"one,two,three,"
    # the same offsets as the parent's up to the fork point, then the fork's own
    whole = await streams.read(fork, 0, max_bytes=None)
    first_two = await streams.read(source, 0, max_bytes=None, max_messages=2)
    assert [m.id for m in whole.messages[:2]] == [m.id for m in first_two.messages]
    assert await text_of(streams, "fork-1", first_two.messages[0].id) == b"two,mine,"


async def test_a_chain_of_forks_and_a_deleted_parent_kept_for_its_forks(log: EventLog) -> None:
    streams = Streams(log)
    root, _ = await streams.create("chain-a", TEXT, chunks(b"a1,", b"a2,"), closed=False)
    first = (await streams.read(root, 0, max_bytes=None)).messages[0].id
    await streams.create("chain-b", StreamConfig("text/plain", fork=Fork("chain-a", offset=first)), chunks(b"b1,"), closed=False)
    await streams.create("chain-c", StreamConfig("text/plain", fork=Fork("chain-b")), chunks(b"c1,"), closed=True)
    assert await text_of(streams, "chain-c") == b"a1,b1,c1,"

    assert await streams.delete("chain-a")
    kept = await streams.info("chain-a")
    assert kept is not None and kept.deleted  # the protocol's 410
    with pytest.raises(RunDeleted):
        await streams.append(kept, chunks(b"late"), producer=None, writer_seq=None, close=False)
    with pytest.raises(RunDeleted):
        await streams.create("chain-d", StreamConfig("text/plain", fork=Fork("chain-a")), [], closed=False)
    with pytest.raises(StreamConflict):
        await streams.create("chain-a", TEXT, [], closed=False)
    assert await text_of(streams, "chain-c") == b"a1,b1,c1,"  # still read through the chain

    await streams.delete("chain-c")
    assert (await streams.info("chain-a")) is not None  # chain-b still reads it
    await streams.delete("chain-b")
    assert await log.run("chain-b") is None and await log.run("chain-a") is None


async def test_fork_offsets_and_sub_offsets(log: EventLog) -> None:
    streams = Streams(log)
    text, _ = await streams.create("sub-src", TEXT, chunks(b"hello", b"world"), closed=False)
    with pytest.raises(InvalidInput):
        await streams.create("sub-far", StreamConfig("text/plain", fork=Fork("sub-src", offset=text.tail + 1)), [], closed=False)
    with pytest.raises(RunNotFound):
        await streams.create("sub-none", StreamConfig("text/plain", fork=Fork("no-such-stream")), [], closed=False)
    with pytest.raises(StreamConflict):
        await streams.create("sub-ct", StreamConfig("application/json", fork=Fork("sub-src")), [], closed=False)
    await streams.create("sub-3", StreamConfig("text/plain", fork=Fork("sub-src", offset=0, sub_offset=3)), chunks(b"!"), closed=False)
    assert await text_of(streams, "sub-3") == b"hel!"
    await streams.create("sub-5", StreamConfig("text/plain", fork=Fork("sub-src", offset=0, sub_offset=5)), [], closed=False)
    assert await text_of(streams, "sub-5") == b"hello"
    with pytest.raises(InvalidInput):  # past the next message
        await streams.create("sub-6", StreamConfig("text/plain", fork=Fork("sub-src", offset=0, sub_offset=6)), [], closed=False)

    await streams.create("json-src", JSON, [encode_message(v) for v in ({"a": 1}, {"b": 2}, {"c": 3})], closed=False)
    fork, _ = await streams.create("json-2", StreamConfig("", fork=Fork("json-src", offset=0, sub_offset=2)), [], closed=False)
    assert [m.data for m in (await streams.read(fork, 0, max_bytes=None)).messages] == [{"a": 1}, {"b": 2}]
    with pytest.raises(InvalidInput):
        await streams.create("json-4", StreamConfig("", fork=Fork("json-src", offset=0, sub_offset=4)), [], closed=False)


async def test_reads_are_cut_by_size_and_closed_only_at_the_tail(log: EventLog) -> None:
    streams = Streams(log)
    info, _ = await streams.create("size-1", TEXT, chunks(b"aaaa", b"bbbb", b"cccc"), closed=True)
    part = await streams.read(info, 0, max_bytes=6)
    assert [m.body for m in part.messages] == [b"aaaa"] and not part.up_to_date and not part.closed
    rest = await streams.read(info, part.next, max_bytes=100)
    assert [m.body for m in rest.messages] == [b"bbbb", b"cccc"] and rest.closed and rest.next == info.tail
    huge = await streams.read(info, 0, max_bytes=1)  # a message larger than the limit still comes
    assert [m.body for m in huge.messages] == [b"aaaa"]
    assert await streams.read(info, info.tail, max_bytes=1) == Slice([], info.tail, True, True)


async def test_follow_waits_for_the_fork_s_own_messages_only(log: EventLog) -> None:
    streams = Streams(log)
    source, _ = await streams.create("follow-src", TEXT, chunks(b"old"), closed=False)
    fork, _ = await streams.create("follow-fork", StreamConfig("", fork=Fork("follow-src")), [], closed=False)
    parts = streams.follow(fork, 0, heartbeat=0.3, max_bytes=1000)
    async with contextlib.aclosing(parts):
        first = await anext(parts)
        assert first is not None and [m.body for m in first.messages] == [b"old"]
        await streams.append(source, chunks(b"parent's"), producer=None, writer_seq=None, close=False)
        assert await anext(parts) is None  # the parent's append does not wake the fork
        await streams.append(fork, chunks(b"own"), producer=None, writer_seq=None, close=True)
        own = await anext(parts)
        assert own is not None and [m.body for m in own.messages] == [b"own"] and own.closed


async def test_an_offset_before_what_retention_kept_is_gone(log: EventLog) -> None:
    streams = Streams(log)
    info, _ = await streams.create("trim-1", TEXT, chunks(b"a", b"b", b"c"), closed=False)
    ids = [m.id for m in (await streams.read(info, 0, max_bytes=None)).messages]
    await log.apply_retention(policy=RetentionPolicy(max_events=1, idempotency_ttl=None))
    info = await streams.info("trim-1")
    assert info is not None
    with pytest.raises(OffsetGone):
        await streams.read(info, ids[0], max_bytes=None)
    assert [m.body for m in (await streams.read(info, 0, max_bytes=None)).messages] == [b"c"]


def test_offsets_sort_as_positions_and_only_minted_ones_parse() -> None:
    positions = [0, 1, 9, 10, 99, 12345, 10**15, 10**16 - 1]
    offsets = [wire.format_offset(p) for p in positions]
    assert sorted(offsets) == offsets and [wire.parse_offset(o) for o in offsets] == positions
    assert wire.parse_offset("-1") == 0
    for bad in ("", "now", "abc", "1", "0_", "_1", "0_-1", "0_1.5", "0000_00000000000000001 ", "1_5", "0_" + "9" * 17):
        assert wire.parse_offset(bad) is None, bad


def test_cursors_never_go_back() -> None:
    now = wire.CURSOR_EPOCH + 1000 * wire.CURSOR_INTERVAL + 5
    assert wire.response_cursor(None, now) == "1000"
    assert wire.response_cursor("999", now) == "1000"
    for held in ("1000", "1500"):
        later = [int(wire.response_cursor(held, now)) for _ in range(50)]
        assert all(c > int(held) for c in later)
    assert wire.response_cursor("garbage", now) == "1000"


def test_decimal_headers_are_strict() -> None:
    assert [wire.parse_decimal(t) for t in ("0", "7", "3600")] == [0, 7, 3600]
    for bad in ("", "-1", "+1", "01", "1.0", "3.6e3", " 1", str(2**53)):
        assert wire.parse_decimal(bad) is None, bad


def test_sse_frames() -> None:
    events = [Event(n, "s", "message", "null", 0.0, body) for n, body in zip(itertools.count(1), (b"line1\nline2", b"\r\n"))]
    frame = wire.sse_data(TEXT, events).decode()
    assert frame == "event: data\ndata:line1\ndata:line2\ndata:\n\n"  # "line1\nline2\r\n": SSE's line ends are LF
    binary = wire.sse_data(StreamConfig("application/octet-stream"), events).decode()
    assert binary == "event: data\ndata:bGluZTEKbGluZTINCg==\n\n"
    control = wire.sse_control("0_1", cursor="5", up_to_date=True, closed=False).decode()
    assert control == 'event: control\ndata:{"streamNextOffset":"0_1","streamCursor":"5","upToDate":true}\n\n'
    closed = wire.sse_control("0_1", cursor="5", up_to_date=False, closed=True).decode()
    assert '"streamClosed":true' in closed and "streamCursor" not in closed


async def test_producer_numbers_and_writer_seqs_out_of_range_are_typed_errors(log: EventLog) -> None:
    streams = Streams(log)
    info, _ = await streams.create("bounds-1", TEXT, [], closed=False)
    for producer in (Producer("p", 2**63, 0), Producer("p", 0, -1), Producer("", 0, 0), Producer("p\ud800", 0, 0)):
        with pytest.raises(InvalidInput):
            await streams.append(info, chunks(b"x"), producer=producer, writer_seq=None, close=False)
    with pytest.raises(InvalidInput):
        await streams.append(info, chunks(b"x"), producer=None, writer_seq="\ud800", close=False)
    assert await text_of(streams, "bounds-1") == b""
