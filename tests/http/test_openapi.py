"""The OpenAPI description is generated from the route table, and a real server keeps to it.

schemathesis (tests/http/fuzz.py) generates requests from ``/openapi.json`` and checks every
response against it: documented status, content type, headers and body schema (for the SSE
routes, each event), and never a 5xx. Bounded examples keep each run to seconds. The server
ends idle runs after half a second, so that a stream of an open run schemathesis happened to
create ends too, instead of holding the request until its timeout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from eventlog.http.app import create_app
from eventlog.http.auth import Need
from eventlog.http.openapi import ApiRoute
from eventlog.http.settings import Settings
from tests.http.fuzz import operations_of, schemathesis, spec_of
from tests.http.server import ServerProcess

KEY = "schemathesis-test-key"
SERVER_ENV = {"EVENTLOG_ABANDON_AFTER": "0.5", "EVENTLOG_RETENTION_INTERVAL": "0.2"}


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "open.db", env=SERVER_ENV).start()
    yield process
    process.kill()


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "keyed.db", env={**SERVER_ENV, "EVENTLOG_API_KEY": KEY})
    # /healthz is open, so the readiness probe needs no key.
    process.start()
    yield process
    process.kill()


def test_every_route_is_described_with_what_its_guard_needs() -> None:
    app = create_app(Settings())
    spec = spec_of(app)
    routes = [route for route in app.routes if isinstance(route, Route)]
    assert routes and all(isinstance(route, ApiRoute) for route in routes)
    for route in routes:
        assert isinstance(route, ApiRoute)
        op = spec["paths"][route.path][route.method.lower()]
        statuses = set(op["responses"])
        if route.need is Need.OPEN:
            assert op["security"] == [] and not {"401", "403"} & statuses, route.path
        else:
            assert "security" not in op and "401" in statuses, route.path  # the document's default applies
        assert ("403" in statuses) == (route.need in (Need.READ_RUN, Need.PRODUCER)), route.path
    metrics = spec["paths"]["/metrics"]["get"]["responses"]
    assert set(metrics) >= {"200", "401", "403"} and "text/plain" in metrics["200"]["content"]
    for path in ("/runs/{run_id}/stream", "/threads/{thread_id}/runs/{run_id}/stream"):
        stream = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert stream["text/event-stream"]["schema"] == {"$ref": "#/components/schemas/StreamEvent"}
    refs = {m.group(1) for m in re.finditer(r'"#/components/schemas/([^"]+)"', json.dumps(spec))}
    assert refs <= set(spec["components"]["schemas"])


def test_schemathesis_finds_nothing_on_an_open_server(open_server: ServerProcess, tmp_path: Path) -> None:
    figures = schemathesis("open server", f"{open_server.url}/openapi.json", tmp_path)
    assert figures["test_cases"]["generated"] > 100


def test_schemathesis_with_an_api_key_set(keyed_server: ServerProcess, tmp_path: Path) -> None:
    with httpx.Client(base_url=keyed_server.url, timeout=10) as http:
        assert http.get("/openapi.json").status_code == 401
        spec = http.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json()
        # Without the key every guarded operation answers the 401 it documents.
        for path, method, op in operations_of(spec):
            url = path.replace("{run_id}", "r1").replace("{thread_id}", "t1")
            response = http.request(method, url, json={"run_id": "r1"} if method == "post" else None)
            expected = 200 if op.get("security") == [] else 401
            assert response.status_code == expected, (method, path, response.text)
            if expected == 401:
                assert "401" in op["responses"]
                if method != "head":  # a HEAD answer has the headers of the GET's, without a body
                    assert response.json()["error"]["code"] == "unauthorized"
                assert response.headers["www-authenticate"].startswith("Bearer")
    # schemathesis with the key sent is the fault suite's fuzzing scenario (tests/torture/test_fuzz.py,
    # a server with a key and a JWT secret). Here it runs without the key, from the same document:
    # every answer conforms (the 401s).
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(spec))
    schemathesis("key set, not sent", str(document), tmp_path, "--url", keyed_server.url, max_examples=5, seed=3)


def test_a_405_allows_every_method_of_the_path(open_server: ServerProcess) -> None:
    with httpx.Client(base_url=open_server.url, timeout=10) as http:
        for path, allowed in [("/runs", "GET, HEAD, POST"), ("/runs/r1", "DELETE, GET, HEAD"), ("/runs/r1/events", "GET, HEAD, POST")]:
            response = http.request("PUT", path)
            assert response.status_code == 405, path
            assert response.headers["allow"] == allowed, path
            assert response.json()["error"]["code"] == "method_not_allowed"
