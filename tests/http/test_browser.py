"""A real browser's ``EventSource`` across a server kill -9 and restart.

Headless Debian Chromium, driven by Playwright (``executable_path``; Playwright's own browsers are
never downloaded), loads a tiny page from a throwaway HTTP server on another port (a real origin,
so the stream is a cross-origin request that needs the server's CORS headers). The page runs a
plain ``new EventSource(url)`` and records every event it receives. The test appends over HTTP,
kills the server with SIGKILL mid-stream and starts it again on the same file and port. The
browser reconnects on its own (the server's ``retry: 1000`` hint) sending ``Last-Event-ID``; the
ids the page received must equal the appended ids exactly, in order, once each, then the end.
"""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.http.server import ServerProcess

pytestmark = pytest.mark.timeout(90)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT_MS = 25_000  # generous: a loaded 2-core machine, and a server restart in between

# The event names the producer uses (LangGraph stream modes, one with a subgraph path).
NAMES = ["metadata", "values", "updates", "custom", "updates|agent|tools"]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>eventlog EventSource</title></head>
<body>
<script>
const params = new URLSearchParams(location.search);
const names = JSON.parse(params.get("names"));
window.state = {ids: [], events: [], messages: [], gaps: [], end: null, opens: 0, errors: 0,
                states: [], url: params.get("stream")};
const es = new EventSource(window.state.url);
window.es = es;
es.onopen = () => { state.opens += 1; state.states.push("open"); };
es.onerror = () => { state.errors += 1; state.states.push("error:" + es.readyState); };
// Frames without an event name: there should be none.
es.onmessage = (e) => state.messages.push({id: e.lastEventId, data: e.data});
for (const name of names) {
  es.addEventListener(name, (e) => {
    state.ids.push(Number(e.lastEventId));
    state.events.push({id: Number(e.lastEventId), event: e.type, data: JSON.parse(e.data)});
  });
}
es.addEventListener("gap", (e) => state.gaps.push(JSON.parse(e.data)));
// EventSource does not stop by itself on a named event: the page closes it on `end`.
es.addEventListener("end", (e) => {
  state.end = {id: Number(e.lastEventId), data: JSON.parse(e.data)};
  es.close();
});
</script>
</body></html>
"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?")[0] != "/":
            self.send_error(404)
            return
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """A throwaway HTTP server for the page, on its own port: the page's origin."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="page-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    yield tab
    context.close()


@pytest.fixture
def cors_server(tmp_path: Path, page_origin: str) -> Iterator[ServerProcess]:
    """A fresh eventlog server that allows the page's origin (and only it)."""
    process = ServerProcess(tmp_path / "eventlog.db", env={"EVENTLOG_CORS_ORIGINS": page_origin}).start()
    yield process
    process.kill()


def new_run(http: httpx.Client) -> str:
    run_id = f"browser-{uuid.uuid4().hex[:12]}"
    assert http.post("/runs", json={"run_id": run_id, "metadata": {"thread_id": "t-browser"}}).status_code == 201
    return run_id


class Producer:
    """Appends over HTTP and remembers what was acknowledged, in order."""

    def __init__(self, server: ServerProcess, run_id: str) -> None:
        self.server = server
        self.run_id = run_id
        self.ids: list[int] = []
        self.events: list[dict[str, Any]] = []
        self.count = 0

    def _next(self) -> dict[str, Any]:
        event = {"event": NAMES[self.count % len(NAMES)], "data": {"n": self.count, "text": f"event {self.count}"}}
        self.count += 1
        return event

    def append(self, n: int, *, batch: bool = False) -> list[int]:
        new = [self._next() for _ in range(n)]
        with httpx.Client(base_url=self.server.url, timeout=10) as http:
            if batch:
                responses = [http.post(f"/runs/{self.run_id}/events", json={"events": new})]
            else:
                responses = [http.post(f"/runs/{self.run_id}/events", json=event) for event in new]
        ids = []
        for response in responses:
            assert response.status_code == 201, response.text
            ids += response.json()["ids"]
        assert len(ids) == n
        self.ids += ids
        self.events += [{"id": i, **event} for i, event in zip(ids, new, strict=True)]
        return ids

    def end(self, reason: str = "success") -> int:
        with httpx.Client(base_url=self.server.url, timeout=10) as http:
            response = http.post(f"/runs/{self.run_id}/end", json={"reason": reason})
        assert response.status_code == 201, response.text
        return response.json()["id"]


