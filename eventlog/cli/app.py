"""The Typer app every command registers on, the options several commands share, and ``main``:
every failure is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import sys
from typing import Annotated, NoReturn, Optional

import typer

from eventlog.errors import EventLogError

app = typer.Typer(
    help="eventlog: a crash-safe event log streamed over Server-Sent Events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# typer re-exports BadParameter but not its bases, and newer typers vendor their own click: take
# the classes from the one typer raises, whichever it is.
_UsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")
_ClickException = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")

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
    """Run the app. A usage mistake (an unknown option, a bad value), an eventlog error or an OS
    error (a file that cannot be read, say) is one line on stderr, exit 2 for usage and 1 else;
    click's own usage message would take several lines and a box."""
    try:
        code = app(standalone_mode=False)
    except _UsageError as exc:
        if message := exc.format_message():  # empty for a bare ``eventlog``: its help was shown
            command = exc.ctx.command_path if exc.ctx is not None else "eventlog"
            typer.echo(f"eventlog: {message} (see: {command} --help)", err=True)
        raise SystemExit(2) from None
    except _ClickException as exc:
        typer.echo(f"eventlog: {exc.format_message()}", err=True)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        typer.echo("eventlog: aborted", err=True)
        raise SystemExit(130) from None
    except EventLogError as exc:
        typer.echo(f"eventlog: {exc}", err=True)
        raise SystemExit(1) from None
    except BrokenPipeError:
        # The reader went away (``eventlog tail ... | head``): stop quietly, as the docs of the
        # signal module advise, so the interpreter does not complain while flushing stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"eventlog: {where}{exc.strerror or exc}", err=True)
        raise SystemExit(1) from None
    raise SystemExit(code or 0)
