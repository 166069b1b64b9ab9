"""API keys for producers, run-scoped JWTs for readers, and safe defaults."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from eventlog.http.auth import mint_token
from tests.http.server import ServerProcess, free_port
from tests.http.sse_client import consume

KEY = "producer-key-1"
OTHER_KEY = "producer-key-2"
SECRET = "reader-secret-for-tests-0123456789abcdef"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path_factory.mktemp("auth") / "auth.db",
        env={"EVENTLOG_API_KEY": f"{KEY},{OTHER_KEY}", "EVENTLOG_JWT_SECRET": SECRET},
    ).start()
    producer = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"})
    for run_id in ("job-1", "job-2", "other-1"):
        producer.post("/runs", json={"run_id": run_id, "metadata": {"thread_id": "t"}}).raise_for_status()
        producer.post(f"/runs/{run_id}/events", json={"event": "updates", "data": run_id}).raise_for_status()
    producer.post("/runs/job-2/end").raise_for_status()
    yield server
    server.kill()


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


READS = [
    ("GET", "/runs/job-1"),
    ("GET", "/runs/job-1/events"),
    ("GET", "/runs/job-2/stream"),
    ("GET", "/threads/t/runs/job-1"),
    ("GET", "/threads/t/runs/job-2/stream"),
]
WRITES = [
    ("POST", "/runs", {"run_id": "new-run"}),
    ("POST", "/runs/job-1/events", {"event": "updates", "data": 1}),
    ("POST", "/runs/job-1/end", {"reason": "success"}),
    ("DELETE", "/runs/job-1", None),
]
OPERATIONS = [("GET", "/runs"), ("GET", "/metrics"), ("GET", "/openapi.json")]
EVERY_ENDPOINT = [(m, p, None) for m, p in READS + OPERATIONS] + WRITES


def call(server: ServerProcess, method: str, path: str, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.request(method, server.url + path, json=body, headers=headers, timeout=10)


def assert_status(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == {401: "unauthorized", 403: "forbidden"}[status]
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


def segment(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def forged(claims: dict, header: dict) -> str:
    return f"{segment(header)}.{segment(claims)}."


def token(globs: list[str], ttl: float = 60) -> str:
    return mint_token(SECRET, globs, ttl)


@pytest.mark.parametrize(("method", "path", "body"), EVERY_ENDPOINT)
def test_every_endpoint_needs_credentials(secured: ServerProcess, method: str, path: str, body: object) -> None:
    assert_status(call(secured, method, path, body), 401)
    assert_status(call(secured, method, path, body, bearer("wrong-key")), 401)
    assert_status(call(secured, method, path, body, {"Authorization": f"Basic {KEY}"}), 401)
    assert_status(call(secured, method, path, body, bearer(token(["*"], ttl=-10))), 401)  # expired


def test_healthz_is_open(secured: ServerProcess) -> None:
    assert call(secured, "GET", "/healthz").status_code == 200


@pytest.mark.parametrize("key", [KEY, OTHER_KEY])
def test_producer_keys_may_do_everything(secured: ServerProcess, key: str) -> None:
    for method, path in READS[:2] + OPERATIONS:
        assert call(secured, method, path, headers=bearer(key)).status_code == 200
    run_id = f"made-with-{key}"
    assert call(secured, "POST", f"/runs/{run_id}/events", {"event": "updates"}, bearer(key)).status_code == 201


def test_reader_token_reads_matching_runs_only(secured: ServerProcess) -> None:
    reader = bearer(token(["job-*"]))
    assert call(secured, "GET", "/runs/job-1", headers=reader).status_code == 200
    assert call(secured, "GET", "/runs/job-1/events", headers=reader).json()["events"][0]["data"] == "job-1"
    assert call(secured, "GET", "/threads/t/runs/job-1", headers=reader).json()["status"] == "running"
    listed = {r["run_id"] for r in call(secured, "GET", "/runs", headers=reader).json()["runs"]}
    assert {"job-1", "job-2"} <= listed and not any(r.startswith("other") or r.startswith("made") for r in listed)
    for path in ("/runs/other-1", "/runs/other-1/events", "/runs/other-1/stream", "/threads/t/runs/other-1", "/threads/t/runs/other-1/stream"):
        assert_status(call(secured, "GET", path, headers=reader), 403)
    for method, path, body in WRITES:
        assert_status(call(secured, method, path, body, reader), 403)
    assert_status(call(secured, "GET", "/metrics", headers=reader), 403)


def test_exact_run_token(secured: ServerProcess) -> None:
    reader = bearer(token(["job-1"]))
    assert call(secured, "GET", "/runs/job-1", headers=reader).status_code == 200
    assert_status(call(secured, "GET", "/runs/job-2", headers=reader), 403)


def test_tampered_and_unsigned_tokens_are_refused(secured: ServerProcess) -> None:
    good = token(["job-1"])
    header, claims, signature = good.split(".")
    widened = json.loads(base64.urlsafe_b64decode(claims + "=="))
    widened["eventlog"]["subscribe"] = ["*"]
    tampered = ".".join([header, segment(widened), signature])
    assert_status(call(secured, "GET", "/runs/job-1", headers=bearer(tampered)), 401)
    flipped = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    assert_status(call(secured, "GET", "/runs/job-1", headers=bearer(flipped)), 401)
    unsigned = forged({"eventlog": {"subscribe": ["*"]}, "exp": int(time.time()) + 60}, {"alg": "none", "typ": "JWT"})
    assert_status(call(secured, "GET", "/runs/job-1", headers=bearer(unsigned)), 401)
    other_secret = jwt.encode({"eventlog": {"subscribe": ["*"]}, "exp": int(time.time()) + 60}, "not-the-secret-but-long-enough-000", algorithm="HS256")
    assert_status(call(secured, "GET", "/runs/job-1", headers=bearer(other_secret)), 401)
    no_exp = jwt.encode({"eventlog": {"subscribe": ["*"]}}, SECRET, algorithm="HS256")
    assert_status(call(secured, "GET", "/runs/job-1", headers=bearer(no_exp)), 401)
    no_claim = jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert_status(call(secured, "GET", "/runs/job-1", headers=bearer(no_claim)), 401)


def test_streams_work_with_the_right_token_in_header_or_query(secured: ServerProcess) -> None:
    reader = token(["job-*"])
    received = asyncio.run(consume(f"{secured.url}/runs/job-2/stream?access_token={reader}", deadline=10))
    assert received.end == {"reason": "success"} and received.data == ["job-2"]
    with httpx.stream("GET", f"{secured.url}/runs/job-2/stream", headers=bearer(reader), timeout=10) as response:
        assert response.status_code == 200
        assert "event: end" in response.read().decode()
    assert_status(call(secured, "GET", f"/runs/other-1/stream?access_token={reader}"), 403)


def test_access_log_redacts_query_tokens(secured: ServerProcess) -> None:
    reader = token(["job-*"])
    call(secured, "GET", f"/runs/job-1?access_token={reader}")
    time.sleep(0.2)
    log = secured.log_path.read_text()
    assert "access_token=[redacted]" in log
    assert reader not in log


def test_no_access_log_writes_no_line_per_request(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "quiet.db", args=["--no-access-log"]).start()
    try:
        assert httpx.get(f"{server.url}/runs/missing-run").status_code == 404
        time.sleep(0.2)
        log = server.log_path.read_text()
        assert "Application startup complete" in log and "/runs/missing-run" not in log
    finally:
        server.kill()


def test_rs256_public_key(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "public.pem").write_bytes(public_pem)
    server = ServerProcess(tmp_path / "rs.db", env={"EVENTLOG_API_KEY": KEY, "EVENTLOG_JWT_PUBLIC_KEY": str(tmp_path / "public.pem"), "EVENTLOG_JWT_ALGORITHMS": "RS256"}).start()
    try:
        call(server, "POST", "/runs/job-1/events", {"event": "updates"}, bearer(KEY)).raise_for_status()
        good = jwt.encode({"eventlog": {"subscribe": ["job-*"]}, "exp": int(time.time()) + 60}, private, algorithm="RS256")
        assert call(server, "GET", "/runs/job-1", headers=bearer(good)).status_code == 200
        # An HS256 token "signed" with the public key must not pass (algorithm confusion).
        confused = jwt.encode({"eventlog": {"subscribe": ["*"]}, "exp": int(time.time()) + 60}, "x" * 64, algorithm="HS256")
        assert_status(call(server, "GET", "/runs/job-1", headers=bearer(confused)), 401)
    finally:
        server.kill()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os
    return subprocess.run([sys.executable, "-m", "eventlog", *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})


def test_cli_token_and_tail(secured: ServerProcess) -> None:
    minted = run_cli("token", "job-*", "--ttl", "5m", env={"EVENTLOG_JWT_SECRET": SECRET})
    assert minted.returncode == 0, minted.stderr
    reader = minted.stdout.strip()
    claims = jwt.decode(reader, SECRET, algorithms=["HS256"])
    assert claims["eventlog"] == {"subscribe": ["job-*"]} and 290 <= claims["exp"] - time.time() <= 310
    tailed = run_cli("tail", "job-2", "--json", "--url", secured.url, env={"EVENTLOG_TOKEN": reader})
    assert tailed.returncode == 0, tailed.stderr
    lines = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert [line["event"] for line in lines] == ["updates", "end"]
    refused = run_cli("tail", "other-1", "--url", secured.url, "--token", reader)
    assert refused.returncode == 1 and "403" in refused.stderr
    anonymous = run_cli("tail", "job-2", "--url", secured.url)
    assert anonymous.returncode == 1 and "401" in anonymous.stderr


def test_refuses_public_address_without_keys(tmp_path: Path) -> None:
    refused = run_cli("serve", "--db", str(tmp_path / "x.db"), "--host", "0.0.0.0", "--port", str(free_port()))
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "refusing" in refused.stderr and "--insecure" in refused.stderr and "EVENTLOG_API_KEY" in refused.stderr
    assert not (tmp_path / "x.db").exists()
