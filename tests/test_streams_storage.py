"""What the Durable Streams protocol needs of the log, at the storage level, on both backends:
idempotent producers and writer sequences checked in the transaction of their rows, a run ended
with its last append, a run created with its first events, byte bodies kept exactly, and forks
kept while they read their parent.

EventLog has no methods for these requests yet, so the tests send them to its storage
(``log._storage``), as the log layer will."""

from __future__ import annotations

import asyncio
import io
import json
import signal

import pytest

from eventlog import (
    EventLog,
    InvalidInput,
    ProducerFenced,
    ProducerSeqGap,
    RunDeleted,
    RunEnded,
    RunExists,
    RunNotFound,
    WriterSeqConflict,
)
from eventlog.log.archive import check_archive, export_log, import_log
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
)
from tests.helpers.stream_producer import body

pytestmark = pytest.mark.backends

ODD_BODIES = [b"\x00", b"\xff\xfe\x80 not UTF-8", b"", "h\u00e9llo".encode(), b"a\x00b" * 100]
"""Bytes that a text column would mangle: NUL, invalid UTF-8, nothing at all."""


def messages(*bodies: bytes) -> list[StreamRow]:
    return [("message", "null", b) for b in bodies]


async def create(log: EventLog, run_id: str, *bodies: bytes, parent_id: str | None = None, end: bool = False) -> RunInfo:
    info = await log._storage.write(CreateRun(run_id, "{}", messages(*bodies), end, "done" if end else None, parent_id))
    assert isinstance(info, RunInfo)
    return info


async def stream(
    log: EventLog,
    run_id: str,
    *bodies: bytes,
    producer: tuple[str, int, int] | None = None,
    writer_seq: str | None = None,
    end: bool = False,
) -> StreamAppended:
    request = StreamAppend(
        run_id, messages(*bodies), Producer(*producer) if producer else None, writer_seq, end, "closed" if end else None
    )
    result = await log._storage.write(request)
    assert isinstance(result, StreamAppended)
    return result


async def stored(log: EventLog, run_id: str) -> list[Event]:
    return (await log._storage.read(run_id, 0, 10_000)).events


async def bodies_of(log: EventLog, run_id: str) -> list[bytes | None]:
    return [e.body for e in await stored(log, run_id) if e.event != END_EVENT]


async def test_a_stream_append_needs_the_run(log: EventLog) -> None:
    with pytest.raises(RunNotFound):
        await stream(log, "missing", b"a", producer=("p", 0, 0), writer_seq="1")
    assert await log.run("missing") is None and await log.runs(limit=10) == []
    await create(log, "missing")
    assert not (await stream(log, "missing", b"a", producer=("p", 0, 0), writer_seq="1")).duplicate


# --- idempotent producers ----------------------------------------------------------------------


async def test_a_new_producer_starts_at_seq_0(log: EventLog) -> None:
    await create(log, "s")
    with pytest.raises(ProducerSeqGap) as gap:
        await stream(log, "s", b"x", producer=("p", 0, 3))
    assert (gap.value.expected, gap.value.received) == (0, 3)
    first = await stream(log, "s", b"a", producer=("p", 0, 0))
    assert first == StreamAppended(first.ids, first.ids[0], False, False, 0) and len(first.ids) == 1
    assert await bodies_of(log, "s") == [b"a"]


async def test_a_retry_is_a_duplicate_that_writes_nothing(log: EventLog) -> None:
    await create(log, "s")
    await stream(log, "s", b"a", producer=("p", 0, 0))
    second = await stream(log, "s", b"b", b"c", producer=("p", 0, 1))
    for seq in (1, 0):  # the last request again, and an older one
        again = await stream(log, "s", b"b", b"c", producer=("p", 0, seq))
        assert again == StreamAppended([], second.last_id, False, duplicate=True, producer_seq=1)
    assert await bodies_of(log, "s") == [b"a", b"b", b"c"]
    assert (await log.run("s")).last_id == second.last_id  # type: ignore[union-attr]


