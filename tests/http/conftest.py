from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import new_database
from tests.http.server import ServerProcess


@pytest.fixture
def server(database: Path | str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server on a fresh file (or database: see ``backend``), killed at the end of the test."""
    process = ServerProcess(database, log_path=tmp_path / "server.log").start()
    yield process
    process.kill()


@pytest.fixture(scope="module")
def shared_server(request: pytest.FixtureRequest, backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a module's tests that do not restart it (each uses its own run ids)."""
    folder = tmp_path_factory.mktemp("shared")
    process = ServerProcess(new_database(request, backend, folder / "eventlog.db"), log_path=folder / "server.log").start()
    yield process
    process.kill()


@pytest.fixture
def client(shared_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.url, timeout=10) as http:
        yield http
