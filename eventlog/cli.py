"""The ``eventlog`` command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="eventlog: a crash-safe event log streamed over Server-Sent Events.", no_args_is_help=True)


@app.callback()
def _commands() -> None:
    """Keeps ``eventlog serve`` a subcommand even while it is the only one."""


@app.command()
def serve(
    db: Annotated[Optional[Path], typer.Option(help="SQLite file (created when missing). [env: EVENTLOG_DB]")] = None,
    host: Annotated[Optional[str], typer.Option(help="Address to bind. [env: EVENTLOG_HOST]")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to bind. [env: EVENTLOG_PORT]")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes sharing the file. [env: EVENTLOG_WORKERS]")] = None,
    cors_origin: Annotated[Optional[list[str]], typer.Option(help="Allowed browser origin; repeatable, * for any. [env: EVENTLOG_CORS_ORIGINS]")] = None,
    durability: Annotated[Optional[str], typer.Option(help="process (survives kill -9) or power (fsync per commit). [env: EVENTLOG_DURABILITY]")] = None,
    heartbeat: Annotated[Optional[float], typer.Option(help="Seconds between SSE heartbeats. [env: EVENTLOG_HEARTBEAT]")] = None,
) -> None:
    """Serve the HTTP API and SSE streams."""
    import uvicorn

    from eventlog.http.settings import Settings

    flags = {"db": db, "host": host, "port": port, "workers": workers, "cors_origins": cors_origin,
             "durability": durability, "heartbeat": heartbeat}
    settings = Settings(**{name: value for name, value in flags.items() if value is not None})
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


def main() -> None:
    app()
