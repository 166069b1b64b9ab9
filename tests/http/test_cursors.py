"""One rule for every cursor: the ``Last-Event-ID`` header, the ``last_event_id`` parameter of
both stream routes, and ``after`` of ``GET /runs/{id}/events`` accept the same values (spaces or
tabs around digits, at most 2**63 - 1) and refuse the rest with a 400, never a 500. Error
messages echo non-ASCII header bytes as the UTF-8 the client sent."""

from __future__ import annotations

import json
import re
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.http.server import ServerProcess

pytestmark = pytest.mark.backends

CAP = 2**63 - 1
RUN = "cursors-1"
STREAMS = [f"/runs/{RUN}/stream", f"/threads/t/runs/{RUN}/stream"]


@pytest.fixture(scope="module")
def http(shared_server: ServerProcess) -> httpx.Client:
    client = httpx.Client(base_url=shared_server.url, timeout=10)
    assert client.post("/runs", json={"run_id": RUN, "metadata": {"thread_id": "t"}}).status_code == 201
    ids = client.post(f"/runs/{RUN}/events", json={"events": [{"event": "e", "data": n} for n in range(8)]}).json()["ids"]
    ended = client.post(f"/runs/{RUN}/end")
    assert ended.status_code == 201
    client.ids = [*ids, ended.json()["id"]]  # type: ignore[attr-defined]  # the end marker's id last
    return client


def raw_request(base_url: str, head: bytes, body: bytes = b"") -> tuple[int, str]:
    """Send ``head`` (request and header lines) byte for byte: httpx refuses header values with
    surrounding whitespace, which HTTP allows and servers strip. HTTP/1.0: the answer ends at
    the close."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head + b"Host: 127.0.0.1\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_and_headers, _, rest = answer.partition(b"\r\n\r\n")
    return int(status_and_headers.split()[1]), rest.decode()


def raw_get(base_url: str, path: str, header: bytes) -> tuple[int, str]:
    return raw_request(base_url, b"GET " + path.encode() + b" HTTP/1.0\r\n" + header + b"\r\n")


def raw_post(base_url: str, path: str, header: bytes, body: bytes) -> tuple[int, str]:
    head = b"POST " + path.encode() + b" HTTP/1.0\r\nContent-Type: application/json\r\n" + header + b"\r\n"
    return raw_request(base_url, head, body)


def ids_in(stream: str) -> list[int]:
    return [int(n) for n in re.findall(r"^id: (\d+)$", stream, re.M)]


def streamed_ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return ids_in(response.text)


def read_ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [event["id"] for event in response.json()["events"]]


@pytest.mark.parametrize("raw", ["{}", " {}", "{} ", "\t{}\t", "0{}"])
def test_every_cursor_reads_the_same_value_the_same_way(http: httpx.Client, raw: str) -> None:
    ids = http.ids  # type: ignore[attr-defined]
    cursor = raw.format(ids[4])
    expected = ids[5:]
    for path in STREAMS:
        status, stream = raw_get(str(http.base_url), path, b"Last-Event-ID: " + cursor.encode())
        assert status == 200, stream
        by_header = ids_in(stream)
        by_query = streamed_ids(http.get(path, params={"last_event_id": cursor}))
        assert by_header == by_query == expected, path
    assert read_ids(http.get(f"/runs/{RUN}/events", params={"after": cursor})) == expected


@pytest.mark.parametrize("raw", ["x", "-1", "1.0", "1 2", "+1", str(CAP + 1), "9" * 19, "1" * 20, "\u0665"])
def test_every_cursor_refuses_the_same_values(http: httpx.Client, raw: str) -> None:
    answers = [http.get(path, headers={"Last-Event-ID": raw.encode()}) for path in STREAMS]
    answers += [http.get(path, params={"last_event_id": raw}) for path in STREAMS]
    answers.append(http.get(f"/runs/{RUN}/events", params={"after": raw}))
    for response in answers:
        assert response.status_code == 400, (response.request.url, response.text)
        error = response.json()["error"]
        assert error["code"] in ("invalid_last_event_id", "invalid_after")
        assert f"an integer from 0 to {CAP}" in error["message"]


def test_the_cap_itself_is_a_cursor(http: httpx.Client) -> None:
    end_only = http.ids[-1:]  # type: ignore[attr-defined]
    for path in STREAMS:
        assert streamed_ids(http.get(path, headers={"Last-Event-ID": str(CAP)})) == end_only
        assert streamed_ids(http.get(path, params={"last_event_id": str(CAP)})) == end_only
    assert read_ids(http.get(f"/runs/{RUN}/events", params={"after": str(CAP)})) == []


def test_an_empty_cursor_is_no_cursor(http: httpx.Client) -> None:
    everything = http.ids  # type: ignore[attr-defined]
    for path in STREAMS:
        assert streamed_ids(http.get(path, headers={"Last-Event-ID": ""})) == everything
        assert streamed_ids(http.get(path, params={"last_event_id": " "})) == everything


@pytest.mark.parametrize(("raw", "shown"), [("é5".encode(), "é5"), ("日本".encode(), "日本"), (b"\xff5", "\ufffd5")])
def test_non_ascii_header_bytes_are_echoed_as_sent(http: httpx.Client, raw: bytes, shown: str) -> None:
    """The raw bytes go over a real socket; the message must not show their latin-1 reading."""
    status, body = raw_get(str(http.base_url), STREAMS[0], b"Last-Event-ID: " + raw)
    assert status == 400
    assert repr(shown) in json.loads(body)["error"]["message"]


def test_non_ascii_query_values_are_echoed_as_sent(http: httpx.Client) -> None:
    response = http.get(STREAMS[0], params={"last_event_id": "é5"})
    assert response.status_code == 400 and "'é5'" in response.json()["error"]["message"]



def test_a_utf8_idempotency_key_is_kept_and_echoed_as_sent(http: httpx.Client) -> None:
    assert http.post("/runs", json={"run_id": "cursors-key"}).status_code == 201
    key = "clé-日本".encode()
    first = raw_post(str(http.base_url), "/runs/cursors-key/events", b"Idempotency-Key: " + key, b'{"event": "e", "data": 1}')
    again = raw_post(str(http.base_url), "/runs/cursors-key/events", b"Idempotency-Key: " + key, b'{"event": "e", "data": 1}')
    assert first[0] == again[0] == 201 and json.loads(first[1]) == json.loads(again[1])
    other = raw_post(str(http.base_url), "/runs/cursors-key/events", b"Idempotency-Key: " + key, b'{"event": "e", "data": 2}')
    assert other[0] == 422 and "'clé-日本'" in json.loads(other[1])["error"]["message"]
    # Bytes that are not UTF-8 would merge distinct keys if replaced: they are refused.
    bad = raw_post(str(http.base_url), "/runs/cursors-key/events", b"Idempotency-Key: k\xff", b'{"event": "e", "data": 3}')
    assert bad[0] == 400 and json.loads(bad[1])["error"]["code"] == "invalid_idempotency_key"