async def test_a_gap_in_the_sequence_is_refused(log: EventLog) -> None:
    await create(log, "s")
    await stream(log, "s", b"a", producer=("p", 0, 0))
    await stream(log, "s", b"b", producer=("p", 0, 1))
    with pytest.raises(ProducerSeqGap) as gap:
        await stream(log, "s", b"d", producer=("p", 0, 3))
    assert (gap.value.expected, gap.value.received) == (2, 3)
    assert await bodies_of(log, "s") == [b"a", b"b"]


async def test_epochs_fence_the_older_session(log: EventLog) -> None:
    await create(log, "s")
    await stream(log, "s", b"a", producer=("p", 0, 0))
    await stream(log, "s", b"b", producer=("p", 1, 0))  # a new session starts at seq 0
    with pytest.raises(ProducerFenced) as fenced:
        await stream(log, "s", b"zombie", producer=("p", 0, 1))
    assert fenced.value.epoch == 1
    with pytest.raises(InvalidInput, match="starts epoch 2 at seq 1"):
        await stream(log, "s", b"x", producer=("p", 2, 1))
    assert (await stream(log, "s", b"c", producer=("p", 1, 1))).producer_seq == 1
    assert await bodies_of(log, "s") == [b"a", b"b", b"c"]


async def test_producers_of_a_run_are_independent(log: EventLog) -> None:
    await create(log, "s")
    await create(log, "t")
    await stream(log, "s", b"a", producer=("p", 0, 0))
    assert not (await stream(log, "s", b"b", producer=("q", 0, 0))).duplicate
    assert not (await stream(log, "t", b"c", producer=("p", 0, 0))).duplicate  # another run
    assert await bodies_of(log, "s") == [b"a", b"b"]


async def test_pipelined_requests_in_one_group_commit_are_accepted_in_order(log: EventLog) -> None:
    await create(log, "s")
    commits: list[list[Committed]] = []
    log._storage.add_commit_listener(commits.append)
    # The first write is in flight while the three are submitted: they share the next transaction.
    results = await asyncio.gather(
        log._storage.write(Append("other", [("x", "1")])),
        *(log._storage.write(StreamAppend("s", messages(bytes([seq])), Producer("p", 0, seq))) for seq in range(3)),
    )
    appended = results[1:]
    assert [r.producer_seq for r in appended] == [0, 1, 2]  # type: ignore[union-attr]
    assert [r.duplicate for r in appended] == [False] * 3  # type: ignore[union-attr]
    ids = [i for r in appended for i in r.ids]  # type: ignore[union-attr]
    assert ids == sorted(ids) and [e.id for e in await stored(log, "s")] == ids
    assert any(len(c.events) == 3 for batch in commits for c in batch if c.run_id == "s"), "not one transaction"
    assert await bodies_of(log, "s") == [b"\x00", b"\x01", b"\x02"]


# --- writer sequences --------------------------------------------------------------------------


async def test_writer_seqs_strictly_increase(log: EventLog) -> None:
    await create(log, "s")
    await stream(log, "s", b"a", writer_seq="b")
    for stale in ("b", "a", "B"):  # equal, smaller, smaller by code point
        with pytest.raises(WriterSeqConflict):
            await stream(log, "s", b"x", writer_seq=stale)
    await stream(log, "s", b"c", writer_seq="ba")
    await stream(log, "s", b"d")  # an append without one leaves the last in place
    with pytest.raises(WriterSeqConflict):
        await stream(log, "s", b"x", writer_seq="b")
    assert await bodies_of(log, "s") == [b"a", b"c", b"d"]


