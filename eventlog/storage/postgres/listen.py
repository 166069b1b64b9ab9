"""The PostgreSQL change feed: ``LISTEN`` on a connection of its own.

Each commit NOTIFYs the runs it advanced with their newest ids (``transactions.notify``);
PostgreSQL delivers that at commit, in commit order, to every listening session on any machine.
The payload is only a hint: the notifier reads from its cursors after it.

A notification is lost while no session listens, so a feed that loses its connection (the server
restarted, the network failed, or the connection stopped answering the periodic probe) ends with
DatabaseUnavailable rather than reconnecting quietly. The notifier then starts a new feed, which
LISTENs first and yields its opening empty batch only once listening, and on that restart it
re-reads every run it follows (``Notifier._follow``): the resync that closes any wake-up missed
in between.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from eventlog.errors import DatabaseUnavailable
from eventlog.storage.change_feed import LocalCommits
from eventlog.storage.postgres.transactions import CHANNEL

Changes = list[tuple[str, int]]


async def listen(
    connect: Callable[[], Awaitable[asyncpg.Connection]],
    local: LocalCommits,
    probe_interval: float,
    timeout: float,
) -> AsyncIterator[Changes]:
    """Yield ``[]`` once listening, then the runs other processes advanced, as
    ``Storage.changes`` says. ``probe_interval``: seconds of silence after which the connection
    is asked to answer within ``timeout`` seconds, so that a stalled network is noticed."""
    queue: asyncio.Queue[Changes | BaseException] = asyncio.Queue()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        queue.put_nowait([(run_id, last_id) for run_id, last_id in json.loads(payload)])

    def on_lost(_conn: object) -> None:
        queue.put_nowait(DatabaseUnavailable("the LISTEN connection to PostgreSQL was lost"))

    conn = await connect()
    try:
        conn.add_termination_listener(on_lost)
        await conn.add_listener(CHANNEL, on_notify)
        yield []
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), probe_interval)
            except TimeoutError:
                await conn.fetchval("SELECT 1", timeout=timeout)
                continue
            changed: dict[str, int] = {}
            while True:  # everything delivered so far, as one batch
                if isinstance(item, BaseException):
                    raise item
                for run_id, last_id in item:
                    changed[run_id] = max(last_id, changed.get(run_id, 0))
                if queue.empty():
                    break
                item = queue.get_nowait()
            foreign = [(run_id, last_id) for run_id, last_id in changed.items() if not local.explains(run_id, last_id)]
            if foreign:
                yield foreign
    finally:
        conn.remove_termination_listener(on_lost)
        if not conn.is_closed():
            conn.terminate()  # no goodbye to a server that may not answer; it drops the session
