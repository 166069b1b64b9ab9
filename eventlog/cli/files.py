"""Commands on a log file: ``eventlog check``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from eventlog.cli.app import app


@app.command()
def check(
    path: Annotated[Path, typer.Argument(help="The eventlog file to check.")],
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
