"""``GET /runs`` with a reader token: full pages of the granted runs, in order, and nothing else.

The grant is sparse (7 of 60 runs, the newest of them far down the list), so filtering a page
after ``LIMIT/OFFSET`` would answer short or empty pages."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eventlog.http.auth import mint_token
from tests.http.server import ServerProcess

KEY = "list-runs-key"
SECRET = "list-runs-secret-0123456789abcdef0123"
GRANT = ["run-*0", "run-013", "nothing-*"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "runs.db", env={"EVENTLOG_API_KEY": KEY, "EVENTLOG_JWT_SECRET": SECRET}).start()
    yield process
    process.kill()


def pages(http: httpx.Client, token: str, limit: int, **params: str) -> list[list[str]]:
    out, offset = [], 0
    while True:
        response = http.get("/runs", params={"limit": limit, "offset": offset, **params}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        page = [run["run_id"] for run in response.json()["runs"]]
        if not page:
            return out
        out.append(page)
        offset += limit


def test_a_reader_gets_full_pages_of_its_runs_in_order(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for n in range(60):
            created = http.post("/runs", json={"run_id": f"run-{n:03}"}, headers={"Authorization": f"Bearer {KEY}"})
            assert created.status_code == 201, created.text
        for n in (10, 13, 21):
            ended = http.post(f"/runs/run-{n:03}/end", headers={"Authorization": f"Bearer {KEY}"})
            assert ended.status_code == 201, ended.text
        everything = [run_id for page in pages(http, KEY, 1000) for run_id in page]
        assert len(everything) == 60
        granted = [r for r in everything if any(fnmatch.fnmatchcase(r, g) for g in GRANT)]
        assert len(granted) == 7 and everything.index(granted[0]) > 2

        token = mint_token(SECRET, GRANT, ttl=300)
        assert pages(http, token, 3) == [granted[0:3], granted[3:6], granted[6:7]]
        ended = [r for r in granted if r in ("run-010", "run-013")]
        assert pages(http, token, 1, status="ended") == [[r] for r in ended]
        assert pages(http, mint_token(SECRET, ["elsewhere-*"], ttl=300), 5) == []
