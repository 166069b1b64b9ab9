"""What a user installs: the wheel, in a fresh venv, used from a directory outside the repo.

An editable install reads the source tree, so it once hid that the wheel shipped without its
migrations. Here the wheel is built with pip as a user would, installed first bare (the library
must work with no third-party package at all) and then with the ``server`` extra, whose
``eventlog serve`` must answer ``/healthz``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http.server import free_port

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(900)

LIBRARY_SCRIPT = """
import asyncio, sys
import eventlog
from eventlog import EventLog

async def main():
    async with EventLog.open("x.db") as log:
        ids = await log.append_many("run-1", [("updates", {"step": 1}), ("values", [1, 2])])
        await log.end("run-1")
        events = await log.read("run-1")
    assert [e.id for e in events[:2]] == ids, events
    assert [e.event for e in events] == ["updates", "values", "end"], events
    print("library ok", eventlog.__file__)

asyncio.run(main())
"""


def run(command: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def check(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    check(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)], cwd=dist))
    (built,) = dist.glob("eventlog-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Iterator[Path]:
    """A fresh venv with only the bare wheel installed; tests may add the server extra."""
    home = tmp_path_factory.mktemp("venv")
    check(run([sys.executable, "-m", "venv", str(home / "env")], cwd=home))
    check(run([str(home / "env/bin/pip"), "install", "-q", str(wheel)], cwd=home))
    yield home / "env"


def test_the_wheel_holds_every_module_migration_and_inspector_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    # Every module, and the web inspector's files (package data next to its module).
    shipped = [p for pattern in ("*.py", "*.html", "*.js", "*.css") for p in (REPO / "eventlog").rglob(pattern)]
    modules = {p.relative_to(REPO).as_posix() for p in shipped}
    assert any(name.endswith(".js") for name in modules), "no inspector files found in the repo?"
    migrations = {f"eventlog/migrations/{p.relative_to(REPO / 'migrations').as_posix()}" for p in (REPO / "migrations").rglob("*.sql")}
    assert migrations, "no migrations in the repo?"
    assert any(m.startswith("eventlog/migrations/postgresql/") for m in migrations), "no PostgreSQL migrations?"
    assert modules <= names, sorted(modules - names)
    assert migrations <= names, sorted(migrations - names)
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]


def test_the_bare_wheel_is_a_working_library(venv: Path, tmp_path: Path) -> None:
    out = check(run([str(venv / "bin/python"), "-c", LIBRARY_SCRIPT], cwd=tmp_path))
    assert "library ok" in out and str(venv) in out, out  # imported from the venv, not the repo
    # Nothing but the standard library came with it.
    installed = check(run([str(venv / "bin/pip"), "list", "--format=freeze"], cwd=tmp_path))
    assert {line.split("==")[0].lower() for line in installed.split()} <= {"eventlog", "pip", "setuptools"}, installed
    # The command line says what is missing, in one line, instead of a traceback.
    bare = run([str(venv / "bin/eventlog"), "--help"], cwd=tmp_path)
    assert bare.returncode != 0
    assert bare.stderr.strip().count("\n") == 0 and "eventlog[server]" in bare.stderr, bare.stderr


def test_the_server_extra_serves(venv: Path, wheel: Path, tmp_path: Path) -> None:
    check(run([str(venv / "bin/pip"), "install", "-q", f"{wheel}[server]"], cwd=tmp_path))
    port = free_port()
    log_file = open(tmp_path / "serve.log", "wb")
    server = subprocess.Popen(
        [str(venv / "bin/eventlog"), "serve", "--db", "data/served.db", "--port", str(port)],
        cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        posted = httpx.post(f"{url}/runs/job-1/events", json={"event": "updates", "data": {"n": 1}}, timeout=10)
        assert posted.status_code == 201, posted.text
        page = httpx.get(f"{url}/runs/job-1/events", timeout=10).json()
        assert [e["data"] for e in page["events"]] == [{"n": 1}]
        assert (tmp_path / "data/served.db").is_file()
    finally:
        server.terminate()
        server.wait(20)
