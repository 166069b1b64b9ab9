from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http.server import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh server on a fresh file, killed at the end of the test."""
    process = ServerProcess(tmp_path / "eventlog.db").start()
    yield process
    process.kill()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a module's tests that do not restart it (each uses its own run ids)."""
    process = ServerProcess(tmp_path_factory.mktemp("shared") / "eventlog.db").start()
    yield process
    process.kill()


@pytest.fixture
def client(shared_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.url, timeout=10) as http:
        yield http