async def test_a_refused_writer_seq_does_not_advance_the_producer(log: EventLog) -> None:
    await create(log, "s")
    await stream(log, "s", b"a", producer=("p", 0, 0), writer_seq="5")
    with pytest.raises(WriterSeqConflict):
        await stream(log, "s", b"b", producer=("p", 0, 1), writer_seq="4")
    assert not (await stream(log, "s", b"b", producer=("p", 0, 1), writer_seq="6")).duplicate
    assert await bodies_of(log, "s") == [b"a", b"b"]


# --- ending a stream ---------------------------------------------------------------------------


async def test_the_last_append_ends_the_run_atomically(log: EventLog) -> None:
    await create(log, "s")
    closing = await stream(log, "s", b"a", b"b", producer=("p", 0, 0), end=True)
    assert closing.ended and len(closing.ids) == 2 and closing.last_id > closing.ids[-1]
    info = await log.run("s")
    assert info is not None and info.end_id == closing.last_id and info.end_reason == "closed"
    assert [e.event for e in await stored(log, "s")] == ["message", "message", END_EVENT]


async def test_on_an_ended_run_only_the_closing_retry_and_a_repeated_close_succeed(log: EventLog) -> None:
    await create(log, "s")
    await stream(log, "s", b"a", producer=("p", 0, 0))
    closing = await stream(log, "s", b"b", producer=("p", 0, 1), end=True)
    retry = await stream(log, "s", b"b", producer=("p", 0, 1), end=True)
    assert retry == StreamAppended([], closing.last_id, True, duplicate=True, producer_seq=1)
    for refused in (
        StreamAppend("s", messages(b"a"), Producer("p", 0, 0)),  # an older request of the producer
        StreamAppend("s", messages(b"c"), Producer("p", 0, 2)),
        StreamAppend("s", messages(b"c"), Producer("q", 0, 0)),
        StreamAppend("s", messages(b"c")),
    ):
        with pytest.raises(RunEnded):
            await log._storage.write(refused)
    assert await stream(log, "s", end=True) == StreamAppended([], closing.last_id, True, False, None)
    assert await bodies_of(log, "s") == [b"a", b"b"]


async def test_a_run_is_created_with_its_events_and_end_in_one_transaction(log: EventLog) -> None:
    commits: list[list[Committed]] = []
    log._storage.add_commit_listener(commits.append)
    info = await create(log, "s", b"a", b"\x00", end=True)
    assert (info.event_count, info.total_bytes, info.end_reason) == (2, 2, "done")
    events = await stored(log, "s")
    assert info.first_id == events[0].id and info.end_id == info.last_id == events[-1].id
    assert [e.body for e in events[:-1]] == [b"a", b"\x00"] and events[-1].event == END_EVENT
    assert [len(c.events) for batch in commits for c in batch if c.run_id == "s"] == [3]
    with pytest.raises(RunExists):
        await create(log, "s", b"more")
    assert len(await stored(log, "s")) == 3


# --- byte bodies -------------------------------------------------------------------------------


async def test_byte_bodies_round_trip_exactly(log: EventLog) -> None:
    await create(log, "s")
    appended = await stream(log, "s", *ODD_BODIES)
    events = await stored(log, "s")
    assert [e.id for e in events] == appended.ids
    assert [e.body for e in events] == ODD_BODIES  # b"" stays b"", not None
    assert all(e.data_json == "null" for e in events)
    info = await log.run("s")
    assert info is not None and info.total_bytes == sum(map(len, ODD_BODIES))
    await log.append("s", "json", {"v": 1})
    assert (await stored(log, "s"))[-1].body is None


async def test_byte_bodies_survive_export_and_import(open_log, another_database) -> None:  # type: ignore[no-untyped-def]
    source = await open_log(another_database("a.db"))
    await create(source, "s", *ODD_BODIES)
    await source.append("s", "json", {"v": "\u00e9"})
    out = io.BytesIO()
    await export_log(source, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()[2:]]
    assert ["body" in line for line in lines] == [True] * len(ODD_BODIES) + [False]  # JSON events as before
    target = await open_log(another_database("b.db"))
    await import_log(target, check_archive(lambda: io.BytesIO(out.getvalue())))
    assert [e.body for e in await stored(target, "s")] == [*ODD_BODIES, None]
    assert (await target.run("s")).total_bytes == (await source.run("s")).total_bytes  # type: ignore[union-attr]
    again = io.BytesIO()
    await export_log(target, again)
    assert again.getvalue() == out.getvalue()


