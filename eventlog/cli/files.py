"""Commands on a log file: ``check``, ``export``, ``import``, ``trim``, ``migrate``,
``checkpoint`` and ``vacuum``.

Each opens the file with ``eventlog.cli.local.open_file``, so it is refused with one line when it
is missing, a directory, corrupt, another program's, of a newer schema or not writable, before
anything is changed."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from eventlog.cli.app import app, fail
from eventlog.cli.local import check_path, on_file, open_file

DbOption = Annotated[str, typer.Option("--db", envvar="EVENTLOG_DB", help="The eventlog file, or a postgresql:// URL.")]
DEFAULT_DB = "data/eventlog.db"
ProgressOption = Annotated[
    Optional[bool],
    typer.Option("--progress/--no-progress", help="A progress bar on stderr (default: when stderr is a terminal)."),
]


@dataclass(frozen=True, slots=True)
class Bar:
    """What a long command tells its progress bar."""

    total: Callable[[int], None]
    advance: Callable[[int], None]


@contextmanager
def progress_bar(label: str, enabled: bool | None) -> Iterator[Bar]:
    """A rich progress bar on stderr (never stdout, which may be the data), shown when asked or
    when stderr is a terminal."""
    if not (sys.stderr.isatty() if enabled is None else enabled):
        yield Bar(lambda _: None, lambda _: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True, force_terminal=True)) as progress:
        task = progress.add_task(label, total=None)
        yield Bar(lambda n: progress.update(task, total=n), lambda n: progress.advance(task, n))


@app.command()
def check(
    path: Annotated[str, typer.Argument(help="The eventlog file to check.")],
    quick: Annotated[bool, typer.Option("--quick", help="PRAGMA quick_check: faster, skips the index cross-checks.")] = False,
) -> None:
    """Check a log file without changing it: integrity, schema version, counts, sizes.

    Exits 1 with a one-line reason when the file is missing, corrupt, not an eventlog or newer."""
    from eventlog import EventLog

    report = EventLog.check(path, quick=quick)
    facts = [
        ("integrity", report.integrity),
        ("schema version", None if report.schema_version is None else f"{report.schema_version} (this eventlog: {report.latest_version})"),
        ("runs", report.runs),
        ("events", report.events),
        ("file size", None if report.file_bytes is None else f"{report.file_bytes} bytes"),
        ("wal size", None if report.wal_bytes is None else f"{report.wal_bytes} bytes"),
    ]
    for label, value in facts:
        if value is not None:
            typer.echo(f"{label}: {value}")
    if report.problem is not None:
        typer.echo(f"eventlog check: {path}: {report.problem}", err=True)
        raise typer.Exit(1)
    typer.echo(f"eventlog check: {path}: ok")


@app.command("export")
def export_(
    run_ids: Annotated[Optional[list[str]], typer.Argument(metavar="RUN", help="Runs to export (default: all).")] = None,
    db: DbOption = DEFAULT_DB,
    progress: ProgressOption = None,
) -> None:
    """Write the log (or the runs named) to stdout as JSON lines.

    One consistent snapshot: a header line, then each run's line followed by its events (ids,
    timestamps, data and end markers as stored). `eventlog import` reads it back exactly."""
    from eventlog.log.archive import export_log

    async def body() -> None:
        async with open_file(db) as log:
            with progress_bar("exporting", progress) as bar:
                await export_log(log, sys.stdout.buffer, run_ids or None, on_total=bar.total, on_progress=bar.advance)
        sys.stdout.buffer.flush()

    asyncio.run(body())


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="A file written by `eventlog export`.")],
    db: DbOption = DEFAULT_DB,
    remap: Annotated[bool, typer.Option(
        "--remap", help="Import into a log that already holds runs: the imported events get new ids "
        "(in their order; none of the imported run ids may exist). Without it the log must be empty "
        "(or missing), and every id is kept.")] = False,
    progress: ProgressOption = None,
) -> None:
    """Read an export (of `eventlog export`) into the log at --db.

    Without --remap it keeps every run, id, timestamp and end marker, so exporting again gives the
    same bytes, and refuses a log that already holds runs (a missing file is created). The input
    is checked whole before the log is touched."""
    from eventlog.log.archive import check_archive, import_log

    check_path(source, create=False)
    with progress_bar("importing", progress) as bar:
        bar.total(2 * source.stat().st_size)  # read twice: checked, then written

        def read() -> Iterator[bytes]:
            with source.open("rb") as lines:
                yield from lines

        checked = check_archive(read, bar.advance)

        async def body() -> tuple[int, int]:
            async with open_file(db, create=True) as log:
                return await import_log(log, checked, remap=remap, on_progress=bar.advance)

        runs, events = asyncio.run(body())
    typer.echo(f"imported {runs} runs, {events} events into {db}{' (ids remapped)' if remap else ''}")


@app.command()
def trim(
    db: DbOption = DEFAULT_DB,
    max_events: Annotated[Optional[int], typer.Option(min=1, help="Keep at most this many events per run (oldest go).")] = None,
    max_bytes: Annotated[Optional[int], typer.Option(min=1, help="Keep at most this many bytes of data per run.")] = None,
    max_age: Annotated[Optional[str], typer.Option(help="Remove events older than this: 90s, 15m, 1h, 7d.")] = None,
    ended_ttl: Annotated[Optional[str], typer.Option(help="Delete runs that ended longer ago than this: 15m, 7d.")] = None,
) -> None:
    """Apply retention now and print what was removed.

    End markers are never trimmed; readers of a trimmed run are told of the gap."""
    from eventlog import RetentionPolicy
    from eventlog.cli.serve import parse_duration

    if max_events is None and max_bytes is None and max_age is None and ended_ttl is None:
        fail("nothing to trim by: give --max-events, --max-bytes, --max-age or --ended-ttl", 2)
    policy = RetentionPolicy(
        max_events=max_events, max_bytes=max_bytes, idempotency_ttl=None,
        max_age=None if max_age is None else parse_duration(max_age),
        ended_ttl=None if ended_ttl is None else parse_duration(ended_ttl),
    )

    report = on_file(db, lambda log: log.apply_retention(policy=policy))
    typer.echo(f"trimmed {report.trimmed_events} events")
    typer.echo(f"deleted {len(report.expired_runs)} ended runs ({report.expired_events} events)"
               + "".join(f"\n  {run_id}" for run_id in report.expired_runs))


@app.command()
def migrate(db: DbOption = DEFAULT_DB) -> None:
    """Bring the file's schema up to date and print the versions.

    Servers do it too when they open the file; a file of another program or of a newer eventlog
    is refused, unchanged."""

    found, now = on_file(db, lambda log: log.schema_versions())
    typer.echo(f"schema version {now}: already up to date" if found == now else f"schema version {found} -> {now}")


@app.command()
def checkpoint(db: DbOption = DEFAULT_DB) -> None:
    """Fold the write-ahead log into the file and truncate it; print its size before and after.

    Safe while servers use the file; a reader that stays in the way makes it fail, harmlessly."""

    wal = on_file(db, lambda log: log.checkpoint())
    typer.echo(f"wal size: {wal.before} -> {wal.after} bytes")


@app.command()
def vacuum(db: DbOption = DEFAULT_DB) -> None:
    """Rebuild the file without its free pages; print its size before and after.

    Gives back the space of trimmed and deleted runs. Needs free disk space for a copy of the
    file; writers wait meanwhile."""

    size = on_file(db, lambda log: log.vacuum())
    typer.echo(f"file size: {size.before} -> {size.after} bytes")
