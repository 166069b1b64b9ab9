"""A peer process holding the write lock past ``EVENTLOG_LOCK_TIMEOUT``, against a real server:
503 with ``Retry-After`` and a JSON body, nothing written, and the idempotent retry after the
peer lets go succeeds exactly once. Also the background-failure counters in ``/metrics``."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.helpers.hold_lock import LockHolder
from tests.http.server import ServerProcess


def test_busy_append_is_503_with_retry_after_and_the_retry_succeeds_once(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "eventlog.db", env={"EVENTLOG_LOCK_TIMEOUT": "0.5"}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/runs/job/events", json={"event": "x", "data": 0}).status_code == 201
            body = {"events": [{"event": "x", "data": 1}, {"event": "x", "data": 2}]}
            headers = {"Idempotency-Key": "req-1"}

            peer = LockHolder(server.db)
            try:
                busy = client.post("/runs/job/events", json=body, headers=headers)
                assert busy.status_code == 503, busy.text
                assert busy.headers["retry-after"] == "1"
                assert busy.headers["content-type"].startswith("application/json")
                error = busy.json()["error"]
                assert error["code"] == "database_busy" and error["message"]
                assert client.get("/healthz").status_code == 200  # reads go on meanwhile
            finally:
                peer.release()

            first = client.post("/runs/job/events", json=body, headers=headers)
            again = client.post("/runs/job/events", json=body, headers=headers)
            assert first.status_code == again.status_code == 201, first.text
            assert first.json() == again.json()
            events = client.get("/runs/job/events").json()["events"]
            assert [e["data"] for e in events] == [0, 1, 2], "nothing half-written, written once"
    finally:
        server.kill()


def test_metrics_count_background_failures_per_component(client: httpx.Client) -> None:
    metrics = client.get("/metrics").text
    for name in ("eventlog_background_failures_total", "eventlog_background_restarts_total"):
        assert f"# TYPE {name} counter" in metrics
        for component in ("writer", "commit_listener", "checkpointer", "follower", "janitor"):
            assert f'\n{name}{{component="{component}"}} 0' in metrics
