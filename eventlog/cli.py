"""The ``eventlog`` command line: serve, mint reader tokens, tail a run, check a file."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="eventlog: a crash-safe event log streamed over Server-Sent Events.", no_args_is_help=True)

TokenOption = Annotated[Optional[str], typer.Option("--token", envvar="EVENTLOG_TOKEN", help="API key or reader token.")]
UrlOption = Annotated[str, typer.Option("--url", envvar="EVENTLOG_URL", help="The server's base URL.")]


@app.callback()
def _commands() -> None:
    """Keeps every command a subcommand."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    db: Annotated[Optional[Path], typer.Option(help="SQLite file (created when missing). [env: EVENTLOG_DB]")] = None,
    host: Annotated[Optional[str], typer.Option(help="Address to bind. [env: EVENTLOG_HOST]")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to bind. [env: EVENTLOG_PORT]")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes sharing the file. [env: EVENTLOG_WORKERS]")] = None,
    cors_origin: Annotated[Optional[list[str]], typer.Option(help="Allowed browser origin; repeatable, * for any. [env: EVENTLOG_CORS_ORIGINS]")] = None,
    durability: Annotated[Optional[str], typer.Option(help="process (survives kill -9) or power (fsync per commit). [env: EVENTLOG_DURABILITY]")] = None,
    heartbeat: Annotated[Optional[float], typer.Option(help="Seconds between SSE heartbeats. [env: EVENTLOG_HEARTBEAT]")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Serve a non-loopback address without any key. [env: EVENTLOG_INSECURE]")] = False,
) -> None:
    """Serve the HTTP API and SSE streams. Keys come from EVENTLOG_API_KEY / EVENTLOG_JWT_SECRET."""
    import uvicorn

    from eventlog.http.settings import Settings

    flags = {"db": db, "host": host, "port": port, "workers": workers, "cors_origins": cors_origin,
             "durability": durability, "heartbeat": heartbeat, "insecure": insecure or None}
    settings = Settings(**{name: value for name, value in flags.items() if value is not None})
    if not settings.auth_enabled and not settings.insecure and not is_loopback(settings.host):
        typer.echo(
            f"eventlog: refusing to serve {settings.host} without a key: set EVENTLOG_API_KEY "
            "(and EVENTLOG_JWT_SECRET for readers), or pass --insecure", err=True,
        )
        raise typer.Exit(2)
    os.environ.update(settings.to_env())  # every worker process builds the same settings
    settings.db.parent.mkdir(parents=True, exist_ok=True)
    uvicorn.run(
        "eventlog.http.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        timeout_graceful_shutdown=5,
    )


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration such as 90s, 15m, 1h or 7d")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


@app.command()
def token(
    run_globs: Annotated[list[str], typer.Argument(help="Run ids or globs (quote them: 'job-*') the token may read.")],
    ttl: Annotated[str, typer.Option(help="Lifetime: 90s, 15m, 1h, 7d.")] = "1h",
    secret: Annotated[Optional[str], typer.Option(envvar="EVENTLOG_JWT_SECRET", help="HS256 secret (the server's EVENTLOG_JWT_SECRET).")] = None,
) -> None:
    """Mint a reader token (HS256 JWT) for runs matching RUN_GLOBS."""
    from eventlog.http.auth import mint_token

    if not secret:
        typer.echo("eventlog: no secret: set EVENTLOG_JWT_SECRET or pass --secret", err=True)
        raise typer.Exit(2)
    typer.echo(mint_token(secret, run_globs, parse_duration(ttl)))


@app.command()
def tail(
    run_id: Annotated[str, typer.Argument(help="The run to follow.")],
    url: UrlOption = "http://127.0.0.1:8000",
    token: TokenOption = None,
    after: Annotated[Optional[int], typer.Option(help="Resume after this event id.")] = None,
) -> None:
    """Print a run's events as JSON lines, following it until it ends."""
    import httpx
    from httpx_sse import connect_sse

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if after is not None:
        headers["Last-Event-ID"] = str(after)
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(10, read=None)) as http:
        with connect_sse(http, "GET", f"/runs/{run_id}/stream") as source:
            if source.response.status_code != 200:
                typer.echo(f"eventlog: {source.response.status_code} {source.response.read().decode()}", err=True)
                raise typer.Exit(1)
            for sse in source.iter_sse():
                if not sse.data:  # the retry: hint
                    continue
                line = {"id": int(sse.id) if sse.id else None, "event": sse.event, "data": json.loads(sse.data)}
                typer.echo(json.dumps(line, ensure_ascii=False))
                sys.stdout.flush()
                if sse.event == "end":
                    return


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


def main() -> None:
    app()