async def test_retention_counts_a_body_by_its_bytes(log: EventLog) -> None:
    await create(log, "s", b"a" * 100, b"b" * 100, b"c" * 100, b"d" * 100)
    await log.apply_retention(policy=RetentionPolicy(max_bytes=250))
    assert await bodies_of(log, "s") == [b"c" * 100, b"d" * 100]
    assert (await log.run("s")).total_bytes == 200  # type: ignore[union-attr]
    await log.apply_retention(policy=RetentionPolicy(max_events=1))
    assert (await log.run("s")).total_bytes == 100  # type: ignore[union-attr]


# --- forks -------------------------------------------------------------------------------------


async def test_a_fork_needs_a_parent_that_is_not_deleted(log: EventLog) -> None:
    with pytest.raises(RunNotFound) as missing:
        await create(log, "f", parent_id="missing")
    assert missing.value.run_id == "missing"
    assert await log.run("f") is None and await log.run("missing") is None
    await create(log, "p", b"a")
    await create(log, "f", parent_id="p")
    await log.delete("p")
    with pytest.raises(RunDeleted) as deleted:
        await create(log, "g", parent_id="p")
    assert deleted.value.run_id == "p" and await log.run("g") is None


async def test_a_deleted_parent_is_kept_for_its_fork_and_goes_with_it(log: EventLog) -> None:
    await create(log, "p", b"a", b"b")
    fork = await create(log, "f", b"c", parent_id="p")
    assert fork.parent_id == "p" and (await log.run("f")).parent_id == "p"  # type: ignore[union-attr]
    assert await log.delete("p") is True
    parent = await log.run("p")
    assert parent is not None and parent.deleted_at is not None
    assert await bodies_of(log, "p") == [b"a", b"b"]  # its fork still reads it
    for refused in (
        Append("p", [("x", "1")]),
        EndRun("p", None),
        StreamAppend("p", messages(b"x")),
        StreamAppend("p", [], end=True),
    ):
        with pytest.raises(RunDeleted):
            await log._storage.write(refused)
    assert await log.delete("p") is True  # still there (marked)
    assert await log.delete("f") is True
    assert await log.run("f") is None and await log.run("p") is None


async def test_deleting_a_fork_of_a_live_parent_keeps_the_parent(log: EventLog) -> None:
    await create(log, "p", b"a")
    await create(log, "f", parent_id="p")
    await create(log, "g", parent_id="p")
    await log.delete("p")
    assert await log.delete("f") is True
    assert (await log.run("p")).deleted_at is not None  # type: ignore[union-attr]  # g still reads it
    assert await log.delete("g") is True
    assert await log.run("p") is None
    await create(log, "q", b"a")
    await create(log, "h", parent_id="q")
    await log.delete("h")
    assert await bodies_of(log, "q") == [b"a"]


async def test_deleting_the_last_of_a_chain_cascades_up(log: EventLog) -> None:
    await create(log, "a", b"1")
    await create(log, "b", b"2", parent_id="a")
    await create(log, "c", b"3", parent_id="b")
    await log.delete("a")
    await log.delete("b")
    assert [(await log.run(r)).deleted_at is not None for r in "abc"] == [True, True, False]  # type: ignore[union-attr]
    assert await log.delete("c") is True
    assert [await log.run(r) for r in "abc"] == [None, None, None]


