"""The JSON endpoints against a real server: happy paths and every kind of bad input."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.backends


def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_create_run_then_conflict(client: httpx.Client) -> None:
    run_id = new_run()
    created = client.post("/runs", json={"run_id": run_id, "metadata": {"thread_id": "t1"}})
    assert created.status_code == 201
    assert created.json()["metadata"] == {"thread_id": "t1"}
    assert_error(client.post("/runs", json={"run_id": run_id}), 409, "run_exists")


def test_append_single_and_batch_then_read(client: httpx.Client) -> None:
    run_id = new_run()
    one = client.post(f"/runs/{run_id}/events", json={"event": "updates", "data": {"step": 1}})
    assert one.status_code == 201
    batch = client.post(f"/runs/{run_id}/events", json={"events": [{"event": "values", "data": [1]}, {"event": "custom", "data": "x"}]})
    assert batch.status_code == 201
    ids = one.json()["ids"] + batch.json()["ids"]
    assert ids == sorted(ids) and len(set(ids)) == 3
    page = client.get(f"/runs/{run_id}/events", params={"after": 0, "limit": 2}).json()
    assert [e["id"] for e in page["events"]] == ids[:2]
    assert page["events"][0]["data"] == {"step": 1}
    rest = client.get(f"/runs/{run_id}/events", params={"after": page["next_after"]}).json()
    assert [e["id"] for e in rest["events"]] == ids[2:]
    info = client.get(f"/runs/{run_id}").json()
    assert info["status"] == "running" and info["last_id"] == ids[-1] and info["event_count"] == 3


def test_idempotency_key_returns_original_ids_and_rejects_other_body(client: httpx.Client) -> None:
    run_id = new_run()
    body = {"events": [{"event": "updates", "data": 1}, {"event": "updates", "data": 2}]}
    first = client.post(f"/runs/{run_id}/events", json=body, headers={"Idempotency-Key": "k-1"})
    again = client.post(f"/runs/{run_id}/events", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert client.get(f"/runs/{run_id}").json()["event_count"] == 2
    other = client.post(f"/runs/{run_id}/events", json={"event": "updates", "data": 3}, headers={"Idempotency-Key": "k-1"})
    assert_error(other, 422, "idempotency_conflict")


def test_end_semantics(client: httpx.Client) -> None:
    run_id = new_run()
    client.post(f"/runs/{run_id}/events", json={"event": "updates", "data": 1})
    first = client.post(f"/runs/{run_id}/end", json={"reason": "success"})
    assert first.status_code == 201
    repeat = client.post(f"/runs/{run_id}/end", json={"reason": "success"})
    assert repeat.status_code == 200 and repeat.json()["id"] == first.json()["id"]
    assert_error(client.post(f"/runs/{run_id}/end", json={"reason": "error"}), 409, "run_ended")
    assert_error(client.post(f"/runs/{run_id}/events", json={"event": "updates"}), 409, "run_ended")
    assert client.get(f"/runs/{run_id}").json()["status"] == "ended"
    assert_error(client.post(f"/runs/{new_run()}/end", json={"reason": "success"}), 404, "run_not_found")


def test_end_without_body_defaults_to_success(client: httpx.Client) -> None:
    run_id = new_run()
    client.post(f"/runs/{run_id}/events", json={"event": "updates", "data": 1})
    assert client.post(f"/runs/{run_id}/end").status_code == 201
    assert client.get(f"/runs/{run_id}").json()["end_reason"] == "success"


def test_list_and_delete(client: httpx.Client) -> None:
    run_id = new_run()
    client.post(f"/runs/{run_id}/events", json={"event": "updates", "data": 1})
    listed = client.get("/runs", params={"limit": 1000}).json()["runs"]
    assert run_id in [r["run_id"] for r in listed]
    assert run_id in [r["run_id"] for r in client.get("/runs", params={"status": "running", "limit": 1000}).json()["runs"]]
    assert client.delete(f"/runs/{run_id}").status_code == 204
    assert_error(client.get(f"/runs/{run_id}"), 404, "run_not_found")
    assert_error(client.delete(f"/runs/{run_id}"), 404, "run_not_found")


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/runs/bad%20id/events", {"event": "updates"}, 422, "invalid_run_id"),
        ("/runs/" + "x" * 129 + "/events", {"event": "updates"}, 422, "invalid_run_id"),
        ("/runs/ok/events", {"event": "line\r\nevent: injected"}, 422, "invalid_event_name"),
        ("/runs/ok/events", {"event": ""}, 422, "invalid_event_name"),
        ("/runs/ok/events", {"event": "end"}, 422, "invalid_event_name"),
        ("/runs/ok/events", {"event": "x" * 129}, 422, "invalid_event_name"),
        ("/runs/ok/events", {"event": "updates", "events": []}, 422, "invalid_body"),
        ("/runs/ok/events", {}, 422, "invalid_body"),
        ("/runs/ok/events", {"events": []}, 422, "invalid_body"),
        ("/runs/ok/events", {"event": "updates", "extra": 1}, 422, "invalid_body"),
        ("/runs/ok/events", [1, 2], 422, "invalid_body"),
        ("/runs", {"metadata": {}}, 422, "invalid_body"),
        ("/runs", {"run_id": "a/b"}, 422, "invalid_run_id"),
        ("/runs", {"run_id": "ok2", "metadata": [1]}, 422, "invalid_body"),
    ],
)
def test_bad_bodies_are_4xx_json(client: httpx.Client, path: str, body: object, status: int, code: str) -> None:
    assert_error(client.post(path, json=body), status, code)


def test_non_json_body(client: httpx.Client) -> None:
    assert_error(client.post("/runs/ok/events", content=b"{not json"), 400, "invalid_json")
    assert_error(client.post("/runs/ok/events", content=b"\xff\xfe"), 400, "invalid_json")


def test_nan_is_refused(client: httpx.Client) -> None:
    assert_error(client.post("/runs/ok/events", content=b'{"event": "updates", "data": NaN}'), 422, "invalid_data")


def test_oversized_body_and_batch(client: httpx.Client) -> None:
    big = {"event": "updates", "data": "x" * 1_100_000}
    assert_error(client.post("/runs/big/events", json=big), 413, "body_too_large")
    many = {"events": [{"event": "updates", "data": i} for i in range(1001)]}
    assert_error(client.post("/runs/big/events", json=many), 413, "batch_too_large")
    assert_error(client.get("/runs/big"), 404, "run_not_found")  # nothing was written


def test_bad_query_parameters(client: httpx.Client) -> None:
    run_id = new_run()
    client.post(f"/runs/{run_id}/events", json={"event": "updates", "data": 1})
    assert_error(client.get(f"/runs/{run_id}/events", params={"after": "-1"}), 400, "invalid_after")
    assert_error(client.get(f"/runs/{run_id}/events", params={"limit": "0"}), 400, "invalid_limit")
    assert_error(client.get(f"/runs/{run_id}/events", params={"limit": "x"}), 400, "invalid_limit")
    assert_error(client.get("/runs", params={"status": "zombie"}), 400, "invalid_status")
    assert_error(client.get(f"/runs/{new_run()}/events"), 404, "run_not_found")


def test_unknown_paths_and_methods_are_json(client: httpx.Client) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.put("/runs"), 405, "method_not_allowed")


def test_healthz_metrics_openapi(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    client.post(f"/runs/{new_run()}/events", json={"event": "updates", "data": 1})
    metrics = client.get("/metrics").text
    for name in ("eventlog_appended_events_total", "eventlog_active_streams", "eventlog_wakeups_total", "eventlog_trimmed_events_total"):
        assert f"\n{name} " in "\n" + metrics
    appended = next(line for line in metrics.splitlines() if line.startswith("eventlog_appended_events_total "))
    assert int(appended.split()[1]) >= 1
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/runs/{run_id}/stream" in spec["paths"]
    assert "AppendBody" in spec["components"]["schemas"]


def test_cors_is_off_by_default(client: httpx.Client) -> None:
    response = client.get("/runs", headers={"Origin": "http://elsewhere.test"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_origin_allows_that_origin_only(tmp_path) -> None:
    from tests.http.server import ServerProcess

    server = ServerProcess(tmp_path / "cors.db", args=["--cors-origin", "http://app.test"]).start()
    try:
        preflight = httpx.options(
            f"{server.url}/runs/r1/stream",
            headers={"Origin": "http://app.test", "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "Last-Event-ID"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://app.test"
        other = httpx.get(f"{server.url}/runs", headers={"Origin": "http://evil.test"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        server.kill()
