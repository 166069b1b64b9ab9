"""``eventlog tail / append / end / runs`` through the real entry point, in subprocesses, on a real
file and a real server: the output (``--json`` parsed), following live across a kill -9 of the
server, and every refusal as one line on stderr, with the file left as it was."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventlog import EventLog, RetentionPolicy
from eventlog.client import Client
from tests.http.server import ServerProcess, free_port


def eventlog(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eventlog", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def ok(*args: str) -> str:
    result = eventlog(*args)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return result.stdout


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("cli") / "eventlog.db").start()
    yield process
    process.kill()


async def _with_thread(path: Path) -> None:
    async with EventLog.open(path) as log:
        await log.create_run("threaded", {"thread_id": "thread-42"})


def test_on_a_file(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    assert ok("append", "job", "step", '{"n": 1}', "--db", db) == "1\n"
    assert ok("append", "job", "note", '"naïve"', "--db", db) == "2\n"
    assert json_lines(ok("tail", "job", "--no-follow", "--json", "--db", db)) == [
        {"id": 1, "event": "step", "data": {"n": 1}}, {"id": 2, "event": "note", "data": "naïve"},
    ]
    assert ok("end", "job", "--reason", "done", "--db", db) == "3\n"
    assert ok("tail", "job", "--from", "1", "--db", db).splitlines() == ['2  note  "naïve"', "-- end at id 3 (reason: done)"]
    assert json_lines(ok("tail", "job", "--json", "--db", db))[-1] == {"id": 3, "event": "end", "data": {"reason": "done"}}

    asyncio.run(_with_thread(Path(db)))
    runs = json_lines(ok("runs", "--json", "--db", db))
    assert [(r["run_id"], r["status"], r["event_count"], r["first_id"], r["last_id"]) for r in runs] == [
        ("threaded", "running", 0, 0, 0), ("job", "ended", 2, 1, 3),
    ]
    assert [r["run_id"] for r in json_lines(ok("runs", "--status", "ended", "--json", "--db", db))] == ["job"]
    table = ok("runs", "--db", db).splitlines()
    assert table[0].split() == ["run", "status", "events", "first", "id", "last", "id", "size", "age", "thread", "id"]
    assert table[1].split()[:2] == ["threaded", "running"] and table[1].split()[-1] == "thread-42"
    assert table[2].split()[:5] == ["job", "ended", "2", "1", "3"]


def test_on_a_server(server: ServerProcess) -> None:
    url = ("--url", server.url)
    first = int(ok("append", "remote", "step", "[1, 2]", *url))
    assert int(ok("end", "remote", *url)) == first + 1
    assert json_lines(ok("tail", "remote", "--json", *url)) == [
        {"id": first, "event": "step", "data": [1, 2]}, {"id": first + 1, "event": "end", "data": {"reason": "success"}},
    ]
    assert ok("tail", "remote", "--no-follow", *url).splitlines() == [f"{first}  step  [1,2]", f"-- end at id {first + 1} (reason: success)"]
    runs = json_lines(ok("runs", "--status", "ended", "--json", *url))
    assert ("remote", "ended", 1) in [(r["run_id"], r["status"], r["event_count"]) for r in runs]
    assert "remote" in ok("runs", *url)


async def _trimmed(path: Path) -> None:
    async with EventLog.open(path, retention=RetentionPolicy(max_events=3), retention_interval=3600) as log:
        await log.append_many("trimmed", [("step", n) for n in range(10)])
        await log.end("trimmed")
        await log.apply_retention()


@pytest.mark.parametrize("follow", ["--follow", "--no-follow"])
def test_tail_reports_a_gap(tmp_path: Path, follow: str) -> None:
    db = tmp_path / "log.db"
    asyncio.run(_trimmed(db))
    gap, *events, end = json_lines(ok("tail", "trimmed", "--from", "1", follow, "--json", "--db", str(db)))
    assert gap["event"] == "gap" and gap["data"]["requested_event_id"] == 1
    assert [e["data"] for e in events] == [7, 8, 9] and events[0]["id"] == gap["data"]["earliest_available_event_id"]
    assert end["event"] == "end"
    assert ok("tail", "trimmed", "--from", "1", follow, "--db", str(db)).splitlines()[0] == (
        "-- gap: events after 1 were trimmed; continuing at 8"
    )


def read_lines(process: subprocess.Popen[str], n: int) -> list[dict[str, Any]]:
    assert process.stdout is not None
    return [json.loads(process.stdout.readline()) for _ in range(n)]


def test_tail_follows_a_server_across_kill_9(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "eventlog.db").start()
    tail = None
    try:
        with Client(server.url, retry_deadline=60) as client:
            client.append_many("live", [("step", n) for n in range(3)])
            tail = subprocess.Popen([sys.executable, "-m", "eventlog", "tail", "live", "--json", "--url", server.url],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            before = read_lines(tail, 3)
            server.kill()
            server.start()
            client.append_many("live", [("step", n) for n in range(3, 6)])
            client.end("live")
            out, err = tail.communicate(timeout=60)
        assert tail.returncode == 0, err
        lines = before + json_lines(out)
        assert [line["data"] for line in lines[:-1]] == list(range(6))
        ids = [line["id"] for line in lines]
        assert ids == sorted(set(ids)) and lines[-1]["event"] == "end"
    finally:
        if tail is not None and tail.poll() is None:
            tail.kill()
        server.kill()


def test_tail_follows_a_file(tmp_path: Path) -> None:
    db = str(tmp_path / "log.db")
    ok("append", "job", "step", "0", "--db", db)
    tail = subprocess.Popen([sys.executable, "-m", "eventlog", "tail", "job", "--json", "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_lines(tail, 1)[0]["data"] == 0
        ok("append", "job", "step", "1", "--db", db)
        ok("end", "job", "--db", db)
        out, err = tail.communicate(timeout=60)
        assert tail.returncode == 0, err
        assert [(line["id"], line["event"]) for line in json_lines(out)] == [(2, "step"), (3, "end")]
    finally:
        if tail.poll() is None:
            tail.kill()


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "log.db"
    ok("append", "job", "step", "0", "--db", str(path))
    ok("end", "job", "--db", str(path))
    return path


@pytest.mark.parametrize("args, expected", [
    (["tail", "nope"], "run 'nope' does not exist"),
    (["tail", "nope", "--no-follow"], "run 'nope' does not exist"),
    (["end", "nope"], "run 'nope' does not exist"),
    (["append", "job", "step", "{not json"], "DATA is not valid JSON"),
    (["append", "job", "step", "1"], "run 'job' has ended"),
    (["append", "job", "end", "1"], "reserved"),
])
def test_refusals_on_a_file(log_file: Path, args: list[str], expected: str) -> None:
    before = digest(log_file)
    assert expected in one_line_refusal(eventlog(*args, "--db", str(log_file)))
    assert digest(log_file) == before


@pytest.mark.parametrize("command", [["tail", "job"], ["runs"], ["end", "job"]])
def test_a_missing_file_is_not_created(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "typo.db"
    assert one_line_refusal(eventlog(*command, "--db", str(path))) == f"eventlog: {path}: no such file"
    assert not path.exists()


@pytest.mark.parametrize("command", [["tail", "job"], ["append", "job", "step", "1"]])
def test_a_directory(tmp_path: Path, command: list[str]) -> None:
    assert one_line_refusal(eventlog(*command, "--db", str(tmp_path))) == f"eventlog: {tmp_path} is a directory, not an eventlog file"
    assert list(tmp_path.iterdir()) == []


def _newer(path: Path) -> None:
    ok("append", "job", "step", "0", "--db", str(path))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("make", [_newer, _foreign, lambda path: path.write_text("just some notes\n")],
                         ids=["newer-schema", "foreign-sqlite", "text-file"])
@pytest.mark.parametrize("command", [["runs"], ["tail", "job"], ["append", "job", "step", "1"]])
def test_files_that_are_no_eventlog_of_ours(tmp_path: Path, make: Any, command: list[str]) -> None:
    path = tmp_path / "other.db"
    make(path)
    before = digest(path)
    one_line_refusal(eventlog(*command, "--db", str(path)))
    assert digest(path) == before


@pytest.mark.parametrize("targets", [[], ["--db", "a.db", "--url", "http://127.0.0.1:1"]], ids=["neither", "both"])
def test_exactly_one_target(tmp_path: Path, targets: list[str]) -> None:
    assert "exactly one of --db" in one_line_refusal(eventlog("runs", *targets))
    assert not (tmp_path / "a.db").exists()


@pytest.mark.parametrize("command", [["runs"], ["tail", "job"], ["append", "job", "step", "1"]])
def test_an_unreachable_server(command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_refusal(eventlog(*command, "--url", url, "--retry-deadline", "0.3"))
    assert f"cannot reach the eventlog server at {url}" in line


def test_auth_refused(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "eventlog.db", env={"EVENTLOG_API_KEY": "s3cret"}).start()
    try:
        url = ("--url", server.url)
        assert "401" in one_line_refusal(eventlog("runs", *url))
        assert "401" in one_line_refusal(eventlog("append", "job", "x", "1", *url, "--token", "wrong"))
        assert "401" in one_line_refusal(eventlog("tail", "job", *url, env={"EVENTLOG_TOKEN": "wrong"}))
        assert ok("append", "job", "x", "1", *url, "--token", "s3cret") == "1\n"
    finally:
        server.kill()