def open_stream(page: Page, origin: str, stream_url: str) -> None:
    names = quote('["' + '","'.join(NAMES) + '"]')
    page.goto(f"{origin}/?stream={quote(stream_url, safe='')}&names={names}")
    assert page.evaluate("window.state.url") == stream_url


def wait_for_ids(page: Page, n: int) -> None:
    page.wait_for_function("n => window.state.ids.length >= n", arg=n, timeout=WAIT_MS, polling=50)


def wait_for(page: Page, expression: str) -> None:
    page.wait_for_function(expression, timeout=WAIT_MS, polling=50)


def state(page: Page) -> dict[str, Any]:
    return page.evaluate("window.state")


def assert_exactly(page: Page, producer: Producer, end_id: int, *, skip: int = 0) -> None:
    """The page got the appended events from index ``skip`` on, each once and in order, then the end."""
    wait_for(page, "window.state.end !== null")
    got = state(page)
    assert got["ids"] == producer.ids[skip:], got["states"]
    assert got["events"] == producer.events[skip:]
    assert got["end"] == {"id": end_id, "data": {"reason": "success"}}
    assert end_id > producer.ids[-1]
    assert got["messages"] == [] and got["gaps"] == []
    assert page.evaluate("window.es.readyState") == 2  # CLOSED, by the page on `end`


def test_eventsource_resumes_across_kill_9_and_restart(page: Page, page_origin: str, cors_server: ServerProcess) -> None:
    with httpx.Client(base_url=cors_server.url, timeout=10) as http:
        run_id = new_run(http)
    producer = Producer(cors_server, run_id)
    producer.append(4)
    producer.append(6, batch=True)  # history before the browser connects: replayed

    open_stream(page, page_origin, f"{cors_server.url}/runs/{run_id}/stream")
    wait_for_ids(page, 10)
    producer.append(5)  # live
    wait_for_ids(page, 15)
    assert state(page)["opens"] == 1

    cors_server.restart()  # kill -9 of the process group, then the same file and port
    producer.append(5)  # probably before the browser is back: replayed after its Last-Event-ID
    wait_for(page, "window.state.opens >= 2")
    wait_for_ids(page, 20)
    producer.append(3, batch=True)  # live on the new connection
    producer.append(2)
    wait_for_ids(page, 25)
    end_id = producer.end()

    assert_exactly(page, producer, end_id)
    got = state(page)
    assert got["errors"] >= 1  # it saw the drop ...
    assert got["opens"] >= 2  # ... and reconnected by itself


def test_eventsource_query_cursor_then_header_across_a_longer_outage(
    page: Page, page_origin: str, cors_server: ServerProcess
) -> None:
    """A first connect from ``?last_event_id=`` (EventSource cannot set headers), then a server
    that stays down for a few retry periods. The browser's reconnects keep the stale query
    parameter and add ``Last-Event-ID``; the header must win, or events would come twice."""
    with httpx.Client(base_url=cors_server.url, timeout=10) as http:
        run_id = new_run(http)
    producer = Producer(cors_server, run_id)
    producer.append(8, batch=True)
    cursor = producer.ids[2]

    open_stream(page, page_origin, f"{cors_server.url}/runs/{run_id}/stream?last_event_id={cursor}")
    wait_for_ids(page, 5)
    producer.append(4)
    wait_for_ids(page, 9)
    assert state(page)["ids"] == producer.ids[3:]

    cors_server.kill()
    wait_for(page, "window.state.errors >= 1")
    time.sleep(3)  # down for a few of the browser's 1 s retries (each refused)
    cors_server.start()
    producer.append(6)
    wait_for(page, "window.state.opens >= 2")
    wait_for_ids(page, 15)
    producer.append(3, batch=True)
    end_id = producer.end()

    assert_exactly(page, producer, end_id, skip=3)
    assert state(page)["opens"] >= 2


def test_eventsource_joining_an_ended_run_gets_history_and_end(
    page: Page, page_origin: str, cors_server: ServerProcess
) -> None:
    with httpx.Client(base_url=cors_server.url, timeout=10) as http:
        run_id = new_run(http)
    producer = Producer(cors_server, run_id)
    producer.append(7, batch=True)
    end_id = producer.end()

    open_stream(page, page_origin, f"{cors_server.url}/runs/{run_id}/stream")
    assert_exactly(page, producer, end_id)
    page.wait_for_timeout(1500)  # longer than the retry hint: closed on `end`, so no reconnect
    got = state(page)
    assert got["opens"] == 1 and len(got["ids"]) == 7
