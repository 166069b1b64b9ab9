"""Pages the change feed reads ahead for the runs this process follows, so that the follower's
catch-up read after another process' commit costs no trip to a reader thread.

Without it, each commit of another process costs three thread hand-offs: the feed's thread
wakes the event loop, the follower's read goes to a reader thread, its page comes back to the
loop. The feed's thread already holds a connection and has just seen which runs advanced, so
for the runs that this process has read lately (``follow``, called by every read) it also reads
the new events, in one read transaction of their own, and sends the pages with the hint.

A page is a committed snapshot, but an old one as soon as anything commits after it, and a
reader that took it later could miss a commit it had been told about (a lost wake-up). So a
page is only offered for the turn of the event loop that delivers it (``offer`` clears it with
``call_soon``): the follower's read that runs synchronously on receiving the hint can take it;
any read later goes to the file as always. A page also only answers a read with the very cursor
it was read after, and only when it holds every event the read could return.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import OrderedDict
from collections.abc import Callable

from eventlog.storage.base import Page

ReadPage = Callable[[sqlite3.Connection, str, int, int], Page]
"""``(conn, run_id, after, limit) -> Page``: the backend's read, run in the caller's transaction."""

PAGE_ROWS = 1024
"""Most events a page read ahead holds; a read asking for more after a full page goes to the
file, since the page may not hold them all."""

FOLLOWED = 1024
"""Runs followed at most: the most recently read."""

Pages = dict[str, tuple[int, Page]]
"""Run id -> (the cursor the page was read after, the page)."""


class ReadAhead:
    """The runs followed (bounded, most recently read last) and the pages on offer."""

    def __init__(self, read_page: ReadPage) -> None:
        self._read_page = read_page
        self._followed: OrderedDict[str, None] = OrderedDict()
        self._pages: Pages = {}

    def follow(self, run_id: str) -> None:
        """Called on the loop by every read of the run."""
        self._followed[run_id] = None
        self._followed.move_to_end(run_id)
        if len(self._followed) > FOLLOWED:
            self._followed.popitem(last=False)

    def follows(self, run_id: str) -> bool:
        """Called on the feed's thread (a dict lookup: safe while the loop updates it)."""
        return run_id in self._followed

    def read(self, conn: sqlite3.Connection, run_id: str, after: int) -> Page:
        """On the feed's thread: the run's events after ``after``, in one read transaction."""
        conn.execute("BEGIN")
        try:
            return self._read_page(conn, run_id, after, PAGE_ROWS)
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def offer(self, pages: Pages) -> None:
        """Called on the loop as the feed's message arrives: ``pages`` answer reads until this
        turn of the loop ends."""
        self._pages = pages
        if pages:
            asyncio.get_running_loop().call_soon(pages.clear)

    def take(self, run_id: str, after: int, limit: int) -> Page | None:
        """The page that answers ``read(run_id, after, limit)``, if one is on offer."""
        offered = self._pages.get(run_id)
        if offered is None or offered[0] != after:
            return None
        page = offered[1]
        if len(page.events) <= limit:
            return page if len(page.events) < PAGE_ROWS or len(page.events) == limit else None
        return Page(page.run, page.events[:limit])
