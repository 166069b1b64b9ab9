"""The cross-process change feed takes a burst of commits in a few looks and still reports the
last of them; the file watch under it leaves change events pending until they are taken, and
its pauses end when the feed is stopped."""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from pathlib import Path

from eventlog import EventLog
from eventlog.storage.change_feed import ChangeFeed, Changes, LocalCommits
from eventlog.storage.connection import connect
from eventlog.storage.file_watch import FileWatch
from eventlog.storage.read_ahead import Pages
from eventlog.supervision import Supervisor

BOUND = 30.0
"""A generous deadline on every wait: it only turns a hang into a failure."""


def test_change_events_stay_pending_until_drained(tmp_path: Path) -> None:
    watched = tmp_path / "eventlog.db"
    watch = FileWatch(watched)
    watch.start()
    try:
        assert watch.active
        assert not watch.wait(0)
        watched.write_bytes(b"one")
        watched.write_bytes(b"two")
        assert watch.wait(BOUND)
        assert watch.wait(0), "waiting must not take the events"
        assert watch.drain(), "both writes concern the watched file"
        assert not watch.drain(), "nothing is left after a drain"
        assert not watch.wait(0)
    finally:
        watch.close()


def test_writes_to_other_files_of_the_directory_are_not_changes(tmp_path: Path) -> None:
    watch = FileWatch(tmp_path / "eventlog.db")
    watch.start()
    try:
        (tmp_path / "unrelated.txt").write_bytes(b"x")
        assert watch.wait(BOUND)
        assert not watch.drain()
    finally:
        watch.close()


def test_interrupt_ends_a_pause(tmp_path: Path) -> None:
    watch = FileWatch(tmp_path / "eventlog.db")
    watch.start()
    paused = threading.Thread(target=watch.pause, args=(3600,))
    try:
        paused.start()
        watch.interrupt()
        paused.join(BOUND)
        assert not paused.is_alive()
    finally:
        watch.close()


async def test_a_burst_of_foreign_commits_is_reported_in_few_looks_and_completely(db_path: Path) -> None:
    """Commits made one by one by another writer (its ids unknown to this feed's LocalCommits,
    as another process' are) reach the consumer in fewer messages than commits, and the paced
    look after the burst reports the newest id committed."""
    commits = 300
    async with EventLog.open(db_path, cross_process=False) as other:
        await other.append("run", "x", 0)  # the file and its schema exist
        received: asyncio.Queue[tuple[Changes, Pages] | BaseException] = asyncio.Queue()
        connect_reader = partial(connect, db_path, durability="process", writer=False, busy_timeout=5.0)
        feed = ChangeFeed(db_path, connect_reader, LocalCommits(), 60.0, Supervisor())
        feed.start(asyncio.get_running_loop(), received.put_nowait)
        try:
            assert await asyncio.wait_for(received.get(), BOUND) == ([], {})  # watching
            last = 0
            for i in range(commits):
                last = await other.append("run", "x", i)  # each its own commit
            messages: list[Changes] = []
            while not messages or messages[-1][-1][1] < last:
                item = await asyncio.wait_for(received.get(), BOUND)
                assert not isinstance(item, BaseException)
                changes, pages = item
                assert pages == {}  # nothing read the run: it is not followed
                if changes:
                    messages.append(changes)
        finally:
            feed.stop()
            await asyncio.wait_for(feed.join(), BOUND)
    assert messages[-1] == [("run", last)]
    assert len(messages) < commits  # how few is the benchmark's business, not a unit test's


def test_an_overflowed_queue_counts_as_a_change(tmp_path: Path) -> None:
    """More events than the kernel queues (fs.inotify.max_queued_events), none of them about
    the watched file: the overflow may have dropped one that was, so drain says "look"."""
    watch = FileWatch(tmp_path / "eventlog.db")
    watch.start()
    try:
        queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
        for i in range(queued + 10):
            (tmp_path / f"other-{i}").touch()  # distinct names: the kernel cannot merge them
        assert watch.wait(BOUND)
        assert watch.drain()
        assert not watch.drain()
    finally:
        watch.close()
