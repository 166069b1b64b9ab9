"""``eventlog serve`` and ``eventlog token``: run the HTTP server, mint reader tokens."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import sys
from typing import Annotated, Optional

import typer

from eventlog.cli.app import app, fail


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    db: Annotated[Optional[str], typer.Option(help="SQLite file (created when missing), or a postgresql:// URL. [env: EVENTLOG_DB]")] = None,
    host: Annotated[Optional[str], typer.Option(help="Address to bind. [env: EVENTLOG_HOST]")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to bind. [env: EVENTLOG_PORT]")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes sharing the file. [env: EVENTLOG_WORKERS]")] = None,
    cors_origin: Annotated[Optional[list[str]], typer.Option(help="Allowed browser origin; repeatable, * for any. [env: EVENTLOG_CORS_ORIGINS]")] = None,
    durability: Annotated[Optional[str], typer.Option(help="process (survives kill -9) or power (fsync per commit). [env: EVENTLOG_DURABILITY]")] = None,
    heartbeat: Annotated[Optional[float], typer.Option(help="Seconds between SSE heartbeats. [env: EVENTLOG_HEARTBEAT]")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Serve a non-loopback address without any key. [env: EVENTLOG_INSECURE]")] = False,
    access_log: Annotated[Optional[bool], typer.Option("--access-log/--no-access-log", help="A line per request (about a tenth of a small request's CPU). [env: EVENTLOG_ACCESS_LOG]")] = None,
) -> None:
    """Serve the HTTP API and SSE streams. Keys come from EVENTLOG_API_KEY / EVENTLOG_JWT_SECRET."""
    from eventlog.http.settings import Settings

    flags = {"db": db, "host": host, "port": port, "workers": workers, "cors_origins": cors_origin,
             "durability": durability, "heartbeat": heartbeat, "insecure": insecure or None, "access_log": access_log}
    settings = Settings(**{name: value for name, value in flags.items() if value is not None})
    if not settings.auth_enabled and not settings.insecure and not is_loopback(settings.host):
        typer.echo(
            f"eventlog: refusing to serve {settings.host} without a key: set EVENTLOG_API_KEY "
            "(and EVENTLOG_JWT_SECRET for readers), or pass --insecure", err=True,
        )
        raise typer.Exit(2)
    asyncio.run(probe_file(settings.db))
    check_port(settings.host, settings.port)
    os.environ.update(settings.to_env())  # every worker process builds the same settings
    # The server replaces this process (same pid, so signals still reach it): the command
    # line's own modules would otherwise stay in the server's memory for its whole life.
    # No WebSocket routes, so no WebSocket library loaded either.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [
        sys.executable, "-m", "uvicorn", "eventlog.http.app:create_app", "--factory",
        "--host", settings.host, "--port", str(settings.port), "--workers", str(settings.workers),
        "--ws", "none", "--timeout-graceful-shutdown", "5", *([] if settings.access_log else ["--no-access-log"]),
    ])


async def probe_file(db: str) -> None:
    """Open the log once and close it, before any server starts: a file that is no log, a newer
    one, corrupt or not writable (or a PostgreSQL database that cannot be reached) is refused in
    one line (unchanged), where each worker would otherwise fail at startup with a traceback. A
    missing file (an empty database) is created (and set up) here."""
    from eventlog.cli.local import open_file

    async with open_file(db, create=True):
        pass


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` once, as uvicorn will (its address family, SO_REUSEADDR): an address
    in use, or one this machine does not have, is one line instead of a failed startup."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:  # socket.gaierror included
            fail(f"cannot listen on {host}:{port}: {exc.strerror}")


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
