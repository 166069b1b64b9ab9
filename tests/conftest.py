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
- ``node_install``: the directory of the Durable Streams tests' Node packages (tests/node_harness.py);
  tests that use it are marked ``node``.
- ``summary_line``: ``summary_line("...")`` prints a line at the end of the run (what a test
  wants seen without ``-s``, e.g. what an external suite skipped).
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
from tests.node_harness import HINT as NODE_HINT
from tests.node_harness import find_install
from tests.postgres_server import HINT as POSTGRES_HINT
from tests.postgres_server import PostgresCluster, find_bin

HELPERS = Path(__file__).resolve().parent / "helpers"
POSTGRES_BIN = find_bin()
NODE_INSTALL = find_install()
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test marked ``backends`` that uses ``backend`` (through ``database``, ``log``,
    a server...) on every backend; module-scoped, so a module's shared server is one per backend."""
    marked = metafunc.definition.get_closest_marker("backends") is not None
    if marked and "backend" in metafunc.fixturenames and not metafunc.definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("backend", BACKENDS, indirect=True, scope="module")


# marker: (is what its tests need here?, the hint when it is not, the variable that makes that an error)
REQUIREMENTS = {
    "postgres": (POSTGRES_BIN is not None, POSTGRES_HINT, "EVENTLOG_REQUIRE_POSTGRES"),
    "node": (NODE_INSTALL is not None, NODE_HINT, "EVENTLOG_REQUIRE_NODE"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without PostgreSQL binaries (or node and the Durable Streams packages), deselect (never
    pass) the tests marked ``postgres`` (``node``), and say how to get them; where
    EVENTLOG_REQUIRE_POSTGRES (EVENTLOG_REQUIRE_NODE) is set (.ci/run sets both), that is an error."""
    config.stash[_SUMMARY] = []
    for marker, (present, hint, required_by) in REQUIREMENTS.items():
        if present:
            continue
        if os.environ.get(required_by):
            raise pytest.UsageError(f"{required_by} is set:{hint.split(':', 1)[1]}")
        deselected = [item for item in items if item.get_closest_marker(marker) is not None]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if item.get_closest_marker(marker) is None]
            config.stash[_SUMMARY].append(f"{hint} ({len(deselected)} tests)")


_SUMMARY = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for line in config.stash.get(_SUMMARY, []):
        terminalreporter.write_line(line)


@pytest.fixture
def summary_line(request: pytest.FixtureRequest) -> Callable[[str], None]:
    return request.config.stash.setdefault(_SUMMARY, []).append


@pytest.fixture(scope="session")
def node_install() -> Path:
    assert NODE_INSTALL is not None, NODE_HINT  # the node marker deselects its users otherwise
    return NODE_INSTALL


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    assert POSTGRES_BIN is not None, POSTGRES_HINT  # the postgres marker deselects its users otherwise
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
