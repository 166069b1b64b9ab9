"""Shared fixtures for the test suite: real SQLite files in ``tmp_path``, nothing mocked.

Kept generic on purpose so that transport tests (HTTP, compat) can reuse them:

- ``db_path``: a fresh database path in ``tmp_path`` (the file does not exist yet).
- ``database``: where ``log`` and ``open_log`` open: ``db_path``, or, in a test marked
  ``backends`` (a module's ``pytestmark``), each backend in turn: ``db_path`` and a fresh
  PostgreSQL database's URL (those cases carry the ``postgres`` marker). A test of such a module
  that is about SQLite's file itself is marked ``sqlite_only``.
- ``another_database``: ``another_database("name.db")`` is one more fresh location of the
  same backend (a file in ``tmp_path``, or a new PostgreSQL database).
- ``postgres_cluster``: the session's throwaway PostgreSQL cluster (tests/postgres_server.py).
- ``log``: an ``EventLog`` opened on ``database`` with default settings, closed afterwards.
- ``open_log``: a factory ``await open_log(path=None, **options)`` for logs with other options;
  every log it opened is closed at teardown.
- ``helper_script``: ``helper_script("name")`` is the path of ``tests/helpers/name.py``, a plain
  script to run in a child process with ``sys.executable``.
- ``collect``: ``await collect(aiter, n, timeout=5.0)`` takes ``n`` items (or up to the end) from
  an async iterator within ``timeout`` seconds; a stall fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventlog import EventLog
from tests.postgres_server import HINT, PostgresCluster, find_bin

HELPERS = Path(__file__).resolve().parent / "helpers"
POSTGRES_BIN = find_bin()
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test marked ``backends`` that uses ``backend`` (through ``database``, ``log``,
    a server...) on every backend; module-scoped, so a module's shared server is one per backend."""
    marked = metafunc.definition.get_closest_marker("backends") is not None
    if marked and "backend" in metafunc.fixturenames and not metafunc.definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("backend", BACKENDS, indirect=True, scope="module")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without PostgreSQL binaries, deselect (never pass) the PostgreSQL tests, and say how to
    get them; where EVENTLOG_REQUIRE_POSTGRES is set (.ci/run sets it), that is an error."""
    if POSTGRES_BIN is not None:
        return
    if os.environ.get("EVENTLOG_REQUIRE_POSTGRES"):
        raise pytest.UsageError(HINT.replace("PostgreSQL tests deselected", "EVENTLOG_REQUIRE_POSTGRES is set"))
    deselected = [item for item in items if item.get_closest_marker("postgres") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("postgres") is None]
        config.stash[_DESELECTED] = len(deselected)


_DESELECTED = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if config.stash.get(_DESELECTED, 0):
        terminalreporter.write_line(f"{HINT} ({config.stash[_DESELECTED]} tests)")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    assert POSTGRES_BIN is not None, HINT  # the postgres marker deselects its users otherwise
    cluster = PostgresCluster(POSTGRES_BIN).start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "eventlog.db"


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"``, or the backend of this case of a test marked ``backends``."""
    return getattr(request, "param", "sqlite")


def new_database(request: pytest.FixtureRequest, backend: str, sqlite_path: Path) -> Path | str:
    """``sqlite_path``, or a fresh PostgreSQL database's URL."""
    if backend == "sqlite":
        return sqlite_path
    return request.getfixturevalue("postgres_cluster").new_database()


@pytest.fixture
def database(request: pytest.FixtureRequest, backend: str, db_path: Path) -> Path | str:
    return new_database(request, backend, db_path)


@pytest.fixture
def another_database(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Callable[[str], Path | str]:
    """``another_database("name.db")``: one more fresh log location of the test's backend."""
    return lambda name: new_database(request, backend, tmp_path / name)


@pytest.fixture
async def log(database: Path | str) -> AsyncIterator[EventLog]:
    opened = await EventLog.open(database)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def open_log(database: Path | str) -> AsyncIterator[Callable[..., Awaitable[EventLog]]]:
    opened: list[EventLog] = []

    async def _open(path: Path | str | None = None, **options: Any) -> EventLog:
        instance = await EventLog.open(database if path is None else path, **options)
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
