"""The Typer app every command registers on, the options several commands share, and ``main``:
every failure is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from typing import Annotated, NoReturn, Optional

import typer

from eventlog.errors import EventLogError

app = typer.Typer(
    help="eventlog: a crash-safe event log streamed over Server-Sent Events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

TokenOption = Annotated[Optional[str], typer.Option("--token", envvar="EVENTLOG_TOKEN", help="API key or reader token.")]
UrlOption = Annotated[Optional[str], typer.Option("--url", envvar="EVENTLOG_URL", help="The server's base URL.")]


@app.callback()
def _commands() -> None:
    """Keeps every command a subcommand."""


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop the command with ``message`` as the one line on stderr."""
    typer.echo(f"eventlog: {message}", err=True)
    raise typer.Exit(code)


def main() -> None:
    """Run the app; an eventlog error or an OS error (a file that cannot be read, say) is one
    line and exit 1."""
    try:
        app()
    except EventLogError as exc:
        typer.echo(f"eventlog: {exc}", err=True)
        raise SystemExit(1) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"eventlog: {where}{exc.strerror or exc}", err=True)
        raise SystemExit(1) from None
