"""Corrupted and truncated logs: a log whose pages are overwritten in the middle, and a log cut
short, a few random cases per run (tests/test_corruption.py pins the deterministic ones).
Whether open checks the file or the first failing read finds out, every way in answers
``database_corrupt`` (a typed error; HTTP 503 JSON, ``/healthz`` 503, a stream's ``error``
frame), never a hang, a 500 or text/plain, never a stream cut off; writes stop, so the damaged
file is left as it was; the server's log names the file and says to run ``eventlog check``,
which reports the damage with a non-zero exit."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse

from eventlog import DatabaseCorrupt, EventLog
from tests.faults import overwrite_pages, page_size
from tests.http.server import ServerProcess
from tests.torture import files
from tests.torture.figures import Figures

EVENTS = 3000  # about 200 pages of 4 KB


def corrupt_pages(db: Path, rng: random.Random) -> str:
    """Overwrite a stretch of 1-8 pages in the middle of the file (page 1 stays)."""
    pages = db.stat().st_size // page_size(db)
    first = rng.randrange(pages // 4, pages // 2)
    count = rng.randint(1, 8)
    overwrite_pages(db, list(range(first, first + count)), seed=rng.randrange(2**32))
    return f"pages {first}-{first + count - 1} of {pages} overwritten"


def truncate(db: Path, rng: random.Random) -> str:
    size, page = db.stat().st_size, page_size(db)
    keep = rng.randrange(size // 4, 3 * size // 4) // page * page
    os.truncate(db, keep)
    return f"cut from {size} to {keep} bytes"


def digest(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


async def corrupt_through_library(db: Path, figures: Figures) -> None:
    """Open may refuse; if it does not, the whole-run read fails and so do writes afterwards."""
    figures.operations += 1
    try:
        async with asyncio.timeout(files.OPEN_DEADLINE):
            log = await EventLog.open(db)
    except DatabaseCorrupt as exc:
        figures.error(f"{exc.code} at open")
        assert str(db) in str(exc)
        return
    try:
        async with asyncio.timeout(files.OPEN_DEADLINE):
            with pytest.raises(DatabaseCorrupt):
                after = 0
                while page := await log.read("run", after=after, limit=1000):
                    figures.operations += 1
                    after = page[-1].id
            figures.error("database_corrupt on read")
            figures.operations += 1
            with pytest.raises(DatabaseCorrupt):
                await log.append("run", "updates", {"after": "corruption"})
            figures.error("database_corrupt on append")
    finally:
        await log.close()


def corrupt_through_server(db: Path, log_path: Path, figures: Figures) -> None:
    server = ServerProcess(db, log_path=log_path)
    try:
        try:
            server.start(timeout=files.OPEN_DEADLINE)
        except RuntimeError:
            figures.error("server exits at start")
            assert server.process is not None and server.process.poll() not in (None, 0)
        else:
            with httpx.Client(base_url=server.url, timeout=files.OPEN_DEADLINE) as http:
                stream_meets_the_damage(http, figures)
                after = 0
                while True:
                    figures.operations += 1
                    response = http.get("/runs/run/events", params={"after": after, "limit": 1000})
                    if response.status_code != 200 or not response.json()["events"]:
                        break
                    after = response.json()["events"][-1]["id"]
                expect_corrupt(response, figures)
                figures.operations += 2
                expect_corrupt(http.get("/healthz"), figures, code=None)
                expect_corrupt(http.post("/runs/run/events", json={"event": "updates", "data": 1}), figures)
    finally:
        server.kill()
    output = log_path.read_text()
    assert str(db) in output and "eventlog check" in output, output[-3000:]


def stream_meets_the_damage(http: httpx.Client, figures: Figures) -> None:
    """A stream replaying the run into the damage ends with an ``error`` frame (or, once the
    log knows, is refused with a 503): it is neither cut off nor left hanging."""
    figures.operations += 1
    with connect_sse(http, "GET", "/runs/run/stream") as source:
        if source.response.status_code != 200:
            source.response.read()
            expect_corrupt(source.response, figures)
            return
        last = None
        for sse in source.iter_sse():
            if sse.event in ("error", "end"):
                last = sse
                break
    assert last is not None and last.event == "error", f"the stream ended with {last}"
    assert json.loads(last.data)["code"] == "database_corrupt", last.data
    figures.error("stream error frame")


def expect_corrupt(response: httpx.Response, figures: Figures, code: str | None = "database_corrupt") -> None:
    figures.error(f"HTTP {response.status_code}")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    if code is not None:
        assert response.json()["error"]["code"] == code, response.text


def check_command(db: Path, figures: Figures) -> int:
    figures.operations += 1
    result = subprocess.run([sys.executable, "-m", "eventlog", "check", str(db)], capture_output=True,
                            text=True, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode


@pytest.mark.parametrize("damage", [corrupt_pages, truncate], ids=["corrupt_pages", "truncated"])
async def test_damaged_log(tmp_path: Path, scale: int, figures: Figures, rng: random.Random, damage) -> None:
    """``scale`` damaged copies of a real log, each opened by the library, a server, and
    ``eventlog check``."""
    pristine = tmp_path / "pristine.db"
    figures.acknowledged = len(await files.build_log(pristine, EVENTS))
    assert check_command(pristine, figures) == 0
    for n in range(scale):
        db = tmp_path / f"damaged-{n}.db"
        db.write_bytes(pristine.read_bytes())
        print(f"{db.name}: {damage(db, rng)}")  # shown when the scenario fails
        figures.faults += 1
        before = digest(db)
        await corrupt_through_library(db, figures)
        corrupt_through_server(db, tmp_path / f"server-{n}.log", figures)
        assert check_command(db, figures) != 0
        assert digest(db) == before, "the damaged file was written to"
    figures.check()
