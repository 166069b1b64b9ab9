"""Commands on runs, on a local file (``--db``) or a server (``--url``): ``tail``, ``append``,
``end`` and ``runs``.

Both targets answer the same calls (``eventlog.client.AsyncClient`` mirrors ``EventLog``), so
each command is written once. A command that only reads never creates the file it is pointed
at, and no refusal changes it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, Union

import typer

from eventlog import End, Event, EventLog, Gap, RunInfo, RunNotFound
from eventlog.cli.app import TokenOption, UrlOption, app, fail
from eventlog.cli.local import check_path, open_file
from eventlog.storage.postgres import is_postgres_url

if TYPE_CHECKING:  # the client (httpx) is imported only by the commands that use it
    from eventlog.client import AsyncClient, StreamedEvent

    Source = Union[EventLog, AsyncClient]

DbOption = Annotated[Optional[str], typer.Option("--db", help="A local eventlog file, or a postgresql:// URL (instead of --url).")]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
RETRY_DEADLINE = 10.0
"""Seconds a command retries an unreachable server: long enough for a restart, short enough
that a server that is down is reported soon."""
RetryOption = Annotated[float, typer.Option(
    "--retry-deadline", min=0, help="With --url: seconds to keep retrying while the server is unreachable.",
)]


class Status(str, Enum):
    running = "running"
    ended = "ended"


@dataclass(frozen=True)
class Target:
    """The log file or the server the user named."""

    db: Path | str | None
    url: str | None
    token: str | None
    retry_deadline: float

    @classmethod
    def chosen(cls, ctx: typer.Context, db: str | None, url: str | None, token: str | None,
               retry_deadline: float, *, must_exist: bool) -> Target:
        """Exactly one of ``--db`` and ``--url`` (an ``EVENTLOG_URL`` in the environment yields
        to an explicit ``--db``). ``must_exist``: refuse a missing file rather than create one
        (commands that only read, or need a run that a new file cannot hold)."""
        if db is not None and ctx.get_parameter_source("url").name == "ENVIRONMENT":  # type: ignore[union-attr]
            url = None
        if (db is None) == (url is None):
            fail("give exactly one of --db PATH (a local file) or --url URL (a server)", 2)
        location: Path | str | None = db
        if db is not None and not is_postgres_url(db):
            location = Path(db)
            check_path(location, create=not must_exist)
        return cls(location, url, token, retry_deadline)

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Source]:
        from eventlog.client import AsyncClient

        if self.db is not None:
            async with open_file(self.db, create=True) as log:  # chosen() refused what it must
                yield log
        else:
            assert self.url is not None
            async with AsyncClient(self.url, token=self.token, retry_deadline=self.retry_deadline) as client:
                yield client


async def existing_run(source: Source, run_id: str) -> RunInfo:
    info = await source.run(run_id)
    if info is None:
        raise RunNotFound(run_id)
    return info


async def stored_items(source: Source, info: RunInfo, after: int | None) -> AsyncIterator[Event | Gap | End]:
    """What the run holds now, as ``follow`` would deliver it: a gap when ``after`` lies before
    the retained events, the events, and the end marker as an ``End``."""
    if after is not None and after < info.trimmed_through:
        yield Gap(after, info.first_id, info.last_id)
    cursor = after or 0
    while page := await source.read(info.run_id, after=cursor, limit=1000):
        for event in page:
            yield End(event.id, event.data["reason"]) if event.event == "end" else event
        cursor = page[-1].id


def live_items(source: Source, run_id: str, after: int | None) -> AsyncIterator[Any]:
    if isinstance(source, EventLog):
        return source.subscribe(run_id, after=after, heartbeat=None, wait_for_run=False)
    return source.follow(run_id, after)


def item_line(item: Event | StreamedEvent | Gap | End, as_json: bool) -> str:
    if isinstance(item, Gap):
        data = {"requested_event_id": item.requested, "earliest_available_event_id": item.earliest,
                "latest_available_event_id": item.latest}
        if as_json:
            return json.dumps({"id": None, "event": "gap", "data": data})
        return f"-- gap: events after {item.requested} were trimmed; continuing at {item.earliest}"
    if isinstance(item, End):
        if as_json:
            return json.dumps({"id": item.id, "event": "end", "data": {"reason": item.reason}}, ensure_ascii=False)
        return f"-- end at id {item.id} (reason: {item.reason})"
    if as_json:
        return json.dumps({"id": item.id, "event": item.event, "data": item.data}, ensure_ascii=False)
    return f"{item.id}  {item.event}  {item.data_json}"


@app.command()
def tail(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to print.")],
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    after: Annotated[Optional[int], typer.Option("--from", min=0, help="Start after this event id.")] = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Wait for new events until the run ends.")] = True,
    as_json: JsonOption = False,
    retry_deadline: RetryOption = RETRY_DEADLINE,
) -> None:
    """Print a run's events, from a file (--db) or a server (--url); by default follow it until
    it ends, resuming after a dropped connection without repeating an event."""

    where = Target.chosen(ctx, db, url, token, retry_deadline, must_exist=True)

    async def run() -> None:
        async with where.open() as source:
            info = await existing_run(source, run_id)
            items = live_items(source, run_id, after) if follow else stored_items(source, info, after)
            async for item in items:
                typer.echo(item_line(item, as_json))

    asyncio.run(run())


@app.command()
def append(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run (created when missing).")],
    event: Annotated[str, typer.Argument(help="The event's name.")],
    data: Annotated[str, typer.Argument(help='The event\'s data, as JSON: \'{"step": 1}\', \'"text"\', 3.')],
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    retry_deadline: RetryOption = RETRY_DEADLINE,
) -> None:
    """Append one event to a run, in a file (--db, created when missing) or on a server
    (--url); prints its id."""
    try:
        value = json.loads(data)
    except ValueError as exc:
        fail(f"DATA is not valid JSON ({exc}): {data[:80]!r}", 2)

    where = Target.chosen(ctx, db, url, token, retry_deadline, must_exist=False)

    async def run() -> int:
        async with where.open() as source:
            return await source.append(run_id, event, value)

    typer.echo(asyncio.run(run()))


@app.command()
def end(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to end.")],
    reason: Annotated[str, typer.Option(help="Why it ended.")] = "success",
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    retry_deadline: RetryOption = RETRY_DEADLINE,
) -> None:
    """End a run (ending it again with the same reason changes nothing); prints the end
    marker's id."""

    where = Target.chosen(ctx, db, url, token, retry_deadline, must_exist=True)

    async def run() -> int:
        async with where.open() as source:
            return await source.end(run_id, reason)

    typer.echo(asyncio.run(run()))


