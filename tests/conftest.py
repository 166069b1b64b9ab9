"""Shared fixtures for the test suite: real SQLite files in ``tmp_path``, nothing mocked.

Kept generic on purpose so that transport tests (HTTP, compat) can reuse them:

- ``db_path``: a fresh database path in ``tmp_path`` (the file does not exist yet).
- ``log``: an ``EventLog`` opened on ``db_path`` with default settings, closed afterwards.
- ``open_log``: a factory ``await open_log(path=None, **options)`` for logs with other options;
  every log it opened is closed at teardown.
- ``helper_script``: ``helper_script("name")`` is the path of ``tests/helpers/name.py``, a plain
  script to run in a child process with ``sys.executable``.
- ``collect``: ``await collect(aiter, n, timeout=5.0)`` takes ``n`` items (or up to the end) from
  an async iterator within ``timeout`` seconds; a stall fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from eventlog import EventLog

HELPERS = Path(__file__).resolve().parent / "helpers"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "eventlog.db"


@pytest.fixture
async def log(db_path: Path) -> AsyncIterator[EventLog]:
    opened = await EventLog.open(db_path)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def open_log(db_path: Path) -> AsyncIterator[Callable[..., Awaitable[EventLog]]]:
    opened: list[EventLog] = []

    async def _open(path: Path | str | None = None, **options: Any) -> EventLog:
        instance = await EventLog.open(db_path if path is None else path, **options)
        opened.append(instance)
        return instance

    try:
        yield _open
    finally:
        for instance in reversed(opened):
            await instance.close()


@pytest.fixture
def helper_script() -> Callable[[str], list[str]]:
    """``helper_script("crash_writer")`` -> ``[sys.executable, ".../helpers/crash_writer.py"]``."""

    def _command(name: str) -> list[str]:
        path = HELPERS / f"{name}.py"
        assert path.is_file(), path
        return [sys.executable, str(path)]

    return _command


async def take(source: AsyncIterator[Any], n: int, timeout: float = 5.0) -> list[Any]:
    """Up to ``n`` items of ``source`` (fewer if it ends), failing if they take over ``timeout``."""

    async def _take() -> list[Any]:
        items: list[Any] = []
        if n <= 0:
            return items
        async for item in source:
            items.append(item)
            if len(items) >= n:
                break
        return items

    try:
        return await asyncio.wait_for(_take(), timeout)
    except TimeoutError:
        pytest.fail(f"no more items within {timeout}s (wanted {n})")


@pytest.fixture
def collect() -> Callable[..., Awaitable[list[Any]]]:
    return take


def integrity_check(path: Path | str) -> str:
    """``PRAGMA integrity_check`` of the file, through a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def check_integrity() -> Callable[[Path | str], str]:
    return integrity_check
