"""The web inspector (``/ui``) in headless Chromium against a real server.

The page is served by the server itself, so it is same-origin: no CORS. What is asserted is what
a person sees on the page (rows, badges, the connection state, the event cards), found by the
elements' ids and data attributes: the list (live, filtered), a run tailed across kill -9, a
reader token's view (401, 403, a refused reconnect after the secret rotates), a gap frame, the
cap on cards, and an error frame. Screenshots of the list and of run pages are saved under the
test's ``tmp_path``, and copied to the folder named by ``EVENTLOG_SCREENSHOTS`` when it is set,
for people to look at.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Page

from eventlog import EventLog, RetentionPolicy
from eventlog.http.auth import mint_token
from tests.faults import build_log, corrupt_run
from tests.http.server import ServerProcess
from tests.http.test_browser import WAIT_MS, Producer, browser, page, wait_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)

SCREENSHOTS = os.environ.get("EVENTLOG_SCREENSHOTS")
KEY = "ui-test-producer-key"
SECRET = "ui-test-jwt-secret-of-32-bytes-or-more"
ROTATED = "ui-test-rotated-secret-of-32-bytes-too"
T = TypeVar("T")


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"EVENTLOG_API_KEY": KEY, "EVENTLOG_JWT_SECRET": SECRET}
    process = ServerProcess(tmp_path / "auth.db", env=env).start()
    yield process
    process.kill()


def screenshot(page: Page, tmp_path: Path, name: str, *, full_page: bool = True) -> None:
    """Under the test's output folder, and a copy where people look (``EVENTLOG_SCREENSHOTS``,
    if set). A whole page is taken from
    its top (the page follows a tail down, and a sticky bar would sit mid-picture)."""
    path = tmp_path / name
    if full_page:
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=full_page)
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(SCREENSHOTS) / name)


def listed_runs(page: Page) -> list[str]:
    return page.eval_on_selector_all("#runs-body tr", "rows => rows.map(r => r.dataset.runId)")


def wait_for_runs(page: Page, runs: list[str]) -> None:
    """Until the list shows exactly ``runs`` (in any order)."""
    script = "ids => JSON.stringify([...document.querySelectorAll('#runs-body tr')].map(r => r.dataset.runId).sort()) === JSON.stringify(ids)"
    page.wait_for_function(script, arg=sorted(runs), timeout=WAIT_MS, polling=50)


def shown_ids(page: Page) -> list[int]:
    return page.eval_on_selector_all("#events li.event", "rows => rows.map(r => Number(r.dataset.id))")


def wait_for_events(page: Page, n: int) -> None:
    wait_for(page, f"document.querySelectorAll('#events li.event').length >= {n}")


def wait_for_conn(page: Page, state: str) -> None:
    wait_for(page, f"document.getElementById('conn-state').textContent === {state!r}")


def test_list_and_a_run_tailed_live_across_kill_9(page: Page, server: ServerProcess, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    live, done = f"job-live-{suffix}", f"job-done-{suffix}"
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/runs", json={"run_id": live, "metadata": {"thread_id": "t-42", "graph": "agent"}}).status_code == 201
        assert http.post("/runs", json={"run_id": done}).status_code == 201
        assert http.get("/ui").status_code == 307  # to /ui/, where the page's relative links work
        assert http.get("/ui/style.css").headers["content-type"].startswith("text/css")
        for path in ("/ui/nothing-here.js", "/ui/__init__.py"):  # only the shipped files
            assert http.get(path).json()["error"]["code"] == "not_found", path
        assert "/ui" not in str(http.get("/openapi.json").json()["paths"])
    producer, finished = Producer(server, live), Producer(server, done)
    producer.append(4)
    producer.append(6, batch=True)
    finished.append(3, batch=True)
    finished.end()

    # The list: both runs with their status and counts; the filters.
    page.goto(f"{server.url}/ui")
    wait_for_runs(page, [live, done])
    row = page.locator(f"#runs-body tr[data-run-id='{live}']")
    assert row.locator(".badge").inner_text() == "running"
    assert row.locator("td").nth(2).inner_text() == "10"  # events
    assert row.locator("td").nth(7).inner_text() == "t-42"  # thread
    assert page.locator(f"#runs-body tr[data-run-id='{done}'] .badge").inner_text() == "ended"
    page.fill("#id-filter", "live")
    wait_for_runs(page, [live])
    page.fill("#id-filter", "")
    page.select_option("#status-filter", "ended")
    wait_for_runs(page, [done])
    page.select_option("#status-filter", "")
    wait_for_runs(page, [live, done])
    # Live: a run created after the page loaded shows up by itself.
    extra = f"job-new-{suffix}"
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/runs", json={"run_id": extra}).status_code == 201
    wait_for_runs(page, [live, done, extra])
    screenshot(page, tmp_path, "runs-list.png")

    # A run's page: its history, then live events.
    row.click()
    page.wait_for_url(f"**/ui/#/runs/{live}")
    wait_for_events(page, 10)
    wait_for_conn(page, "connected")
    producer.append(5)
    wait_for_events(page, 15)
    assert page.inner_text("#last-id") == str(producer.ids[-1])

    # kill -9, the page says so, the server comes back on the same file and port.
    server.kill()
    wait_for_conn(page, "reconnecting")
    server.start()
    producer.append(5)
    wait_for_conn(page, "connected")
    wait_for_events(page, 20)
    # A name the page has never seen, then a known one: the stream does not dispatch the first
    # (EventSource needs a listener per name); the page's watchdog reads it and shows it in order.
    with httpx.Client(base_url=server.url, timeout=10) as http:
        response = http.post(f"/runs/{live}/events", json={"events": [
            {"event": "tool_call", "data": {"tool": "search", "args": {"q": "eventlog"}}},
            {"event": "values", "data": {"messages": ["done"]}},
        ]})
    assert response.status_code == 201
    producer.ids += response.json()["ids"]
    producer.append(3, batch=True)
    wait_for_events(page, 25)
    assert shown_ids(page) == producer.ids  # each once, in order
    assert page.inner_text("#last-id") == str(producer.ids[-1])

    # The filter by event name.
    page.select_option("#name-filter", "values")
    visible = page.eval_on_selector_all("#events li.event:not([hidden])", "rows => rows.map(r => r.dataset.name)")
    assert visible and set(visible) == {"values"}
    assert page.inner_text("#shown-count") == f"{len(visible)} of 25 events shown"
    page.select_option("#name-filter", "")

    end_id = producer.end()
    wait_for_conn(page, "ended")
    assert page.get_attribute("#events li.notice.end", "data-end-id") == str(end_id)
    assert page.inner_text("#last-id") == str(end_id)
    assert shown_ids(page) == producer.ids
    wait_for(page, "document.querySelector('#run-status .badge').textContent === 'ended'")
    screenshot(page, tmp_path, "run-page.png")

    # A reload stays on the run (hash routing) and shows it all again, once.
    page.reload()
    wait_for_conn(page, "ended")
    assert shown_ids(page) == producer.ids


def test_a_reader_token_sees_only_its_runs(page: Page, auth_server: ServerProcess, tmp_path: Path) -> None:
    granted, other = ["team-a-1", "team-a-2"], "team-b-1"
    with httpx.Client(base_url=auth_server.url, timeout=10, headers={"Authorization": f"Bearer {KEY}"}) as http:
        for run_id in [*granted, other]:
            assert http.post("/runs", json={"run_id": run_id}).status_code == 201
            assert http.post(f"/runs/{run_id}/events", json={"event": "updates", "data": {"run": run_id}}).status_code == 201

    page.goto(f"{auth_server.url}/ui/")
    wait_for(page, "!document.getElementById('alert').hidden")
    assert "401" in page.inner_text("#alert")
    assert listed_runs(page) == []

    page.fill("#token-input", mint_token(SECRET, ["team-a-*"], ttl=600))
    page.click("#token-form button[type=submit]")
    wait_for_runs(page, granted)
    assert page.inner_text("#token-state") == "Reader token: team-a-*"
    assert page.evaluate("localStorage.getItem('eventlog.token')").count(".") == 2
    screenshot(page, tmp_path, "runs-list-reader-token.png")

    # The stream of a granted run, with the token as access_token.
    page.click("#runs-body tr[data-run-id='team-a-1'] a")
    wait_for_conn(page, "connected")
    wait_for_events(page, 1)
    with httpx.Client(base_url=auth_server.url, timeout=10, headers={"Authorization": f"Bearer {KEY}"}) as http:
        assert http.post("/runs/team-a-1/events", json={"event": "custom", "data": {"live": True}}).status_code == 201
    wait_for_events(page, 2)

    # The secret is rotated while the server is down: the browser's reconnect is refused (401),
    # which the page shows instead of reconnecting forever.
    auth_server.kill()
    wait_for_conn(page, "reconnecting")
    auth_server.env["EVENTLOG_JWT_SECRET"] = ROTATED
    auth_server.start()
    wait_for_conn(page, "error")
    assert "401" in page.inner_text("#alert") and "token" in page.inner_text("#alert")
    with httpx.Client(base_url=auth_server.url, timeout=10, headers={"Authorization": f"Bearer {KEY}"}) as http:
        ids = [e["id"] for e in http.get("/runs/team-a-1/events").json()["events"]]
        assert http.post("/runs/team-a-1/events", json={"event": "custom", "data": {"after": "rotation"}}).status_code == 201
    # A new token: the page reads the run again, each event once, and tails it.
    page.fill("#token-input", mint_token(ROTATED, ["team-a-*"], ttl=600))
    page.click("#token-form button[type=submit]")
    wait_for_conn(page, "connected")
    wait_for_events(page, 3)
    assert shown_ids(page)[:2] == ids and len(set(shown_ids(page))) == 3
    assert page.inner_text("#alert") == ""

    # A run outside the token's globs: a clear 403, and no stream.
    page.goto(f"{auth_server.url}/ui/#/runs/{other}")
    wait_for_conn(page, "error")
    assert "403" in page.inner_text("#alert") and other in page.inner_text("#alert")
    assert shown_ids(page) == [] and page.inner_text("#last-id") == "–"
    screenshot(page, tmp_path, "run-page-forbidden.png")

    # Forgetting the token: back to the 401.
    page.goto(f"{auth_server.url}/ui/#/")
    page.click("#token-forget")
    wait_for(page, "document.getElementById('alert').textContent.includes('401')")
    assert listed_runs(page) == []


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run library code from a test: in a thread of its own, since Playwright's sync API owns
    this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def append_and_trim(db: Path, run_id: str, n: int, keep: int) -> list[int]:
    """While the server is down: append ``n`` events and trim the run to ``keep`` (on the same
    file, through the library, the one write path)."""
    async with EventLog.open(db, retention=RetentionPolicy(max_events=keep)) as log:
        ids = await log.append_many(run_id, [("values", {"n": i}) for i in range(n)])
        await log.apply_retention()
        return ids


def test_a_reconnect_behind_retention_shows_the_gap(page: Page, server: ServerProcess, tmp_path: Path) -> None:
    run_id = f"job-gap-{uuid.uuid4().hex[:6]}"
    producer = Producer(server, run_id)
    producer.append(5, batch=True)
    page.goto(f"{server.url}/ui/#/runs/{run_id}")
    wait_for_events(page, 5)
    wait_for_conn(page, "connected")

    server.kill()
    wait_for_conn(page, "reconnecting")
    kept = run_async(append_and_trim(server.db, run_id, 6, keep=2))[-2:]
    server.start()
    wait_for(page, "document.querySelector('#events li.notice.gap') !== null")
    wait_for_events(page, 7)
    wait_for_conn(page, "connected")
    gap = page.inner_text("#events li.notice.gap")
    assert f"after #{producer.ids[-1]} and before #{kept[0]} were removed by retention; continuing from #{kept[0]}" in gap
    assert shown_ids(page) == producer.ids + kept
    wait_for(page, "document.querySelector('#run-facts dd').textContent === '2'")  # the summary's Events, caught up
    screenshot(page, tmp_path, "run-page-gap.png")


def test_a_long_run_keeps_the_newest_events_on_the_page(page: Page, server: ServerProcess) -> None:
    """A thousand event cards at most: of a longer history the newest, and the page says so."""
    run_id = f"job-long-{uuid.uuid4().hex[:6]}"
    producer = Producer(server, run_id)
    producer.append(1000, batch=True)
    producer.append(200, batch=True)
    page.goto(f"{server.url}/ui/#/runs/{run_id}")
    wait_for_conn(page, "connected")
    producer.append(3)
    wait_for(page, f"document.getElementById('last-id').textContent === '{producer.ids[-1]}'")
    assert shown_ids(page) == producer.ids[-1000:]
    wait_for(page, "document.getElementById('shown-count').textContent === '1,000 events'")
    assert page.inner_text("#events-trimmed") == "203 older events are not shown (the page keeps the newest 1,000)."


def test_a_storage_failure_mid_stream_shows_the_error_frame_and_stops(page: Page, tmp_path: Path) -> None:
    db = tmp_path / "damaged.db"
    run_async(build_log(db))
    corrupt_run(db, "run-5")
    damaged = ServerProcess(db).start()  # opens: the damage is in the middle, not in the header
    try:
        page.goto(f"{damaged.url}/ui/#/runs/run-0")
        wait_for_events(page, 300)
        wait_for_conn(page, "connected")
        # The first request that meets the damage flips the server's log; the stream ends at its
        # next read (after a heartbeat) with an error frame, which the page shows, then stops.
        assert httpx.get(f"{damaged.url}/runs/run-5/events", params={"limit": 1000}).status_code == 503
        wait_for_conn(page, "error")
        assert "database_corrupt" in page.inner_text("#events li.notice.error")
        assert "The stream failed" in page.inner_text("#alert")
        assert len(shown_ids(page)) == len(set(shown_ids(page))) == 300
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        screenshot(page, tmp_path, "run-page-error.png", full_page=False)  # the end of the page
    finally:
        damaged.kill()