@app.command()
def runs(
    ctx: typer.Context,
    status: Annotated[Optional[Status], typer.Option(help="Only running or only ended runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many runs, newest first.")] = 100,
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    retry_deadline: RetryOption = RETRY_DEADLINE,
) -> None:
    """List runs, newest first: id, status, events, first and last id, size, age, thread id."""

    where = Target.chosen(ctx, db, url, token, retry_deadline, must_exist=True)

    async def run() -> list[RunInfo]:
        async with where.open() as source:
            return await source.runs(status=None if status is None else status.value, limit=limit)  # type: ignore[arg-type]

    infos = asyncio.run(run())
    if as_json:
        for info in infos:
            typer.echo(json.dumps({"status": "ended" if info.ended else "running", **asdict(info)}, ensure_ascii=False))
    else:
        print_table(infos)


def print_table(infos: list[RunInfo]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for name in ("run", "status", "events", "first id", "last id", "size", "age", "thread id"):
        table.add_column(name, justify="right" if name in ("events", "first id", "last id", "size", "age") else "left")
    now = time.time()
    for info in infos:
        table.add_row(
            info.run_id, "ended" if info.ended else "running", str(info.event_count), str(info.first_id),
            str(info.last_id), size(info.total_bytes), age(now - info.created_at), str(info.metadata.get("thread_id", "")),
        )
    Console().print(table)


def size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value, unit = float(n), "B"
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"


def age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{int(seconds // length)}{unit}"
    return f"{max(0, int(seconds))}s"
