"""The ``eventlog`` command line: one module per group of commands, all on the app of ``app.py``,
which also turns every failure into one line on stderr."""

from eventlog.cli import files, runs, serve  # noqa: F401  (each module registers its commands)
from eventlog.cli.app import app, main

__all__ = ["app", "main"]