async def test_a_fork_created_while_its_parent_is_deleted_in_parts_keeps_it(log: EventLog) -> None:
    """The deletion looks for forks in each of its transactions, under the parent's lock, so a
    fork created between two of them never outlives its parent."""
    from eventlog.storage.sqlite import DELETE_BATCH

    await log.append_many("p", [("x", i) for i in range(20 * DELETE_BATCH)])
    deleting = asyncio.create_task(log.delete("p"))
    while (info := await log.run("p")) is not None and info.trimmed_through == 0:
        await asyncio.sleep(0)  # until the deletion's first part committed
    await create(log, "f", parent_id="p")
    assert await deleting is True
    parent = await log.run("p")
    assert parent is not None and parent.deleted_at is not None and parent.event_count > 0


async def test_retention_neither_ends_a_deleted_run_nor_expires_a_parent_before_its_forks(log: EventLog) -> None:
    """A run kept for its forks is no longer written (so it is never idle, never abandoned), and
    an ended parent outlives its ended_ttl while a fork reads it; once its forks expired, it
    goes too, marked deleted or not."""
    await create(log, "kept", b"a")
    await create(log, "kept-fork", parent_id="kept")
    await log.delete("kept")
    await create(log, "ended", b"b", end=True)
    await create(log, "ended-fork", parent_id="ended")
    later = (await log.run("kept-fork")).created_at + 3600  # type: ignore[union-attr]
    assert (await log.apply_retention(later, policy=RetentionPolicy(ended_ttl=60))).expired_runs == []
    report = await log.apply_retention(later, policy=RetentionPolicy(abandon_after=60))
    assert sorted(report.abandoned_runs) == ["ended-fork", "kept-fork"]
    report = await log.apply_retention(later + 3600, policy=RetentionPolicy(ended_ttl=60))
    assert sorted(report.expired_runs) == ["ended", "ended-fork", "kept", "kept-fork"]
    assert [await log.run(r) for r in ("kept", "ended")] == [None, None]


async def test_a_deleted_run_leaves_no_producer_or_writer_seq(log: EventLog) -> None:
    await create(log, "s")
    await stream(log, "s", b"a", producer=("p", 0, 0), writer_seq="9")
    await log.delete("s")
    await create(log, "s")  # the same id again: a new stream
    again = await stream(log, "s", b"b", producer=("p", 0, 0), writer_seq="1")
    assert not again.duplicate and await bodies_of(log, "s") == [b"b"]


# --- a crash -----------------------------------------------------------------------------------


async def acks(stdout: asyncio.StreamReader, until: int | None = None) -> list[int]:
    """The seqs the child acknowledged: up to ``until`` (then it is still writing), or all."""
    seqs: list[int] = []
    async for line in stdout:
        message = json.loads(line)
        if "acked" in message:
            seqs.append(message["acked"])
            if until is not None and message["acked"] >= until:
                break
    return seqs


async def test_producer_state_survives_a_kill_9(open_log, database, helper_script) -> None:  # type: ignore[no-untyped-def]
    await create(await open_log(), "s")
    child = await asyncio.create_subprocess_exec(
        *helper_script("stream_producer"), str(database), "s", "p",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        seen = await asyncio.wait_for(acks(child.stdout, until=30), 60)
    finally:
        child.send_signal(signal.SIGKILL)  # mid-stream: it never stops appending on its own
        await child.wait()
    seen += await acks(child.stdout)
    last = seen[-1]
    assert seen == list(range(last + 1))

    log = await open_log()  # reopened after the crash
    retry = await stream(log, "s", body(last), producer=("p", 0, last))
    assert retry.duplicate and retry.producer_seq is not None and retry.producer_seq >= last
    # Every request the producer's state counts is stored, and nothing else: one transaction.
    stored_bodies = await bodies_of(log, "s")
    assert stored_bodies == [body(seq) for seq in range(retry.producer_seq + 1)]
    following = retry.producer_seq + 1
    assert not (await stream(log, "s", body(following), producer=("p", 0, following))).duplicate
